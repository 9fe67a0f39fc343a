"""What the client is told about their appointments: confirmation, cancellation, reminder.

Messages go out through :mod:`portal.email.messages` *after* the transaction
that booked, moved or cancelled the appointment has committed (sending writes
the outbox in its own transaction and may talk to an SMTP server). A failure
to build or send a message never undoes the booking: it is logged, and the
outbox shows a failed delivery.

``deferred``: a page passes a list; messages are then only stored and their
outbox ids appended, so the page can deliver them after answering
(:func:`deliver_all`, as a background task). Commands and services pass
nothing and the message is delivered at once.

Reminders (``portal reminders send``) are for the *next local day* of each
appointment's clinic: run daily (or hourly) from cron, every booked
appointment that starts tomorrow, clinic time, is reminded once. The outbox
deduplicates on the appointment and its start time (a moved appointment gets a
new reminder) and ``appointment.reminder_sent_at`` records that it went out;
a failed delivery leaves it empty so the next run tries again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from portal import progress
from portal.bookings.reading import joined
from portal.bookings.states import BOOKED
from portal.bookings.tables import Appointment
from portal.clients.service import wants_email_reminders
from portal.email import messages
from portal.email import service as email
from portal.settings import Settings, get_settings
from portal.timeutil import utcnow

log = logging.getLogger("portal.bookings")


async def _load(appointment_id: int) -> dict[str, Any] | None:
    row: dict[str, Any] | None = (
        await Appointment.select(
            Appointment.id,
            Appointment.status,
            Appointment.start_at,
            Appointment.end_at,
            Appointment.location,
            Appointment.service,
            Appointment.reminder_sent_at,
            *joined("client_email", "client_name", "therapist_name", "service_name"),
            *joined("location_name", "location_address", "timezone", "window_hours"),
        )
        .where(Appointment.id == appointment_id)
        .first()
        .run()
    )
    return row


def _about(row: dict[str, Any]) -> messages.Appointment:
    return messages.Appointment(
        appointment_id=int(row["id"]),
        service_name=str(row["service_name"]),
        therapist_name=str(row["therapist_name"]),
        location_name=str(row["location_name"]),
        location_address=" ".join(str(row["location_address"] or "").split()),
        starts_at=row["start_at"],
        ends_at=row["end_at"],
        timezone=str(row["timezone"]),
    )


def _name(row: dict[str, Any]) -> str:
    return str(row["client_name"] or "").strip() or str(row["client_email"]).split("@")[0]


async def _tell_client(
    appointment_id: int,
    what: str,
    settings: Settings | None,
    deferred: list[int] | None,
    send: Callable[[dict[str, Any], dict[str, Any]], Awaitable[int]],
) -> None:
    """One message to the appointment's client, built by ``send`` from the appointment's
    row and the arguments every message takes (name, appointment, settings, defer).

    Called once the change it tells of has committed: a failure is logged, never
    raised. With ``deferred`` the message is stored and its id kept for the page to
    deliver after answering (:func:`deliver_all`); without, it is delivered now.
    """
    settings = settings or get_settings()
    try:
        row = await _load(appointment_id)
        if row is None:
            return
        common = {
            "name": _name(row),
            "appointment": _about(row),
            "settings": settings,
            "defer": deferred is not None,
        }
        message_id = await send(row, common)
        if deferred is not None:
            deferred.append(message_id)
    except Exception:
        log.exception("Could not send the %s of appointment %s", what, appointment_id)


async def booking_confirmed(
    appointment_id: int,
    *,
    settings: Settings | None = None,
    deferred: list[int] | None = None,
) -> None:
    """The confirmation of a booked (or moved) appointment."""

    async def send(row: dict[str, Any], common: dict[str, Any]) -> int:
        return await messages.send_booking_confirmation(
            str(row["client_email"]),
            cancellation_window_hours=int(row["window_hours"]),
            manage_url=f"{common['settings'].base_url}/appointments/{appointment_id}",
            **common,
        )

    await _tell_client(appointment_id, "confirmation", settings, deferred, send)


async def booking_cancelled(
    appointment_id: int,
    *,
    credit_returned: bool,
    late: bool,
    reason: str = "",
    settings: Settings | None = None,
    deferred: list[int] | None = None,
) -> None:
    """The cancellation notice, whoever cancelled (the client, staff, package expiry)."""

    async def send(row: dict[str, Any], common: dict[str, Any]) -> int:
        base = common["settings"].base_url
        return await messages.send_cancellation(
            str(row["client_email"]),
            credit_returned=credit_returned,
            late=late,
            reason=reason,
            book_url=f"{base}/appointments/new?location={row['location']}&service={row['service']}",
            **common,
        )

    await _tell_client(appointment_id, "cancellation", settings, deferred, send)


async def deliver_all(message_ids: list[int], settings: Settings) -> None:
    """Deliver stored messages (a page's background task)."""
    for message_id in message_ids:
        try:
            await email.deliver(message_id, settings=settings)
        except Exception:
            log.exception("Could not deliver message %s", message_id)


# -- reminders ------------------------------------------------------------------------


@dataclass(frozen=True)
class ReminderRun:
    sent: int  # reminders stored (outbox) or delivered (SMTP) in this run
    skipped: int  # clients who switched reminders off
    failed: int  # SMTP refused or unreachable: tried again on the next run


def _starts_tomorrow(row: dict[str, Any], now: datetime) -> bool:
    tz = ZoneInfo(str(row["timezone"]))
    return bool(row["start_at"].astimezone(tz).date() == now.astimezone(tz).date() + timedelta(1))


async def send_reminders(
    *, now: datetime | None = None, settings: Settings | None = None
) -> ReminderRun:
    """Remind every booked appointment starting tomorrow (clinic time) that was not reminded.

    Safe to run repeatedly and concurrently: each appointment and start time
    gets at most one message (the outbox's unique deduplication key), and
    ``reminder_sent_at`` keeps later runs from even trying.
    """
    now = now or utcnow()
    settings = settings or get_settings()
    # Tomorrow, anywhere on earth, begins within 48 hours.
    rows = (
        await Appointment.select(
            Appointment.id,
            Appointment.client,
            Appointment.start_at,
            Appointment.location.timezone.as_alias("timezone"),
        )
        .where(
            (Appointment.status == BOOKED)
            & Appointment.reminder_sent_at.is_null()
            & (Appointment.start_at > now)
            & (Appointment.start_at <= now + timedelta(hours=48))
        )
        .order_by(Appointment.start_at)
        .run()
    )
    sent = skipped = failed = 0
    for done, candidate in enumerate(rows):
        await progress.report(done, len(rows), "Sending reminders")
        if not _starts_tomorrow(candidate, now):
            continue
        if not await wants_email_reminders(int(candidate["client"])):
            skipped += 1
            continue
        row = await _load(int(candidate["id"]))
        if row is None or row["status"] != BOOKED or row["reminder_sent_at"] is not None:
            continue  # changed since it was listed
        try:
            message_id = await messages.send_reminder(
                str(row["client_email"]),
                name=_name(row),
                appointment=_about(row),
                manage_url=f"{settings.base_url}/appointments/{row['id']}",
                settings=settings,
            )
        except Exception:
            log.exception("Could not send the reminder of appointment %s", row["id"])
            failed += 1
            continue
        message = await email.get_message(message_id)
        if message["status"] == email.FAILED:
            failed += 1
            continue
        await (
            Appointment.update({Appointment.reminder_sent_at: now})
            .where(
                (Appointment.id == row["id"])
                & Appointment.reminder_sent_at.is_null()
                & (Appointment.start_at == row["start_at"])
            )
            .run()
        )
        sent += 1
    return ReminderRun(sent=sent, skipped=skipped, failed=failed)
