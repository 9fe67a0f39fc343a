from piccolo.columns import (
    BigInt,
    Date,
    ForeignKey,
    Integer,
    Serial,
    Text,
    Timestamptz,
    Varchar,
)
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
