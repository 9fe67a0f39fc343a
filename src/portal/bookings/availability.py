"""Free slots: when a therapist and a suitable room are both free for a service.

A slot is free when the therapist may be booked then
(:func:`portal.staff.service.is_bookable`: active, licensed and insured,
working, not on time off, permitted to give the service), neither the
therapist nor a suitable room is busy until the end plus the service's
buffer, and the room is in service. Reads only; booking and moving
(:mod:`portal.bookings.booking`) ask the same questions before they write.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from portal import db
from portal.bookings.states import BUSY_STATES, taking_the_time
from portal.bookings.tables import Appointment
from portal.catalog.tables import Service
from portal.errors import NotFound
from portal.locations.tables import Location
from portal.rooms.service import out_of_service, split_tags
from portal.rooms.tables import Room, RoomOutage
from portal.staff import hours as h
from portal.staff.tables import (
    Therapist,
    TherapistLocation,
    TherapistService,
    TimeOff,
    WorkingHours,
)
from portal.timeutil import utcnow

SLOT_STEP_MINUTES = 15


@dataclass(frozen=True)
class Slot:
    start: datetime
    end: datetime
    therapist_id: int
    therapist_name: str
    room_id: int
    room_name: str


@dataclass
class BookingContext:
    location: dict[str, Any]
    tz: ZoneInfo
    service: dict[str, Any]
    duration: timedelta
    buffer: timedelta
    rooms: list[dict[str, Any]]


async def booking_context(location_id: int, service_id: int) -> BookingContext:
    location, service, active_rooms = await db.concurrently(
        Location.select().where(Location.id == location_id).first().run(),
        Service.select().where(Service.id == service_id).first().run(),
        Room.select()
        .where((Room.location == location_id) & (Room.active == True))  # noqa: E712
        .order_by(Room.name)
        .run(),
    )
    if location is None or not location["active"]:
        raise NotFound("No such clinic.")
    if service is None or not service["active"]:
        raise NotFound("No such service.")
    needed = set(split_tags(service["required_equipment"] or ""))
    rooms = [r for r in active_rooms if needed <= set(split_tags(r["equipment"] or ""))]
    return BookingContext(
        location=location,
        tz=ZoneInfo(str(location["timezone"])),
        service=service,
        duration=timedelta(minutes=int(service["duration_minutes"])),
        buffer=timedelta(minutes=int(service["buffer_after_minutes"] or 0)),
        rooms=rooms,
    )


async def eligible_therapists(
    location_id: int, service_id: int, therapist_id: int | None
) -> list[dict[str, Any]]:
    """The active therapists who work at the location and may give the service, by name
    (one query: a day's search asks it beside the location's other facts)."""
    query = Therapist.select().where(
        Therapist.id.is_in(
            TherapistLocation.select(TherapistLocation.therapist).where(
                TherapistLocation.location == location_id
            )
        )
        & Therapist.id.is_in(
            TherapistService.select(TherapistService.therapist).where(
                TherapistService.service == service_id
            )
        )
        & (Therapist.active == True)  # noqa: E712
    )
    if therapist_id is not None:
        query = query.where(Therapist.id == therapist_id)
    return await query.order_by(Therapist.name).run()


async def therapists_at(
    location_id: int, *, credentialed_on: date | None = None
) -> list[dict[str, Any]]:
    """The active therapists who work at the location, by name (the booking form's list).

    With ``credentialed_on`` (what clients are offered), only those whose licence and
    insurance are on file and valid that day: a client is not offered whom they cannot book.
    """
    query = Therapist.select(Therapist.id, Therapist.name).where(
        Therapist.id.is_in(
            TherapistLocation.select(TherapistLocation.therapist).where(
                TherapistLocation.location == location_id
            )
        )
        & (Therapist.active == True)  # noqa: E712
    )
    if credentialed_on is not None:
        query = query.where(
            (Therapist.licence_expires >= credentialed_on)
            & (Therapist.insurance_expires >= credentialed_on)
        )
    return await query.order_by(Therapist.name).run()


def busy_during(start: datetime, until: datetime) -> Any:
    """Appointments that hold their therapist and room at some moment of [start, until):
    the busy ones, and times held for a payment until their hold ends."""
    return taking_the_time() & (Appointment.start_at < until) & (Appointment.busy_until > start)


async def _rooms_out_of_service(room_ids: list[int], start: datetime, until: datetime) -> set[int]:
    rows = (
        await RoomOutage.select(RoomOutage.room).where(out_of_service(room_ids, start, until)).run()
    )
    return {int(r["room"]) for r in rows}


async def _day_load(column: Any, ids: list[int], span: h.Span) -> dict[int, int]:
    """Busy appointments starting within ``span`` per therapist or room (``column``)."""
    rows = (
        await Appointment.select(column)
        .where(
            column.is_in(ids)
            & Appointment.status.is_in(list(BUSY_STATES))
            & (Appointment.start_at >= span.start)
            & (Appointment.start_at < span.end)
        )
        .run()
    )
    load = dict.fromkeys(ids, 0)
    for row in rows:
        load[int(row[column._meta.name])] += 1
    return load


async def hours_and_time_off(
    location_id: int,
    therapist_ids: list[int],
    start: datetime,
    end: datetime,
    *,
    weekday: int | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The therapists' working hours at the location (of one ``weekday``, or all), by
    start, and their time off (not called off) that overlaps [start, end).

    The schedules (this week view, the rooms' day view) and the free slots read both.
    """
    hours_query = WorkingHours.select().where(
        (WorkingHours.location == location_id) & WorkingHours.therapist.is_in(therapist_ids)
    )
    if weekday is not None:
        hours_query = hours_query.where(WorkingHours.weekday == weekday)
    hours, time_off = await db.concurrently(
        hours_query.order_by(WorkingHours.start_minute).run(),
        TimeOff.select()
        .where(
            TimeOff.therapist.is_in(therapist_ids)
            & TimeOff.in_force()
            & (TimeOff.starts_at < end)
            & (TimeOff.ends_at > start)
        )
        .run(),
    )
    return hours, time_off


class Timeline:
    """Busy spans of one therapist or room, merged and sorted, so asking whether a
    span overlaps any of them is a bisection rather than a scan (a day's search asks
    it for every start of every therapist, and of each room)."""

    __slots__ = ("ends", "starts")

    def __init__(self, spans: list[h.Span]) -> None:
        merged = h.merge(spans)  # joining touching spans keeps the same instants busy
        self.starts = [s.start for s in merged]
        self.ends = [s.end for s in merged]

    def overlaps(self, span: h.Span) -> bool:
        return self.hits(span.start, span.end)

    def hits(self, start: datetime, end: datetime) -> bool:
        """Whether [start, end) overlaps a busy span."""
        i = bisect_right(self.ends, start)  # the first busy span ending after the start
        return i < len(self.starts) and self.starts[i] < end


@dataclass
class _Busy:
    """Who and what is taken around the searched days: per room and therapist."""

    rooms: dict[int, Timeline]
    room_spans: dict[int, list[h.Span]]
    therapists: dict[int, Timeline]
    therapist_spans: dict[int, list[h.Span]]


async def _busy_around(
    ctx: BookingContext, therapist_ids: list[int], window: h.Span, except_id: int | None
) -> _Busy:
    location_id = int(ctx.location["id"])
    room_ids = [int(r["id"]) for r in ctx.rooms]
    rows, outages = await db.concurrently(
        Appointment.select(
            Appointment.therapist, Appointment.room, Appointment.start_at, Appointment.busy_until
        )
        .where(
            busy_during(window.start, window.end)
            & (Appointment.therapist.is_in(therapist_ids) | (Appointment.location == location_id))
            & (Appointment.id != (except_id or -1))
        )
        .run(),
        RoomOutage.select().where(out_of_service(room_ids, window.start, window.end)).run(),
    )
    rooms: dict[int, list[h.Span]] = {i: [] for i in room_ids}
    therapists: dict[int, list[h.Span]] = {i: [] for i in therapist_ids}
    for row in rows:
        span = h.Span(row["start_at"], row["busy_until"])
        if row["room"] in rooms:
            rooms[row["room"]].append(span)
        if row["therapist"] in therapists:
            therapists[row["therapist"]].append(span)
    room_spans = {i: list(spans) for i, spans in rooms.items()}  # bookings only: the load
    for row in outages:
        rooms[int(row["room"])].append(h.Span(row["starts_at"], row["ends_at"]))
    return _Busy(
        rooms={i: Timeline(spans) for i, spans in rooms.items()},
        room_spans=room_spans,
        therapists={i: Timeline(spans) for i, spans in therapists.items()},
        therapist_spans=therapists,
    )


def _load(spans: list[h.Span], day: h.Span) -> int:
    """How many of the bookings ``spans`` overlap the local day."""
    return sum(1 for s in spans if s.overlaps(day))


async def free_slots(
    location_id: int,
    service_id: int,
    day: date,
    *,
    therapist_id: int | None = None,
    now: datetime | None = None,
    except_appointment_id: int | None = None,
) -> list[Slot]:
    """Every bookable start on the local ``day``, per therapist, with a room assigned.

    ``except_appointment_id``: an appointment being moved does not block its own slots.
    """
    found = await free_slots_by_day(
        location_id,
        service_id,
        day,
        days=1,
        therapist_id=therapist_id,
        now=now,
        except_appointment_id=except_appointment_id,
    )
    return found[day]


async def free_slots_by_day(
    location_id: int,
    service_id: int,
    first: date,
    *,
    days: int,
    therapist_id: int | None = None,
    now: datetime | None = None,
    except_appointment_id: int | None = None,
) -> dict[date, list[Slot]]:
    """:func:`free_slots` of ``days`` local days from ``first``, each day's list in its
    order, asked of the database once for them all (a week's search is two rounds of
    queries, not fourteen)."""
    now = now or utcnow()
    wanted = [first + timedelta(days=i) for i in range(days)]
    found: dict[date, list[Slot]] = {day: [] for day in wanted}
    ctx, therapists = await db.concurrently(
        booking_context(location_id, service_id),
        eligible_therapists(location_id, service_id, therapist_id),
    )
    if not ctx.rooms or not therapists:
        return found
    ids = [int(t["id"]) for t in therapists]
    day_spans = {day: h.local_day_span(day, ctx.tz) for day in wanted}
    window = h.Span(
        day_spans[wanted[0]].start - timedelta(hours=4),
        day_spans[wanted[-1]].end + timedelta(hours=4),
    )
    (hours, time_off), busy = await db.concurrently(
        hours_and_time_off(location_id, ids, window.start, window.end),
        _busy_around(ctx, ids, window, except_appointment_id),
    )
    away = {
        tid: Timeline(
            [h.Span(t["starts_at"], t["ends_at"]) for t in time_off if t["therapist"] == tid]
        )
        for tid in ids
    }
    for day in wanted:
        day_span = day_spans[day]
        if day_span.end <= now:
            continue
        # The least used room that day first (spreads wear, keeps rooms free).
        rooms = sorted(
            ctx.rooms,
            key=lambda r: (_load(busy.room_spans[int(r["id"])], day_span), str(r["name"])),
        )
        room_order = [(int(r["id"]), str(r["name"]), busy.rooms[int(r["id"])]) for r in rooms]
        slots: list[Slot] = []
        for therapist in therapists:
            if not _credentials_valid(therapist, day):
                continue
            tid = int(therapist["id"])
            working = h.merge(
                h.interval_span(day, r["start_minute"], r["end_minute"], ctx.tz)
                for r in hours
                if r["therapist"] == tid and r["weekday"] == day.weekday()
            )
            for span in working:
                slots.extend(
                    _slots_within(
                        span, ctx, therapist, away[tid], busy.therapists[tid], room_order, now
                    )
                )
        # At each start the therapist with the fewest bookings that day comes first, so
        # "Any therapist" (one_per_start) spreads the day's bookings across the team.
        load = {tid: _load(spans, day_span) for tid, spans in busy.therapist_spans.items()}
        slots.sort(key=lambda s: (s.start, load.get(s.therapist_id, 0), s.therapist_name))
        found[day] = slots
    return found


def _slots_within(
    span: h.Span,
    ctx: BookingContext,
    therapist: dict[str, Any],
    away: Timeline,
    taken: Timeline,
    rooms: list[tuple[int, str, Timeline]],
    now: datetime,
) -> list[Slot]:
    """The therapist's free starts within one stretch of working time, each with the
    first room of ``rooms`` (least used first) free for the session and its buffer."""
    slots: list[Slot] = []
    tid, name = int(therapist["id"]), str(therapist["name"])
    duration, held = ctx.duration, ctx.duration + ctx.buffer
    step = timedelta(minutes=SLOT_STEP_MINUTES)
    start = _align(span.start, ctx.tz)
    last = span.end - duration
    while start <= last:
        end = start + duration
        until = start + held
        if start > now and not away.hits(start, end) and not taken.hits(start, until):
            for room_id, room_name, room_busy in rooms:
                if not room_busy.hits(start, until):
                    slots.append(Slot(start, end, tid, name, room_id, room_name))
                    break
        start += step
    return slots


def one_per_start(slots: list[Slot]) -> list[Slot]:
    """ "Any therapist": the first slot of each start time (the therapist least booked
    that day, ``free_slots``' order)."""
    seen: set[datetime] = set()
    unique = []
    for slot in slots:
        if slot.start not in seen:
            seen.add(slot.start)
            unique.append(slot)
    return unique


def _credentials_valid(therapist: dict[str, Any], day: date) -> bool:
    return all(
        therapist[key] is not None and therapist[key] >= day
        for key in ("licence_expires", "insurance_expires")
    )


def _align(instant: datetime, tz: ZoneInfo) -> datetime:
    """The first slot boundary (a whole step of local wall time) at or after ``instant``."""
    utc = instant.astimezone(UTC)
    whole = utc.replace(second=0, microsecond=0)
    if whole < utc:
        whole += timedelta(minutes=1)
    local = whole.astimezone(tz)
    extra = (-(local.hour * 60 + local.minute)) % SLOT_STEP_MINUTES
    return whole + timedelta(minutes=extra)


async def all_rooms_out_of_service(ctx: BookingContext, start: datetime, until: datetime) -> bool:
    ids = [int(r["id"]) for r in ctx.rooms]
    return set(ids) <= await _rooms_out_of_service(ids, start, until)


async def least_busy_first(
    therapists: list[dict[str, Any]], day: date, tz: ZoneInfo
) -> list[dict[str, Any]]:
    ids = [int(t["id"]) for t in therapists]
    load = await _day_load(Appointment.therapist, ids, h.local_day_span(day, tz))
    return sorted(therapists, key=lambda t: (load.get(int(t["id"]), 0), str(t["name"])))


async def therapist_busy(
    therapist_id: int, start: datetime, until: datetime, *, except_id: int | None = None
) -> bool:
    query = Appointment.exists().where(
        (Appointment.therapist == therapist_id) & busy_during(start, until)
    )
    if except_id is not None:
        query = query.where(Appointment.id != except_id)
    return bool(await query.run())


async def free_rooms(ctx: BookingContext, start: datetime, until: datetime) -> list[dict[str, Any]]:
    """The service's rooms free for [start, until), the least used that day first."""
    ids = [int(r["id"]) for r in ctx.rooms]
    if not ids:
        return []
    rows = (
        await Appointment.select(Appointment.room)
        .where(Appointment.room.is_in(ids) & busy_during(start, until))
        .run()
    )
    taken = {r["room"] for r in rows} | await _rooms_out_of_service(ids, start, until)
    day = h.local_day_span(h.local_date(start, ctx.tz), ctx.tz)
    load = await _day_load(Appointment.room, ids, day)
    free = [r for r in ctx.rooms if r["id"] not in taken]
    return sorted(free, key=lambda r: (load[int(r["id"])], str(r["name"])))


async def room_free(room_id: int, start: datetime, until: datetime, except_id: int) -> bool:
    """No other busy appointment and no out-of-service window in the room then."""
    clash = (
        await Appointment.exists()
        .where(
            (Appointment.room == room_id)
            & (Appointment.id != except_id)
            & busy_during(start, until)
        )
        .run()
    )
    return not clash and not await _rooms_out_of_service([room_id], start, until)
