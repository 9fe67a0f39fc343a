"""The dashboard's month-by-location series: recognised revenue and the liability
at each month end."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta

from portal.reports import sql
from portal.reports.filters import Filters, Loc
from portal.reports.periods import day_from_number, month_starts, next_month
from portal.reports.revenue import revenue
from portal.reports.segments import LINE_LOCATION, _bounds_cte, _segments, _zones


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
