"""The accountant reports: SQL aggregates over payments, sales and the journal.

How each number is computed is written in docs/architecture.md ("Reports").
Every query here is one aggregate (or one keyset page) in the database; no
report loads all rows into Python. Days are each location's local days: the
period is converted to UTC once per location, cut at DST changes into
constant-offset segments (``periods.offset_segments``), and rows are bucketed
by their epoch plus the segment's offset.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from portal.ledger.service import ACCOUNTS, ASSET, EXPENSE
from portal.pagination import decode_cursor, encode_cursor
from portal.reports import sql
from portal.reports.filters import ALL, FAILED, PENDING, SUCCEEDED, Filters, Loc
from portal.reports.periods import (
    DAY,
    EPOCH_DAY,
    SECONDS_PER_DAY,
    Period,
    bounds,
    bucket_end,
    bucket_label,
    bucket_start,
    day_from_number,
    local_midnight,
    month_starts,
    next_month,
    offset_segments,
)
from portal.reports.sql import concurrently as concurrently  # for the controllers

# Journal entry kinds as the liability report classifies them. Whatever else
# moves deferred revenue (sessions given, forfeited by a late cancel or a
# no-show, any kind added later) counts as redeemed, so the identity
# closing = opening + sold − redeemed − expired − refunded always holds.
SOLD_KINDS = ("sale_paid",)
EXPIRED_KINDS = ("package_expired",)
REFUNDED_KINDS = ("refund", "dispute_lost")
LIABILITY_COLUMNS = ("opening", "sold", "redeemed", "expired", "refunded", "closing")
# Session states that end a credit, and which column each lands in.
REDEEMED_STATES = ("redeemed", "forfeited")
EXPIRED_STATES = ("expired",)
REFUNDED_STATES = ("revoked",)
TERMINAL_STATES = REDEEMED_STATES + EXPIRED_STATES + REFUNDED_STATES
# revenue_reversals is contra-revenue (debit balance): refunds and lost chargebacks
# of sessions already given, shown as a negative beside service and breakage.
REVENUE_ACCOUNTS = ("service_revenue", "breakage_revenue", "revenue_reversals")
UNLOCATED = 0  # the key for journal lines without a location (bucketed in UTC)
# The journal's one dating rule: a line belongs to the local day of its own
# location (``journal_line.location``, in that location's zone), and a line
# without a location to its UTC day. Every journal figure (liability, trial
# balance, journal, revenue, dashboard series) matches lines to the zone
# segments or bounds of this key, so they agree at every month end.
LINE_LOCATION = f"COALESCE(jl.location, {UNLOCATED})"


# -- shared pieces ----------------------------------------------------------------------


def _segments(
    f: Filters, zones: list[tuple[int, str]] | None = None
) -> tuple[str, list[Any], datetime, datetime]:
    """The ``seg(loc, lo, hi, off)`` CTE for the locations' zones over the period.

    Also returns the overall UTC range, which lets the database use its time
    index before matching each row to its location's segment.
    """
    rows: list[tuple[int, datetime, datetime, int]] = []
    if zones is None:
        zones = [(loc.id, loc.timezone) for loc in f.locations]
    for location_id, tz in zones:
        lo, hi = bounds(tz, f.period)
        rows.extend((location_id, a, b, off) for a, b, off in offset_segments(tz, lo, hi))
    cte, args = sql.values_cte(
        "seg", [("loc", "int"), ("lo", "ts"), ("hi", "ts"), ("off", "int")], rows
    )
    overall_lo = min((r[1] for r in rows), default=datetime(1970, 1, 1, tzinfo=UTC))
    overall_hi = max((r[2] for r in rows), default=datetime(1970, 1, 1, tzinfo=UTC))
    return cte, args, overall_lo, overall_hi


def _line_zones(f: Filters) -> list[tuple[int, str]]:
    """The zones that date the journal lines in scope: each chosen location's own,
    and UTC for lines without a location when they are included (``LINE_LOCATION``)."""
    zones = _zones(f)
    if f.include_unlocated:
        zones.append((UNLOCATED, "UTC"))
    return zones


def _bounds_cte(zones: Iterable[tuple[int, str]], period: Period) -> tuple[str, list[Any]]:
    """The ``b(loc, lo, hi)`` CTE: each location's period in UTC."""
    rows: list[tuple[int, datetime, datetime]] = []
    for location_id, tz in zones:
        lo, hi = bounds(tz, period)
        rows.append((location_id, lo, hi))
    return sql.values_cte("b", [("loc", "int"), ("lo", "ts"), ("hi", "ts")], rows)


def _zones(f: Filters) -> list[tuple[int, str]]:
    return [(loc.id, loc.timezone) for loc in f.locations]


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
        return {
            "payments": self.payments,
            "refunds": self.refunds,
            "disputes": self.disputes,
            "reinstatements": self.reinstatements,
            "gross": self.gross,
            "tax": self.tax,
            "refunded": self.refunded,
            "disputed": self.disputed,
            "fee": self.fee,
            "dispute_fee": self.dispute_fee,
            "net": self.net,
        }


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
    merged: dict[tuple[date, int, str], Totals] = defaultdict(Totals)
    for (location_id, currency, number), totals in day_rows.items():
        start = bucket_start(day_from_number(number), grouping)
        merged[(start, location_id, currency)].add(totals)
    out = []
    names = {loc.id: loc for loc in f.locations}
    for (start, location_id, currency), totals in sorted(
        merged.items(), key=lambda kv: (kv[0][0], names[kv[0][1]].name, kv[0][2])
    ):
        end = min(bucket_end(start, grouping), f.period.end)
        out.append(
            BucketRow(
                start=max(start, f.period.start),
                end=end,
                label=bucket_label(start, grouping),
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


# -- payments ---------------------------------------------------------------------------


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
DISPUTE_FROM = "dispute d JOIN payment p ON p.id = d.payment JOIN sale s ON s.id = d.sale "
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


async def _location_clauses(f: Filters, *columns: str) -> list[tuple[str, list[Any]]]:
    """`` AND <column> IN (…)`` per column when at most a quarter of all locations are
    chosen, else "" (one count of the locations for all the columns)."""
    rows = await sql.fetch("SELECT COUNT(*) AS n FROM location", [])
    if len(f.location_ids) * 4 > sql.as_int(rows[0]["n"]):
        return [("", []) for _ in columns]
    marks, args = sql.in_list(f.location_ids)
    return [(f" AND {column} IN {marks}", list(args)) for column in columns]


def _bucket_segments(f: Filters, grouping: str) -> tuple[str, list[Any], datetime, datetime]:
    """The ``seg(loc, lo, hi, bucket)`` CTE: each location's weeks or months of the period.

    Each row is one bucket in UTC (its local midnights converted once), keyed
    by the local day number of its first day in the period. Rows are matched
    to buckets by a range join, with no time-zone arithmetic per row, and the
    database groups them into a few hundred buckets instead of a row per day.
    """
    rows: list[tuple[int, datetime, datetime, int]] = []
    for loc in f.locations:
        first = f.period.start
        while first <= f.period.end:
            last = min(bucket_end(bucket_start(first, grouping), grouping), f.period.end)
            rows.append(
                (
                    loc.id,
                    local_midnight(loc.timezone, first),
                    local_midnight(loc.timezone, last + timedelta(days=1)),
                    (first - EPOCH_DAY).days,
                )
            )
            first = last + timedelta(days=1)
    cte, args = sql.values_cte(
        "seg", [("loc", "int"), ("lo", "ts"), ("hi", "ts"), ("bucket", "int")], rows
    )
    overall_lo = min((r[1] for r in rows), default=datetime(1970, 1, 1, tzinfo=UTC))
    overall_hi = max((r[2] for r in rows), default=datetime(1970, 1, 1, tzinfo=UTC))
    return cte, args, overall_lo, overall_hi


async def _payment_days(
    f: Filters,
    *,
    status: str | None = None,
    stripe_only: bool = False,
    with_filters: bool = True,
    grouping: str = DAY,
) -> dict[tuple[int, str, int], Totals]:
    """(location, currency, local day number) → totals of payments and refunds.

    With ``grouping`` week or month the day number is the first day of each
    bucket (within the period), which ``_bucketed`` files under the same bucket.
    """
    status = status or f.status
    out: dict[tuple[int, str, int], Totals] = defaultdict(Totals)
    if not f.locations:
        return out
    if grouping == DAY:
        cte, seg_args, lo, hi = _segments(f)
        p_day = sql.local_day(_time_columns(status)[0], "seg.off")
        r_day = sql.local_day(_time_columns(status)[1], "seg.off")
    else:
        cte, seg_args, lo, hi = _bucket_segments(f, grouping)
        p_day = r_day = "seg.bucket"
    p_time, r_time = _time_columns(status)
    p_status, r_status = _status_clauses(status)
    extra, extra_args = _payment_extra(f) if with_filters else ("", [])
    if stripe_only:
        extra += " AND p.provider = 'stripe'"
    # The segments already hold only the chosen locations; the list is added to
    # let PostgreSQL use the sale's location index when few are chosen, and left
    # out for most or all of them, where it would make the planner read every
    # sale through that index instead of scanning the table once.
    ((locs, loc_args),) = await _location_clauses(f, "s.location")
    payments = await sql.fetch(
        f"WITH {cte} "
        f"SELECT s.location AS loc, p.currency AS currency, "
        f"{p_day} AS day, "
        f"COUNT(*) AS n, SUM(p.amount_cents) AS gross, SUM({PAYMENT_TAX}) AS tax, "
        f"SUM(COALESCE(p.fee_cents, 0)) AS fee "
        f"FROM payment p JOIN sale s ON s.id = p.sale "
        f"JOIN seg ON seg.loc = s.location AND {p_time} >= seg.lo AND {p_time} < seg.hi "
        f"WHERE {p_status} AND {p_time} >= {{}} AND {p_time} < {{}}{locs}"
        f"{extra} GROUP BY 1, 2, 3",
        [*seg_args, lo, hi, *loc_args, *extra_args],
    )
    for row in payments:
        t = out[(int(row["loc"]), str(row["currency"]), int(row["day"]))]
        t.payments += sql.as_int(row["n"])
        t.gross += sql.as_int(row["gross"])
        t.tax += sql.as_int(row["tax"])
        t.fee += sql.as_int(row["fee"])
    if status in DISPUTE_STATUSES:
        # Disputes move money only once Stripe has withdrawn it (or put it back).
        kinds = DISPUTE_KINDS[:1] if stripe_only else DISPUTE_KINDS
        results = await sql.fetch_all(
            *(
                (
                    f"WITH {cte} "
                    f"SELECT s.location AS loc, d.currency AS currency, "
                    f"{sql.local_day(DISPUTE_TIME[kind], 'seg.off') if grouping == DAY else p_day}"
                    " AS day, COUNT(*) AS n, SUM(d.amount_cents) AS amount, "
                    "SUM(d.fee_cents) AS fee "
                    f"FROM {DISPUTE_FROM}"
                    f"JOIN seg ON seg.loc = s.location AND {DISPUTE_TIME[kind]} >= seg.lo "
                    f"AND {DISPUTE_TIME[kind]} < seg.hi "
                    f"WHERE {DISPUTE_TIME[kind]} >= {{}} AND {DISPUTE_TIME[kind]} < {{}}{locs}"
                    f"{extra} GROUP BY 1, 2, 3",
                    [*seg_args, lo, hi, *loc_args, *extra_args],
                )
                for kind in kinds
            )
        )
        for kind, rows in zip(kinds, results, strict=True):
            for row in rows:
                t = out[(int(row["loc"]), str(row["currency"]), int(row["day"]))]
                if kind == WITHDRAWN:
                    t.disputes += sql.as_int(row["n"])
                    t.disputed += sql.as_int(row["amount"])
                    t.fee += sql.as_int(row["fee"])
                    t.dispute_fee += sql.as_int(row["fee"])
                else:
                    t.reinstatements += sql.as_int(row["n"])
                    t.disputed -= sql.as_int(row["amount"])
    if stripe_only:
        return out
    refunds = await sql.fetch(
        f"WITH {cte} "
        f"SELECT s.location AS loc, r.currency AS currency, "
        f"{r_day} AS day, "
        f"COUNT(*) AS n, SUM(r.amount_cents) AS refunded, SUM({REFUND_TAX}) AS tax "
        f"FROM refund r JOIN payment p ON p.id = r.payment JOIN sale s ON s.id = r.sale "
        f"JOIN seg ON seg.loc = s.location AND {r_time} >= seg.lo AND {r_time} < seg.hi "
        f"WHERE {r_status} AND {r_time} >= {{}} AND {r_time} < {{}}{locs}"
        f"{extra} GROUP BY 1, 2, 3",
        [*seg_args, lo, hi, *loc_args, *extra_args],
    )
    for row in refunds:
        t = out[(int(row["loc"]), str(row["currency"]), int(row["day"]))]
        t.refunds += sql.as_int(row["n"])
        t.refunded += sql.as_int(row["refunded"])
        t.tax -= sql.as_int(row["tax"])
    return out


@dataclass
class PaymentSummary:
    rows: list[BucketRow]
    totals: dict[str, Totals]  # per currency


async def payment_summary(f: Filters) -> PaymentSummary:
    rows = _bucketed(f, await _payment_days(f, grouping=f.grouping), f.grouping)
    return PaymentSummary(rows=rows, totals=_by_currency(rows))


@dataclass(slots=True)
class PaymentLine:
    """One row of the payments report: a payment, a refund of one, or a dispute's
    withdrawal or reinstatement (``disputed`` = +amount withdrawn, −amount put back)."""

    kind: str  # payment | refund | dispute_withdrawn | dispute_reinstated
    id: int
    at: datetime
    date: date
    location: str
    client: str
    item: str
    payment_method: str
    gross: int
    tax: int
    refunded: int
    disputed: int
    fee: int
    currency: str
    stripe_payment_intent: str
    sale_id: int
    status: str

    @property
    def net(self) -> int:
        return self.gross - self.refunded - self.disputed - self.fee


class LocalDays:
    """Local dates of single rows, from the period's constant-offset segments.

    Rows shown one by one (a page, a download) carry their own local date;
    it is computed with the same segments that bucket the aggregates, by
    integer arithmetic, without a time-zone lookup per row.
    """

    def __init__(self, zones: Iterable[tuple[int, str]], period: Period) -> None:
        self._segments: dict[int, list[tuple[datetime, datetime, int]]] = {}
        for location_id, tz in zones:
            lo, hi = bounds(tz, period)
            self._segments[location_id] = offset_segments(tz, lo, hi)

    def bounds(self) -> list[tuple[int, datetime, datetime]]:
        return [(k, v[0][0], v[-1][1]) for k, v in self._segments.items() if v]

    def date(self, location_id: int | None, at: datetime) -> date:
        pieces = self._segments.get(location_id or UNLOCATED) or []
        offset = pieces[0][2] if pieces else 0
        for lo, hi, off in pieces:
            if lo <= at < hi:
                offset = off
                break
        return day_from_number((int(at.timestamp()) + offset) // SECONDS_PER_DAY)


def _period_clause(
    column: str, location: str, days: LocalDays
) -> tuple[str, list[Any], datetime, datetime]:
    """Rows inside each location's own period: one OR branch per location.

    Also returns the overall range, the condition the time index serves.
    """
    parts: list[str] = []
    args: list[Any] = []
    ranges = days.bounds()
    for location_id, lo, hi in ranges:
        parts.append(f"({location} = {{}} AND {column} >= {{}} AND {column} < {{}})")
        args += [location_id, lo, hi]
    if not parts:
        parts, args = ["1 = 0"], []
    overall_lo = min((r[1] for r in ranges), default=datetime(1970, 1, 1, tzinfo=UTC))
    overall_hi = max((r[2] for r in ranges), default=datetime(1970, 1, 1, tzinfo=UTC))
    return "(" + " OR ".join(parts) + ")", args, overall_lo, overall_hi


def _after(column: str, id_column: str, at: datetime, row_id: int | None) -> tuple[str, list[Any]]:
    """Rows after a keyset position; the redundant ``>=`` starts the index scan there."""
    if row_id is None:
        return f" AND {column} > {{}}", [at]
    return (
        f" AND {column} >= {{}} AND ({column} > {{}} OR {id_column} > {{}})",
        [at, at, row_id],
    )


def _line(row: dict[str, Any], days: LocalDays) -> PaymentLine:
    at = sql.as_datetime(row["ts"])
    assert at is not None
    return PaymentLine(
        kind=str(row["kind"]),
        id=int(row["id"]),
        at=at,
        date=days.date(int(row["loc"]), at),
        location=str(row["location"]),
        client=str(row["client"] or ""),
        item=str(row["item"] or ""),
        payment_method=str(row["method"] or ""),
        gross=sql.as_int(row["gross"]),
        tax=sql.as_int(row["tax"]),
        refunded=sql.as_int(row["refunded"]),
        disputed=sql.as_int(row["disputed"]),
        fee=sql.as_int(row["fee"]),
        currency=str(row["currency"]),
        stripe_payment_intent=str(row["intent"] or ""),
        sale_id=int(row["sale_id"]),
        status=str(row["status"]),
    )


@dataclass
class LinePage:
    rows: list[PaymentLine]
    next_cursor: str | None


def _line_after(
    kind: str, time: str, id_column: str, position: tuple[datetime, str, int] | None
) -> tuple[str, list[Any]]:
    """The keyset condition of one kind of row after a cursor at (time, kind, id)."""
    if position is None:
        return "", []
    at, after_kind, row_id = position
    if KIND_ORDER[kind] < KIND_ORDER[after_kind]:
        return _after(time, id_column, at, None)
    if kind == after_kind:
        return _after(time, id_column, at, row_id)
    return f" AND {time} >= {{}}", [at]


def dispute_line_columns(kind: str) -> str:
    """The listed columns of a dispute's withdrawal or reinstatement (``d``, ``p``, ``s``)."""
    if kind == WITHDRAWN:
        return "0 AS gross, 0 AS tax, 0 AS refunded, d.amount_cents AS disputed, d.fee_cents AS fee"
    return "0 AS gross, 0 AS tax, 0 AS refunded, 0 - d.amount_cents AS disputed, 0 AS fee"


async def payment_lines(f: Filters, *, after: str | None = None, limit: int = 100) -> LinePage:
    """One keyset page of payment, refund and dispute rows, oldest first.

    Ordered by (time, kind, id). Each branch walks its time index from the
    cursor and stops at the limit; the short lists are then merged. Once a
    full page is in hand, the later branches stop at its last instant.
    """
    if not f.locations:
        return LinePage(rows=[], next_cursor=None)
    days = LocalDays(((loc.id, loc.timezone) for loc in f.locations), f.period)
    p_time, r_time = _time_columns(f.status)
    p_status, r_status = _status_clauses(f.status)
    extra, extra_args = _payment_extra(f)
    position = _decode_line_cursor(after)
    p_after, p_after_args = _line_after("payment", p_time, "p.id", position)
    r_after, r_after_args = _line_after("refund", r_time, "r.id", position)
    p_period, p_period_args, lo, hi = _period_clause(p_time, "s.location", days)
    r_period, r_period_args, _, _ = _period_clause(r_time, "s.location", days)
    common = "JOIN location l ON l.id = s.location JOIN app_user u ON u.id = s.client "
    payments = (
        f"SELECT 'payment' AS kind, p.id AS id, {p_time} AS ts, s.location AS loc, "
        "l.name AS location, u.email AS client, s.item_name AS item, p.method AS method, "
        f"p.amount_cents AS gross, {PAYMENT_TAX} AS tax, 0 AS refunded, 0 AS disputed, "
        "COALESCE(p.fee_cents, 0) AS fee, p.currency AS currency, "
        "p.payment_intent_id AS intent, s.id AS sale_id, p.status AS status "
        f"FROM payment p JOIN sale s ON s.id = p.sale {common}"
        f"WHERE {p_status} AND {p_time} >= {{}} AND {p_time} < {{}} AND {p_period}"
        f"{extra}{p_after} ORDER BY {p_time}, p.id LIMIT {{}}"
    )
    rows = await sql.fetch(
        payments, [lo, hi, *p_period_args, *extra_args, *p_after_args, limit + 1]
    )
    for row in rows:
        row["ts"] = sql.as_datetime(row["ts"])

    def bound(clause: str, args: list[Any], time: str) -> tuple[str, list[Any]]:
        # A full page in hand: no row after its last instant can be on it.
        if len(rows) <= limit:
            return clause, args
        rows.sort(key=_line_order)
        return clause + f" AND {time} <= {{}}", [*args, rows[limit]["ts"]]

    r_after, r_after_args = bound(r_after, r_after_args, r_time)
    refunds = (
        f"SELECT 'refund' AS kind, r.id AS id, {r_time} AS ts, s.location AS loc, "
        "l.name AS location, u.email AS client, s.item_name AS item, p.method AS method, "
        f"0 AS gross, 0 - ({REFUND_TAX}) AS tax, r.amount_cents AS refunded, 0 AS disputed, "
        "0 AS fee, r.currency AS currency, p.payment_intent_id AS intent, s.id AS sale_id, "
        "r.status AS status "
        "FROM refund r JOIN payment p ON p.id = r.payment JOIN sale s ON s.id = r.sale "
        f"{common}WHERE {r_status} AND {r_time} >= {{}} AND {r_time} < {{}} AND {r_period}"
        f"{extra}{r_after} ORDER BY {r_time}, r.id LIMIT {{}}"
    )
    refund_rows = await sql.fetch(
        refunds, [lo, hi, *r_period_args, *extra_args, *r_after_args, limit + 1]
    )
    for row in refund_rows:
        row["ts"] = sql.as_datetime(row["ts"])
    rows += refund_rows
    if f.status in DISPUTE_STATUSES:
        for kind in DISPUTE_KINDS:
            d_time = DISPUTE_TIME[kind]
            d_after, d_after_args = bound(*_line_after(kind, d_time, "d.id", position), d_time)
            d_period, d_period_args, _, _ = _period_clause(d_time, "s.location", days)
            disputes = (
                f"SELECT '{kind}' AS kind, d.id AS id, {d_time} AS ts, s.location AS loc, "
                "l.name AS location, u.email AS client, s.item_name AS item, "
                f"p.method AS method, {dispute_line_columns(kind)}, d.currency AS currency, "
                "p.payment_intent_id AS intent, s.id AS sale_id, d.status AS status "
                f"FROM {DISPUTE_FROM}{common}"
                f"WHERE {d_time} >= {{}} AND {d_time} < {{}} AND {d_period}"
                f"{extra}{d_after} ORDER BY {d_time}, d.id LIMIT {{}}"
            )
            dispute_rows = await sql.fetch(
                disputes, [lo, hi, *d_period_args, *extra_args, *d_after_args, limit + 1]
            )
            for row in dispute_rows:
                row["ts"] = sql.as_datetime(row["ts"])
            rows += dispute_rows
    rows.sort(key=_line_order)
    lines = [_line(r, days) for r in rows[:limit]]
    cursor = None
    if len(rows) > limit and lines:
        last = lines[-1]
        cursor = encode_cursor([last.at.isoformat(), last.kind], last.id)
    return LinePage(rows=lines, next_cursor=cursor)


def _line_order(row: dict[str, Any]) -> tuple[datetime, int, int]:
    return row["ts"], KIND_ORDER[str(row["kind"])], int(row["id"])


def _decode_line_cursor(cursor: str | None) -> tuple[datetime, str, int] | None:
    decoded = decode_cursor(cursor)
    if decoded is None:
        return None
    value, row_id = decoded
    try:
        at_text, kind = value
        at = datetime.fromisoformat(str(at_text))
    except (TypeError, ValueError):
        return None
    if kind not in KIND_ORDER:
        return None
    return (at if at.tzinfo else at.replace(tzinfo=UTC)), str(kind), row_id


async def iter_payment_lines(f: Filters, *, batch: int = 2000) -> AsyncIterator[PaymentLine]:
    """Every row of the report, fetched a keyset page at a time (flat memory)."""
    cursor: str | None = None
    while True:
        page = await payment_lines(f, after=cursor, limit=batch)
        for line in page.rows:
            yield line
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


# -- package liability -------------------------------------------------------------------


@dataclass
class Liability:
    """Deferred revenue of one location (and currency) over a period."""

    location: Loc
    currency: str
    opening: int = 0
    sold: int = 0
    redeemed: int = 0
    expired: int = 0
    refunded: int = 0
    closing: int = 0
    opening_sessions: int = 0
    sold_sessions: int = 0
    redeemed_sessions: int = 0
    expired_sessions: int = 0
    refunded_sessions: int = 0
    closing_sessions: int = 0
    # The value of the sessions outstanding at the end, from the credits
    # themselves: equals ``closing`` when the journal and the credits agree.
    closing_session_value: int = 0

    @property
    def computed_closing(self) -> int:
        return self.opening + self.sold - self.redeemed - self.expired - self.refunded

    @property
    def computed_closing_sessions(self) -> int:
        return (
            self.opening_sessions
            + self.sold_sessions
            - self.redeemed_sessions
            - self.expired_sessions
            - self.refunded_sessions
        )

    @property
    def balanced(self) -> bool:
        return (
            self.computed_closing == self.closing
            and self.computed_closing_sessions == self.closing_sessions
            and self.closing_session_value == self.closing
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "location_id": self.location.id,
            "location": self.location.name,
            "currency": self.currency,
            **{c: getattr(self, c) for c in LIABILITY_COLUMNS},
            **{f"{c}_sessions": getattr(self, f"{c}_sessions") for c in LIABILITY_COLUMNS},
        }


def _kinds(kinds: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{k}'" for k in kinds) + ")"


def _states(states: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{s}'" for s in states) + ")"


async def liability(f: Filters) -> list[Liability]:
    """Opening, movements and closing of deferred revenue per location, in money and sessions."""
    if not f.locations:
        return []
    cte, args = _bounds_cte(_zones(f), f.period)
    (jl_locs, jl_loc_args), (sale_locs, sale_loc_args) = await _location_clauses(
        f, "jl.location", "s.location"
    )
    results: dict[tuple[int, str], Liability] = {}
    names = {loc.id: loc for loc in f.locations}

    def entry(location_id: int, currency: str) -> Liability:
        key = (location_id, currency)
        if key not in results:
            results[key] = Liability(location=names[location_id], currency=currency)
        return results[key]

    # Money from the journal (opening, movements by kind, closing in one pass over
    # the deferred-revenue lines up to the period's end); sessions from the
    # credits. The two run side by side.
    in_period = "jl.occurred_at >= b.lo AND "
    money_sql = (
        f"WITH {cte} SELECT jl.location AS loc, jl.currency AS currency, "
        "SUM(CASE WHEN jl.occurred_at < b.lo THEN jl.credit_cents - jl.debit_cents ELSE 0 END) "
        "AS opening, SUM(jl.credit_cents - jl.debit_cents) AS closing, "
        f"SUM(CASE WHEN {in_period}je.kind IN {_kinds(SOLD_KINDS)} "
        "THEN jl.credit_cents - jl.debit_cents ELSE 0 END) AS sold, "
        f"SUM(CASE WHEN {in_period}je.kind IN {_kinds(EXPIRED_KINDS)} "
        "THEN jl.debit_cents - jl.credit_cents ELSE 0 END) AS expired, "
        f"SUM(CASE WHEN {in_period}je.kind IN {_kinds(REFUNDED_KINDS)} "
        "THEN jl.debit_cents - jl.credit_cents ELSE 0 END) AS refunded, "
        f"SUM(CASE WHEN {in_period}"
        f"je.kind NOT IN {_kinds(SOLD_KINDS + EXPIRED_KINDS + REFUNDED_KINDS)} "
        "THEN jl.debit_cents - jl.credit_cents ELSE 0 END) AS redeemed "
        f"FROM journal_line jl JOIN b ON b.loc = {LINE_LOCATION} "
        "JOIN journal_entry je ON je.id = jl.entry "
        f"WHERE jl.account = 'deferred_revenue'{jl_locs} "
        "AND jl.occurred_at < b.hi GROUP BY 1, 2"
    )
    terminal = _states(TERMINAL_STATES)
    sessions_sql = (
        f"WITH {cte} SELECT s.location AS loc, s.currency AS currency, "
        f"SUM(CASE WHEN s.activated_at < b.lo AND NOT (ss.state IN {terminal} "
        "AND ss.changed_at < b.lo) THEN 1 ELSE 0 END) AS opening, "
        "SUM(CASE WHEN s.activated_at >= b.lo THEN 1 ELSE 0 END) AS sold, "
        f"SUM(CASE WHEN ss.state IN {_states(REDEEMED_STATES)} AND ss.changed_at >= b.lo "
        "AND ss.changed_at < b.hi THEN 1 ELSE 0 END) AS redeemed, "
        f"SUM(CASE WHEN ss.state IN {_states(EXPIRED_STATES)} AND ss.changed_at >= b.lo "
        "AND ss.changed_at < b.hi THEN 1 ELSE 0 END) AS expired, "
        f"SUM(CASE WHEN ss.state IN {_states(REFUNDED_STATES)} AND ss.changed_at >= b.lo "
        "AND ss.changed_at < b.hi THEN 1 ELSE 0 END) AS refunded, "
        f"SUM(CASE WHEN NOT (ss.state IN {terminal} AND ss.changed_at < b.hi) "
        "THEN 1 ELSE 0 END) AS closing, "
        f"SUM(CASE WHEN NOT (ss.state IN {terminal} AND ss.changed_at < b.hi) "
        "THEN ss.value_cents ELSE 0 END) AS closing_value "
        "FROM sale_session ss JOIN sale s ON s.id = ss.sale JOIN b ON b.loc = s.location "
        f"WHERE s.activated_at < b.hi{sale_locs} GROUP BY 1, 2"
    )
    money, sessions = await sql.fetch_all(
        (money_sql, [*args, *jl_loc_args]), (sessions_sql, [*args, *sale_loc_args])
    )
    for row in money:
        item = entry(int(row["loc"]), str(row["currency"]))
        for column in ("opening", "closing", "sold", "expired", "refunded", "redeemed"):
            setattr(item, column, sql.as_int(row[column]))
    for row in sessions:
        item = entry(int(row["loc"]), str(row["currency"]))
        for column in LIABILITY_COLUMNS:
            setattr(item, f"{column}_sessions", sql.as_int(row[column]))
        item.closing_session_value = sql.as_int(row["closing_value"])
    for loc in f.locations:
        if not any(key[0] == loc.id for key in results):
            entry(loc.id, loc.currency)
    return sorted(results.values(), key=lambda r: (r.location.name, r.currency))


def liability_totals(rows: list[Liability]) -> dict[str, Liability]:
    """Per currency, the sum over locations."""
    out: dict[str, Liability] = {}
    for row in rows:
        total = out.setdefault(
            row.currency,
            Liability(
                location=Loc(id=0, name="All locations", slug="", timezone="UTC", currency=""),
                currency=row.currency,
            ),
        )
        for column in LIABILITY_COLUMNS:
            setattr(total, column, getattr(total, column) + getattr(row, column))
            name = f"{column}_sessions"
            setattr(total, name, getattr(total, name) + getattr(row, name))
        total.closing_session_value += row.closing_session_value
    return dict(sorted(out.items()))


@dataclass(frozen=True)
class DrillRow:
    sale_id: int
    client: str
    item: str
    currency: str
    amount: int
    sessions: int
    status: str


@dataclass
class DrillPage:
    column: str
    rows: list[DrillRow]
    next_cursor: str | None
    total: int | None = None  # the report's figure, for the check line


async def liability_sales(
    f: Filters, location: Loc, column: str, *, after: str | None = None, limit: int = 50
) -> DrillPage:
    """The sales behind one liability figure, with each sale's share (keyset by sale id)."""
    if column not in LIABILITY_COLUMNS:
        column = "closing"
    lo, hi = bounds(location.timezone, f.period)
    position = decode_cursor(after)
    after_id = position[1] if position is not None else 0
    if column in ("opening", "closing"):
        moment = lo if column == "opening" else hi
        rows = await sql.fetch(
            "SELECT jl.sale_id AS sale_id, SUM(jl.credit_cents - jl.debit_cents) AS amount "
            "FROM journal_line jl WHERE jl.account = 'deferred_revenue' AND jl.location = {} "
            "AND jl.occurred_at < {} AND jl.sale_id > {} GROUP BY jl.sale_id "
            "HAVING SUM(jl.credit_cents - jl.debit_cents) <> 0 ORDER BY jl.sale_id LIMIT {}",
            [location.id, moment, after_id, limit + 1],
        )
        terminal = _states(TERMINAL_STATES)
        session_sql = (
            "SELECT ss.sale AS sale_id, COUNT(*) AS n FROM sale_session ss "
            "JOIN sale s ON s.id = ss.sale WHERE ss.sale IN __IDS__ AND s.activated_at < {} "
            f"AND NOT (ss.state IN {terminal} AND ss.changed_at < {{}}) GROUP BY ss.sale"
        )
        session_args: list[Any] = [moment, moment]
    else:
        sign = (
            "jl.credit_cents - jl.debit_cents"
            if column == "sold"
            else "jl.debit_cents - jl.credit_cents"
        )
        if column == "redeemed":
            kind_clause = f"je.kind NOT IN {_kinds(SOLD_KINDS + EXPIRED_KINDS + REFUNDED_KINDS)}"
        else:
            kinds = {"sold": SOLD_KINDS, "expired": EXPIRED_KINDS, "refunded": REFUNDED_KINDS}
            kind_clause = f"je.kind IN {_kinds(kinds[column])}"
        rows = await sql.fetch(
            f"SELECT jl.sale_id AS sale_id, SUM({sign}) AS amount FROM journal_line jl "
            "JOIN journal_entry je ON je.id = jl.entry "
            "WHERE jl.account = 'deferred_revenue' AND jl.location = {} "
            f"AND jl.occurred_at >= {{}} AND jl.occurred_at < {{}} AND {kind_clause} "
            "AND jl.sale_id > {} GROUP BY jl.sale_id ORDER BY jl.sale_id LIMIT {}",
            [location.id, lo, hi, after_id, limit + 1],
        )
        if column == "sold":
            session_sql = (
                "SELECT ss.sale AS sale_id, COUNT(*) AS n FROM sale_session ss "
                "JOIN sale s ON s.id = ss.sale WHERE ss.sale IN __IDS__ "
                "AND s.activated_at >= {} AND s.activated_at < {} GROUP BY ss.sale"
            )
        else:
            states = {
                "redeemed": REDEEMED_STATES,
                "expired": EXPIRED_STATES,
                "refunded": REFUNDED_STATES,
            }[column]
            session_sql = (
                "SELECT ss.sale AS sale_id, COUNT(*) AS n FROM sale_session ss "
                f"WHERE ss.sale IN __IDS__ AND ss.state IN {_states(states)} "
                "AND ss.changed_at >= {} AND ss.changed_at < {} GROUP BY ss.sale"
            )
        session_args = [lo, hi]
    more = len(rows) > limit
    rows = rows[:limit]
    sale_ids = [int(r["sale_id"]) for r in rows if r["sale_id"] is not None]
    details: dict[int, dict[str, Any]] = {}
    counts: dict[int, int] = {}
    if sale_ids:
        ids, id_args = sql.in_list(sale_ids)
        for row in await sql.fetch(
            "SELECT s.id AS id, s.item_name AS item, s.currency AS currency, s.status AS status, "
            f"u.email AS client FROM sale s JOIN app_user u ON u.id = s.client WHERE s.id IN {ids}",
            id_args,
        ):
            details[int(row["id"])] = row
        for row in await sql.fetch(session_sql.replace("__IDS__", ids), [*id_args, *session_args]):
            counts[int(row["sale_id"])] = sql.as_int(row["n"])
    out = []
    for row in rows:
        sale_id = int(row["sale_id"]) if row["sale_id"] is not None else 0
        info = details.get(sale_id, {})
        out.append(
            DrillRow(
                sale_id=sale_id,
                client=str(info.get("client", "")),
                item=str(info.get("item", "(no sale)")),
                currency=str(info.get("currency", location.currency)),
                amount=sql.as_int(row["amount"]),
                sessions=counts.get(sale_id, 0),
                status=str(info.get("status", "")),
            )
        )
    cursor = encode_cursor("sale", out[-1].sale_id) if more and out else None
    return DrillPage(column=column, rows=out, next_cursor=cursor)


# -- revenue -----------------------------------------------------------------------------


@dataclass
class RevenueRow:
    start: date
    end: date
    label: str
    location: Loc
    currency: str
    service: int = 0
    breakage: int = 0
    reversals: int = 0  # negative: money given back for sessions already given
    collected: int = 0
    refunded: int = 0
    disputed: int = 0  # withdrawn for disputes, less what disputes won put back

    @property
    def recognised(self) -> int:
        return self.service + self.breakage + self.reversals

    @property
    def net_cash(self) -> int:
        return self.collected - self.refunded - self.disputed

    def as_dict(self) -> dict[str, Any]:
        return {
            "period": self.label,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "location_id": self.location.id,
            "location": self.location.name,
            "currency": self.currency,
            "service_revenue": self.service,
            "breakage_revenue": self.breakage,
            "revenue_reversals": self.reversals,
            "recognised_revenue": self.recognised,
            "cash_collected": self.collected,
            "refunds": self.refunded,
            "disputed": self.disputed,
            "net_cash": self.net_cash,
        }


@dataclass
class TherapistRevenue:
    label: str
    location: Loc
    currency: str
    therapist_id: int | None
    therapist: str
    service: int


@dataclass
class Revenue:
    rows: list[RevenueRow]
    therapists: list[TherapistRevenue]
    totals: dict[str, RevenueRow] = field(default_factory=dict)


async def _revenue_days(f: Filters) -> list[dict[str, Any]]:
    cte, seg_args, lo, hi = _segments(f)
    locs, loc_args = sql.in_list(f.location_ids)
    accounts, account_args = sql.in_list(REVENUE_ACCOUNTS)
    return await sql.fetch(
        f"WITH {cte} SELECT jl.location AS loc, jl.currency AS currency, jl.account AS account, "
        f"jl.therapist_id AS therapist, {sql.local_day('jl.occurred_at', 'seg.off')} AS day, "
        "SUM(jl.credit_cents - jl.debit_cents) AS amount FROM journal_line jl "
        f"JOIN seg ON seg.loc = {LINE_LOCATION} "
        "AND jl.occurred_at >= seg.lo AND jl.occurred_at < seg.hi "
        f"WHERE jl.account IN {accounts} AND jl.location IN {locs} "
        "AND jl.occurred_at >= {} AND jl.occurred_at < {} GROUP BY 1, 2, 3, 4, 5",
        [*seg_args, *account_args, *loc_args, lo, hi],
    )


async def revenue(f: Filters) -> Revenue:
    """Recognised revenue (sessions given, breakage) beside cash collected, per bucket."""
    if not f.locations:
        return Revenue(rows=[], therapists=[])
    names = {loc.id: loc for loc in f.locations}
    table: dict[tuple[date, int, str], RevenueRow] = {}

    def row_for(start: date, location_id: int, currency: str) -> RevenueRow:
        key = (start, location_id, currency)
        if key not in table:
            table[key] = RevenueRow(
                start=max(start, f.period.start),
                end=min(bucket_end(start, f.grouping), f.period.end),
                label=bucket_label(start, f.grouping),
                location=names[location_id],
                currency=currency,
            )
        return table[key]

    therapist_sums: dict[tuple[date, int, str, int | None], int] = defaultdict(int)
    for row in await _revenue_days(f):
        start = bucket_start(day_from_number(int(row["day"])), f.grouping)
        location_id, currency = int(row["loc"]), str(row["currency"])
        amount = sql.as_int(row["amount"])
        item = row_for(start, location_id, currency)
        if row["account"] == "service_revenue":
            item.service += amount
            therapist = int(row["therapist"]) if row["therapist"] is not None else None
            therapist_sums[(start, location_id, currency, therapist)] += amount
        elif row["account"] == "revenue_reversals":
            item.reversals += amount
        else:
            item.breakage += amount
    cash = await _payment_days(f, status=SUCCEEDED, with_filters=False)
    for (location_id, currency, number), moved in cash.items():
        start = bucket_start(day_from_number(number), f.grouping)
        item = row_for(start, location_id, currency)
        item.collected += moved.gross
        item.refunded += moved.refunded
        item.disputed += moved.disputed
    therapist_names = await _therapist_names({k[3] for k in therapist_sums if k[3] is not None})
    therapists = [
        TherapistRevenue(
            label=bucket_label(start, f.grouping),
            location=names[location_id],
            currency=currency,
            therapist_id=therapist,
            therapist=therapist_names.get(therapist, f"Therapist {therapist}")
            if therapist is not None
            else "Not attributed",
            service=amount,
        )
        for (start, location_id, currency, therapist), amount in sorted(
            therapist_sums.items(),
            key=lambda kv: (
                kv[0][0],
                names[kv[0][1]].name,
                therapist_names.get(kv[0][3], "") if kv[0][3] is not None else "~",
            ),
        )
    ]
    rows = sorted(table.values(), key=lambda r: (r.start, r.location.name, r.currency))
    totals: dict[str, RevenueRow] = {}
    for r in rows:
        total = totals.setdefault(
            r.currency,
            RevenueRow(
                start=f.period.start,
                end=f.period.end,
                label="Total",
                location=Loc(0, "All locations", "", "UTC", r.currency),
                currency=r.currency,
            ),
        )
        total.service += r.service
        total.breakage += r.breakage
        total.reversals += r.reversals
        total.collected += r.collected
        total.refunded += r.refunded
        total.disputed += r.disputed
    return Revenue(rows=rows, therapists=therapists, totals=dict(sorted(totals.items())))


async def _therapist_names(ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    marks, args = sql.in_list(sorted(ids))
    rows = await sql.fetch(f"SELECT id, name FROM therapist WHERE id IN {marks}", args)
    return {int(r["id"]): str(r["name"]) for r in rows}


# -- fees --------------------------------------------------------------------------------


async def fees(f: Filters) -> PaymentSummary:
    """Stripe fees of succeeded card payments and of disputes, per bucket and location."""
    rows = _bucketed(
        f,
        await _payment_days(f, status=SUCCEEDED, stripe_only=True, grouping=f.grouping),
        f.grouping,
    )
    return PaymentSummary(rows=rows, totals=_by_currency(rows))


# -- journal and trial balance -------------------------------------------------------------


@dataclass(slots=True)
class JournalRow:
    id: int
    at: datetime
    date: date
    account: str
    debit: int
    credit: int
    currency: str
    location: str
    memo: str
    reference: str
    kind: str
    sale_id: int | None


def _journal_scope(f: Filters) -> tuple[str, list[Any]]:
    """Which lines: the chosen locations (and unlocated ones when allowed), the accounts."""
    marks, args = sql.in_list(f.location_ids)
    clause = f"(jl.location IN {marks}"
    clause += " OR jl.location IS NULL)" if f.include_unlocated else ")"
    if f.accounts:
        accounts, account_args = sql.in_list(f.accounts)
        clause += f" AND jl.account IN {accounts}"
        args += account_args
    return clause, args


async def journal_lines(
    f: Filters, *, after: str | None = None, limit: int = 100
) -> tuple[list[JournalRow], str | None]:
    """A keyset page of journal lines in the period, by time then id.

    Each line is dated in its own location's zone (``LINE_LOCATION``), as in
    every other journal figure; each location's lines of an entry balance.
    """
    if not f.locations and not f.include_unlocated:
        return [], None
    days = LocalDays(_line_zones(f), f.period)
    period, period_args, lo, hi = _period_clause("jl.occurred_at", LINE_LOCATION, days)
    scope, scope_args = _journal_scope(f)
    position = decode_cursor(after)
    keyset = ""
    key_args: list[Any] = []
    if position is not None:
        try:
            at = datetime.fromisoformat(str(position[0]))
        except ValueError:
            at = None
        if at is not None:
            keyset, key_args = _after(
                "jl.occurred_at", "jl.id", at if at.tzinfo else at.replace(tzinfo=UTC), position[1]
            )
    rows = await sql.fetch(
        "SELECT jl.id AS id, jl.occurred_at AS ts, jl.location AS line_location, "
        "jl.account AS account, jl.debit_cents AS debit, jl.credit_cents AS credit, "
        "jl.currency AS currency, l.name AS location, je.memo AS memo, "
        "je.reference AS reference, je.kind AS kind, jl.sale_id AS sale_id "
        "FROM journal_line jl JOIN journal_entry je ON je.id = jl.entry "
        "LEFT JOIN location l ON l.id = jl.location "
        f"WHERE jl.occurred_at >= {{}} AND jl.occurred_at < {{}} AND {period} AND {scope}"
        f"{keyset} ORDER BY jl.occurred_at, jl.id LIMIT {{}}",
        [lo, hi, *period_args, *scope_args, *key_args, limit + 1],
    )
    out = []
    for row in rows[:limit]:
        at = sql.as_datetime(row["ts"])
        assert at is not None
        line_location = row["line_location"]
        out.append(
            JournalRow(
                id=int(row["id"]),
                at=at,
                date=days.date(int(line_location) if line_location else None, at),
                account=str(row["account"]),
                debit=sql.as_int(row["debit"]),
                credit=sql.as_int(row["credit"]),
                currency=str(row["currency"]),
                location=str(row["location"] or ""),
                memo=str(row["memo"] or ""),
                reference=str(row["reference"] or ""),
                kind=str(row["kind"] or ""),
                sale_id=int(row["sale_id"]) if row["sale_id"] is not None else None,
            )
        )
    cursor = None
    if len(rows) > limit and out:
        cursor = encode_cursor(out[-1].at.isoformat(), out[-1].id)
    return out, cursor


async def iter_journal_lines(f: Filters, *, batch: int = 2000) -> AsyncIterator[JournalRow]:
    cursor: str | None = None
    while True:
        rows, cursor = await journal_lines(f, after=cursor, limit=batch)
        for row in rows:
            yield row
        if cursor is None:
            return


@dataclass
class TrialLine:
    account: str
    name: str
    type: str
    currency: str
    opening_debit: int = 0
    opening_credit: int = 0
    debits: int = 0
    credits: int = 0

    @property
    def normal_debit(self) -> bool:
        return self.type in (ASSET, EXPENSE)

    @property
    def closing(self) -> int:
        """Closing balance, positive on the debit side."""
        return self.opening_debit + self.debits - self.opening_credit - self.credits

    @property
    def opening(self) -> int:
        return self.opening_debit - self.opening_credit

    @property
    def closing_debit(self) -> int:
        return max(self.closing, 0)

    @property
    def closing_credit(self) -> int:
        return max(-self.closing, 0)

    @property
    def opening_balance_debit(self) -> int:
        return max(self.opening, 0)

    @property
    def opening_balance_credit(self) -> int:
        return max(-self.opening, 0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "name": self.name,
            "type": self.type,
            "currency": self.currency,
            "opening_debit": self.opening_balance_debit,
            "opening_credit": self.opening_balance_credit,
            "debits": self.debits,
            "credits": self.credits,
            "closing_debit": self.closing_debit,
            "closing_credit": self.closing_credit,
        }


@dataclass
class TrialBalance:
    lines: list[TrialLine]
    totals: dict[str, TrialLine]  # per currency

    @property
    def balanced(self) -> bool:
        return all(
            t.debits == t.credits and t.closing_debit == t.closing_credit
            for t in self.totals.values()
        )


async def trial_balance(f: Filters) -> TrialBalance:
    """Opening balances, period debits and credits, closing balances per account."""
    if not f.locations and not f.include_unlocated:
        return TrialBalance(lines=[], totals={})
    cte, args = _bounds_cte(_line_zones(f), f.period)
    scope, scope_args = _journal_scope(f)
    rows = await sql.fetch(
        f"WITH {cte} SELECT jl.account AS account, jl.currency AS currency, "
        "SUM(CASE WHEN jl.occurred_at < b.lo THEN jl.debit_cents ELSE 0 END) AS open_d, "
        "SUM(CASE WHEN jl.occurred_at < b.lo THEN jl.credit_cents ELSE 0 END) AS open_c, "
        "SUM(CASE WHEN jl.occurred_at >= b.lo THEN jl.debit_cents ELSE 0 END) AS d, "
        "SUM(CASE WHEN jl.occurred_at >= b.lo THEN jl.credit_cents ELSE 0 END) AS c "
        "FROM journal_line jl JOIN journal_entry je ON je.id = jl.entry "
        f"JOIN b ON b.loc = {LINE_LOCATION} "
        f"WHERE jl.occurred_at < b.hi AND {scope} GROUP BY 1, 2",
        [*args, *scope_args],
    )
    order = list(ACCOUNTS)
    lines = []
    for row in rows:
        account = str(row["account"])
        name, kind = ACCOUNTS.get(account, (account, ASSET))
        lines.append(
            TrialLine(
                account=account,
                name=name,
                type=kind,
                currency=str(row["currency"]),
                opening_debit=sql.as_int(row["open_d"]),
                opening_credit=sql.as_int(row["open_c"]),
                debits=sql.as_int(row["d"]),
                credits=sql.as_int(row["c"]),
            )
        )
    lines.sort(key=lambda t: (t.currency, order.index(t.account) if t.account in order else 99))
    totals: dict[str, TrialLine] = {}
    for line in lines:
        total = totals.setdefault(
            line.currency, TrialLine(account="", name="Total", type="", currency=line.currency)
        )
        total.debits += line.debits
        total.credits += line.credits
    # Closing columns of the total are sums of each account's closing side.
    for currency, total in totals.items():
        mine = [t for t in lines if t.currency == currency]
        total.opening_debit = sum(t.opening_balance_debit for t in mine)
        total.opening_credit = sum(t.opening_balance_credit for t in mine)
    return TrialBalance(lines=lines, totals=dict(sorted(totals.items())))


def trial_total_closing(tb: TrialBalance, currency: str) -> tuple[int, int]:
    mine = [t for t in tb.lines if t.currency == currency]
    return sum(t.closing_debit for t in mine), sum(t.closing_credit for t in mine)


# -- dashboard series ---------------------------------------------------------------------


@dataclass
class Series:
    """Months × locations of one currency, for a chart and its table."""

    currency: str
    months: list[date]
    values: dict[int, list[int]]  # location id → one value per month
    locations: list[Loc]


async def revenue_by_month(f: Filters) -> list[Series]:
    """Recognised revenue per month and location (the filters' grouping is ignored)."""
    monthly = Filters(
        period=f.period,
        locations=f.locations,
        grouping="month",
        include_unlocated=False,
        params=f.params,
    )
    result = await revenue(monthly)
    months = month_starts(f.period.start, f.period.end)
    series: dict[str, Series] = {}
    for row in result.rows:
        s = series.setdefault(
            row.currency, Series(currency=row.currency, months=months, values={}, locations=[])
        )
        if row.location.id not in s.values:
            s.values[row.location.id] = [0] * len(months)
            s.locations.append(row.location)
        s.values[row.location.id][months.index(row.start.replace(day=1))] += row.recognised
    return _sorted_series(series)


async def liability_trend(f: Filters) -> list[Series]:
    """Deferred revenue at the end of each month of the period, per location."""
    months = month_starts(f.period.start, f.period.end)
    if not f.locations or not months:
        return []
    cte, seg_args, lo, hi = _segments(f)
    locs, loc_args = sql.in_list(f.location_ids)
    opening_cte, opening_args = _bounds_cte(_zones(f), f.period)
    openings = await sql.fetch(
        f"WITH {opening_cte} SELECT jl.location AS loc, jl.currency AS currency, "
        "SUM(jl.credit_cents - jl.debit_cents) AS amount FROM journal_line jl "
        f"JOIN b ON b.loc = {LINE_LOCATION} WHERE jl.account = 'deferred_revenue' "
        f"AND jl.location IN {locs} AND jl.occurred_at < b.lo GROUP BY 1, 2",
        [*opening_args, *loc_args],
    )
    days = await sql.fetch(
        f"WITH {cte} SELECT jl.location AS loc, jl.currency AS currency, "
        f"{sql.local_day('jl.occurred_at', 'seg.off')} AS day, "
        "SUM(jl.credit_cents - jl.debit_cents) AS amount FROM journal_line jl "
        f"JOIN seg ON seg.loc = {LINE_LOCATION} "
        "AND jl.occurred_at >= seg.lo AND jl.occurred_at < seg.hi "
        f"WHERE jl.account = 'deferred_revenue' AND jl.location IN {locs} "
        "AND jl.occurred_at >= {} AND jl.occurred_at < {} GROUP BY 1, 2, 3",
        [*seg_args, *loc_args, lo, hi],
    )
    names = {loc.id: loc for loc in f.locations}
    movement: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0] * len(months))
    opening: dict[tuple[int, str], int] = {}
    for row in openings:
        opening[(int(row["loc"]), str(row["currency"]))] = sql.as_int(row["amount"])
    for row in days:
        month = day_from_number(int(row["day"])).replace(day=1)
        movement[(int(row["loc"]), str(row["currency"]))][months.index(month)] += sql.as_int(
            row["amount"]
        )
    series: dict[str, Series] = {}
    for key in sorted(set(opening) | set(movement), key=lambda k: (names[k[0]].name, k[1])):
        location_id, currency = key
        running = opening.get(key, 0)
        values = []
        for change in movement.get(key, [0] * len(months)):
            running += change
            values.append(running)
        s = series.setdefault(
            currency, Series(currency=currency, months=months, values={}, locations=[])
        )
        s.values[location_id] = values
        s.locations.append(names[location_id])
    return _sorted_series(series)


def _sorted_series(series: dict[str, Series]) -> list[Series]:
    for s in series.values():
        s.locations.sort(key=lambda loc: loc.name)
    return [series[c] for c in sorted(series)]


def month_end(month: date) -> date:
    return next_month(month) - timedelta(days=1)
