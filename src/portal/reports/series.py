"""The dashboard's month-by-location series: recognised revenue and the liability
at each month end."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta

from portal.reports import rollup, sql
from portal.reports.filters import Filters, Loc
from portal.reports.periods import MONTH, day_from_number, month_starts, next_month
from portal.reports.revenue import revenue


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
    result = await revenue(monthly, by_therapist=False)
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
    # From the daily totals (``ledger.daily``): the balance before the period, and
    # the change in each month of it (one row per location and month).
    start, end = rollup.days(f)
    scope, scope_args = rollup.locations(f)
    cte, day, bucket_args = rollup.buckets(f, MONTH)
    deferred = "account = 'deferred_revenue'"
    openings, days = await sql.fetch_all(
        (
            "SELECT location AS loc, currency, SUM(credit_cents - debit_cents) AS amount "
            f"FROM {rollup.source('ledger_day', None, start - 1)} "
            f"WHERE {deferred} AND {scope} AND day < {{}} GROUP BY 1, 2",
            [*scope_args, start],
        ),
        (
            f"{rollup.with_(cte)}SELECT location AS loc, currency, {day} AS day, "
            f"SUM(credit_cents - debit_cents) AS amount "
            f"FROM {rollup.source('ledger_day', start, end)}{rollup.bucket_join(cte)} "
            f"WHERE {deferred} AND {scope} AND day >= {{}} AND day <= {{}} GROUP BY 1, 2, 3",
            [*bucket_args, *scope_args, start, end],
        ),
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
