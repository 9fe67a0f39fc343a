"""Money moved: payments, refunds and disputes summed per local day (or week,
month) and location, the payments summary and the fees report."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

from portal.ledger.daily import (
    CASH_FAILED,
    CASH_PENDING,
    CASH_STATUSES,
    CASH_SUCCEEDED,
    CASH_SUMS,
    MEMBERSHIPS,
)
from portal.reports import rollup, sql
from portal.reports.filters import ALL, FAILED, PENDING, SUCCEEDED, Filters, Loc
from portal.reports.periods import DAY, bucket_end, bucket_label, bucket_start, day_from_number


def add_figures(total: Any, part: Any, figures: Iterable[str]) -> None:
    """Adds each named figure of ``part`` to the same figure of ``total`` (a
    running total of rows that share their figures' names)."""
    for name in figures:
        setattr(total, name, getattr(total, name) + getattr(part, name))


@dataclass
class Totals:
    """Money moved, in minor units of one currency.

    ``disputed``: amounts Stripe withdrew for disputes, less the amounts it put
    back for disputes won. ``fee``: every Stripe fee, processing and dispute
    fees alike (as Stripe's own fee column counts them); ``dispute_fee`` is the
    disputes' part of it.
    """

    payments: int = 0
    refunds: int = 0
    gross: int = 0
    tax: int = 0
    refunded: int = 0
    fee: int = 0
    disputes: int = 0  # withdrawals
    reinstatements: int = 0
    disputed: int = 0
    dispute_fee: int = 0

    @property
    def net(self) -> int:
        return self.gross - self.refunded - self.disputed - self.fee

    @property
    def processing_fee(self) -> int:
        return self.fee - self.dispute_fee

    def add(self, other: Totals) -> None:
        # Written out: a year's report adds thousands of these.
        self.payments += other.payments
        self.refunds += other.refunds
        self.gross += other.gross
        self.tax += other.tax
        self.refunded += other.refunded
        self.fee += other.fee
        self.disputes += other.disputes
        self.reinstatements += other.reinstatements
        self.disputed += other.disputed
        self.dispute_fee += other.dispute_fee

    def as_dict(self) -> dict[str, int]:
        """Every figure by name, and the net (the API's payments totals)."""
        return {**asdict(self), "net": self.net}


@dataclass
class BucketRow:
    start: date
    end: date
    label: str
    location: Loc
    currency: str
    totals: Totals


def _bucketed(
    f: Filters, day_rows: dict[tuple[int, str, int], Totals], grouping: str
) -> list[BucketRow]:
    """``_payment_days``' rows as rows by bucket and location, in the report's order
    (the day rows' totals are taken over: each bucket's first one adds the others)."""
    merged: dict[tuple[date, int, str], Totals] = {}
    starts: dict[int, date] = {}  # day number → its bucket's first day
    for (location_id, currency, number), totals in day_rows.items():
        start = starts.get(number)
        if start is None:
            start = starts[number] = bucket_start(day_from_number(number), grouping)
        key = (start, location_id, currency)
        if key in merged:
            merged[key].add(totals)
        else:
            merged[key] = totals
    out = []
    names = {loc.id: loc for loc in f.locations}
    # Each bucket's dates and label once (a year by month: 12, for 600 rows).
    spans = {
        start: (
            max(start, f.period.start),
            min(bucket_end(start, grouping), f.period.end),
            bucket_label(start, grouping),
        )
        for start in {start for start, _, _ in merged}
    }
    for (start, location_id, currency), totals in sorted(
        merged.items(), key=lambda kv: (kv[0][0], names[kv[0][1]].name, kv[0][2])
    ):
        first, end, label = spans[start]
        out.append(
            BucketRow(
                start=first,
                end=end,
                label=label,
                location=names[location_id],
                currency=currency,
                totals=totals,
            )
        )
    return out


def _by_currency(rows: Iterable[BucketRow]) -> dict[str, Totals]:
    out: dict[str, Totals] = {}
    for row in rows:
        out.setdefault(row.currency, Totals()).add(row.totals)
    return dict(sorted(out.items()))


def _time_columns(status: str) -> tuple[str, str]:
    """The moment that dates a payment and a refund, for a status filter."""
    if status == SUCCEEDED:
        return "p.succeeded_at", "r.completed_at"
    if status == ALL:
        return "COALESCE(p.succeeded_at, p.created_at)", "COALESCE(r.completed_at, r.created_at)"
    return "p.created_at", "r.created_at"


def _status_clauses(status: str) -> tuple[str, str]:
    if status == SUCCEEDED:
        return "p.status = 'succeeded'", "r.status = 'succeeded'"
    if status == PENDING:
        return "p.status = 'pending'", "r.status = 'pending'"
    if status == FAILED:
        return "p.status IN ('failed', 'cancelled')", "r.status = 'failed'"
    return "1 = 1", "1 = 1"


def _payment_extra(f: Filters) -> tuple[str, list[Any]]:
    """Package and method filters, on ``s`` (sale) and ``p`` (payment)."""
    clauses: list[str] = []
    args: list[Any] = []
    if f.package_id is not None:
        clauses.append("s.package_id = {}")
        args.append(f.package_id)
    if f.method:
        clauses.append("p.method = {}")
        args.append(f.method)
    return "".join(f" AND {c}" for c in clauses), args


# A dispute is two movements of money: Stripe withdraws the disputed amount
# and its dispute fee when the dispute opens, and puts the amount back (not
# the fee) if the dispute is won. Each is dated by its own moment, in the
# sale location's zone; neither carries tax (a lost dispute's tax reversal is
# a journal entry, not money moved). Only succeeded money (and "any status")
# shows them: a dispute is never pending or failed money.
WITHDRAWN = "dispute_withdrawn"
REINSTATED = "dispute_reinstated"
DISPUTE_KINDS = (WITHDRAWN, REINSTATED)
DISPUTE_TIME = {WITHDRAWN: "d.withdrawn_at", REINSTATED: "d.reinstated_at"}
DISPUTE_STATUSES = (SUCCEEDED, ALL)
# What each kind of money row is read with: the row (its alias first), its sale
# (``s``) and, for refunds and disputes, the payment (``p``) they belong to.
PAYMENT_FROM = "payment p JOIN sale s ON s.id = p.sale "
REFUND_FROM = "refund r JOIN payment p ON p.id = r.payment JOIN sale s ON s.id = r.sale "
DISPUTE_FROM = "dispute d JOIN payment p ON p.id = d.payment JOIN sale s ON s.id = d.sale "


def row_alias(source: str) -> str:
    """The alias of the row a ``*_FROM`` clause reads ("payment p JOIN …" → "p")."""
    return source.split(" ", 2)[1]


# The order of the listed rows at the same instant (then by id).
LINE_KINDS = ("payment", "refund", WITHDRAWN, REINSTATED)
KIND_ORDER = {kind: i for i, kind in enumerate(LINE_KINDS)}

# Tax contained in a payment: the sale's tax when the payment is the whole
# sale (always, today), otherwise its share rounded half-up; a refund's tax
# share is rounded the same way as its journal entry (payments.service).
PAYMENT_TAX = (
    "CASE WHEN s.total_cents = 0 THEN 0 WHEN p.amount_cents = s.total_cents THEN s.tax_cents "
    "ELSE (2 * p.amount_cents * s.tax_cents + s.total_cents) / (2 * s.total_cents) END"
)
# A completed refund's tax is what its journal entry gave back (``refund.tax_cents``,
# cumulative over the sale's refunds); a pending one shows its proportional share.
REFUND_TAX = (
    "CASE WHEN r.status = 'succeeded' THEN r.tax_cents WHEN s.total_cents = 0 THEN 0 "
    "ELSE (2 * r.amount_cents * s.tax_cents + s.total_cents) / (2 * s.total_cents) END"
)


# The ``cash_day`` statuses each status filter adds up.
_CASH_STATUSES = {
    SUCCEEDED: (CASH_SUCCEEDED,),
    PENDING: (CASH_PENDING,),
    FAILED: (CASH_FAILED,),
    ALL: CASH_STATUSES,
}


async def _payment_days(
    f: Filters,
    *,
    status: str | None = None,
    stripe_only: bool = False,
    with_filters: bool = True,
    grouping: str = DAY,
    product: str = "",
) -> dict[tuple[int, str, int], Totals]:
    """(location, currency, bucket's first day number) → totals of payments, refunds and
    disputes, from the daily totals (``cash_day``, kept by ``payments.totals``): the
    same figures as the rows give, one row per bucket, location and currency.

    With ``grouping`` week or month the day number is the first day of each
    bucket (within the period), which ``_bucketed`` files under the same bucket.
    """
    out: dict[tuple[int, str, int], Totals] = defaultdict(Totals)
    if not f.locations:
        return out
    start, end = rollup.days(f)
    scope, scope_args = rollup.locations(f)
    cte, day, bucket_args = rollup.buckets(f, grouping)
    statuses, status_args = sql.in_list(list(_CASH_STATUSES[status or f.status]))
    clauses = f" AND status IN {statuses}"
    filter_args: list[Any] = [*status_args]
    if with_filters and f.package_id is not None:
        clauses += " AND package = {}"
        filter_args.append(f.package_id)
    if with_filters and f.method:
        clauses += " AND method = {}"
        filter_args.append(f.method)
    if product:  # a membership period's sale has no package (``package`` 0)
        clauses += " AND package = 0" if product == MEMBERSHIPS else " AND package <> 0"
    if stripe_only:
        clauses += " AND provider = 'stripe'"
    # Whole numbers back (SUM of a bigint is numeric in PostgreSQL: a Decimal each).
    sums = ", ".join(f"CAST(SUM({name}) AS BIGINT) AS {name}" for name in CASH_SUMS)
    rows = await sql.fetch(
        f"{rollup.with_(cte)}SELECT location AS loc, currency, {day} AS day, {sums} "
        f"FROM {rollup.source('cash_day', start, end, months=rollup.monthly(grouping))}"
        f"{rollup.bucket_join(cte)} WHERE {scope} AND day >= {{}} AND day <= {{}}"
        f"{clauses} GROUP BY 1, 2, 3",
        [*bucket_args, *scope_args, start, end, *filter_args],
    )
    for row in rows:
        n = {name: row[name] or 0 for name in CASH_SUMS}
        if stripe_only:  # the fees report: no refunds, no money put back
            n["refunds"] = n["refunded"] = n["refund_tax"] = 0
            n["reinstatements"] = n["reinstated"] = 0
        if not any(n.values()):
            continue
        t = out[(int(row["loc"]), str(row["currency"]), int(row["day"]))]
        t.payments += n["payments"]
        t.gross += n["gross"]
        t.tax += n["tax"] - n["refund_tax"]
        t.fee += n["fee"] + n["dispute_fee"]
        t.refunds += n["refunds"]
        t.refunded += n["refunded"]
        t.disputes += n["disputes"]
        t.reinstatements += n["reinstatements"]
        t.disputed += n["disputed"] - n["reinstated"]
        t.dispute_fee += n["dispute_fee"]
    return out


@dataclass
class PaymentSummary:
    rows: list[BucketRow]
    totals: dict[str, Totals]  # per currency


async def payment_summary(f: Filters) -> PaymentSummary:
    """Money moved per bucket and location, of the kind filter's product (both when none:
    the payments page offers no kind; its summary download and the API take one)."""
    days = await _payment_days(f, grouping=f.grouping, product=f.product)
    rows = _bucketed(f, days, f.grouping)
    return PaymentSummary(rows=rows, totals=_by_currency(rows))


async def fees(f: Filters) -> PaymentSummary:
    """Stripe fees of succeeded card payments and of disputes, per bucket and location."""
    rows = _bucketed(
        f,
        await _payment_days(f, status=SUCCEEDED, stripe_only=True, grouping=f.grouping),
        f.grouping,
    )
    return PaymentSummary(rows=rows, totals=_by_currency(rows))
