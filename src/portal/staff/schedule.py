"""Weekly working hours per location: parsed, checked against each other and
against the therapist's hours at their other locations (across time zones),
saved with an audit record. A manager changes hours only at their own locations."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from portal import db
from portal.access import ensure_write
from portal.audit import service as audit
from portal.auth.service import (
    CurrentUser,
)
from portal.errors import Invalid
from portal.staff import hours as h
from portal.staff.tables import (
    Therapist,
    WorkingHours,
)
from portal.staff.therapists import get_therapist_for, location_names
from portal.timeutil import utcnow

# Cross-zone overlap checks look at this many days ahead: a year holds every
# combination of the two zones' DST states.
OVERLAP_HORIZON_DAYS = 371

# -- working hours ------------------------------------------------------------

_HOURS_FIELD = re.compile(r"^d([0-6])_(\d{1,2})_(start|end)$")


@dataclass(frozen=True)
class HoursInterval:
    """One weekly interval at a location, in minutes since local midnight."""

    weekday: int
    start_minute: int
    end_minute: int
    key: str = ""  # the form row it came from, e.g. "d0_1" (Monday, second row)

    def label(self) -> str:
        return f"{h.WEEKDAYS[self.weekday]} {h.format_interval(self.start_minute, self.end_minute)}"


def parse_hours_form(values: dict[str, str]) -> list[HoursInterval]:
    """Rows ``d<weekday>_<n>_start`` / ``_end`` (HH:MM); an empty row is skipped.

    An end of 00:00 after a later start means midnight at the end of the day.
    Invalid with every error of the form (the well-typed rows' order and overlaps too).
    """
    out, errors = read_hours_form(values)
    if errors:
        raise Invalid({**check_intervals(out), **errors})
    return out


def read_hours_form(values: dict[str, str]) -> tuple[list[HoursInterval], dict[str, str]]:
    """The well-typed rows of the hours form, and the errors of the others."""
    rows: dict[tuple[int, int], dict[str, str]] = {}
    for name, value in values.items():
        match = _HOURS_FIELD.match(name)
        if match:
            day, slot, part = int(match.group(1)), int(match.group(2)), match.group(3)
            rows.setdefault((day, slot), {})[part] = value.strip()
    errors: dict[str, str] = {}
    out: list[HoursInterval] = []
    for (day, slot), parts in sorted(rows.items()):
        key = f"d{day}_{slot}"
        start_raw, end_raw = parts.get("start", ""), parts.get("end", "")
        if not start_raw and not end_raw:
            continue
        if not start_raw:
            errors[f"{key}_start"] = "Enter a start time, or clear the end time."
            continue
        if not end_raw:
            errors[f"{key}_end"] = "Enter an end time, or clear the start time."
            continue
        start = h.parse_hhmm(start_raw)
        end = h.parse_hhmm(end_raw)
        if start is None or start >= h.MINUTES_PER_DAY:
            errors[f"{key}_start"] = "Enter a time such as 09:00."
        if end is None:
            errors[f"{key}_end"] = "Enter a time such as 17:30."
        if start is None or end is None or start >= h.MINUTES_PER_DAY:
            continue
        if end == 0 and start > 0:
            end = h.MINUTES_PER_DAY
        out.append(HoursInterval(day, start, end, key))
    return out, errors


def _keyed(intervals: list[HoursInterval]) -> list[HoursInterval]:
    """Give intervals built in code a form key, so errors can point at them."""
    seen: dict[int, int] = {}
    out = []
    for iv in intervals:
        n = seen.get(iv.weekday, 0)
        seen[iv.weekday] = n + 1
        out.append(
            iv
            if iv.key
            else HoursInterval(iv.weekday, iv.start_minute, iv.end_minute, f"d{iv.weekday}_{n}")
        )
    return out


def check_intervals(intervals: list[HoursInterval]) -> dict[str, str]:
    """End after start, and no two intervals of one day overlapping."""
    errors: dict[str, str] = {}
    valid: list[HoursInterval] = []
    for iv in intervals:
        if not 0 <= iv.weekday <= 6:
            errors[f"{iv.key}_start"] = "Unknown weekday."
        elif (
            not 0 <= iv.start_minute < h.MINUTES_PER_DAY
            or not 0 < iv.end_minute <= h.MINUTES_PER_DAY
        ):
            errors[f"{iv.key}_start"] = "Times must lie within the day (00:00–24:00)."
        elif iv.end_minute == iv.start_minute:
            errors[f"{iv.key}_end"] = "The interval is empty: the end must be after the start."
        elif iv.end_minute < iv.start_minute:
            errors[f"{iv.key}_end"] = (
                f"The end ({h.format_minute(iv.end_minute)}) is before the start "
                f"({h.format_minute(iv.start_minute)}). Hours cannot run past midnight; "
                "split them over two days."
            )
        else:
            valid.append(iv)
    by_day: dict[int, list[HoursInterval]] = {}
    for iv in valid:
        by_day.setdefault(iv.weekday, []).append(iv)
    for day_intervals in by_day.values():
        day_intervals.sort(key=lambda iv: (iv.start_minute, iv.end_minute))
        for earlier, later in itertools.pairwise(day_intervals):
            if later.start_minute < earlier.end_minute:
                errors.setdefault(
                    f"{later.key}_start",
                    f"Overlaps {h.format_interval(earlier.start_minute, earlier.end_minute)} "
                    f"on {h.WEEKDAYS[later.weekday]}.",
                )
    return errors


async def _cross_location_conflicts(
    therapist_id: int,
    location_id: int,
    intervals: list[HoursInterval],
    *,
    today: date | None = None,
) -> dict[str, str]:
    """Intervals overlapping the therapist's hours at another location.

    Compared as real instants: each location's wall-clock interval is turned
    into UTC on concrete dates. Within one zone this is the same as comparing
    the wall times; across zones the offset between them changes with their
    DST dates, so a year of dates is checked and an example date reported.
    """
    others = (
        await WorkingHours.select(
            WorkingHours.location,
            WorkingHours.weekday,
            WorkingHours.start_minute,
            WorkingHours.end_minute,
        )
        .where((WorkingHours.therapist == therapist_id) & (WorkingHours.location != location_id))
        .run()
    )
    if not others or not intervals:
        return {}
    places = await location_names({location_id} | {int(o["location"]) for o in others})
    own_tz = ZoneInfo(str(places[location_id]["timezone"]))
    errors: dict[str, str] = {}
    start_day = today or utcnow().date()
    for iv in intervals:
        for other in others:
            place = places[int(other["location"])]
            other_tz = ZoneInfo(str(place["timezone"]))
            label = (
                f"{h.WEEKDAYS[other['weekday']]} "
                f"{h.format_interval(other['start_minute'], other['end_minute'])}"
            )
            if other_tz.key == own_tz.key:
                if other["weekday"] == iv.weekday and (
                    iv.start_minute < other["end_minute"] and other["start_minute"] < iv.end_minute
                ):
                    errors[f"{iv.key}_start"] = (
                        f"Overlaps {label} at {place['name']}: "
                        "a therapist cannot work at two locations at once."
                    )
                    break
                continue
            clash = _first_clash(iv, other, own_tz, other_tz, start_day)
            if clash is not None:
                errors[f"{iv.key}_start"] = (
                    f"Overlaps {label} ({place['timezone']}) at {place['name']}, "
                    f"e.g. on {clash.isoformat()}: a therapist cannot work at two "
                    "locations at once."
                )
                break
    return errors


def _first_clash(
    iv: HoursInterval, other: dict[str, Any], own_tz: ZoneInfo, other_tz: ZoneInfo, start: date
) -> date | None:
    offset = (iv.weekday - start.weekday()) % 7
    for week in range(OVERLAP_HORIZON_DAYS // 7 + 1):
        day = start + timedelta(days=offset + 7 * week)
        span = h.interval_span(day, iv.start_minute, iv.end_minute, own_tz)
        for delta in (-1, 0, 1):
            other_day = day + timedelta(days=delta)
            if other_day.weekday() != other["weekday"]:
                continue
            other_span = h.interval_span(
                other_day, other["start_minute"], other["end_minute"], other_tz
            )
            if span.overlaps(other_span):
                return day
    return None


async def hours_of(therapist_id: int, location_id: int | None = None) -> list[dict[str, Any]]:
    query = WorkingHours.select(
        WorkingHours.id,
        WorkingHours.location,
        WorkingHours.weekday,
        WorkingHours.start_minute,
        WorkingHours.end_minute,
    ).where(WorkingHours.therapist == therapist_id)
    if location_id is not None:
        query = query.where(WorkingHours.location == location_id)
    return await query.order_by(WorkingHours.weekday, WorkingHours.start_minute).run()


def week_summary(rows: list[dict[str, Any]]) -> dict[str, str]:
    """{"Monday": "09:00–12:00, 13:00–18:00", …} for the audit trail and pages."""
    out: dict[str, str] = {}
    for day in range(7):
        spans = [
            h.format_interval(r["start_minute"], r["end_minute"])
            for r in sorted(rows, key=lambda r: r["start_minute"])
            if r["weekday"] == day
        ]
        out[h.WEEKDAYS[day]] = ", ".join(spans) if spans else "—"
    return out


async def set_hours(
    actor: CurrentUser,
    therapist_id: int,
    location_id: int,
    intervals: list[HoursInterval],
    *,
    address: str = "",
    today: date | None = None,
    form_errors: dict[str, str] | None = None,
) -> None:
    """Replace the therapist's weekly hours at one location.

    ``form_errors``: the rows the form could not read (``read_hours_form``), refused
    together with every error of the rows it could.

    Refused (nothing saved) when an interval ends before it starts, is empty,
    overlaps another of the same day, or overlaps the therapist's hours at
    another location.
    """
    therapist = await get_therapist_for(actor, therapist_id, write=True)
    ensure_write(actor, location_id)
    if location_id not in therapist["location_ids"]:
        raise Invalid(
            {"form": "The therapist does not work at this location: add it to the profile first."}
        )
    intervals = _keyed(intervals)
    errors = check_intervals(intervals)
    # The rows that are right in themselves are checked against the other locations
    # too, so the form shows every error at once (and again under the lock below).
    fine = [iv for iv in intervals if not {f"{iv.key}_start", f"{iv.key}_end"} & set(errors)]
    errors = {**await _cross_location_conflicts(therapist_id, location_id, fine, today=today),
              **errors, **(form_errors or {})}  # fmt: skip
    if errors:
        raise Invalid(errors)
    before = await hours_of(therapist_id, location_id)
    place = (await location_names({location_id}))[location_id]
    async with db.transaction():
        # Touching the row first serialises concurrent edits of one therapist's
        # hours (a row lock on PostgreSQL; SQLite transactions are already
        # serial), so two locations cannot both pass the overlap check at once.
        await (
            Therapist.update({Therapist.updated_at: utcnow()})
            .where(Therapist.id == therapist_id)
            .run()
        )
        errors = await _cross_location_conflicts(therapist_id, location_id, intervals, today=today)
        if errors:
            raise Invalid(errors)
        await (
            WorkingHours.delete()
            .where(
                (WorkingHours.therapist == therapist_id) & (WorkingHours.location == location_id)
            )
            .run()
        )
        if intervals:
            await WorkingHours.insert(
                *[
                    WorkingHours(
                        therapist=therapist_id,
                        location=location_id,
                        weekday=iv.weekday,
                        start_minute=iv.start_minute,
                        end_minute=iv.end_minute,
                    )
                    for iv in sorted(intervals, key=lambda i: (i.weekday, i.start_minute))
                ]
            ).run()
        after_rows = [
            {"weekday": iv.weekday, "start_minute": iv.start_minute, "end_minute": iv.end_minute}
            for iv in intervals
        ]
        old, new = week_summary(before), week_summary(after_rows)
        if old != new:
            await audit.record(
                actor,
                "set_hours",
                "therapist",
                therapist_id,
                before={"location": place["name"], **old},
                after={"location": place["name"], **new},
                address=address,
            )
