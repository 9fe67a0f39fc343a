"""Weekly wall-clock hours and the instants they stand for on a given date.

Working hours are stored as minutes since local midnight in the location's
zone, because "Mondays 09:00–17:00" stays 09:00–17:00 on the wall clock when
the clocks change. They become UTC instants only for a concrete date, here.

On the day the clocks go forward, a wall time inside the skipped hour is
read with the offset before the change, so it lands that much later (02:30
becomes 03:30 in New York on 2026-03-08). On the day they go back, a
repeated wall time means its first occurrence, so an interval 01:00–02:00
then lasts two real hours, as it does on the wall clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from portal.fields import parse_id

MINUTES_PER_DAY = 24 * 60
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
SHORT_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_HHMM = re.compile(r"^(\d{1,2}):(\d{2})(?::00)?$")


@dataclass(frozen=True)
class Span:
    """A half-open interval of instants [start, end), both aware UTC datetimes."""

    start: datetime
    end: datetime

    def overlaps(self, other: Span) -> bool:
        return self.start < other.end and other.start < self.end

    def contains(self, other: Span) -> bool:
        return self.start <= other.start and other.end <= self.end


def format_minute(minute: int) -> str:
    """Minutes since midnight → ``HH:MM`` (1440 is ``24:00``)."""
    return f"{minute // 60:02d}:{minute % 60:02d}"


def format_interval(start: int, end: int) -> str:
    return f"{format_minute(start)}–{format_minute(end)}"


def parse_hhmm(text: str) -> int | None:
    """``HH:MM`` (as an ``<input type=time>`` sends it) → minutes; None if invalid.

    ``24:00`` is accepted as the end of the day.
    """
    match = _HHMM.match(text.strip())
    if not match:
        return None
    hours, minutes = int(match.group(1)), int(match.group(2))
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        return None
    return hours * 60 + minutes


def wall_to_utc(day: date, minute: int, tz: ZoneInfo) -> datetime:
    """The instant at which the wall clock of ``tz`` shows ``minute`` on ``day``."""
    day = day + timedelta(days=minute // MINUTES_PER_DAY)
    minute %= MINUTES_PER_DAY
    wall = datetime.combine(day, time(minute // 60, minute % 60), tzinfo=tz)
    return wall.astimezone(UTC)


def interval_span(day: date, start_minute: int, end_minute: int, tz: ZoneInfo) -> Span:
    return Span(wall_to_utc(day, start_minute, tz), wall_to_utc(day, end_minute, tz))


def local_day_span(day: date, tz: ZoneInfo) -> Span:
    """Local midnight to the next local midnight: 23, 24 or 25 hours."""
    return Span(wall_to_utc(day, 0, tz), wall_to_utc(day + timedelta(days=1), 0, tz))


def local_date(instant: datetime, tz: ZoneInfo) -> date:
    return instant.astimezone(tz).date()


def local_wall(day: date, minute: int | None, tz: ZoneInfo) -> tuple[datetime | None, str]:
    """A local date and time entered in a form → (UTC instant, problem).

    Refuses wall times that do not exist on that date (the hour the clocks
    skip); a repeated wall time (clocks going back) means its first
    occurrence.
    """
    minute = minute or 0
    naive = datetime.combine(day, time(0)) + timedelta(minutes=minute)
    instant = naive.replace(tzinfo=tz).astimezone(UTC)
    if instant.astimezone(tz).replace(tzinfo=None) != naive:
        return None, (
            f"{naive:%H:%M} does not exist on {naive:%Y-%m-%d} in {tz.key}: "
            "the clocks move forward then."
        )
    return instant, ""


def local_window(
    start: tuple[date, int | None],
    end: tuple[date, int | None],
    tz: ZoneInfo,
    errors: dict[str, str],
) -> tuple[datetime | None, datetime | None]:
    """A window entered as local (date, minute) pairs, as UTC instants; a wall time
    the clocks skip is the error of its field (``start_time``, ``end_time``)."""
    instants = []
    for field, (day, minute) in (("start_time", start), ("end_time", end)):
        instant, problem = local_wall(day, minute, tz)
        if problem:
            errors[field] = problem
        instants.append(instant)
    return instants[0], instants[1]


def merge(spans: Iterable[Span]) -> list[Span]:
    """Sorted spans with overlapping or touching ones joined."""
    out: list[Span] = []
    for span in sorted(spans, key=lambda s: (s.start, s.end)):
        if out and span.start <= out[-1].end:
            if span.end > out[-1].end:
                out[-1] = Span(out[-1].start, span.end)
        else:
            out.append(span)
    return out


def subtract(span: Span, holes: Iterable[Span]) -> list[tuple[Span, bool]]:
    """Split ``span`` into pieces, each marked True where a hole covers it."""
    pieces: list[tuple[Span, bool]] = []
    cursor = span.start
    for hole in merge(h for h in holes if h.overlaps(span)):
        start, end = max(hole.start, span.start), min(hole.end, span.end)
        if start > cursor:
            pieces.append((Span(cursor, start), False))
        pieces.append((Span(start, end), True))
        cursor = end
    if cursor < span.end:
        pieces.append((Span(cursor, span.end), False))
    return pieces


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def hours_form(rows: Iterable[dict[str, object]], location_id: int) -> dict[str, str]:
    """Saved hours at one location as the hours form's fields (``d<weekday>_<n>_start``)."""
    form: dict[str, str] = {}
    counts: dict[int, int] = {}
    for row in rows:
        if row["location"] != location_id:
            continue
        weekday, end = int(str(row["weekday"])), int(str(row["end_minute"]))
        n = counts.get(weekday, 0)
        counts[weekday] = n + 1
        form[f"d{weekday}_{n}_start"] = format_minute(int(str(row["start_minute"])))
        form[f"d{weekday}_{n}_end"] = "00:00" if end == MINUTES_PER_DAY else format_minute(end)
    return form


WORKDAYS = range(5)


def copy_day(form: dict[str, str], source: int) -> tuple[dict[str, str], list[int]]:
    """The hours form with ``source``'s intervals copied onto the other weekdays
    (Monday to Friday), replacing theirs; the days changed."""
    prefix = f"d{source}_"
    intervals = {k[len(prefix) :]: v for k, v in form.items() if k.startswith(prefix) and v}
    targets = [day for day in WORKDAYS if day != source]
    copied = {k: v for k, v in form.items() if not any(k.startswith(f"d{day}_") for day in targets)}
    for day in targets:
        copied.update({f"d{day}_{rest}": value for rest, value in intervals.items()})
    return copied, targets


def hours_rows(form: dict[str, str], minimum: int) -> list[dict[str, object]]:
    """Each weekday with the interval rows its form shows: the filled ones and
    one empty row more, at least ``minimum``."""
    slots: dict[int, int] = {}
    for key, value in form.items():
        parts = key.split("_")
        if len(parts) != 3 or parts[0][:1] != "d" or not value:
            continue
        day, index = parse_id(parts[0][1:]), parse_id(parts[1])
        if day is not None and index is not None:
            slots[day] = max(slots.get(day, 0), index + 1)
    return [
        {
            "weekday": day,
            "name": WEEKDAYS[day],
            "rows": list(range(max(minimum, slots.get(day, 0) + 1))),
        }
        for day in range(7)
    ]
