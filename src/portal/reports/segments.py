"""Shared pieces of the reports: the locations' zones over a period and the SQL
fragments built from them (constant-offset segments, per-location bounds, keyset
conditions), and the journal's one dating rule (``LINE_LOCATION``)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any

from portal.reports import sql
from portal.reports.filters import Filters
from portal.reports.periods import (
    SECONDS_PER_DAY,
    Period,
    bounds,
    day_from_number,
    offset_segments,
)

UNLOCATED = 0  # the key for journal lines without a location (bucketed in UTC)
# The journal's one dating rule: a line belongs to the local day of its own
# location (``journal_line.location``, in that location's zone), and a line
# without a location to its UTC day. Every journal figure (liability, trial
# balance, journal, revenue, dashboard series) matches lines to the zone
# segments or bounds of this key, so they agree at every month end.
LINE_LOCATION = f"COALESCE(jl.location, {UNLOCATED})"


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
    """Rows inside each location's own period: one OR branch per distinct period in
    UTC, for the locations that share it (a chain's clinics share a few zones; a
    branch per location made the database plan 50 of them on every page).

    Also returns the overall range, the condition the time index serves.
    """
    parts: list[str] = []
    args: list[Any] = []
    ranges = days.bounds()
    sharing: dict[tuple[datetime, datetime], list[int]] = {}
    for location_id, lo, hi in ranges:
        sharing.setdefault((lo, hi), []).append(location_id)
    for (lo, hi), ids in sharing.items():
        marks, id_args = sql.in_list(ids)
        parts.append(f"({location} IN {marks} AND {column} >= {{}} AND {column} < {{}})")
        args += [*id_args, lo, hi]
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
