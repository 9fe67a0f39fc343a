"""An appointment's states and the one compare-and-set that leaves ``booked``.

An appointment is booked, then exactly one of: completed (the session was
given), cancelled (before the location's window: the credit comes back), late
cancel (inside it) or no-show. Every change leaves ``booked`` through
:func:`set_status`, which refuses when another request changed it first.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from portal.bookings.tables import Appointment
from portal.errors import Invalid
from portal.sales.service import check_move, compare_and_set
from portal.timeutil import utcnow

BOOKED = "booked"


COMPLETED = "completed"


CANCELLED = "cancelled"


LATE_CANCEL = "late_cancel"


NO_SHOW = "no_show"


# A time held while the client pays for it (``hold_sale``, until ``hold_until``).
HELD = "held"


BUSY_STATES = (BOOKED, COMPLETED, NO_SHOW)


def taking_the_time() -> Any:
    """Appointments that take their therapist and room: the busy ones, and times held
    for a payment until their hold ends (what schedules show and bookings avoid)."""
    held = (Appointment.status == HELD) & (Appointment.hold_until > utcnow())
    return Appointment.status.is_in(list(BUSY_STATES)) | held


STATUS_LABELS = {
    BOOKED: "Booked",
    COMPLETED: "Completed",
    CANCELLED: "Cancelled",
    LATE_CANCEL: "Late cancel",
    NO_SHOW: "No-show",
    HELD: "Held for payment",
}


# A held time becomes the paid booking, or is let go (order abandoned, hold lapsed).
HOLD_MOVES: dict[str, frozenset[str]] = {HELD: frozenset({BOOKED, CANCELLED})}
HOLD_LAPSED = "The time was held for a payment that did not come in time."


async def leave_held(where: Any, new: str, **values: Any) -> list[int]:
    """Move the held appointments matching ``where`` to ``new`` (compare-and-set on
    ``held``); the ids moved."""
    check_move(HOLD_MOVES, HELD, new, "appointment")
    update: dict[Any, Any] = {Appointment.status: new, Appointment.updated_at: utcnow()}
    for name, value in values.items():
        update[getattr(Appointment, name)] = value
    rows = (
        await Appointment.update(update)
        .where((Appointment.status == HELD) & where)
        .returning(Appointment.id)
        .run()
    )
    return [int(row["id"]) for row in rows]


async def release_lapsed(
    therapist_id: int, room_id: int, start: datetime, until: datetime, now: datetime
) -> list[int]:
    """Let go of the lapsed holds of this therapist or room over [start, until), so a
    booking of that time (inside its transaction, under its locks) may take it."""
    return await leave_held(
        (Appointment.hold_until <= now)
        & ((Appointment.therapist == therapist_id) | (Appointment.room == room_id))
        & (Appointment.start_at < until)
        & (Appointment.busy_until > start),
        CANCELLED,
        cancelled_at=now,
        cancel_reason=HOLD_LAPSED,
    )


def is_late(appointment: dict[str, Any], now: datetime) -> bool:
    """Inside the location's cancellation window (or past the start)?"""
    window = timedelta(hours=int(appointment["window_hours"]))
    return now > appointment["start_at"] - window


def too_late_to_reschedule(appointment: dict[str, Any]) -> str:
    """The cancellation policy's words to a client rescheduling inside the window."""
    hours = int(appointment["window_hours"])
    return (
        f"This appointment is inside the clinic's {hours}-hour cancellation window, "
        "so it can no longer be rescheduled online; please call the clinic."
    )


async def leave_booked(appointment_id: int, new: str, **values: Any) -> None:
    """:func:`set_status`, or Invalid when another request changed the appointment first."""
    if not await set_status(appointment_id, new, **values):
        raise Invalid({"status": "The appointment changed meanwhile; reload it."})


async def set_status(appointment_id: int, new: str, **values: Any) -> bool:
    """Move a booked appointment to ``new``; False when it was no longer booked."""
    values = {"updated_at": utcnow(), **values}
    return bool(await compare_and_set(Appointment.status, appointment_id, BOOKED, new, values))


def not_booked_message(status: str, action: str) -> str:
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
