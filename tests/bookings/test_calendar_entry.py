"""A booking's confirmation carries the appointment as a calendar entry (appointment.ics):
its times in UTC, the clinic's name and address, a UID that stays the appointment's own
when it moves; and it is sent once per appointment and time, through a real SMTP server."""

from __future__ import annotations

from datetime import UTC, datetime

from portal.bookings import notify
from portal.bookings import service as bookings
from portal.email.tables import OutboxMessage
from portal.locations.tables import Location
from tests.bookings.test_notifications import _book, future_day, ny

ADDRESS = "2231 NW Johnson St, Portland, OR 97210"


def _entry(message) -> dict[str, str]:
    """The calendar part of a received message, unfolded, as NAME → value."""
    [part] = [p for p in message.walk() if p.get_content_type() == "text/calendar"]
    assert part.get_filename() == "appointment.ics"
    text = part.get_payload(decode=True).decode().replace("\r\n ", "")
    assert text.startswith("BEGIN:VCALENDAR\r\n") and text.endswith("END:VCALENDAR\r\n")
    fields = dict(line.split(":", 1) for line in text.split("\r\n") if ":" in line)
    return fields


def _utc(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


async def test_the_confirmation_carries_the_appointment_for_the_calendar(
    clinic, settings, smtp_server
):
    await (
        Location.update({Location.address: ADDRESS}).where(Location.id == clinic.location_id).run()
    )
    smtp = smtp_server.settings_for(settings)
    day = future_day()
    appointment_id = await _book(clinic, ny(day, 10), settings=smtp)
    [first] = smtp_server.wait_for(1)
    entry = _entry(first.message)
    assert entry["DTSTART"] == _utc(ny(day, 10)) and entry["DTEND"] == _utc(ny(day, 11))
    assert entry["UID"] == f"appointment-{appointment_id}@testserver"
    assert "NW Johnson St" in entry["LOCATION"] and "\\, Portland" in entry["LOCATION"]
    assert entry["SUMMARY"] == "NMT 60 with Theresa"
    assert "America/New_York" in entry["DESCRIPTION"]
    assert ADDRESS in first.text  # the clinic's address in the message itself

    # Told again (a retry after a crash, a second caller): nothing new is sent.
    await notify.booking_confirmed(appointment_id, settings=smtp)
    assert (
        await OutboxMessage.count().where(OutboxMessage.kind == "booking_confirmation").run() == 1
    )

    # Moved: a new confirmation, the same entry at its new time.
    await bookings.move(clinic.as_manager(), appointment_id, start_at=ny(day, 14), settings=smtp)
    received = smtp_server.wait_for(2)
    moved = _entry(received[1].message)
    assert moved["UID"] == entry["UID"]
    assert moved["DTSTART"] == _utc(ny(day, 14))
