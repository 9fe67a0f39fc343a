"""Report periods in each location's own time zone.

A report period is a range of *local* calendar days, ``start`` to ``end``
inclusive. Each location turns it into its own UTC instants once
(:func:`bounds`), and into a handful of constant-offset segments split at the
DST transitions inside it (:func:`offset_segments`). Rows are then bucketed in
SQL by integer arithmetic on their UTC epoch plus the segment's offset — no
row is ever converted to a time zone one by one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

EPOCH_DAY = date(1970, 1, 1)
SECONDS_PER_DAY = 86_400
MAX_DAYS = 5 * 366 + 1  # a report spans at most about five years

DAY = "day"
WEEK = "week"
MONTH = "month"
GROUPINGS = {DAY: "Day", WEEK: "Week", MONTH: "Month"}


@dataclass(frozen=True)
class Period:
    start: date
    end: date  # inclusive

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def label(self) -> str:
        if self.start == self.end:
            return self.start.isoformat()
        return f"{self.start.isoformat()} – {self.end.isoformat()}"


def local_midnight(tz: str, day: date) -> datetime:
    """The UTC instant a local calendar day begins.

    ``fold=0`` picks the first of two midnights (a repeated hour) and, when
    midnight does not exist (a DST gap at 00:00), the instant the day's first
    existing minute begins.
    """
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(tz)).astimezone(UTC)


def bounds(tz: str, period: Period) -> tuple[datetime, datetime]:
    """[first instant of ``start``, first instant after ``end``) in UTC."""
    return local_midnight(tz, period.start), local_midnight(tz, period.end + timedelta(days=1))


def offset_seconds(tz: str, instant: datetime) -> int:
    offset = instant.astimezone(ZoneInfo(tz)).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


@lru_cache(maxsize=1024)
def offset_segments(tz: str, lo: datetime, hi: datetime) -> list[tuple[datetime, datetime, int]]:
    """[lo, hi) cut at each UTC-offset change: (from, until, offset seconds) pieces.

    Probes every six hours (no zone changes its offset twice in that time)
    and pins each change to the second by bisection.
    """
    if hi <= lo:
        return []
    step = timedelta(hours=6)
    pieces: list[tuple[datetime, datetime, int]] = []
    start = lo
    current = offset_seconds(tz, lo)
    probe = lo
    last = hi - timedelta(seconds=1)
    while probe < last:
        nxt = min(probe + step, last)
        if offset_seconds(tz, nxt) != current:
            low, high = probe, nxt  # offset(low) == current, offset(high) != current
            while (high - low) > timedelta(seconds=1):
                mid = low + (high - low) / 2
                mid = mid.replace(microsecond=0)
                if mid <= low:
                    mid = low + timedelta(seconds=1)
                if offset_seconds(tz, mid) == current:
                    low = mid
                else:
                    high = mid
            pieces.append((start, high, current))
            start = high
            current = offset_seconds(tz, high)
        probe = nxt
    pieces.append((start, hi, current))
    return pieces


def day_from_number(number: int) -> date:
    """A local day number (days since 1970-01-01 in local time) → the date."""
    return EPOCH_DAY + timedelta(days=int(number))


def bucket_start(day: date, grouping: str) -> date:
    if grouping == WEEK:
        return day - timedelta(days=day.weekday())  # ISO weeks begin on Monday
    if grouping == MONTH:
        return day.replace(day=1)
    return day


def bucket_end(start: date, grouping: str) -> date:
    """The last day of the bucket that begins on ``start``."""
    if grouping == WEEK:
        return start + timedelta(days=6)
    if grouping == MONTH:
        return next_month(start) - timedelta(days=1)
    return start


def bucket_label(start: date, grouping: str) -> str:
    if grouping == WEEK:
        year, week, _ = start.isocalendar()
        return f"{year}-W{week:02d}"
    if grouping == MONTH:
        return start.strftime("%Y-%m")
    return start.isoformat()


def next_month(day: date) -> date:
    first = day.replace(day=1)
    return (first + timedelta(days=32)).replace(day=1)


def month_starts(start: date, end: date) -> list[date]:
    """First days of the months from ``start``'s month to ``end``'s month."""
    out = []
    current = start.replace(day=1)
    while current <= end:
        out.append(current)
        current = next_month(current)
    return out


def parse_date(text: str) -> date | None:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        return None


def last_twelve_months(today: date) -> Period:
    """This month and the eleven before it: twelve calendar months, the last to ``today``."""
    months_back = today.year * 12 + today.month - 1 - 11
    return Period(date(months_back // 12, months_back % 12 + 1, 1), today)


def presets(today: date) -> list[tuple[str, Period]]:
    """Quick picks for the filter bar."""
    month = today.replace(day=1)
    last_month_end = month - timedelta(days=1)
    quarter = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
    return [
        ("This month", Period(month, today)),
        ("Last month", Period(last_month_end.replace(day=1), last_month_end)),
        ("Quarter to date", Period(quarter, today)),
        ("Year to date", Period(date(today.year, 1, 1), today)),
        ("Last 12 months", last_twelve_months(today)),
    ]


def period_name(period: Period, today: date) -> str:
    """The quick pick's name for ``period`` ("Year to date" before "Last 12 months" when
    the two are the same range, in December), or its dates."""
    for label, preset in presets(today):
        if preset == period:
            return label
    return period.label()
