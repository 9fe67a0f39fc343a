"""Booking emails: confirmation and cancellation after the change commits, and the
day-before reminders of `portal reminders send` — through a real local SMTP server
(aiosmtpd) and in the outbox mode."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from portal.app import create_app
from portal.bookings import notify
from portal.bookings import service as bookings
from portal.bookings.tables import Appointment
from portal.clients.tables import ClientProfile
from portal.email.tables import OutboxMessage
from portal.staff import hours as h
from tests import factories
from tests.conftest import TEST_DATABASE_URL
from tests.email.smtpd import free_port

NY = ZoneInfo("America/New_York")
PORTAL = str(Path(sys.executable).with_name("portal"))


def ny(day: date, hour: int, minute: int = 0) -> datetime:
    return h.wall_to_utc(day, hour * 60 + minute, NY)


def future_day(days: int = 10) -> date:
    return (datetime.now(NY) + timedelta(days=days)).date()


async def _book(clinic, start: datetime, **kwargs: Any) -> int:
    return await bookings.book(
        clinic.as_client(), client_id=clinic.client.id, location_id=clinic.location_id,
        service_id=clinic.service_id, start_at=start, **kwargs,
    )  # fmt: skip


async def test_booking_and_cancelling_email_the_client_through_smtp(clinic, settings, smtp_server):
    smtp = smtp_server.settings_for(settings)
    day = future_day()
    appointment_id = await _book(clinic, ny(day, 10), settings=smtp)
    received = smtp_server.wait_for(1)
    assert len(received) == 1
    confirmation = received[0]
    assert confirmation.rcpt_tos == [clinic.client.email]
    assert confirmation.message["Subject"] == f"Booked: NMT 60 on {day:%a %d %b} at 10:00"
    assert "NMT 60 with Theresa" in confirmation.text
    assert f"{day:%A %d %B %Y}, 10:00–11:00 (America/New_York)" in confirmation.text
    assert "up to 24 hours before" in confirmation.text
    assert f"http://testserver/appointments/{appointment_id}" in confirmation.text
    await bookings.cancel(clinic.as_client(), appointment_id, reason="Travel", settings=smtp)
    received = smtp_server.wait_for(2)
    cancellation = received[1]
    assert cancellation.message["Subject"] == f"Cancelled: NMT 60 on {day:%a %d %b} at 10:00"
    assert "returned to your package" in cancellation.text
    assert "Note: Travel" in cancellation.text
    rows = await OutboxMessage.select().order_by(OutboxMessage.id).run()
    assert [(r["kind"], r["status"], r["transport"]) for r in rows] == [
        ("booking_confirmation", "sent", "smtp"),
        ("cancellation", "sent", "smtp"),
    ]


async def test_a_late_cancellation_says_the_session_is_used(clinic, settings):
    day = future_day()
    appointment_id = await _book(clinic, ny(day, 10), notify_client=False)
    await bookings.cancel(clinic.as_client(), appointment_id, now=ny(day, 8))
    message = await OutboxMessage.select().where(OutboxMessage.kind == "cancellation").first().run()
    assert message["transport"] == "outbox"
    assert "inside the cancellation window, the session has been used" in message["body_text"]


async def test_pages_store_messages_in_the_outbox_without_smtp(app, clinic):
    day = future_day()
    async with factories.make_client(app) as http:
        await factories.login(http, clinic.client)
        response = await factories.post_form(
            http,
            "/appointments",
            {"location": clinic.location_id, "service": clinic.service_id,
             "start": ny(day, 9).isoformat()},
        )  # fmt: skip
        assert response.status_code == 303
        appointment_id = int(response.headers["location"].rsplit("/", 1)[1])
        await factories.post_form(http, f"/appointments/{appointment_id}/cancel")
    rows = await OutboxMessage.select().order_by(OutboxMessage.id).run()
    assert [(r["kind"], r["to_address"], r["transport"], r["status"]) for r in rows] == [
        ("booking_confirmation", clinic.client.email, "outbox", "queued"),
        ("cancellation", clinic.client.email, "outbox", "queued"),
    ]


async def test_pages_deliver_through_smtp_after_answering(db, clinic, settings, smtp_server):
    app = create_app(smtp_server.settings_for(settings), manage_database=False)
    day = future_day()
    async with factories.make_client(app) as http:
        await factories.login(http, clinic.manager)
        response = await factories.post_form(
            http,
            "/appointments",
            {"location": clinic.location_id, "service": clinic.service_id,
             "start": ny(day, 11).isoformat(), "client_email": clinic.client.email},
        )  # fmt: skip
        assert response.status_code == 303
    received = smtp_server.wait_for(1)
    assert len(received) == 1 and received[0].rcpt_tos == [clinic.client.email]
    assert "Booked: NMT 60" in received[0].message["Subject"]


async def test_a_failing_mail_server_never_undoes_a_booking(clinic, settings, smtp_server):
    down = dataclasses.replace(smtp_server.settings_for(settings), smtp_port=free_port())
    appointment_id = await _book(clinic, ny(future_day(), 10), settings=down)
    assert (await bookings.get_appointment(appointment_id))["status"] == bookings.BOOKED
    message = await OutboxMessage.select().first().run()
    assert message["status"] == "failed" and message["error"]


async def test_reminders_go_the_day_before_once(clinic, settings, smtp_server):
    smtp = smtp_server.settings_for(settings)
    day = future_day()
    tomorrow = await _book(clinic, ny(day, 10), notify_client=False)
    later = await _book(clinic, ny(day + timedelta(days=1), 10), notify_client=False)
    evening_before = ny(day - timedelta(days=1), 18)
    run = await notify.send_reminders(now=evening_before, settings=smtp)
    assert (run.sent, run.skipped, run.failed) == (1, 0, 0)
    received = smtp_server.wait_for(1)
    assert received[0].message["Subject"] == "Reminder: NMT 60 tomorrow at 10:00"
    assert f"http://testserver/appointments/{tomorrow}" in received[0].text
    reminded = await bookings.get_appointment(tomorrow)
    assert reminded["reminder_sent_at"] == evening_before
    assert (await bookings.get_appointment(later))["reminder_sent_at"] is None
    # Run again (cron every hour): nothing new.
    again = await notify.send_reminders(now=evening_before + timedelta(hours=1), settings=smtp)
    assert (again.sent, again.failed) == (0, 0)
    assert len(smtp_server.received) == 1
    # Moved to another time tomorrow: a new reminder for the new time.
    await bookings.move(
        clinic.as_manager(), tomorrow, start_at=ny(day, 15), now=evening_before,
        notify_client=False,
    )  # fmt: skip
    moved = await notify.send_reminders(now=evening_before + timedelta(hours=2), settings=smtp)
    assert moved.sent == 1
    assert smtp_server.wait_for(2)[1].message["Subject"] == "Reminder: NMT 60 tomorrow at 15:00"
    # The next evening, the later one; a cancelled one is never reminded.
    cancelled = await _book(clinic, ny(day + timedelta(days=1), 12), notify_client=False)
    await bookings.cancel(clinic.as_client(), cancelled, notify_client=False)
    next_evening = await notify.send_reminders(now=ny(day, 18), settings=smtp)
    assert next_evening.sent == 1
    assert len(smtp_server.wait_for(3)) == 3
    assert await OutboxMessage.count().where(OutboxMessage.kind == "reminder").run() == 3


async def test_reminders_respect_the_preference_and_retry_failures(clinic, settings, smtp_server):
    day = future_day()
    appointment_id = await _book(clinic, ny(day, 10), notify_client=False)
    evening = ny(day - timedelta(days=1), 18)
    await ClientProfile.insert(ClientProfile(user=clinic.client.id, email_reminders=False)).run()
    off = await notify.send_reminders(now=evening, settings=smtp_server.settings_for(settings))
    assert (off.sent, off.skipped) == (0, 1)
    await (
        ClientProfile.update({ClientProfile.email_reminders: True})
        .where(ClientProfile.user == clinic.client.id)
        .run()
    )
    down = dataclasses.replace(smtp_server.settings_for(settings), smtp_port=free_port())
    failed = await notify.send_reminders(now=evening, settings=down)
    assert (failed.sent, failed.failed) == (0, 1)
    assert (await bookings.get_appointment(appointment_id))["reminder_sent_at"] is None
    retried = await notify.send_reminders(now=evening, settings=smtp_server.settings_for(settings))
    assert (retried.sent, retried.failed) == (1, 0)
    assert len(smtp_server.wait_for(1)) == 1
    # One message row: the failed one was sent on the second try.
    rows = await OutboxMessage.select().where(OutboxMessage.kind == "reminder").run()
    assert len(rows) == 1 and rows[0]["status"] == "sent" and rows[0]["attempts"] == 2


def _env(db: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "SMTP_"))}
    url = f"sqlite:///{db.engine.path}" if db.kind == "sqlite" else TEST_DATABASE_URL
    env.update({"DATABASE_URL": url, "SECRET_KEY": "cli-secret-" + "e" * 40})
    return env


async def test_reminders_command_is_cron_safe(db, clinic):
    tomorrow = (datetime.now(NY) + timedelta(days=1)).date()  # in the clinic's zone
    appointment_id = await _book(clinic, ny(tomorrow, 15), notify_client=False)
    env = _env(db)
    first = subprocess.run(
        [PORTAL, "reminders", "send"], env=env, capture_output=True, text=True, timeout=120
    )
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == (
        "Reminders for tomorrow's appointments: 1 sent, 0 skipped (reminders switched off), "
        "0 failed."
    )
    second = subprocess.run(
        [PORTAL, "reminders", "send"], env=env, capture_output=True, text=True, timeout=120
    )
    assert second.returncode == 0 and "0 sent" in second.stdout
    rows = await OutboxMessage.select().where(OutboxMessage.kind == "reminder").run()
    assert len(rows) == 1 and rows[0]["to_address"] == clinic.client.email
    row = await Appointment.select().where(Appointment.id == appointment_id).first().run()
    assert row["reminder_sent_at"] is not None
