"""Outgoing email: the outbox (embedded default) and delivery through a real local SMTP server."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime

import pytest

from portal.email import messages, service
from portal.email.tables import OutboxMessage
from tests.email.smtpd import free_port


async def test_without_smtp_the_message_is_kept_in_the_outbox(db, settings):
    assert settings.smtp_host == ""
    message_id = await service.send(
        "Eve@Example.test ", "welcome", {"name": "Eve <b>Smith</b>"}, "welcome", settings=settings
    )
    row = await OutboxMessage.select().where(OutboxMessage.id == message_id).first().run()
    assert row["to_address"] == "Eve@Example.test"
    assert row["transport"] == "outbox" and row["status"] == "queued"
    assert row["subject"] == "Welcome to Clinic Portal"
    # Text bodies are plain text; the HTML alternative escapes what it is given.
    assert "Hello Eve <b>Smith</b>," in row["body_text"]
    assert "Eve &lt;b&gt;Smith&lt;/b&gt;" in row["body_html"]
    assert f"{settings.base_url}/account/intake" in row["body_text"]
    assert not row["body_text"].startswith("Subject:")
    # Delivering an outbox-only message does nothing.
    assert await service.deliver(message_id, settings=settings) == "queued"


async def test_smtp_delivers_text_and_html_and_records_it(db, settings, smtp_server):
    smtp = smtp_server.settings_for(settings)
    message_id = await messages.send_welcome("casey@example.test", name="Casey", settings=smtp)
    received = smtp_server.wait_for(1)
    assert len(received) == 1
    mail = received[0]
    assert mail.rcpt_tos == ["casey@example.test"]
    assert mail.mail_from == "portal@clinic.test"
    assert mail.message["Subject"] == "Welcome to Clinic Portal"
    assert mail.message["To"] == "casey@example.test"
    assert mail.message["Auto-Submitted"] == "auto-generated"
    assert "Hello Casey," in mail.text
    assert "<h1" in mail.html and "Welcome, Casey" in mail.html
    row = await OutboxMessage.select().where(OutboxMessage.id == message_id).first().run()
    assert row["transport"] == "smtp" and row["status"] == "sent"
    assert row["sent_at"] is not None and row["attempts"] == 1 and row["error"] == ""
    assert row["message_id"] == mail.message["Message-ID"]


async def test_a_dedupe_key_sends_once(db, settings, smtp_server):
    smtp = smtp_server.settings_for(settings)
    first = await service.send(
        "a@example.test", "welcome", {"name": "A"}, "welcome", "job:1", settings=smtp
    )
    again = await service.send(
        "a@example.test", "welcome", {"name": "A"}, "welcome", "job:1", settings=smtp
    )
    assert first == again
    assert await OutboxMessage.count().run() == 1
    await asyncio.sleep(0.2)
    assert len(smtp_server.received) == 1


async def test_concurrent_sends_with_one_dedupe_key_store_and_send_one(db, settings, smtp_server):
    smtp = smtp_server.settings_for(settings)
    ids = await asyncio.gather(
        *[
            service.send(
                "race@example.test", "welcome", {"name": "R"}, "welcome", "race:1", settings=smtp
            )
            for _ in range(6)
        ]
    )
    assert len(set(ids)) == 1
    assert await OutboxMessage.count().run() == 1
    smtp_server.wait_for(1)
    await asyncio.sleep(0.2)
    assert len(smtp_server.received) == 1


async def test_a_failed_delivery_is_recorded_and_retried_once_on_the_same_key(
    db, settings, smtp_server
):
    nobody_listens = dataclasses.replace(smtp_server.settings_for(settings), smtp_port=free_port())
    message_id = await service.send(
        "b@example.test", "welcome", {"name": "B"}, "welcome", "job:2", settings=nobody_listens
    )
    row = await OutboxMessage.select().where(OutboxMessage.id == message_id).first().run()
    assert row["status"] == "failed"
    assert "ConnectionRefused" in row["error"] or "Errno" in row["error"]
    # The job runs again when the server is back: the same message goes out, once.
    smtp = smtp_server.settings_for(settings)
    again = await service.send(
        "b@example.test", "welcome", {"name": "B"}, "welcome", "job:2", settings=smtp
    )
    assert again == message_id
    assert len(smtp_server.wait_for(1)) == 1
    row = await OutboxMessage.select().where(OutboxMessage.id == message_id).first().run()
    assert row["status"] == "sent" and row["attempts"] == 2 and row["error"] == ""
    await service.send(
        "b@example.test", "welcome", {"name": "B"}, "welcome", "job:2", settings=smtp
    )
    await asyncio.sleep(0.2)
    assert len(smtp_server.received) == 1


async def test_a_refused_recipient_is_a_failure_with_the_servers_answer(db, settings, smtp_server):
    smtp = smtp_server.settings_for(settings)
    message_id = await service.send(
        "ghost@reject.test", "welcome", {"name": "G"}, "welcome", settings=smtp
    )
    row = await OutboxMessage.select().where(OutboxMessage.id == message_id).first().run()
    assert row["status"] == "failed"
    assert "550" in row["error"]


@pytest.mark.nodb
def test_a_message_goes_to_one_valid_address_only(settings):
    for bad in ["", "no-at-sign", "a@b.test, c@d.test", "x@y.test\r\nBcc: z@z.test", "a b@c.test"]:
        with pytest.raises(service.EmailError):
            service._clean_address(bad)
    with pytest.raises(service.EmailError):
        service.render("../secrets", {}, settings)


APPOINTMENT = messages.Appointment(
    appointment_id=41,
    service_name="Neuromuscular massage 60 min",
    therapist_name="Theresa Nguyen",
    location_name="Brooklyn Park Slope",
    location_address="212 7th Ave, Brooklyn, NY 11215",
    starts_at=datetime(2026, 6, 2, 16, 0, tzinfo=UTC),
    ends_at=datetime(2026, 6, 2, 17, 0, tzinfo=UTC),
    timezone="America/New_York",
)


async def test_every_message_renders_with_its_documented_context(db, settings):
    receipt = await messages.send_receipt(
        "c@example.test",
        name="Casey",
        receipt_number="R-2026-0007",
        location_name="Austin South Congress",
        paid_at=datetime(2026, 3, 8, 8, 30, tzinfo=UTC),
        timezone="America/Chicago",
        currency="USD",
        lines=[messages.ReceiptLine("5 × Neuromuscular massage 60 min", 52500)],
        tax_cents=4331,
        total_cents=56831,
        payment_method="Visa ending 4242",
        settings=settings,
    )
    confirmation = await messages.send_booking_confirmation(
        "c@example.test",
        name="Casey",
        appointment=APPOINTMENT,
        cancellation_window_hours=48,
        manage_url="http://testserver/account",
        settings=settings,
    )
    cancellation = await messages.send_cancellation(
        "c@example.test",
        name="Casey",
        appointment=APPOINTMENT,
        credit_returned=True,
        late=False,
        book_url="http://testserver/book",
        settings=settings,
    )
    reminder = await messages.send_reminder(
        "c@example.test",
        name="Casey",
        appointment=APPOINTMENT,
        manage_url="http://testserver/account",
        settings=settings,
    )
    rows = {r["id"]: r for r in await OutboxMessage.select().order_by(OutboxMessage.id).run()}
    assert rows[receipt]["subject"] == "Your receipt R-2026-0007 from Austin South Congress"
    assert "$525.00" in rows[receipt]["body_text"]
    assert "Total paid: $568.31" in rows[receipt]["body_text"]
    # 08:30 UTC on the day the US clocks go forward: 03:30 CDT, not 02:30.
    assert "2026-03-08 03:30 (America/Chicago)" in rows[receipt]["body_text"]
    assert rows[receipt]["dedupe_key"] == "receipt:R-2026-0007"
    # Appointment times are shown in the location's zone (16:00 UTC = 12:00 in New York).
    assert rows[confirmation]["subject"] == (
        "Booked: Neuromuscular massage 60 min on Tue 02 Jun at 12:00"
    )
    assert "12:00–13:00 (America/New_York)" in rows[confirmation]["body_text"]
    assert "48 hours" in rows[confirmation]["body_text"]
    assert "returned to your package" in rows[cancellation]["body_text"]
    assert rows[reminder]["subject"] == "Reminder: Neuromuscular massage 60 min tomorrow at 12:00"
    for row in rows.values():
        assert row["body_html"].startswith("<!doctype html>") or "<html" in row["body_html"]
    # The reminder job may run twice; the client gets one reminder per appointment time.
    again = await messages.send_reminder(
        "c@example.test",
        name="Casey",
        appointment=APPOINTMENT,
        manage_url="http://testserver/account",
        settings=settings,
    )
    assert again == reminder
    assert await OutboxMessage.count().run() == 4
