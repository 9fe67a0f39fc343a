from piccolo.columns import BigInt, Date, ForeignKey, Integer, Serial, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from portal.locations.tables import Location


class JournalEntry(Table, tablename="journal_entry"):
    """One financial event, e.g. a sale paid or a session given.

    ``event_key`` is unique: the same event (a webhook delivered twice, a
    command run twice) can never be journalled twice. Append-only.
    """

    id: Serial
    event_key = Varchar(length=120, unique=True, required=True)
    kind = Varchar(length=40, required=True, index=True)
    occurred_at = Timestamptz(index=True)
    location = ForeignKey(references=Location, on_delete=OnDelete.restrict, null=True, index=True)
    currency = Varchar(length=3, required=True)
    reference = Varchar(length=80, default="", index=True)
    memo = Text(default="")
    created_at = Timestamptz()


class JournalLine(Table, tablename="journal_line"):
    """A debit or a credit of one account. Lines of an entry balance; append-only."""

    id: Serial
    entry = ForeignKey(
        references=JournalEntry, on_delete=OnDelete.restrict, required=True, index=True
    )
    account = Varchar(length=40, required=True)
    debit_cents = BigInt(default=0)
    credit_cents = BigInt(default=0)
    # Denormalised from the entry so that balances per account, location and
    # day are one indexed aggregate.
    location = ForeignKey(references=Location, on_delete=OnDelete.restrict, null=True)
    currency = Varchar(length=3, required=True)
    occurred_at = Timestamptz()
    sale_id = Integer(null=True, default=None, index=True)
    # Who gave the session, for revenue by therapist (session-completed entries).
    therapist_id = Integer(null=True, default=None, index=True)


class ClosedPeriod(Table, tablename="closed_period"):
    """A month closed for one location (``location`` NULL: every location and the
    lines without one). Nothing is posted into a closed month; see ``ledger.post``.

    One row per location and month (partial unique indexes, NULL included).
    """

    id: Serial
    location = ForeignKey(references=Location, on_delete=OnDelete.restrict, null=True, index=True)
    month = Date(required=True, index=True)  # the month's first day
    closed_by = Integer(null=True, default=None)  # app_user id
    closed_at = Timestamptz()


class LedgerSums:
    """The columns of ``ledger_day`` and ``ledger_month`` (one key, one pair of sums)."""

    location = Integer(required=True)
    day = Integer(required=True)
    account = Varchar(length=40, required=True)
    currency = Varchar(length=3, required=True)
    kind = Varchar(length=40, default="")
    therapist = Integer(default=0)
    product = Varchar(length=12, default="")  # memberships | packages | '' (no sale)
    debit_cents = BigInt(default=0)
    credit_cents = BigInt(default=0)


class LedgerDay(LedgerSums, Table, tablename="ledger_day"):
    """The journal summed per location, local day, account and currency (``ledger.daily``).

    Kept in the transaction that writes the lines; the reports read their
    totals here instead of scanning the lines. ``location`` 0: lines without a
    location (UTC days). ``day``: days since 1970-01-01 in the location's zone.
    ``kind`` is the entry kind for deferred revenue (the liability report's
    columns), else empty; ``therapist`` who gave the sessions of service revenue,
    else 0. One row per key (unique index ``ledger_day_key``).
    """

    id: Serial


class LedgerMonth(LedgerSums, Table, tablename="ledger_month"):
    """``ledger_day`` summed per local month: ``day`` is the month's first day (its day
    number), the rest of the key as there. Kept by the same writes, in the same
    transaction (``ledger.daily``); reports read it for whole months. One row per key
    (unique index ``ledger_month_key``)."""

    id: Serial


class CreditSums:
    """The columns of ``credit_day`` and ``credit_month``."""

    location = Integer(required=True)
    day = Integer(required=True)
    currency = Varchar(length=3, required=True)
    movement = Varchar(length=20, required=True)
    product = Varchar(length=12, default="")  # memberships | packages
    sessions = BigInt(default=0)
    value_cents = BigInt(default=0)


class CreditDay(CreditSums, Table, tablename="credit_day"):
    """Session credits per selling location, local day and movement (``ledger.daily``).

    ``movement``: sold (the sale activated), redeemed (given or forfeited),
    expired, refunded (revoked); the last three count the credits that reached
    that final state on the day, so a location's outstanding sessions at any
    day are sold − the others up to it. ``value_cents``: their net value.
    One row per key (unique index ``credit_day_key``).
    """

    id: Serial


class CreditMonth(CreditSums, Table, tablename="credit_month"):
    """``credit_day`` summed per local month (``day``: the month's first day), kept with it."""

    id: Serial


class CashSums:
    """The columns of ``cash_day`` and ``cash_month``."""

    location = Integer(required=True)
    day = Integer(required=True)
    currency = Varchar(length=3, required=True)
    method = Varchar(length=20, default="")
    provider = Varchar(length=20, default="")
    package = Integer(default=0)
    status = Varchar(length=12, default="succeeded")
    payments = BigInt(default=0)
    gross = BigInt(default=0)
    tax = BigInt(default=0)
    fee = BigInt(default=0)
    refunds = BigInt(default=0)
    refunded = BigInt(default=0)
    refund_tax = BigInt(default=0)
    disputes = BigInt(default=0)
    disputed = BigInt(default=0)
    dispute_fee = BigInt(default=0)
    reinstatements = BigInt(default=0)
    reinstated = BigInt(default=0)


class CashDay(CashSums, Table, tablename="cash_day"):
    """Payments, refunds and disputes per sale location, local day, currency, method,
    provider, package and status (``ledger.daily``; written by ``payments.totals``).

    ``status`` succeeded: a payment counts on the day it succeeded, a refund on
    the day it completed, a dispute's withdrawal and its reinstatement each on
    their own day. ``status`` pending, failed (failed or cancelled payments,
    failed refunds): on the day the row was created. Days are in the sale
    location's zone: the payments report's dating. ``tax``: the tax a payment
    contains; ``refund_tax``: what refunds gave back (pending and failed ones:
    their share of the sale's tax). One row per key (unique index ``cash_day_key``).
    """

    id: Serial


class CashMonth(CashSums, Table, tablename="cash_month"):
    """``cash_day`` summed per local month (``day``: the month's first day), kept with it."""

    id: Serial
