"""The location day view: rooms and therapists against the hours of one local day.

Rows are fixed slots of real time counted from local midnight, so a day on
which the clocks change has 92 or 100 quarter hours instead of 96 and every
block spans exactly as many rows as it lasts. Each column is a list of cells
with row spans, rendered as a plain table (no inline styles, no script).

Appointments (booked, completed, no-show) are blocks in their room's and
their therapist's columns, linking to the appointment; they are cut out of
the working hours and out-of-service windows they fall in, and one that lies
in an out-of-service window, outside working hours or in time off is flagged
so a manager moves it. Working-hours blocks link to booking that therapist.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from portal.auth.service import CurrentUser
from portal.bookings.service import STATUS_LABELS, hours_and_time_off, taking_the_time
from portal.bookings.tables import Appointment
from portal.clients import service as clients
from portal.locations.service import get_location_for
from portal.rooms.service import out_of_service, rooms_at
from portal.rooms.tables import RoomOutage
from portal.staff import hours as h
from portal.staff.tables import Therapist, TherapistLocation

SLOT = timedelta(minutes=15)
DEFAULT_FIRST_MINUTE = 8 * 60
DEFAULT_LAST_MINUTE = 20 * 60


@dataclass
class Block:
    kind: str  # "outage", "working", "time-off" or "appointment"
    title: str
    start: datetime
    end: datetime
    detail: str = ""
    first_row: int = 0
    rowspan: int = 1
    href: str = ""  # the appointment, or booking the therapist (working hours)
    status: str = ""  # an appointment's status
    warning: str = ""  # e.g. an appointment inside an out-of-service window
    flags: tuple[str, ...] = ()  # an appointment's client's health flags (intake)
    client: int | None = None  # whose intake they come from


@dataclass
class Column:
    kind: str  # "room" or "therapist"
    title: str
    href: str
    subtitle: str = ""
    warning: str = ""  # e.g. an expired licence: shown, and not bookable that day
    blocks: list[Block] = field(default_factory=list)
    starts: dict[int, Block] = field(default_factory=dict)
    covered: set[int] = field(default_factory=set)


@dataclass
class Row:
    index: int
    label: str
    is_hour: bool


@dataclass
class DayView:
    location: dict[str, Any]
    day: date
    previous_day: date
    next_day: date
    hours_in_day: float
    rows: list[Row]
    columns: list[Column]
    idle_therapists: list[str]
    note: str = ""
    appointments: int = 0  # busy appointments shown


def _row_of(instant: datetime, day_start: datetime) -> float:
    return (instant - day_start) / SLOT


def _place(column: Column, first: int, last: int, day_start: datetime) -> None:
    """Give each block its rows; a block squeezed out by rounding joins the one before."""
    placed: list[Block] = []
    for block in sorted(column.blocks, key=lambda b: (b.start, b.end)):
        top = max(first, math.floor(_row_of(block.start, day_start)))
        bottom = min(last, math.ceil(_row_of(block.end, day_start)))
        if placed and top < placed[-1].first_row + placed[-1].rowspan:
            top = placed[-1].first_row + placed[-1].rowspan
        if bottom <= top:
            if placed:
                placed[-1].detail = "; ".join(p for p in (placed[-1].detail, block.title) if p)
            continue
        block.first_row, block.rowspan = top, bottom - top
        placed.append(block)
    column.blocks = placed
    column.starts = {b.first_row: b for b in placed}
    column.covered = {r for b in placed for r in range(b.first_row, b.first_row + b.rowspan)}


def _credential_warning(therapist: dict[str, Any], day: date) -> str:
    problems = []
    for key, label in (("licence_expires", "licence"), ("insurance_expires", "insurance")):
        expires = therapist[key]
        if expires is None:
            problems.append(f"no {label} on file")
        elif expires < day:
            problems.append(f"{label} expired")
    return ("Not bookable: " + ", ".join(problems)) if problems else ""


def _fmt(instant: datetime, tz: ZoneInfo) -> str:
    return instant.astimezone(tz).strftime("%H:%M")


async def build_day_view(user: CurrentUser, location_id: int, day: date) -> DayView:
    location = await get_location_for(user, location_id)
    tz = ZoneInfo(str(location["timezone"]))
    span = h.local_day_span(day, tz)
    total_rows = round(_row_of(span.end, span.start))
    columns: list[Column] = []

    rooms = await rooms_at(location_id)
    outages = (
        await RoomOutage.select()
        .where(out_of_service([r["id"] for r in rooms] or [-1], span.start, span.end))
        .order_by(RoomOutage.starts_at)
        .run()
    )
    appointments = await _appointments(location_id, span)
    for room in rooms:
        column = Column(
            kind="room",
            title=str(room["name"]),
            href=f"/rooms/{room['id']}",
            subtitle=", ".join(room["tags"]),
        )
        booked = [
            _appointment_block(a, str(a["therapist_name"]))
            for a in appointments
            if a["room"] == room["id"]
        ]
        for outage in outages:
            if outage["room"] != room["id"]:
                continue
            window = h.Span(max(outage["starts_at"], span.start), min(outage["ends_at"], span.end))
            for block in booked:
                if window.overlaps(h.Span(block.start, block.end)):
                    block.warning = f"Room out of service ({outage['reason']}): move it."
            for piece, taken in h.subtract(window, [h.Span(b.start, b.end) for b in booked]):
                if not taken:
                    column.blocks.append(
                        Block(
                            kind="outage",
                            title="Out of service",
                            detail=str(outage["reason"]),
                            start=piece.start,
                            end=piece.end,
                        )
                    )
        column.blocks += booked
        columns.append(column)

    therapists = (
        await Therapist.select(
            Therapist.id, Therapist.name, Therapist.licence_expires, Therapist.insurance_expires
        )
        .where(
            (Therapist.active == True)  # noqa: E712
            & Therapist.id.is_in(
                TherapistLocation.select(TherapistLocation.therapist).where(
                    TherapistLocation.location == location_id
                )
            )
        )
        .order_by(Therapist.name)
        .run()
    )
    ids = [t["id"] for t in therapists] or [-1]
    hours, time_off = await hours_and_time_off(
        location_id, ids, span.start, span.end, weekday=day.weekday()
    )
    idle: list[str] = []
    for therapist in therapists:
        mine = [r for r in hours if r["therapist"] == therapist["id"]]
        holes = [
            h.Span(t["starts_at"], t["ends_at"])
            for t in time_off
            if t["therapist"] == therapist["id"]
        ]
        reasons = {
            (t["starts_at"], t["ends_at"]): str(t["reason"])
            for t in time_off
            if t["therapist"] == therapist["id"]
        }
        booked = [
            _appointment_block(a, str(a["room_name"]))
            for a in appointments
            if a["therapist"] == therapist["id"]
        ]
        if not mine and not booked:
            idle.append(str(therapist["name"]) + (" (time off)" if holes else ""))
            continue
        column = Column(
            kind="therapist",
            title=str(therapist["name"]),
            href=f"/therapists/{therapist['id']}",
            subtitle=", ".join(h.format_interval(r["start_minute"], r["end_minute"]) for r in mine)
            or "Not working today",
            warning=_credential_warning(therapist, day),
        )
        book = (
            f"/appointments/new?location={location_id}&therapist={therapist['id']}"
            f"&day={day.isoformat()}"
        )
        sessions = [h.Span(b.start, b.end) for b in booked]
        working_spans = [
            h.interval_span(day, row["start_minute"], row["end_minute"], tz) for row in mine
        ]
        for block in booked:
            session = h.Span(block.start, block.end)
            if any(session.overlaps(hole) for hole in holes):
                block.warning = block.warning or "During time off: move it."
            elif not any(w.contains(session) for w in h.merge(working_spans)):
                block.warning = block.warning or "Outside working hours: move it."
        for interval in working_spans:
            for piece, off in h.subtract(interval, holes):
                if off:
                    why = next(
                        (
                            text
                            for (s, e), text in reasons.items()
                            if s < piece.end and e > piece.start
                        ),
                        "",
                    )
                    kind, title, detail, href = "time-off", "Time off", why, ""
                else:
                    kind, title, detail, href = "working", "Working", "", book
                for part, is_session in h.subtract(piece, sessions):
                    if is_session:
                        continue
                    column.blocks.append(
                        Block(
                            kind=kind,
                            title=title,
                            detail=detail,
                            start=part.start,
                            end=part.end,
                            href=href,
                        )
                    )
        column.blocks += booked
        columns.append(column)

    # The rows shown: 08:00–20:00 on the wall clock, widened to every block.
    first = math.floor(_row_of(h.wall_to_utc(day, DEFAULT_FIRST_MINUTE, tz), span.start))
    last = math.ceil(_row_of(h.wall_to_utc(day, DEFAULT_LAST_MINUTE, tz), span.start))
    for column in columns:
        for block in column.blocks:
            first = min(first, math.floor(_row_of(block.start, span.start)))
            last = max(last, math.ceil(_row_of(block.end, span.start)))
    first -= first % 4  # start on a full hour of real time
    first, last = max(0, first), min(total_rows, last)
    for column in columns:
        for block in column.blocks:
            block.detail = " ".join(
                p for p in (f"{_fmt(block.start, tz)}–{_fmt(block.end, tz)}", block.detail) if p
            )
        _place(column, first, last, span.start)

    rows: list[Row] = []
    previous_offset = None
    for index in range(first, last):
        instant = span.start + SLOT * index
        local = instant.astimezone(tz)
        offset = local.utcoffset()
        label = local.strftime("%H:%M") if local.minute == 0 else ""
        if label and (previous_offset is None or offset != previous_offset):
            label += f" {local.tzname()}"
        if label:
            previous_offset = offset
        rows.append(Row(index=index, label=label, is_hour=local.minute == 0))

    hours_in_day = (span.end - span.start).total_seconds() / 3600
    note = ""
    if hours_in_day < 24:
        note = f"The clocks go forward on this day: it has {hours_in_day:g} hours."
    elif hours_in_day > 24:
        note = f"The clocks go back on this day: it has {hours_in_day:g} hours."
    return DayView(
        location=location,
        day=day,
        previous_day=day - timedelta(days=1),
        next_day=day + timedelta(days=1),
        hours_in_day=hours_in_day,
        rows=rows,
        columns=columns,
        idle_therapists=idle,
        note=note,
        appointments=len(appointments),
    )


async def _appointments(location_id: int, span: h.Span) -> list[dict[str, Any]]:
    """The day's appointments that occupy their room and therapist."""
    rows: list[dict[str, Any]] = (
        await Appointment.select(
            Appointment.id,
            Appointment.room,
            Appointment.therapist,
            Appointment.start_at,
            Appointment.end_at,
            Appointment.status,
            Appointment.client,
            Appointment.client.name.as_alias("client_name"),
            Appointment.client.email.as_alias("client_email"),
            Appointment.service.name.as_alias("service_name"),
            Appointment.therapist.name.as_alias("therapist_name"),
            Appointment.room.name.as_alias("room_name"),
        )
        .where(
            (Appointment.location == location_id)
            & taking_the_time()
            & (Appointment.start_at < span.end)
            & (Appointment.end_at > span.start)
        )
        .order_by(Appointment.start_at)
        .run()
    )
    for row in rows:
        row["start_at"] = max(row["start_at"], span.start)
        row["end_at"] = min(row["end_at"], span.end)
    await clients.with_health_flags(rows)
    return rows


def _appointment_block(row: dict[str, Any], where: str) -> Block:
    status = str(row["status"])
    label = "" if status == "booked" else f" ({STATUS_LABELS.get(status, status)})"
    return Block(
        kind="appointment",
        title=str(row["client_name"] or row["client_email"]) + label,
        detail=f"{row['service_name']} · {where}",
        start=row["start_at"],
        end=row["end_at"],
        href=f"/appointments/{row['id']}",
        status=status,
        flags=tuple(row["health_flags"]),
        client=int(row["client"]),
    )
