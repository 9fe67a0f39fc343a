"""Recognised revenue (sessions given, breakage, reversals) beside cash collected,
per bucket, location and therapist."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from portal.reports import rollup, sql
from portal.reports.cash import _payment_days, add_figures
from portal.reports.filters import SUCCEEDED, Filters, Loc
from portal.reports.periods import bucket_end, bucket_label, bucket_start, day_from_number

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


@dataclass
class Revenue:
    rows: list[RevenueRow]
    therapists: list[TherapistRevenue]
    totals: dict[str, RevenueRow] = field(default_factory=dict)


async def _revenue_days(f: Filters) -> list[dict[str, Any]]:
    """Revenue accounts per bucket (its first day's number), location and therapist,
    from the daily totals (``ledger.daily``)."""
    start, end = rollup.days(f)
    scope, scope_args = rollup.locations(f)
    accounts, account_args = sql.in_list(REVENUE_ACCOUNTS)
    cte, day, bucket_args = rollup.buckets(f, f.grouping)
    kind, kind_args = rollup.product(f)
    return await sql.fetch(
        f"{rollup.with_(cte)}SELECT location AS loc, currency, account, therapist, "
        f"{day} AS day, SUM(credit_cents - debit_cents) AS amount FROM ledger_day"
        f"{rollup.bucket_join(cte)} WHERE account IN {accounts} AND {scope} "
        f"AND day >= {{}} AND day <= {{}}{kind} GROUP BY 1, 2, 3, 4, 5",
        [*bucket_args, *account_args, *scope_args, start, end, *kind_args],
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
            therapist = int(row["therapist"]) or None  # 0: not attributed
            therapist_sums[(start, location_id, currency, therapist)] += amount
        elif row["account"] == "revenue_reversals":
            item.reversals += amount
        else:
            item.breakage += amount
    cash = await _payment_days(
        f, status=SUCCEEDED, with_filters=False, grouping=f.grouping, product=f.product
    )
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
        add_figures(total, r, REVENUE_FIGURES)
    return Revenue(rows=rows, therapists=therapists, totals=dict(sorted(totals.items())))


async def _therapist_names(ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    marks, args = sql.in_list(sorted(ids))
    rows = await sql.fetch(f"SELECT id, name FROM therapist WHERE id IN {marks}", args)
    return {int(r["id"]): str(r["name"]) for r in rows}
