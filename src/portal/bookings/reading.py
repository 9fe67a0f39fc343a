"""Reading appointments: one by id (and whether an actor may see it), and by time span."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

from portal import access, records
from portal.auth.service import CLIENT, THERAPIST, CurrentUser
from portal.bookings.states import BOOKED, taking_the_time
from portal.bookings.tables import Appointment


def _joined() -> dict[str, Any]:
    return {
        "therapist_name": Appointment.therapist.name,
        "therapist_account": Appointment.therapist.account,
        "room_name": Appointment.room.name,
        "service_name": Appointment.service.name,
        "client_name": Appointment.client.name,
        "client_email": Appointment.client.email,
        "location_name": Appointment.location.name,
        "timezone": Appointment.location.timezone,
        "window_hours": Appointment.location.cancellation_window_hours,
        "location_address": Appointment.location.address,
    }


# The names a schedule or list row shows beside the appointment's own columns.
SHOWN = (
    "therapist_name",
    "room_name",
    "service_name",
    "client_name",
    "client_email",
    "location_name",
    "timezone",
)


def joined(*aliases: str) -> list[Any]:
    """Columns of the appointment's therapist, room, service, client and location, each
    under its alias (``therapist_name``, ``timezone``, ``window_hours``…)."""
    return list(_aliased(aliases))


@cache
def _aliased(aliases: tuple[str, ...]) -> tuple[Any, ...]:
    """The joined columns, built once per set of aliases: a column reached through a
    foreign key and given an alias is a deep copy, and every list page asks for the
    same few sets (queries read their columns, never change them)."""
    columns = _joined()
    return tuple(columns[alias].as_alias(alias) for alias in aliases)


async def get_appointment(appointment_id: int) -> dict[str, Any]:
    return await records.first(
        Appointment.select(
            *Appointment.all_columns(), *joined(*SHOWN, "therapist_account", "window_hours")
        ).where(Appointment.id == appointment_id),
        "No such appointment.",
    )


async def get_appointment_for(
    user: CurrentUser, appointment_id: int, *, write: bool = False
) -> dict[str, Any]:
    """The appointment if ``user`` may see it: its client, its therapist, staff of its location."""
    row = await get_appointment(appointment_id)
    owners = {CLIENT: "client", THERAPIST: "therapist_account"}
    refused = "This is not your appointment."
    access.ensure_own(user, row, owners, refused, write=write, read_only=(THERAPIST,))
    return row


async def appointments_between(
    *,
    start: datetime,
    end: datetime,
    location_id: int | None = None,
    therapist_id: int | None = None,
    client_id: int | None = None,
    statuses: tuple[str, ...] | None = None,
    taking_time: bool = False,
) -> list[dict[str, Any]]:
    """Appointments overlapping [start, end), optionally of one location, therapist or
    client, of ``statuses``, or (``taking_time``) those that take the time as a schedule
    shows it (:func:`~portal.bookings.states.taking_the_time`)."""
    query = Appointment.select(*Appointment.all_columns(), *joined(*SHOWN)).where(
        (Appointment.start_at < end) & (Appointment.busy_until > start)
    )
    chosen = (
        (Appointment.location, location_id),
        (Appointment.therapist, therapist_id),
        (Appointment.client, client_id),
    )
    for column, value in chosen:
        if value is not None:
            query = query.where(column == value)
    if statuses is not None:
        query = query.where(Appointment.status.is_in(list(statuses)))
    if taking_time:
        query = query.where(taking_the_time())
    return await query.order_by(Appointment.start_at).run()


async def client_appointments(
    client_id: int, *, limit: int = 100, booked_after: datetime | None = None
) -> list[dict[str, Any]]:
    """A client's appointments, latest first; with ``booked_after``, only those still booked
    and not over by then, soonest first (what is coming up)."""
    query = Appointment.select(
        *Appointment.all_columns(),
        *joined("therapist_name", "service_name", "location_name", "timezone", "window_hours"),
    ).where(
        (Appointment.client == client_id)
        # A time only held while paying, never booked, is the purchase's, not an appointment.
        & (Appointment.sale_session.is_not_null() | Appointment.hold_sale.is_null())
    )
    if booked_after is not None:
        query = query.where((Appointment.status == BOOKED) & (Appointment.end_at > booked_after))
    upcoming = booked_after is not None
    return await query.order_by(Appointment.start_at, ascending=upcoming).limit(limit).run()


async def booked_in_room(room_id: int, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Booked appointments of a room whose session overlaps [start, end), by start."""
    return await _booked_during(Appointment.room == room_id, start, end)


async def booked_for_therapist(
    therapist_id: int, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Booked appointments of a therapist overlapping [start, end), by start: what
    approving their time off would leave without a therapist (``contexts.therapist_bookings``)."""
    return await _booked_during(Appointment.therapist == therapist_id, start, end)


async def _booked_during(whose: Any, start: datetime, end: datetime) -> list[dict[str, Any]]:
    return (
        await Appointment.select(
            Appointment.id,
            Appointment.start_at,
            Appointment.end_at,
            *joined("client_name", "client_email", "therapist_name", "timezone"),
        )
        .where(
            whose
            & (Appointment.status == BOOKED)
            & (Appointment.start_at < end)
            & (Appointment.end_at > start)
        )
        .order_by(Appointment.start_at)
        .run()
    )
