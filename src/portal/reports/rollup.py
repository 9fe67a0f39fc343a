"""Reading the daily totals (``ledger.daily``): scope, days and buckets as SQL.

The totals already carry each location's local day as a day number (days since
1970-01-01 local), so a report period is a plain range of integers for every
location at once, and a week or a month is a range too: the period's buckets
become a small ``bk(lo, hi, first)`` table joined by range, and the database
hands back one row per bucket instead of one per day. ``first`` is the day
number of the bucket's first day, which the reports file under its bucket as
they do a day.

Whole months are read from the monthly totals (``ledger_month``, …: ``day`` the
month's first day), the days around them from the daily ones (``source``): a
year at every location is twelve rows per key instead of 365.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from portal.ledger.daily import (
    CASH_KEY,
    CASH_SUMS,
    CREDIT_KEY,
    CREDIT_SUMS,
    LEDGER_KEY,
    LEDGER_SUMS,
    MONTHS,
    UNLOCATED,
    day_of,
    month_of,
    number_of,
)
from portal.reports import sql
from portal.reports.filters import Filters
from portal.reports.periods import DAY, WEEK, bucket_end, bucket_start, next_month


def days(f: Filters) -> tuple[int, int]:
    """The period's first and last day numbers (inclusive)."""
    return number_of(f.period.start), number_of(f.period.end)


def locations(f: Filters, *, unlocated: bool = False) -> tuple[str, list[Any]]:
    """``location IN (…)``: the chosen locations, and the key of lines without one
    when the filters include them (``unlocated``: for the journal's figures)."""
    ids = list(f.location_ids)
    if unlocated and f.include_unlocated:
        ids.append(UNLOCATED)
    marks, args = sql.in_list(ids)
    return f"location IN {marks}", args


def product(f: Filters) -> tuple[str, list[Any]]:
    """`` AND product = …`` on a daily-totals table when the kind filter names one."""
    return (" AND product = {}", [f.product]) if f.product else ("", [])


def buckets(f: Filters, grouping: str) -> tuple[str, str, list[Any]]:
    """(``WITH``-able CTE or "", the day expression to group by, args).

    Days need no table: the day number is the bucket. Weeks and months are
    ranges of day numbers, clipped to the period. On PostgreSQL each day finds
    its bucket's first day by bisection of the buckets' first days
    (``width_bucket``: a join by range compared every row with every bucket);
    SQLite joins the ranges.
    """
    if grouping == DAY:
        return "", "day", []
    rows: list[tuple[int, int, int]] = []
    first = f.period.start
    while first <= f.period.end:
        last = min(bucket_end(bucket_start(first, grouping), grouping), f.period.end)
        rows.append((number_of(first), number_of(last + timedelta(days=1)), number_of(first)))
        first = last + timedelta(days=1)
    if not sql.is_sqlite():
        # Day numbers the portal computed (integers, never user text), so written inline.
        firsts = "ARRAY[" + ",".join(str(int(lo)) for lo, _, _ in rows) + "]"
        return "", f"({firsts})[width_bucket(day, {firsts})]", []
    cte, args = sql.values_cte("bk", [("lo", "int"), ("hi", "int"), ("first", "int")], rows)
    return cte, "bk.first", args


def bucket_join(cte: str) -> str:
    return " JOIN bk ON day >= bk.lo AND day < bk.hi" if cte else ""


def with_(*ctes: str) -> str:
    parts: Sequence[str] = [c for c in ctes if c]
    return f"WITH {', '.join(parts)} " if parts else ""


_COLUMNS = {
    "ledger_day": ", ".join((*LEDGER_KEY, *LEDGER_SUMS)),
    "credit_day": ", ".join((*CREDIT_KEY, *CREDIT_SUMS)),
    "cash_day": ", ".join((*CASH_KEY, *CASH_SUMS)),
}


def monthly(grouping: str) -> bool:
    """Whether buckets of ``grouping`` can take a whole month's row (its first day lands
    in the month's bucket): months, not days or weeks."""
    return grouping not in (DAY, WEEK)


Piece = tuple[bool, int | None, int]  # (whole months?, from day, until day)


def _pieces(first: int | None, last: int, cuts: Sequence[int]) -> list[Piece]:
    """Days [first, last] (first None: from the beginning) as (whole months?, from, until)
    pieces: a month is whole when all its days are in the range and no ``cut`` falls
    after its first day (a cut is a day the query tells apart from the day before)."""
    end = last + 1
    pieces: list[Piece] = []
    at: int | None = first
    if first is None:
        # Every month before the first cut (or the range's end) is whole.
        at = month_of(min([*cuts, end]))
        pieces.append((True, None, at))
    assert at is not None
    while at < end:
        start = day_of(at)
        following = number_of(next_month(start.replace(day=1)))
        whole = start.day == 1 and following <= end and not any(at < c < following for c in cuts)
        until = min(following, end)
        if pieces and pieces[-1][0] == whole and pieces[-1][2] == at:
            pieces[-1] = (whole, pieces[-1][1], until)
        else:
            pieces.append((whole, at, until))
        at = until
    return [p for p in pieces if p[1] is None or p[1] < p[2]]


def source(
    name: str, first: int | None, last: int, *, cuts: Sequence[int] = (), months: bool = True
) -> str:
    """What to read daily table ``name``'s totals of days [first, last] from (``FROM``
    it, under its own name): the days themselves, or (``months``) the monthly table's
    rows for the whole months among them and the daily rows around those. ``cuts``:
    days the query separates from the day before (``day < start``), which a month row
    must not straddle. Day numbers are the portal's own integers, written inline."""
    pieces = _pieces(first, last, cuts) if months else []
    if not any(whole for whole, _, _ in pieces):
        return name
    columns = _COLUMNS[name]
    parts = []
    for whole, lo, hi in pieces:
        table = MONTHS[name]._meta.tablename if whole else name
        low = "" if lo is None else f"day >= {int(lo)} AND "
        parts.append(f"SELECT {columns} FROM {table} WHERE {low}day < {int(hi)}")
    return f"({' UNION ALL '.join(parts)}) AS {name}"
