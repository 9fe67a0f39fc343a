"""Appointments: free slots, booking with a session credit, cancelling, completing.

Rules:

* A slot is free when the therapist may be booked then
  (:func:`portal.staff.service.is_bookable`: active, licensed and insured,
  working, not on time off, permitted to give the service), neither the
  therapist nor a suitable room is busy until the end plus the service's
  buffer, and the room is in service.
* A booking holds one session credit of the client's active packages for
  that service, earliest expiry first. No credit, no booking.
* The database refuses overlapping busy appointments of a therapist or a
  room (see the bookings constraints migration), so two requests racing for
  the same slot cannot both win; the loser is told the slot was just taken.
* Cancelling before the location's window returns the credit; later (late
  cancel) or not coming (no-show) forfeits it unless a manager waives it
  with a reason. Completing a session redeems the credit: its value moves
  from deferred revenue at the clinic that sold it to service revenue at the
  clinic that gave it, with the therapist named on the journal line.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from portal import access, db
from portal.audit import service as audit
from portal.auth.service import CLIENT, MANAGER, OWNER, THERAPIST, CurrentUser
from portal.bookings import notify
from portal.bookings.tables import Appointment
from portal.catalog.tables import Service
from portal.errors import Forbidden, Invalid, NotFound
from portal.ledger import service as ledger
from portal.locations.tables import Location
from portal.onetime import service as onetime
from portal.rooms.service import split_tags
from portal.rooms.tables import Room, RoomOutage
from portal.sales import service as sales
from portal.sales.tables import Sale, SaleSession
from portal.settings import Settings
from portal.staff import hours as h
from portal.staff.service import is_bookable
from portal.staff.tables import (
    Therapist,
    TherapistLocation,
    TherapistService,
    TimeOff,
    WorkingHours,
)
from portal.timeutil import utcnow

log = logging.getLogger("portal.bookings")

BOOKED = "booked"
COMPLETED = "completed"
CANCELLED = "cancelled"
LATE_CANCEL = "late_cancel"
NO_SHOW = "no_show"
BUSY_STATES = (BOOKED, COMPLETED, NO_SHOW)
STATUS_LABELS = {
    BOOKED: "Booked",
    COMPLETED: "Completed",
    CANCELLED: "Cancelled",
    LATE_CANCEL: "Late cancel",
    NO_SHOW: "No-show",
}
SLOT_STEP_MINUTES = 15


class SlotTaken(Exception):
    """Someone else holds the therapist or the last suitable room at that time.

    ``message`` says who, when it is known (e.g. "Theresa is already booked then.").
    """

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message


class NoCredit(Exception):
    """The client has no unused session of an active package for the service.

    ``message`` says which service, and which services the client's packages
    are for when they hold sessions of others (a package of another service).
    """

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message or "No active package has an unused session of this service."


@dataclass(frozen=True)
class Slot:
    start: datetime
    end: datetime
    therapist_id: int
    therapist_name: str
    room_id: int
    room_name: str


def _is_overlap_violation(exc: BaseException) -> bool:
    """The database refused the appointment because another one holds the time.

    On PostgreSQL two bookings that collide on an exclusion constraint can
    each see the other's uncommitted row and wait for it (the same therapist
    booked into two rooms at once, say); PostgreSQL then aborts one of them
    with a deadlock. The survivor holds the time, so for the one aborted it is
    the same answer: the slot has just been taken.
    """
    if isinstance(exc, sqlite3.IntegrityError):
        return "appointment_overlap" in str(exc)
    asyncpg = sys.modules.get("asyncpg")
    return bool(
        asyncpg is not None
        and isinstance(
            exc,
            (
                asyncpg.exceptions.ExclusionViolationError,
                asyncpg.exceptions.DeadlockDetectedError,
            ),
        )
    )


# -- reading -----------------------------------------------------------------------------


async def get_appointment(appointment_id: int) -> dict[str, Any]:
    row = (
        await Appointment.select(
            *Appointment.all_columns(),
            Appointment.therapist.name.as_alias("therapist_name"),
            Appointment.therapist.account.as_alias("therapist_account"),
            Appointment.room.name.as_alias("room_name"),
            Appointment.location.name.as_alias("location_name"),
            Appointment.location.timezone.as_alias("timezone"),
            Appointment.location.cancellation_window_hours.as_alias("window_hours"),
            Appointment.service.name.as_alias("service_name"),
            Appointment.client.email.as_alias("client_email"),
            Appointment.client.name.as_alias("client_name"),
        )
        .where(Appointment.id == appointment_id)
        .first()
        .run()
    )
    if row is None:
        raise NotFound("No such appointment.")
    return row


async def get_appointment_for(
    user: CurrentUser, appointment_id: int, *, write: bool = False
) -> dict[str, Any]:
    """The appointment if ``user`` may see it: its client, its therapist, staff of its location."""
    row = await get_appointment(appointment_id)
    if user.role == CLIENT:
        if row["client"] != user.id:
            raise Forbidden("This is not your appointment.")
        return row
    if user.role == THERAPIST:
        if row["therapist_account"] != user.id or write:
            raise Forbidden("This is not your appointment.")
        return row
    (access.ensure_write if write else access.ensure_read)(user, int(row["location"]))
    return row


async def appointments_between(
    *,
    start: datetime,
    end: datetime,
    location_id: int | None = None,
    therapist_id: int | None = None,
    client_id: int | None = None,
    statuses: tuple[str, ...] | None = None,
) -> list[dict[str, Any]]:
    query = Appointment.select(
        *Appointment.all_columns(),
        Appointment.therapist.name.as_alias("therapist_name"),
        Appointment.room.name.as_alias("room_name"),
        Appointment.service.name.as_alias("service_name"),
        Appointment.client.name.as_alias("client_name"),
        Appointment.client.email.as_alias("client_email"),
        Appointment.location.name.as_alias("location_name"),
        Appointment.location.timezone.as_alias("timezone"),
    ).where((Appointment.start_at < end) & (Appointment.busy_until > start))
    if location_id is not None:
        query = query.where(Appointment.location == location_id)
    if therapist_id is not None:
        query = query.where(Appointment.therapist == therapist_id)
    if client_id is not None:
        query = query.where(Appointment.client == client_id)
    if statuses is not None:
        query = query.where(Appointment.status.is_in(list(statuses)))
    return await query.order_by(Appointment.start_at).run()


async def client_appointments(client_id: int, *, limit: int = 100) -> list[dict[str, Any]]:
    return (
        await Appointment.select(
            *Appointment.all_columns(),
            Appointment.therapist.name.as_alias("therapist_name"),
            Appointment.service.name.as_alias("service_name"),
            Appointment.location.name.as_alias("location_name"),
            Appointment.location.timezone.as_alias("timezone"),
            Appointment.location.cancellation_window_hours.as_alias("window_hours"),
        )
        .where(Appointment.client == client_id)
        .order_by(Appointment.start_at, ascending=False)
        .limit(limit)
        .run()
    )


async def credits_for(client_id: int, service_id: int, at: datetime) -> list[dict[str, Any]]:
    """Unused session credits usable for ``service_id`` at ``at``, earliest expiry first."""
    return (
        await SaleSession.select(
            SaleSession.id,
            SaleSession.sale,
            SaleSession.position,
            SaleSession.value_cents,
            SaleSession.sale.valid_until.as_alias("valid_until"),
            SaleSession.sale.item_name.as_alias("item_name"),
        )
        .where(
            (SaleSession.state == sales.AVAILABLE)
            & (SaleSession.sale.client == client_id)
            & (SaleSession.sale.service_id == service_id)
            & (SaleSession.sale.status == sales.ACTIVE)
            & (SaleSession.sale.frozen == False)  # noqa: E712
            & (SaleSession.sale.valid_until > at)
        )
        .order_by(SaleSession.sale.valid_until)
        .order_by(SaleSession.sale.id)
        .order_by(SaleSession.position)
        .run()
    )


# -- free slots --------------------------------------------------------------------------


@dataclass
class _Context:
    location: dict[str, Any]
    tz: ZoneInfo
    service: dict[str, Any]
    duration: timedelta
    buffer: timedelta
    rooms: list[dict[str, Any]]


async def _context(location_id: int, service_id: int) -> _Context:
    location = await Location.select().where(Location.id == location_id).first().run()
    if location is None or not location["active"]:
        raise NotFound("No such clinic.")
    service = await Service.select().where(Service.id == service_id).first().run()
    if service is None or not service["active"]:
        raise NotFound("No such service.")
    needed = set(split_tags(service["required_equipment"] or ""))
    rooms = [
        r
        for r in await Room.select()
        .where((Room.location == location_id) & (Room.active == True))  # noqa: E712
        .order_by(Room.name)
        .run()
        if needed <= set(split_tags(r["equipment"] or ""))
    ]
    return _Context(
        location=location,
        tz=ZoneInfo(str(location["timezone"])),
        service=service,
        duration=timedelta(minutes=int(service["duration_minutes"])),
        buffer=timedelta(minutes=int(service["buffer_after_minutes"] or 0)),
        rooms=rooms,
    )


async def _therapists(
    location_id: int, service_id: int, therapist_id: int | None
) -> list[dict[str, Any]]:
    at_location = {
        r["therapist"]
        for r in await TherapistLocation.select(TherapistLocation.therapist)
        .where(TherapistLocation.location == location_id)
        .run()
    }
    permitted = {
        r["therapist"]
        for r in await TherapistService.select(TherapistService.therapist)
        .where(TherapistService.service == service_id)
        .run()
    }
    ids = at_location & permitted
    if therapist_id is not None:
        ids &= {therapist_id}
    if not ids:
        return []
    return (
        await Therapist.select()
        .where(Therapist.id.is_in(list(ids)) & (Therapist.active == True))  # noqa: E712
        .order_by(Therapist.name)
        .run()
    )


def _spans(rows: list[dict[str, Any]], start_key: str, end_key: str) -> list[h.Span]:
    return [h.Span(r[start_key], r[end_key]) for r in rows]


def _overlaps_any(span: h.Span, busy: list[h.Span]) -> bool:
    return any(span.overlaps(b) for b in busy)


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
    now = now or utcnow()
    ctx = await _context(location_id, service_id)
    if not ctx.rooms:
        return []
    day_span = h.local_day_span(day, ctx.tz)
    therapists = await _therapists(location_id, service_id, therapist_id)
    if not therapists:
        return []
    ids = [int(t["id"]) for t in therapists]
    window_start = day_span.start - timedelta(hours=4)
    window_end = day_span.end + timedelta(hours=4)
    hours = (
        await WorkingHours.select()
        .where(WorkingHours.therapist.is_in(ids) & (WorkingHours.location == location_id))
        .run()
    )
    time_off = (
        await TimeOff.select()
        .where(
            TimeOff.therapist.is_in(ids)
            & TimeOff.cancelled_at.is_null()
            & (TimeOff.starts_at < window_end)
            & (TimeOff.ends_at > window_start)
        )
        .run()
    )
    busy_rows = (
        await Appointment.select(
            Appointment.therapist, Appointment.room, Appointment.start_at, Appointment.busy_until
        )
        .where(
            Appointment.status.is_in(list(BUSY_STATES))
            & (Appointment.start_at < window_end)
            & (Appointment.busy_until > window_start)
            & (Appointment.therapist.is_in(ids) | (Appointment.location == location_id))
            & (Appointment.id != (except_appointment_id or -1))
        )
        .run()
    )
    outages = (
        await RoomOutage.select()
        .where(
            RoomOutage.room.is_in([int(r["id"]) for r in ctx.rooms])
            & RoomOutage.cancelled_at.is_null()
            & (RoomOutage.starts_at < window_end)
            & (RoomOutage.ends_at > window_start)
        )
        .run()
    )
    room_busy: dict[int, list[h.Span]] = {int(r["id"]): [] for r in ctx.rooms}
    room_load: dict[int, int] = {int(r["id"]): 0 for r in ctx.rooms}
    therapist_busy: dict[int, list[h.Span]] = {i: [] for i in ids}
    for row in busy_rows:
        span = h.Span(row["start_at"], row["busy_until"])
        if row["room"] in room_busy:
            room_busy[row["room"]].append(span)
            room_load[row["room"]] += 1
        if row["therapist"] in therapist_busy:
            therapist_busy[row["therapist"]].append(span)
    for row in outages:
        room_busy[int(row["room"])].append(h.Span(row["starts_at"], row["ends_at"]))
    step = timedelta(minutes=SLOT_STEP_MINUTES)
    slots: list[Slot] = []
    for therapist in therapists:
        tid = int(therapist["id"])
        if not _credentials_valid(therapist, day):
            continue
        working = h.merge(
            h.interval_span(day, r["start_minute"], r["end_minute"], ctx.tz)
            for r in hours
            if r["therapist"] == tid and r["weekday"] == day.weekday()
        )
        away = [h.Span(t["starts_at"], t["ends_at"]) for t in time_off if t["therapist"] == tid]
        for span in working:
            start = _align(span.start, ctx.tz)
            while start + ctx.duration <= span.end:
                session = h.Span(start, start + ctx.duration)
                busy = h.Span(start, start + ctx.duration + ctx.buffer)
                if (
                    start > now
                    and not _overlaps_any(session, away)
                    and not _overlaps_any(busy, therapist_busy[tid])
                ):
                    room = _pick_room(ctx.rooms, room_busy, room_load, busy)
                    if room is not None:
                        slots.append(
                            Slot(
                                start=start,
                                end=start + ctx.duration,
                                therapist_id=tid,
                                therapist_name=str(therapist["name"]),
                                room_id=int(room["id"]),
                                room_name=str(room["name"]),
                            )
                        )
                start += step
    slots.sort(key=lambda s: (s.start, s.therapist_name))
    return slots


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


def _pick_room(
    rooms: list[dict[str, Any]],
    busy: dict[int, list[h.Span]],
    load: dict[int, int],
    span: h.Span,
) -> dict[str, Any] | None:
    """A free room, the least used that day first (spreads wear, keeps rooms free)."""
    free = [r for r in rooms if not _overlaps_any(span, busy[int(r["id"])])]
    if not free:
        return None
    return min(free, key=lambda r: (load[int(r["id"])], str(r["name"])))


# -- booking ----------------------------------------------------------------------------


def _ensure_may_book_for(actor: CurrentUser, client_id: int, location_id: int) -> None:
    if actor.role == CLIENT:
        if actor.id != client_id:
            raise Forbidden("Clients book for themselves.")
        return
    if actor.role not in (OWNER, MANAGER):
        raise Forbidden("Only the client or staff of the clinic can book.")
    access.ensure_write(actor, location_id)


async def book(
    actor: CurrentUser,
    *,
    client_id: int,
    location_id: int,
    service_id: int,
    start_at: datetime,
    therapist_id: int | None = None,
    series_id: str | None = None,
    now: datetime | None = None,
    notify_client: bool = True,
    settings: Settings | None = None,
    deferred: list[int] | None = None,
) -> int:
    """Book one appointment; returns its id.

    Raises ``Invalid`` (with reasons), ``NoCredit`` or ``SlotTaken``
    (the therapist or the last suitable room is taken at that time). The
    client gets a confirmation once the booking has committed (see
    :mod:`portal.bookings.notify` for ``settings`` and ``deferred``).
    """
    _ensure_may_book_for(actor, client_id, location_id)
    now = now or utcnow()
    start_at = start_at.astimezone(UTC)
    if start_at <= now:
        raise Invalid({"start": "Choose a time in the future."})
    ctx = await _context(location_id, service_id)
    end_at = start_at + ctx.duration
    busy_until = end_at + ctx.buffer
    candidates = await _therapists(location_id, service_id, therapist_id)
    if not candidates:
        if therapist_id is not None:
            # Say why this therapist cannot: another clinic, another service, inactive.
            verdict = await is_bookable(therapist_id, location_id, start_at, end_at, service_id)
            if verdict.reasons:
                raise Invalid({"therapist": " ".join(verdict.reasons)})
        raise Invalid({"therapist": "No therapist here can give this service."})
    credits = await credits_for(client_id, service_id, start_at)
    if not credits:
        raise NoCredit(await _no_credit_message(client_id, ctx, start_at))
    appointment_id = await _book_first_free(
        actor,
        ctx,
        candidates,
        client_id=client_id,
        start_at=start_at,
        end_at=end_at,
        busy_until=busy_until,
        credits=credits,
        therapist_id=therapist_id,
        series_id=series_id,
    )
    if notify_client:
        await notify.booking_confirmed(appointment_id, settings=settings, deferred=deferred)
    return appointment_id


async def _no_credit_message(client_id: int, ctx: _Context, at: datetime) -> str:
    others = (
        await SaleSession.select(SaleSession.sale.service_name.as_alias("service_name"))
        .where(
            (SaleSession.state == sales.AVAILABLE)
            & (SaleSession.sale.client == client_id)
            & (SaleSession.sale.status == sales.ACTIVE)
            & (SaleSession.sale.frozen == False)  # noqa: E712
            & (SaleSession.sale.valid_until > at)
        )
        .run()
    )
    message = f"No active package has an unused session of {ctx.service['name']}"
    names = sorted({str(r["service_name"]) for r in others if r["service_name"]})
    if names:
        message += f" (the sessions left are for {', '.join(names)})"
    return message + "."


async def _book_first_free(
    actor: CurrentUser,
    ctx: _Context,
    candidates: list[dict[str, Any]],
    *,
    client_id: int,
    start_at: datetime,
    end_at: datetime,
    busy_until: datetime,
    credits: list[dict[str, Any]],
    therapist_id: int | None,
    series_id: str | None,
) -> int:
    location_id = int(ctx.location["id"])
    service_id = int(ctx.service["id"])
    reasons: list[str] = []
    taken = False  # refused only because someone else holds the time
    day = h.local_date(start_at, ctx.tz)
    for therapist in await _least_busy_first(candidates, day, ctx.tz):
        tid = int(therapist["id"])
        verdict = await is_bookable(tid, location_id, start_at, end_at, service_id)
        if not verdict:
            reasons.extend(verdict.reasons)
            continue
        if await _therapist_busy(tid, start_at, busy_until):
            reasons.append(f"{therapist['name']} is already booked then.")
            taken = True
            continue
        rooms = await _free_rooms(ctx, start_at, busy_until)
        if not rooms:
            if not ctx.rooms or await _all_rooms_out_of_service(ctx, start_at, busy_until):
                raise Invalid({"start": "No treatment room is free at that time."})
            raise SlotTaken()
        for room in rooms:
            for credit in credits:
                try:
                    return await _insert(
                        actor,
                        client_id=client_id,
                        location_id=location_id,
                        service_id=service_id,
                        therapist_id=tid,
                        room_id=int(room["id"]),
                        start_at=start_at,
                        end_at=end_at,
                        busy_until=busy_until,
                        credit_id=int(credit["id"]),
                        series_id=series_id,
                    )
                except _CreditGone:
                    continue  # taken by a parallel booking of the same client; try the next
                except SlotTaken:
                    break  # this room went; try the next room
            else:
                raise NoCredit("The last unused session was used by another booking a moment ago.")
        if therapist_id is not None:
            raise SlotTaken()
        taken = True
    if taken:
        # Someone who works then was free for this time until another booking took
        # it: that is the answer, whatever kept the other therapists away.
        raise SlotTaken(" ".join(dict.fromkeys(r for r in reasons if "already booked" in r)))
    if therapist_id is not None and reasons:
        raise Invalid({"start": " ".join(reasons)})
    detail = " ".join(list(dict.fromkeys(reasons))[:2])
    raise Invalid({"start": f"No therapist is free at that time. {detail}".strip()})


async def _all_rooms_out_of_service(ctx: _Context, start: datetime, until: datetime) -> bool:
    ids = [int(r["id"]) for r in ctx.rooms]
    out = {
        r["room"]
        for r in await RoomOutage.select(RoomOutage.room)
        .where(
            RoomOutage.room.is_in(ids)
            & RoomOutage.cancelled_at.is_null()
            & (RoomOutage.starts_at < until)
            & (RoomOutage.ends_at > start)
        )
        .run()
    }
    return set(ids) <= out


class _CreditGone(Exception):
    pass


# The kinds of ``db.lock_keys`` a booking takes: its therapist's, then its room's.
LOCK_THERAPIST = 1
LOCK_ROOM = 2


async def _least_busy_first(
    therapists: list[dict[str, Any]], day: date, tz: ZoneInfo
) -> list[dict[str, Any]]:
    span = h.local_day_span(day, tz)
    rows = (
        await Appointment.select(Appointment.therapist)
        .where(
            Appointment.therapist.is_in([int(t["id"]) for t in therapists])
            & Appointment.status.is_in(list(BUSY_STATES))
            & (Appointment.start_at >= span.start)
            & (Appointment.start_at < span.end)
        )
        .run()
    )
    load: dict[int, int] = {}
    for row in rows:
        load[int(row["therapist"])] = load.get(int(row["therapist"]), 0) + 1
    return sorted(therapists, key=lambda t: (load.get(int(t["id"]), 0), str(t["name"])))


async def _therapist_busy(
    therapist_id: int, start: datetime, until: datetime, *, except_id: int | None = None
) -> bool:
    query = Appointment.exists().where(
        (Appointment.therapist == therapist_id)
        & Appointment.status.is_in(list(BUSY_STATES))
        & (Appointment.start_at < until)
        & (Appointment.busy_until > start)
    )
    if except_id is not None:
        query = query.where(Appointment.id != except_id)
    return bool(await query.run())


async def _free_rooms(ctx: _Context, start: datetime, until: datetime) -> list[dict[str, Any]]:
    ids = [int(r["id"]) for r in ctx.rooms]
    if not ids:
        return []
    taken = {
        r["room"]
        for r in await Appointment.select(Appointment.room)
        .where(
            Appointment.room.is_in(ids)
            & Appointment.status.is_in(list(BUSY_STATES))
            & (Appointment.start_at < until)
            & (Appointment.busy_until > start)
        )
        .run()
    }
    out_of_service = {
        r["room"]
        for r in await RoomOutage.select(RoomOutage.room)
        .where(
            RoomOutage.room.is_in(ids)
            & RoomOutage.cancelled_at.is_null()
            & (RoomOutage.starts_at < until)
            & (RoomOutage.ends_at > start)
        )
        .run()
    }
    day = h.local_day_span(h.local_date(start, ctx.tz), ctx.tz)
    load_rows = (
        await Appointment.select(Appointment.room)
        .where(
            Appointment.room.is_in(ids)
            & Appointment.status.is_in(list(BUSY_STATES))
            & (Appointment.start_at >= day.start)
            & (Appointment.start_at < day.end)
        )
        .run()
    )
    load = {i: 0 for i in ids}
    for row in load_rows:
        load[int(row["room"])] += 1
    free = [r for r in ctx.rooms if r["id"] not in taken and r["id"] not in out_of_service]
    return sorted(free, key=lambda r: (load[int(r["id"])], str(r["name"])))


async def _insert(
    actor: CurrentUser,
    *,
    client_id: int,
    location_id: int,
    service_id: int,
    therapist_id: int,
    room_id: int,
    start_at: datetime,
    end_at: datetime,
    busy_until: datetime,
    credit_id: int,
    series_id: str | None,
) -> int:
    now = utcnow()
    try:
        async with db.transaction():
            # Bookers of the same therapist, then of the same room, queue here, so the
            # next one meets the winner's committed row and is told "taken" at once
            # (instead of both inserting and waiting on each other until PostgreSQL
            # breaks the deadlock).
            await db.lock_keys((LOCK_THERAPIST, therapist_id), (LOCK_ROOM, room_id))
            if not await sales.move_credit(credit_id, sales.AVAILABLE, sales.HELD):
                raise _CreditGone()
            rows = (
                await Appointment.insert(
                    Appointment(
                        client=client_id,
                        therapist=therapist_id,
                        room=room_id,
                        location=location_id,
                        service=service_id,
                        start_at=start_at,
                        end_at=end_at,
                        busy_until=busy_until,
                        status=BOOKED,
                        sale_session=credit_id,
                        series_id=series_id,
                        booked_by=actor.id,
                        created_at=now,
                        updated_at=now,
                    )
                )
                .returning(Appointment.id)
                .run()
            )
            appointment_id = int(rows[0]["id"])
            await sales.link_appointment(credit_id, appointment_id)
            await audit.record(
                actor,
                "book",
                "appointment",
                appointment_id,
                after={
                    "client_id": client_id,
                    "therapist_id": therapist_id,
                    "room_id": room_id,
                    "location_id": location_id,
                    "service_id": service_id,
                    "start_at": start_at,
                    "credit_id": credit_id,
                },
            )
    except Exception as exc:
        if _is_overlap_violation(exc):
            raise SlotTaken() from exc
        raise
    return appointment_id


# -- after booking ------------------------------------------------------------------------


def is_late(appointment: dict[str, Any], now: datetime) -> bool:
    """Inside the location's cancellation window (or past the start)?"""
    window = timedelta(hours=int(appointment["window_hours"]))
    return now > appointment["start_at"] - window


async def _release_credit(credit_id: int | None, new_state: str) -> dict[str, Any] | None:
    """Held → ``new_state`` (available: returned; forfeited; redeemed). Returns the credit."""
    if credit_id is None:
        return None
    if new_state == sales.AVAILABLE:
        return await sales.move_credit(credit_id, sales.HELD, new_state, appointment_id=None)
    return await sales.move_credit(credit_id, sales.HELD, new_state)


async def _recognise(
    appointment: dict[str, Any],
    credit: dict[str, Any],
    kind: str,
    memo: str,
    *,
    at: datetime | None = None,
) -> None:
    """Deferred revenue at the selling clinic → service revenue where the session was due.

    Dated when the session was given, whenever that is recorded: the start of
    the appointment for a completion or a no-show; a late cancel passes the
    cancellation's time as ``at``. The credit's ``changed_at`` takes the entry's date,
    so the liability report's sessions move with its money.
    """
    sale = (
        await Sale.select(Sale.location, Sale.currency)
        .where(Sale.id == credit["sale"])
        .first()
        .run()
    )
    assert sale is not None
    at = at or appointment["start_at"]
    value = int(credit["value_cents"])
    entry_id = await ledger.post(
        event_key=f"appointment:{appointment['id']}:{kind}",
        kind=kind,
        currency=sale["currency"],
        location_id=int(appointment["location"]),
        occurred_at=at,
        reference=f"appointment:{appointment['id']}",
        memo=memo,
        sale_id=int(credit["sale"]),
        therapist_id=int(appointment["therapist"]),
        lines=ledger.recognition_lines(
            value, sold_at=int(sale["location"]), given_at=int(appointment["location"])
        ),
    )
    posted = await ledger.posted_at(entry_id) if entry_id is not None else None
    if posted is not None and "id" in credit:
        await sales.date_credit(int(credit["id"]), posted)


@dataclass(frozen=True)
class Released:
    appointment_ids: list[int]
    credits: list[dict[str, Any]]


async def release_held_credits(sale_id: int, reason: str) -> Released:
    """A sale's money was reversed (a lost chargeback): its booked sessions go.

    Inside the caller's locked transaction on the sale: every appointment
    still booked with one of its credits is cancelled with ``reason`` and the
    credit revoked, so it can never be completed. The caller tells the
    clients (:func:`notify_released`) once the transaction has committed.
    """
    now = utcnow()
    held = (
        await SaleSession.select(SaleSession.id, SaleSession.appointment_id)
        .where((SaleSession.sale == sale_id) & (SaleSession.state == sales.HELD))
        .run()
    )
    ids: list[int] = []
    credits: list[dict[str, Any]] = []
    for row in held:
        appointment_id = row["appointment_id"]
        if appointment_id is not None and await _set_status(
            int(appointment_id), CANCELLED, cancelled_at=now, cancel_reason=reason[:1000]
        ):
            ids.append(int(appointment_id))
            await audit.record(
                None, "release_chargeback", "appointment", int(appointment_id),
                before={"status": BOOKED},
                after={"status": CANCELLED, "reason": "payment reversed", "credit": "revoked"},
            )  # fmt: skip
        credit = await sales.move_credit(int(row["id"]), sales.HELD, sales.REVOKED)
        if credit is not None:
            credits.append(credit)
    return Released(appointment_ids=ids, credits=credits)


async def notify_released(appointment_ids: list[int], reason: str) -> None:
    for appointment_id in appointment_ids:
        await notify.booking_cancelled(
            appointment_id, credit_returned=False, late=False, reason=reason
        )


@asynccontextmanager
async def _sale_of_credit_locked(credit_id: int | None) -> AsyncIterator[dict[str, Any] | None]:
    """A write transaction holding the lock of the sale whose credit the appointment uses."""
    sale_id = await sales.credit_sale_id(credit_id)
    if sale_id is None:
        async with db.transaction():
            yield None
        return
    async with sales.locked(sale_id) as sale:
        yield sale


async def _set_status(appointment_id: int, new: str, **values: Any) -> bool:
    update: dict[Any, Any] = {Appointment.status: new, Appointment.updated_at: utcnow()}
    for key, value in values.items():
        update[getattr(Appointment, key)] = value
    rows = (
        await Appointment.update(update)
        .where((Appointment.id == appointment_id) & (Appointment.status == BOOKED))
        .returning(Appointment.id)
        .run()
    )
    return bool(rows)


async def cancel(
    actor: CurrentUser,
    appointment_id: int,
    *,
    reason: str = "",
    waive: bool = False,
    waive_reason: str = "",
    now: datetime | None = None,
    notify_client: bool = True,
    settings: Settings | None = None,
    deferred: list[int] | None = None,
    request_key: str | None = None,
) -> str:
    """Cancel a booked appointment; returns ``cancelled`` or ``late_cancel``.

    Before the window the credit comes back. Inside it the credit is
    forfeited, unless a manager or owner waives the forfeit with a reason.
    The client is told once the cancellation has committed. The same form
    sent again (``request_key``) answers the first outcome and changes nothing.
    """
    now = now or utcnow()
    appointment = await get_appointment_for(actor, appointment_id, write=actor.role != CLIENT)
    if waive:
        if actor.role not in (OWNER, MANAGER):
            raise Forbidden("Only managers waive a late cancellation.")
        if not waive_reason.strip():
            raise Invalid({"waive_reason": "Say why the forfeit is waived."})
    async with _sale_of_credit_locked(appointment["sale_session"]) as sale:
        first = await onetime.claim(request_key, user_id=actor.id, action="cancel", field="status")
        if first is not None:
            return first or CANCELLED  # the form was sent before: its outcome, once
        appointment = await get_appointment(appointment_id)
        if appointment["status"] != BOOKED:
            message = _not_booked_message(appointment["status"], "cancelled")
            raise Invalid({"status": message})
        late = is_late(appointment, now)
        # No revenue is recognised on money under dispute: the credit goes back
        # (the frozen package cannot be booked until the dispute closes).
        forfeit = late and not waive and not (sale is not None and sale["frozen"])
        changed = await _set_status(
            appointment_id,
            LATE_CANCEL if late else CANCELLED,
            cancelled_at=now,
            cancel_reason=reason.strip()[:1000],
            waived=late and waive,
            waive_reason=waive_reason.strip()[:1000] if late and waive else "",
        )
        if not changed:
            raise Invalid({"status": "The appointment changed meanwhile; reload it."})
        credit = await _release_credit(
            appointment["sale_session"], sales.FORFEITED if forfeit else sales.AVAILABLE
        )
        if forfeit and credit is not None:
            await _recognise(appointment, credit, "session_forfeited", "Late cancellation", at=now)
        await audit.record(
            actor,
            "late_cancel" if late else "cancel",
            "appointment",
            appointment_id,
            before={"status": BOOKED},
            after={
                "status": LATE_CANCEL if late else CANCELLED,
                "reason": reason.strip(),
                "credit": "forfeited" if forfeit else "returned",
                "waive_reason": waive_reason.strip() if late and waive else "",
            },
        )
        await onetime.finish(request_key, LATE_CANCEL if late else CANCELLED)
    if notify_client:
        note = waive_reason.strip() if late and waive else reason.strip()
        await notify.booking_cancelled(
            appointment_id,
            credit_returned=not forfeit,
            late=late,
            reason=note,
            settings=settings,
            deferred=deferred,
        )
    return LATE_CANCEL if late else CANCELLED


def _not_booked_message(status: str, action: str) -> str:
    """Why an appointment that is no longer booked cannot be ``action`` (cancelled, moved…)."""
    if status in (CANCELLED, LATE_CANCEL):
        return (
            "This appointment is already cancelled."
            if action == "cancelled"
            else f"This appointment was cancelled; it cannot be {action}."
        )
    if status == COMPLETED:
        return f"This session has already been given; it cannot be {action}."
    if status == NO_SHOW:
        return f"This appointment was recorded as a no-show; it cannot be {action}."
    return f"Only a booked appointment can be {action}."


async def mark_no_show(
    actor: CurrentUser,
    appointment_id: int,
    *,
    waive: bool = False,
    waive_reason: str = "",
    now: datetime | None = None,
    request_key: str | None = None,
) -> None:
    now = now or utcnow()
    if actor.role not in (OWNER, MANAGER):
        raise Forbidden("Managers record no-shows.")
    appointment = await get_appointment_for(actor, appointment_id, write=True)
    if waive and not waive_reason.strip():
        raise Invalid({"waive_reason": "Say why the forfeit is waived."})
    async with _sale_of_credit_locked(appointment["sale_session"]) as sale:
        if await onetime.claim(request_key, user_id=actor.id, action="no_show", field="status"):
            return  # recorded by the first submission of this form
        appointment = await get_appointment(appointment_id)
        if appointment["status"] != BOOKED or appointment["start_at"] > now:
            raise Invalid(
                {"status": "Only a booked appointment that has started can be a no-show."}
            )
        if not await _set_status(
            appointment_id, NO_SHOW, waived=waive, waive_reason=waive_reason.strip()[:1000]
        ):
            raise Invalid({"status": "The appointment changed meanwhile; reload it."})
        # As for a late cancel: no revenue on money under dispute, the credit goes back.
        forfeit = not waive and not (sale is not None and sale["frozen"])
        credit = await _release_credit(
            appointment["sale_session"], sales.FORFEITED if forfeit else sales.AVAILABLE
        )
        if forfeit and credit is not None:
            await _recognise(appointment, credit, "session_forfeited", "No-show")
        await audit.record(
            actor, "no_show", "appointment", appointment_id,
            before={"status": BOOKED},
            after={"status": NO_SHOW, "credit": "forfeited" if forfeit else "returned",
                   "waive_reason": waive_reason.strip()},
        )  # fmt: skip
        await onetime.finish(request_key, NO_SHOW)


async def complete(
    actor: CurrentUser,
    appointment_id: int,
    *,
    now: datetime | None = None,
    request_key: str | None = None,
) -> None:
    """The session was given: redeem its credit and recognise the revenue.

    Under the sale's lock: a session of a package whose payment is disputed
    cannot be recorded as given until the dispute closes. The same form sent
    again (``request_key``) changes nothing.
    """
    now = now or utcnow()
    appointment = await get_appointment(appointment_id)
    if actor.role == THERAPIST:
        if appointment["therapist_account"] != actor.id:
            raise Forbidden("This is not your appointment.")
    elif actor.role in (OWNER, MANAGER):
        access.ensure_write(actor, int(appointment["location"]))
    else:
        raise Forbidden("Therapists and managers complete sessions.")
    async with _sale_of_credit_locked(appointment["sale_session"]) as sale:
        if await onetime.claim(request_key, user_id=actor.id, action="complete", field="status"):
            return  # recorded by the first submission of this form
        appointment = await get_appointment(appointment_id)
        if appointment["status"] != BOOKED:
            raise Invalid({"status": _not_booked_message(appointment["status"], "completed")})
        if appointment["start_at"] > now:
            raise Invalid({"status": "A session cannot be completed before it starts."})
        if sale is not None and sale["frozen"]:
            raise Invalid(
                {
                    "status": "The client disputed the payment for this package with their "
                    "card issuer. The session cannot be recorded as given until the dispute "
                    "is settled."
                }
            )
        if not await _set_status(appointment_id, COMPLETED, completed_at=now):
            raise Invalid({"status": "The appointment changed meanwhile; reload it."})
        credit = await _release_credit(appointment["sale_session"], sales.REDEEMED)
        if credit is not None:
            await _recognise(appointment, credit, "session_completed", "Session given")
        await audit.record(
            actor, "complete", "appointment", appointment_id,
            before={"status": BOOKED}, after={"status": COMPLETED},
        )  # fmt: skip
        await onetime.finish(request_key, COMPLETED)


async def move(
    actor: CurrentUser,
    appointment_id: int,
    *,
    start_at: datetime,
    therapist_id: int | None = None,
    now: datetime | None = None,
    notify_client: bool = True,
    settings: Settings | None = None,
    deferred: list[int] | None = None,
) -> None:
    """Move a booked appointment (staff), keeping its credit.

    The same rules as a booking: a future time, within the therapist's hours
    and permissions, the therapist free, a suitable room free and in service
    (its current room first), and before the package it uses expires. The
    client gets a new confirmation, and a new reminder later.
    """
    now = now or utcnow()
    appointment = await get_appointment_for(actor, appointment_id, write=True)
    if actor.role not in (OWNER, MANAGER):
        raise Forbidden("Staff move appointments.")
    if appointment["status"] != BOOKED:
        raise Invalid({"start": _not_booked_message(appointment["status"], "moved")})
    start_at = start_at.astimezone(UTC)
    if start_at <= now:
        raise Invalid({"start": "Choose a time in the future."})
    location_id = int(appointment["location"])
    service_id = int(appointment["service"])
    ctx = await _context(location_id, service_id)
    tid = therapist_id or int(appointment["therapist"])
    end_at = start_at + ctx.duration
    busy_until = end_at + ctx.buffer
    verdict = await is_bookable(tid, location_id, start_at, end_at, service_id)
    if not verdict:
        if not await _therapists(location_id, service_id, tid):
            raise Invalid({"therapist": " ".join(verdict.reasons)})
        raise Invalid({"start": " ".join(verdict.reasons)})
    valid_until = await _credit_valid_until(appointment["sale_session"])
    if valid_until is not None and valid_until <= start_at:
        raise Invalid(
            {
                "start": "The package this booking uses is valid until "
                f"{valid_until.astimezone(ctx.tz):%Y-%m-%d %H:%M}; choose an earlier time."
            }
        )
    if await _therapist_busy(tid, start_at, busy_until, except_id=appointment_id):
        raise SlotTaken()
    current_room = next((r for r in ctx.rooms if r["id"] == appointment["room"]), None)
    candidates = ([current_room] if current_room else []) + [
        r for r in await _free_rooms(ctx, start_at, busy_until) if r["id"] != appointment["room"]
    ]
    try:
        async with db.transaction():
            room_id = None
            for room in candidates:
                if not await _room_free(int(room["id"]), start_at, busy_until, appointment_id):
                    continue
                room_id = int(room["id"])
                break
            if room_id is None:
                if not ctx.rooms or await _all_rooms_out_of_service(ctx, start_at, busy_until):
                    raise Invalid({"start": "No treatment room is free at that time."})
                raise SlotTaken()
            moved = (
                await Appointment.update(
                    {
                        Appointment.start_at: start_at,
                        Appointment.end_at: end_at,
                        Appointment.busy_until: busy_until,
                        Appointment.therapist: tid,
                        Appointment.room: room_id,
                        Appointment.reminder_sent_at: None,
                        Appointment.updated_at: now,
                    }
                )
                .where((Appointment.id == appointment_id) & (Appointment.status == BOOKED))
                .returning(Appointment.id)
                .run()
            )
            if not moved:
                raise Invalid({"start": "The appointment changed meanwhile; reload it."})
            await audit.record(
                actor, "move", "appointment", appointment_id,
                before={"start_at": appointment["start_at"],
                        "therapist_id": appointment["therapist"], "room_id": appointment["room"]},
                after={"start_at": start_at, "therapist_id": tid, "room_id": room_id},
            )  # fmt: skip
    except Exception as exc:
        if _is_overlap_violation(exc):
            raise SlotTaken() from exc
        raise
    if notify_client:
        await notify.booking_confirmed(appointment_id, settings=settings, deferred=deferred)


async def _credit_valid_until(credit_id: int | None) -> datetime | None:
    if credit_id is None:
        return None
    row = (
        await SaleSession.select(SaleSession.sale.valid_until.as_alias("valid_until"))
        .where(SaleSession.id == credit_id)
        .first()
        .run()
    )
    return row["valid_until"] if row else None


async def _room_free(room_id: int, start: datetime, until: datetime, except_id: int) -> bool:
    """No other busy appointment and no out-of-service window in the room then."""
    clash = (
        await Appointment.exists()
        .where(
            (Appointment.room == room_id)
            & (Appointment.id != except_id)
            & Appointment.status.is_in(list(BUSY_STATES))
            & (Appointment.start_at < until)
            & (Appointment.busy_until > start)
        )
        .run()
    )
    if clash:
        return False
    return not (
        await RoomOutage.exists()
        .where(
            (RoomOutage.room == room_id)
            & RoomOutage.cancelled_at.is_null()
            & (RoomOutage.starts_at < until)
            & (RoomOutage.ends_at > start)
        )
        .run()
    )


# -- out-of-service windows ----------------------------------------------------------


async def booked_in_room(room_id: int, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Booked appointments of a room whose session overlaps [start, end), by start."""
    return (
        await Appointment.select(
            Appointment.id,
            Appointment.start_at,
            Appointment.end_at,
            Appointment.client.name.as_alias("client_name"),
            Appointment.client.email.as_alias("client_email"),
            Appointment.therapist.name.as_alias("therapist_name"),
        )
        .where(
            (Appointment.room == room_id)
            & (Appointment.status == BOOKED)
            & (Appointment.start_at < end)
            & (Appointment.end_at > start)
        )
        .order_by(Appointment.start_at)
        .run()
    )
