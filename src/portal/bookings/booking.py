"""Booking and moving an appointment: a free therapist and room, and a held credit.

The database refuses overlapping busy appointments of a therapist or a room
(see the bookings constraints migration), so two requests racing for the
same slot cannot both win; the loser is told the slot was just taken
(:class:`SlotTaken`). A booking holds one session credit
(:mod:`portal.bookings.credits`); no credit, no booking.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, NoReturn

from portal import access, db
from portal.audit import service as audit
from portal.auth.service import CLIENT, MANAGER, OWNER, CurrentUser
from portal.bookings import notify
from portal.bookings.availability import (
    BookingContext,
    all_rooms_out_of_service,
    booking_context,
    eligible_therapists,
    free_rooms,
    least_busy_first,
    room_free,
    therapist_busy,
)
from portal.bookings.credits import (
    CreditGone,
    NoCredit,
    attach_credit,
    credit_valid_until,
    credits_for,
    hold_credit,
    no_credit_message,
)
from portal.bookings.reading import get_appointment_for
from portal.bookings.states import (
    BOOKED,
    HELD,
    is_late,
    not_booked_message,
    release_lapsed,
    too_late_to_reschedule,
)
from portal.bookings.tables import Appointment
from portal.errors import Forbidden, Invalid
from portal.settings import Settings
from portal.staff import hours as h
from portal.staff.bookability import as_told
from portal.staff.service import is_bookable
from portal.timeutil import utcnow

# The kinds of ``db.lock_keys`` a booking takes: its therapist's, then its room's.
LOCK_THERAPIST = 1
LOCK_ROOM = 2
ROOM_UNSUITED = "Choose a room of this clinic that suits this service."


class SlotTaken(Exception):
    """Someone else holds the therapist or the last suitable room at that time.

    ``message`` says who, when it is known (e.g. "Theresa is already booked then.").
    """

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message


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


def _ensure_may_book_for(actor: CurrentUser, client_id: int, location_id: int) -> None:
    if actor.role == CLIENT:
        if actor.id != client_id:
            raise Forbidden("Clients book for themselves.")
        return
    if actor.role not in (OWNER, MANAGER):
        raise Forbidden("Only the client or staff of the clinic can book.")
    access.ensure_write(actor, location_id)


def told(actor: CurrentUser, reasons: list[str] | tuple[str, ...], private: tuple[str, ...]) -> str:
    """Why a booking is refused, as the actor may read it: staff every reason; a client
    not the clinic's own (credentials, time off), "not available" instead."""
    return as_told(reasons, private if actor.role == CLIENT else None)


async def book(
    actor: CurrentUser,
    *,
    client_id: int,
    location_id: int,
    service_id: int,
    start_at: datetime,
    therapist_id: int | None = None,
    room_id: int | None = None,
    series_id: str | None = None,
    now: datetime | None = None,
    notify_client: bool = True,
    settings: Settings | None = None,
    deferred: list[int] | None = None,
    hold_until: datetime | None = None,
) -> int:
    """Book one appointment; returns its id.

    With ``hold_until`` the time is *held* (status ``held``, no credit, no
    email) for a client about to pay for it: see :mod:`portal.bookings.holds`.

    Raises ``Invalid`` (with reasons), ``NoCredit`` or ``SlotTaken``
    (the therapist or the last suitable room is taken at that time). With
    ``room_id`` the appointment takes that room or none (a room of the
    location that suits the service, else ``Invalid``). The
    client gets a confirmation once the booking has committed (see
    :mod:`portal.bookings.notify` for ``settings`` and ``deferred``).
    """
    _ensure_may_book_for(actor, client_id, location_id)
    now = now or utcnow()
    start_at = start_at.astimezone(UTC)
    if start_at <= now:
        raise Invalid({"start": "Choose a time in the future."})
    # Three independent reads in one round (eight clients after the same minute all
    # queue for the database; fewer rounds each is what shortens the queue).
    ctx, candidates, credits = await db.concurrently(
        booking_context(location_id, service_id),
        eligible_therapists(location_id, service_id, therapist_id),
        credits_for(client_id, service_id, start_at, location_id),
    )
    end_at = start_at + ctx.duration
    busy_until = end_at + ctx.buffer
    if room_id is not None and all(int(r["id"]) != room_id for r in ctx.rooms):
        raise Invalid({"room": ROOM_UNSUITED})
    if not candidates:
        if therapist_id is not None:
            # Say why this therapist cannot: another clinic, another service, inactive.
            verdict = await is_bookable(therapist_id, location_id, start_at, end_at, service_id)
            if verdict.reasons:
                raise Invalid({"therapist": told(actor, verdict.reasons, verdict.private)})
        raise Invalid({"therapist": "No therapist here can give this service."})
    credit_ids: list[int | None] = [None]  # a hold takes no credit
    if hold_until is None:
        if not credits:
            raise NoCredit(
                await no_credit_message(
                    client_id, str(ctx.service["name"]), start_at, location_id, service_id
                )
            )
        credit_ids = [int(credit["id"]) for credit in credits]
    appointment_id = await _book_first_free(
        actor,
        ctx,
        candidates,
        client_id=client_id,
        start_at=start_at,
        end_at=end_at,
        busy_until=busy_until,
        credit_ids=credit_ids,
        therapist_id=therapist_id,
        room_id=room_id,
        series_id=series_id,
        hold_until=hold_until,
    )
    if notify_client and hold_until is None:
        await notify.booking_confirmed(appointment_id, settings=settings, deferred=deferred)
    return appointment_id


async def _book_first_free(
    actor: CurrentUser,
    ctx: BookingContext,
    candidates: list[dict[str, Any]],
    *,
    client_id: int,
    start_at: datetime,
    end_at: datetime,
    busy_until: datetime,
    credit_ids: list[int | None],
    therapist_id: int | None,
    room_id: int | None,
    series_id: str | None,
    hold_until: datetime | None = None,
) -> int:
    location_id = int(ctx.location["id"])
    service_id = int(ctx.service["id"])
    reasons: list[str] = []
    private: list[str] = []  # reasons a client does not read (staff.bookability)
    taken = False  # refused only because someone else holds the time
    day = h.local_date(start_at, ctx.tz)
    for therapist in await least_busy_first(candidates, day, ctx.tz):
        tid = int(therapist["id"])
        verdict = await is_bookable(tid, location_id, start_at, end_at, service_id)
        if not verdict:
            reasons.extend(verdict.reasons)
            private.extend(verdict.private)
            continue
        if await therapist_busy(tid, start_at, busy_until):
            reasons.append(f"{therapist['name']} is already booked then.")
            taken = True
            continue
        rooms = await free_rooms(ctx, start_at, busy_until)
        if room_id is not None:
            rooms = [r for r in rooms if int(r["id"]) == room_id]
            if not rooms:
                raise SlotTaken(f"{room_name(ctx, room_id)} is taken or out of service then.")
        if not rooms:
            await _no_room(ctx, start_at, busy_until)
        for room in rooms:
            for credit_id in credit_ids:
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
                        credit_id=credit_id,
                        series_id=series_id,
                        hold_until=hold_until,
                    )
                except CreditGone:
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
        raise Invalid({"start": told(actor, reasons, tuple(private))})
    readable = [r for r in reasons if actor.role != CLIENT or r not in private]
    detail = " ".join(list(dict.fromkeys(readable))[:2])
    raise Invalid({"start": f"No therapist is free at that time. {detail}".strip()})


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
    credit_id: int | None,
    series_id: str | None,
    hold_until: datetime | None = None,
) -> int:
    now = utcnow()
    async with _taking_time():
        # Bookers of the same therapist, then of the same room, queue here, so the
        # next one meets the winner's committed row and is told "taken" at once
        # (instead of both inserting and waiting on each other until PostgreSQL
        # breaks the deadlock).
        await db.lock_keys((LOCK_THERAPIST, therapist_id), (LOCK_ROOM, room_id))
        # A time held for a payment that did not come in time is free again.
        await release_lapsed(therapist_id, room_id, start_at, busy_until, now)
        if credit_id is not None:
            await hold_credit(credit_id)
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
                    status=BOOKED if credit_id is not None else HELD,
                    sale_session=credit_id,
                    series_id=series_id,
                    booked_by=actor.id,
                    created_at=now,
                    updated_at=now,
                    hold_until=hold_until,
                )
            )
            .returning(Appointment.id)
            .run()
        )
        appointment_id = int(rows[0]["id"])
        if credit_id is None:
            return appointment_id  # a hold: audited when the payment books it
        await attach_credit(credit_id, appointment_id)
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
    return appointment_id


async def move(
    actor: CurrentUser,
    appointment_id: int,
    *,
    start_at: datetime,
    therapist_id: int | None = None,
    room_id: int | None = None,
    now: datetime | None = None,
    notify_client: bool = True,
    settings: Settings | None = None,
    deferred: list[int] | None = None,
) -> None:
    """Move a booked appointment, keeping its credit; to ``room_id`` when the
    manager chose one (it must suit the service and be free then). Its client may
    reschedule it themselves before the clinic's cancellation window (the room is the
    clinic's choice); inside it the policy refuses.

    The same rules as a booking: a future time, within the therapist's hours
    and permissions, the therapist free, a suitable room free and in service
    (its current room first), and before the package it uses expires. The
    client gets a new confirmation, and a new reminder later.
    """
    now = now or utcnow()
    by_client = actor.role == CLIENT
    appointment = await get_appointment_for(actor, appointment_id, write=not by_client)
    if actor.role not in (OWNER, MANAGER, CLIENT):
        raise Forbidden("Staff move appointments.")
    if appointment["status"] != BOOKED:
        raise Invalid({"start": not_booked_message(appointment["status"], "moved")})
    if by_client:
        room_id = None  # the client picks a time (and a therapist); the clinic the room
        if is_late(appointment, now):
            raise Invalid({"start": too_late_to_reschedule(appointment)})
    start_at = start_at.astimezone(UTC)
    if start_at <= now:
        raise Invalid({"start": "Choose a time in the future."})
    location_id = int(appointment["location"])
    service_id = int(appointment["service"])
    ctx = await booking_context(location_id, service_id)
    tid = therapist_id or int(appointment["therapist"])
    end_at = start_at + ctx.duration
    busy_until = end_at + ctx.buffer
    verdict = await is_bookable(tid, location_id, start_at, end_at, service_id)
    if not verdict:
        reasons = told(actor, verdict.reasons, verdict.private)
        if not await eligible_therapists(location_id, service_id, tid):
            raise Invalid({"therapist": reasons})
        raise Invalid({"start": reasons})
    valid_until = await credit_valid_until(appointment["sale_session"])
    if valid_until is not None and valid_until <= start_at:
        raise Invalid(
            {
                "start": "The package this booking uses is valid until "
                f"{valid_until.astimezone(ctx.tz):%Y-%m-%d %H:%M}; choose an earlier time."
            }
        )
    if await therapist_busy(tid, start_at, busy_until, except_id=appointment_id):
        raise SlotTaken()
    async with _taking_time():
        room_id = await _room_for_move(ctx, appointment, start_at, busy_until, room_id)
        await release_lapsed(tid, room_id, start_at, busy_until, now)
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
            actor, "reschedule" if by_client else "move", "appointment", appointment_id,
            before={"start_at": appointment["start_at"],
                    "therapist_id": appointment["therapist"], "room_id": appointment["room"]},
            after={"start_at": start_at, "therapist_id": tid, "room_id": room_id},
        )  # fmt: skip
    if notify_client:
        await notify.booking_confirmed(appointment_id, settings=settings, deferred=deferred)


async def _room_for_move(
    ctx: BookingContext,
    appointment: dict[str, Any],
    start: datetime,
    until: datetime,
    chosen: int | None = None,
) -> int:
    """The room a moved appointment takes: the chosen one (free then, or refused), else
    its own when free then, else the least used."""
    if chosen is not None:
        if all(int(r["id"]) != chosen for r in ctx.rooms):
            raise Invalid({"room": "Choose a room that suits this service."})
        if not await room_free(chosen, start, until, int(appointment["id"])):
            raise Invalid({"room": f"{room_name(ctx, chosen)} is taken or out of service then."})
        return chosen
    current = [r for r in ctx.rooms if r["id"] == appointment["room"]]
    others = [r for r in await free_rooms(ctx, start, until) if r["id"] != appointment["room"]]
    for room in current + others:
        if await room_free(int(room["id"]), start, until, int(appointment["id"])):
            return int(room["id"])
    await _no_room(ctx, start, until)


def room_name(ctx: BookingContext, room_id: int) -> str:
    return next((str(r["name"]) for r in ctx.rooms if int(r["id"]) == room_id), "The room")


async def _no_room(ctx: BookingContext, start: datetime, until: datetime) -> NoReturn:
    """No room for [start, until): none suits or all are out of service (Invalid), or
    other appointments hold them (the time is taken)."""
    if not ctx.rooms or await all_rooms_out_of_service(ctx, start, until):
        raise Invalid({"start": "No treatment room is free at that time."})
    raise SlotTaken()


@asynccontextmanager
async def _taking_time() -> AsyncIterator[None]:
    """A write transaction in which the database's refusal of an overlapping busy
    appointment (or the deadlock of two such inserts) means the time was just taken."""
    try:
        async with db.transaction():
            yield
    except Exception as exc:
        if _is_overlap_violation(exc):
            raise SlotTaken() from exc
        raise
