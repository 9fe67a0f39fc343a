"""The location week view: therapists × days or rooms × days, in the location's zone.

Each day is a local calendar day (23, 24 or 25 real hours around a clock
change), and every time shown is the wall-clock time of the location, so an
appointment at 10:00 is listed at 10:00 the day before and the day after the
clocks change. A therapist's cell shows their working hours that weekday,
time off and appointments; a room's cell its out-of-service windows and
appointments. Cells link to the booking page for that day (and therapist).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from portal.auth.service import CurrentUser
from portal.bookings.availability import hours_and_time_off
from portal.bookings.reading import appointments_between
from portal.bookings.states import STATUS_LABELS
from portal.clients import service as clients
from portal.locations.service import get_location_for
from portal.rooms.service import out_of_service, rooms_at
from portal.rooms.tables import RoomOutage
from portal.staff import hours as h
from portal.staff.tables import Therapist, TherapistLocation

THERAPISTS = "therapists"
ROOMS = "rooms"


@dataclass
class Item:
    kind: str  # "appointment", "time-off" or "outage"
    start: datetime
    end: datetime
    time: str  # local "HH:MM–HH:MM"
    title: str
    detail: str = ""
    href: str = ""
    status: str = ""
    status_label: str = ""
    flags: tuple[str, ...] = ()  # an appointment's client's health flags (intake)
    client: int | None = None  # whose intake they come from


@dataclass
class Cell:
    day: date
    hours: str = ""  # working hours that day ("" for rooms, "—" when not working)
    items: list[Item] = field(default_factory=list)
    book_href: str = ""


@dataclass
class Row:
    title: str
    href: str
    subtitle: str = ""
    cells: list[Cell] = field(default_factory=list)


@dataclass
class Day:
    day: date
    hours: float
    note: str = ""


@dataclass
class WeekView:
    location: dict[str, Any]
    by: str
    first_day: date
    days: list[Day]
    rows: list[Row]
    previous_week: date
    next_week: date
    booked: int  # busy appointments in the week


def _clock(start: datetime, end: datetime, tz: ZoneInfo) -> str:
    return f"{start.astimezone(tz):%H:%M}–{end.astimezone(tz):%H:%M}"


def week_start(day: date) -> date:
    return day - timedelta(days=day.weekday())


async def _therapists(location_id: int, extra_ids: set[int]) -> list[dict[str, Any]]:
    at_location = {
        int(r["therapist"])
        for r in await TherapistLocation.select(TherapistLocation.therapist)
        .where(TherapistLocation.location == location_id)
        .run()
    }
    ids = list(at_location | extra_ids) or [-1]
    rows: list[dict[str, Any]] = (
        await Therapist.select(Therapist.id, Therapist.name, Therapist.active)
        .where(Therapist.id.is_in(ids))
        .order_by(Therapist.name)
        .run()
    )
    return [r for r in rows if r["active"] or int(r["id"]) in extra_ids]


def _appointment_item(row: dict[str, Any], tz: ZoneInfo, by: str) -> Item:
    who = str(row["client_name"] or row["client_email"])
    other = row["room_name"] if by == THERAPISTS else row["therapist_name"]
    return Item(
        kind="appointment",
        start=row["start_at"],
        end=row["end_at"],
        time=_clock(row["start_at"], row["end_at"], tz),
        title=who,
        detail=f"{row['service_name']} · {other}",
        href=f"/appointments/{row['id']}",
        status=str(row["status"]),
        status_label=STATUS_LABELS.get(str(row["status"]), str(row["status"])),
        flags=tuple(row.get("health_flags", ())),
        client=int(row["client"]),
    )


async def build_week_view(
    user: CurrentUser, location_id: int, any_day: date, *, by: str = THERAPISTS
) -> WeekView:
    location = await get_location_for(user, location_id)
    tz = ZoneInfo(str(location["timezone"]))
    by = ROOMS if by == ROOMS else THERAPISTS
    first = week_start(any_day)
    dates = [first + timedelta(days=n) for n in range(7)]
    spans = {d: h.local_day_span(d, tz) for d in dates}
    week = h.Span(spans[dates[0]].start, spans[dates[-1]].end)
    days = []
    for d in dates:
        hours = (spans[d].end - spans[d].start).total_seconds() / 3600
        note = ""
        if hours < 24:
            note = f"Clocks go forward: {hours:g}-hour day"
        elif hours > 24:
            note = f"Clocks go back: {hours:g}-hour day"
        days.append(Day(day=d, hours=hours, note=note))
    appointments = await appointments_between(
        start=week.start, end=week.end, location_id=location_id, taking_time=True
    )
    await clients.with_health_flags(appointments)

    def items_of(
        owner: str, owner_id: int, d: date, absences: list[dict[str, Any]], kind: str, title: str
    ) -> list[Item]:
        """One row's cell on day ``d``, in time order: each of its absences (time off, a
        room's outage) cut to the local day, then its appointments. ``owner`` is the column
        naming the row (``therapist`` or ``room``) in both the absences and appointments."""
        items = []
        for absence in absences:
            span = h.Span(absence["starts_at"], absence["ends_at"])
            if absence[owner] != owner_id or not span.overlaps(spans[d]):
                continue
            start, end = max(span.start, spans[d].start), min(span.end, spans[d].end)
            time = _clock(start, end, tz)
            detail = str(absence["reason"])
            items.append(Item(kind, start, end, time, title, detail))
        items += [
            _appointment_item(a, tz, by)
            for a in appointments
            if a[owner] == owner_id and h.local_date(a["start_at"], tz) == d
        ]
        return sorted(items, key=lambda i: i.start)

    rows: list[Row] = []
    if by == THERAPISTS:
        therapists = await _therapists(location_id, {int(a["therapist"]) for a in appointments})
        ids = [int(t["id"]) for t in therapists] or [-1]
        hours_rows, time_off = await hours_and_time_off(location_id, ids, week.start, week.end)
        for therapist in therapists:
            tid = int(therapist["id"])
            row = Row(title=str(therapist["name"]), href=f"/therapists/{tid}")
            for d in dates:
                intervals = [
                    r for r in hours_rows if r["therapist"] == tid and r["weekday"] == d.weekday()
                ]
                cell = Cell(
                    day=d,
                    hours=", ".join(
                        h.format_interval(r["start_minute"], r["end_minute"]) for r in intervals
                    )
                    or "—",
                    book_href=(
                        f"/appointments/new?location={location_id}&therapist={tid}"
                        f"&day={d.isoformat()}"
                        if intervals
                        else ""
                    ),
                )
                cell.items = items_of("therapist", tid, d, time_off, "time-off", "Time off")
                row.cells.append(cell)
            rows.append(row)
    else:
        rooms = await rooms_at(location_id)
        outages = (
            await RoomOutage.select()
            .where(out_of_service([int(r["id"]) for r in rooms] or [-1], week.start, week.end))
            .run()
        )
        for room in rooms:
            rid = int(room["id"])
            row = Row(
                title=str(room["name"]), href=f"/rooms/{rid}", subtitle=", ".join(room["tags"])
            )
            for d in dates:
                cell = Cell(
                    day=d, book_href=f"/appointments/new?location={location_id}&day={d.isoformat()}"
                )
                cell.items = items_of("room", rid, d, outages, "outage", "Out of service")
                row.cells.append(cell)
            rows.append(row)
    return WeekView(
        location=location,
        by=by,
        first_day=first,
        days=days,
        rows=rows,
        previous_week=first - timedelta(days=7),
        next_week=first + timedelta(days=7),
        booked=len(appointments),
    )
