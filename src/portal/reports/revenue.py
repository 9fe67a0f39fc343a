"""Recognised revenue (sessions given, breakage, reversals) beside cash collected,
per bucket, location and therapist."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from typing import Any

from portal import db
from portal.reports import rollup, sql
from portal.reports.cash import _payment_days, add_figures
from portal.reports.filters import SUCCEEDED, Filters, Loc
from portal.reports.periods import DAY, bucket_end, bucket_label, bucket_start, day_from_number

# revenue_reversals is contra-revenue (debit balance): refunds and lost chargebacks
# of sessions already given, shown as a negative beside service and breakage.
REVENUE_ACCOUNTS = ("service_revenue", "breakage_revenue", "revenue_reversals")


# The figures of a revenue row that are summed into a total (the rest derive).
REVENUE_FIGURES = ("service", "breakage", "reversals", "collected", "refunded", "disputed")


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
    start: date | None = None  # the bucket's first day (None: the whole period's leaders)


# (bucket's first day, location, currency, therapist or None: not attributed)
TherapistKey = tuple[date, int, str, int | None]


@dataclass
class Revenue:
    rows: list[RevenueRow]
    totals: dict[str, RevenueRow] = field(default_factory=dict)
    # Service revenue per bucket, location and therapist, and what names them.
    therapist_sums: dict[TherapistKey, int] = field(default_factory=dict)
    therapist_names: dict[int, str] = field(default_factory=dict)
    locations: dict[int, Loc] = field(default_factory=dict)
    grouping: str = DAY

    def therapist_name(self, therapist_id: int | None) -> str:
        if therapist_id is None:
            return "Not attributed"
        return self.therapist_names.get(therapist_id, f"Therapist {therapist_id}")

    @cached_property
    def therapists(self) -> list[TherapistRevenue]:
        """Service revenue per bucket, location and therapist, in the report's order.
        Built when read: the page at several locations shows only each location's
        leaders (``leading_therapists``), the downloads and the API every row."""
        names = self.therapist_names
        return [
            TherapistRevenue(
                label=bucket_label(start, self.grouping),
                location=self.locations[location_id],
                currency=currency,
                therapist_id=therapist,
                therapist=self.therapist_name(therapist),
                service=amount,
                start=start,
            )
            for (start, location_id, currency, therapist), amount in sorted(
                self.therapist_sums.items(),
                key=lambda kv: (
                    kv[0][0],
                    self.locations[kv[0][1]].name,
                    names.get(kv[0][3], "") if kv[0][3] is not None else "~",
                ),
            )
        ]


def _revenue_query(
    f: Filters,
    *,
    therapist: bool,
    bucketed: bool = True,
    accounts: Sequence[str] = REVENUE_ACCOUNTS,
) -> tuple[str, list[Any]]:
    """Revenue accounts per location, currency and account, and per bucket (its first
    day's number; else the whole period, day 0) and (``therapist``) therapist, from the
    daily and monthly totals (``ledger.daily``)."""
    start, end = rollup.days(f)
    scope, scope_args = rollup.locations(f)
    marks, account_args = sql.in_list(list(accounts))
    cte, day, bucket_args = rollup.buckets(f, f.grouping) if bucketed else ("", "0", [])
    kind, kind_args = rollup.product(f)
    months = rollup.monthly(f.grouping) or not bucketed
    group = ["1", "2", "3", *(["4"] if therapist else []), *(["5"] if bucketed else [])]
    return (
        f"{rollup.with_(cte)}SELECT location AS loc, currency, account, "
        f"{'therapist' if therapist else '0'} AS therapist, {day} AS day, "
        f"SUM(credit_cents - debit_cents) AS amount "
        f"FROM {rollup.source('ledger_day', start, end, months=months)}"
        f"{rollup.bucket_join(cte)} WHERE account IN {marks} AND {scope} "
        f"AND day >= {{}} AND day <= {{}}{kind} GROUP BY {', '.join(group)}",
        [*bucket_args, *account_args, *scope_args, start, end, *kind_args],
    )


async def revenue(f: Filters, *, by_therapist: bool = True, leaders_only: bool = False) -> Revenue:
    """Recognised revenue (sessions given, breakage) beside cash collected, per bucket;
    without ``by_therapist`` the therapists' part is left empty (the dashboard's
    figures do not need it); with ``leaders_only`` each therapist's service revenue is
    summed over the whole period (one bucket: what ``leading_therapists`` ranks), not
    per bucket."""
    if not f.locations:
        return Revenue(rows=[])
    names = {loc.id: loc for loc in f.locations}
    table: dict[tuple[date, int, str], RevenueRow] = {}

    spans: dict[date, tuple[date, date, str]] = {}  # a bucket's dates and label, once

    def row_for(start: date, location_id: int, currency: str) -> RevenueRow:
        key = (start, location_id, currency)
        row = table.get(key)
        if row is None:
            span = spans.get(start)
            if span is None:
                span = spans[start] = (
                    max(start, f.period.start),
                    min(bucket_end(start, f.grouping), f.period.end),
                    bucket_label(start, f.grouping),
                )
            row = table[key] = RevenueRow(
                start=span[0], end=span[1], label=span[2], location=names[location_id],
                currency=currency,
            )  # fmt: skip
        return row

    per_bucket = by_therapist and not leaders_only
    queries = [_revenue_query(f, therapist=per_bucket)]
    if by_therapist and leaders_only:
        queries.append(
            _revenue_query(f, therapist=True, bucketed=False, accounts=["service_revenue"])
        )
    ledger, cash = await db.concurrently(
        sql.fetch_all(*queries),
        _payment_days(f, status=SUCCEEDED, with_filters=False, grouping=f.grouping,
                      product=f.product),
    )  # fmt: skip
    therapist_sums: dict[tuple[date, int, str, int | None], int] = defaultdict(int)
    starts: dict[int, date] = {}  # day number → its bucket's first day
    for row in ledger[0]:
        number = int(row["day"])
        start = starts.get(number) or starts.setdefault(
            number, bucket_start(day_from_number(number), f.grouping)
        )
        location_id, currency = int(row["loc"]), str(row["currency"])
        amount = sql.as_int(row["amount"])
        item = row_for(start, location_id, currency)
        if row["account"] == "service_revenue":
            item.service += amount
            if per_bucket:
                therapist = int(row["therapist"]) or None  # 0: not attributed
                therapist_sums[(start, location_id, currency, therapist)] += amount
        elif row["account"] == "revenue_reversals":
            item.reversals += amount
        else:
            item.breakage += amount
    for row in ledger[1] if leaders_only and by_therapist else []:
        key = (f.period.start, int(row["loc"]), str(row["currency"]), int(row["therapist"]) or None)
        therapist_sums[key] += sql.as_int(row["amount"])
    for (location_id, currency, number), moved in cash.items():
        start = starts.get(number) or starts.setdefault(
            number, bucket_start(day_from_number(number), f.grouping)
        )
        item = row_for(start, location_id, currency)
        item.collected += moved.gross
        item.refunded += moved.refunded
        item.disputed += moved.disputed
    therapist_names = await _therapist_names({k[3] for k in therapist_sums if k[3] is not None})
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
        add_figures(total, r, REVENUE_FIGURES)
    return Revenue(
        rows=rows,
        totals=dict(sorted(totals.items())),
        therapist_sums=dict(therapist_sums),
        therapist_names=therapist_names,
        locations=names,
        grouping=f.grouping,
    )


@dataclass
class TherapistLeaders:
    """A location's therapists over the whole period: how many gave sessions, and the
    ones with the most service revenue (the revenue page at several locations)."""

    location: Loc
    currency: str
    therapists: int
    leaders: list[TherapistRevenue]


def leading_therapists(result: Revenue, count: int) -> list[TherapistLeaders]:
    """Per location and currency, the ``count`` therapists with the most service revenue
    over the period (their buckets added up), most first; revenue not attributed to a
    therapist is left out (the table by location has it)."""
    sums: dict[tuple[int, str], dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for (_, location_id, currency, therapist), amount in result.therapist_sums.items():
        if therapist is not None:
            sums[(location_id, currency)][therapist] += amount
    out = []
    for (location_id, currency), per in sorted(
        sums.items(), key=lambda kv: (result.locations[kv[0][0]].name, kv[0][1])
    ):
        location = result.locations[location_id]
        ranked = sorted(
            (
                TherapistRevenue("Total", location, currency, t, result.therapist_name(t), amount)
                for t, amount in per.items()
            ),
            key=lambda t: (-t.service, t.therapist),
        )
        out.append(TherapistLeaders(location, currency, len(per), ranked[:count]))
    return out


async def _therapist_names(ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    marks, args = sql.in_list(sorted(ids))
    rows = await sql.fetch(f"SELECT id, name FROM therapist WHERE id IN {marks}", args)
    return {int(r["id"]): str(r["name"]) for r in rows}
