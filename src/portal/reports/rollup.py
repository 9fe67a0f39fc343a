"""Reading the daily totals (``ledger.daily``): scope, days and buckets as SQL.

The totals already carry each location's local day as a day number (days since
1970-01-01 local), so a report period is a plain range of integers for every
location at once, and a week or a month is a range too: the period's buckets
become a small ``bk(lo, hi, first)`` table joined by range, and the database
hands back one row per bucket instead of one per day. ``first`` is the day
number of the bucket's first day, which the reports file under its bucket as
they do a day.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from portal.ledger.daily import UNLOCATED, number_of
from portal.reports import sql
from portal.reports.filters import Filters
from portal.reports.periods import DAY, bucket_end, bucket_start


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
