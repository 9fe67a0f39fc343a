"""Appointment actions under the sale's lock: disputed packages, chargebacks, repeated forms."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from portal.bookings import service as bookings
from portal.email.tables import OutboxMessage
from portal.ledger import service as ledger
from portal.ledger.tables import JournalEntry
from portal.onetime import service as onetime
from portal.payments import service as payments
from portal.payments.tables import Dispute, Payment
from portal.sales import service as sales
from portal.timeutil import utcnow
from portal.web.forms import ValidationFailed

NY = ZoneInfo("America/New_York")


def ny(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=NY)


def soon(days: int = 10) -> date:
    return (utcnow() + timedelta(days=days)).astimezone(NY).date()


async def _book(clinic, day: date, hour: int = 9) -> int:
    return await bookings.book(
        clinic.as_client(), client_id=clinic.client.id, location_id=clinic.location_id,
        service_id=clinic.service_id, start_at=ny(day, hour),
    )  # fmt: skip


async def test_a_disputed_package_session_cannot_be_completed(clinic) -> None:
    day = soon()
    appointment_id = await _book(clinic, day)
    await sales.set_frozen(clinic.sale_id, True)
    with pytest.raises(ValidationFailed) as refused:
        await bookings.complete(clinic.as_therapist(), appointment_id, now=ny(day, 10))
    assert "disputed" in refused.value.errors["status"]
    assert (await bookings.get_appointment(appointment_id))["status"] == bookings.BOOKED
    assert await ledger.balance("service_revenue") == 0
    await sales.set_frozen(clinic.sale_id, False)
    await bookings.complete(clinic.as_therapist(), appointment_id, now=ny(day, 10))
    assert await ledger.balance("service_revenue") == 9000


async def test_a_repeated_complete_or_cancel_form_acts_once(clinic) -> None:
    day = soon()
    first = await _book(clinic, day, 9)
    key = onetime.new_key()
    for _ in range(2):
        await bookings.complete(clinic.as_therapist(), first, now=ny(day, 10), request_key=key)
    assert await JournalEntry.count().where(JournalEntry.kind == "session_completed").run() == 1
    second = await _book(clinic, day, 11)
    key = onetime.new_key()
    outcomes = [
        await bookings.cancel(clinic.as_client(), second, request_key=key, notify_client=False)
        for _ in range(2)
    ]
    assert outcomes == [bookings.CANCELLED, bookings.CANCELLED]
    # Without the key the repeat is refused with a reason, never a second effect.
    with pytest.raises(ValidationFailed):
        await bookings.cancel(clinic.as_client(), second, notify_client=False)
    counts = await sales.session_counts(clinic.sale_id)
    assert (counts.redeemed, counts.available, counts.held) == (1, 4, 0)


async def test_a_lost_chargeback_releases_booked_sessions_and_tells_the_client(clinic) -> None:
    day = soon()
    booked = await _book(clinic, day)
    sale = await sales.get_sale(clinic.sale_id)
    payment = await Payment.select().where(Payment.sale == clinic.sale_id).first().run()
    if payment is None:
        payment_id = (
            await Payment.insert(
                Payment(sale=clinic.sale_id, location=clinic.location_id, provider="stripe",
                        method="card", status="succeeded",
                        amount_cents=sale["total_cents"], currency="USD", created_at=utcnow(),
                        charge_id="ch_disputed")
            ).returning(Payment.id).run()
        )[0]["id"]  # fmt: skip
    else:
        payment_id = payment["id"]
    await Dispute.insert(
        Dispute(sale=clinic.sale_id, payment=payment_id, stripe_dispute_id="dp_1",
                amount_cents=sale["total_cents"], currency="USD", status="needs_response",
                created_at=utcnow())
    ).run()  # fmt: skip
    row = await Dispute.select().where(Dispute.stripe_dispute_id == "dp_1").first().run()
    async with sales.locked(clinic.sale_id) as locked:
        row = await payments._book_withdrawal(row, locked, 1500, None)
        await Dispute.update({Dispute.outcome: "lost"}).where(Dispute.id == row["id"]).run()
        released = await payments._book_chargeback(row, locked)
    assert released == [booked]
    assert (await bookings.get_appointment(booked))["status"] == bookings.CANCELLED
    counts = await sales.session_counts(clinic.sale_id)
    assert counts.revoked == 5 and counts.held == 0
    await bookings.notify_released(released, payments.CHARGEBACK_REASON)
    mail = await OutboxMessage.select().order_by(OutboxMessage.id, ascending=False).first().run()
    assert mail is not None and "reversed" in mail["body_text"]
    # Nothing of the sale is left in the books but the dispute fee and the lost cash.
    assert await ledger.balance("deferred_revenue", sale_id=clinic.sale_id) == 0
    assert await ledger.balance("disputed_funds", sale_id=clinic.sale_id) == 0
    # And the released session can never be completed.
    with pytest.raises(ValidationFailed):
        await bookings.complete(clinic.as_therapist(), booked, now=ny(day, 10))
