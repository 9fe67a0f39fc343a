"""Book and pay in one flow: a client without a session of the service picks a free
time, pays for a single session or the introductory offer on the stand-in's Checkout,
and lands with the appointment booked. The time is held while they pay, let go when
the order is abandoned, booked once however often the payment is reported, and a
payment that finds the time gone leaves the paid session in the account."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from portal.auth.service import CLIENT, CurrentUser
from portal.bookings import availability, booking, holds, reading
from portal.bookings.tables import Appointment
from portal.catalog.service import NotAvailable
from portal.catalog.tables import Package, PackagePrice
from portal.errors import Invalid
from portal.ledger.tables import JournalEntry
from portal.onetime import service as onetime
from portal.payments import booked
from portal.payments import service as payments
from portal.payments.tables import Payment
from portal.sales import service as sales
from portal.sales.tables import Sale, SaleSession
from portal.timeutil import utcnow
from tests import factories
from tests.conftest import using_app
from tests.factories import future_day, ny

SINGLE, INTRO = 12000, 6000


async def _package(service_id: int, name: str, price: int, *, introductory: bool) -> int:
    now = utcnow() - timedelta(days=1)
    package = (
        await Package.insert(
            Package(
                name=name, service=service_id, sessions=1, validity_days=90,
                sellable_online=True, active=True, introductory=introductory, created_at=now,
            )
        ).returning(Package.id).run()
    )[0]["id"]  # fmt: skip
    await PackagePrice.insert(
        PackagePrice(package=package, amount_cents=price, currency="USD", effective_from=now)
    ).run()
    return int(package)


@pytest.fixture
async def offers(clinic) -> dict[str, int]:
    return {
        "single": await _package(clinic.service_id, "Single NMT 60", SINGLE, introductory=False),
        "intro": await _package(clinic.service_id, "First visit NMT 60", INTRO, introductory=True),
    }


async def _newcomer() -> tuple[factories.Account, CurrentUser]:
    account = await factories.make_user(CLIENT)
    return account, CurrentUser(account.id, account.email, "", CLIENT, frozenset())


async def _start(gateway, clinic, user: CurrentUser, package_id: int, hour: int = 10, **kw: Any):
    return await booked.book_and_pay(
        gateway, user, location_id=clinic.location_id, service_id=clinic.service_id,
        start_at=ny(future_day(), hour), therapist_id=None, package_id=package_id,
        base_url="http://testserver", **kw,
    )  # fmt: skip


async def _hold(sale_id: int) -> dict[str, Any]:
    row = await holds.hold_of_sale(sale_id)
    assert row is not None
    return row


async def _pay(standin, receiver, sale_id: int) -> dict[str, Any]:
    """Pay on the stand-in's page; the completed event as Stripe sent it."""
    [payment] = await Payment.select().where(Payment.sale == sale_id).run()
    session_id = payment["checkout_session_id"]
    await standin.complete_session(session_id)
    await standin.drain()
    [delivery] = await receiver.wait_for(
        "checkout.session.completed", lambda e: e["data"]["object"]["id"] == session_id
    )
    return delivery.event


async def _free_starts(clinic) -> set[Any]:
    slots = await availability.free_slots(clinic.location_id, clinic.service_id, future_day())
    return {slot.start for slot in slots}


async def test_the_paid_time_is_booked_once_whichever_report_comes_first(
    clinic, offers, stripe_gateway, stripe_standin, webhook_receiver
):
    _, user = await _newcomer()
    checkout = await _start(stripe_gateway, clinic, user, offers["single"])
    assert checkout.url
    hold = await _hold(checkout.sale_id)
    assert hold["status"] == "held" and hold["sale_session"] is None
    assert hold["hold_until"] > utcnow() + timedelta(minutes=30)
    # Held: not offered, and refused to anyone else by the database's rules.
    assert ny(future_day(), 10) not in await _free_starts(clinic)
    with pytest.raises(booking.SlotTaken):
        await booking.book(
            clinic.as_client(), client_id=clinic.client.id, location_id=clinic.location_id,
            service_id=clinic.service_id, start_at=ny(future_day(), 10),
        )  # fmt: skip

    event = await _pay(stripe_standin, webhook_receiver, checkout.sale_id)
    session_id = event["data"]["object"]["id"]
    # The return page first, then the webhook, then both again.
    await payments.settle_return(stripe_gateway, checkout.sale_id, session_id)
    handler = payments.HANDLERS["checkout.session.completed"]
    for _ in range(2):
        await handler(stripe_gateway, event["data"]["object"])
        await payments.settle_return(stripe_gateway, checkout.sale_id, session_id)

    sale = await sales.get_sale(checkout.sale_id)
    assert sale["status"] == sales.ACTIVE and sale["total_cents"] == SINGLE
    [credit] = await SaleSession.select().where(SaleSession.sale == checkout.sale_id).run()
    booked_row = await _hold(checkout.sale_id)
    assert booked_row["status"] == "booked" and booked_row["sale_session"] == credit["id"]
    assert credit["state"] == sales.HELD and credit["appointment_id"] == booked_row["id"]
    mine = await Appointment.select().where(Appointment.client == user.id).run()
    assert len(mine) == 1
    entries = await _entries(checkout.sale_id)
    assert entries.count(f"sale:{checkout.sale_id}:paid") == 1


async def _entries(sale_id: int) -> list[str]:
    rows = await JournalEntry.select(JournalEntry.event_key).where(
        JournalEntry.reference == f"sale:{sale_id}"
    )
    return [str(r["event_key"]) for r in rows]


async def test_a_time_lost_while_paying_leaves_the_paid_session(
    clinic, offers, stripe_gateway, stripe_standin, webhook_receiver
):
    _, user = await _newcomer()
    checkout = await _start(stripe_gateway, clinic, user, offers["single"])
    hold = await _hold(checkout.sale_id)
    past = utcnow() - timedelta(minutes=1)
    await Appointment.update({Appointment.hold_until: past}).where(Appointment.id == hold["id"])
    # The hold lapsed: the time is offered again and someone else takes it.
    assert ny(future_day(), 10) in await _free_starts(clinic)
    other = await booking.book(
        clinic.as_client(), client_id=clinic.client.id, location_id=clinic.location_id,
        service_id=clinic.service_id, start_at=ny(future_day(), 10), notify_client=False,
    )  # fmt: skip

    event = await _pay(stripe_standin, webhook_receiver, checkout.sale_id)
    await payments.HANDLERS["checkout.session.completed"](stripe_gateway, event["data"]["object"])

    assert (await sales.get_sale(checkout.sale_id))["status"] == sales.ACTIVE
    [credit] = await SaleSession.select().where(SaleSession.sale == checkout.sale_id).run()
    assert credit["state"] == sales.AVAILABLE  # paid, kept, free to book another time
    assert (await _hold(checkout.sale_id))["status"] == "cancelled"
    busy = await Appointment.select(Appointment.id).where(
        Appointment.status.is_in(["booked", "held"])
        & (Appointment.start_at == ny(future_day(), 10))
    )
    assert [row["id"] for row in busy] == [other]


async def test_an_abandoned_order_lets_the_time_go(
    clinic, offers, stripe_gateway, stripe_standin, webhook_receiver
):
    _, user = await _newcomer()
    first = await _start(stripe_gateway, clinic, user, offers["single"])
    assert await payments.cancel_order(stripe_gateway, user, first.sale_id)
    assert (await _hold(first.sale_id))["status"] == "cancelled"
    assert ny(future_day(), 10) in await _free_starts(clinic)
    # An order whose hold lapsed is closed by the abandoned-orders job.
    second = await _start(stripe_gateway, clinic, user, offers["single"], hour=11)
    later = utcnow() + booked.HOLD_FOR + timedelta(minutes=1)
    run = await payments.expire_abandoned(stripe_gateway, now=later)
    assert run.expired == 1
    assert (await sales.get_sale(second.sale_id))["status"] == sales.CANCELLED
    assert (await _hold(second.sale_id))["status"] == "cancelled"
    assert await reading.client_appointments(user.id) == []  # no appointment was ever booked


async def test_the_introductory_offer_is_sold_once_per_client(
    clinic, offers, stripe_gateway, stripe_standin, webhook_receiver
):
    _, user = await _newcomer()
    listed = await booked.single_offers(user.id, clinic.location_id, clinic.service_id)
    assert [o.package_id for o in listed] == [offers["intro"], offers["single"]]
    assert listed[0].introductory and listed[0].total_cents == INTRO
    first = await _start(stripe_gateway, clinic, user, offers["intro"])
    listed = await booked.single_offers(user.id, clinic.location_id, clinic.service_id)
    assert [o.package_id for o in listed] == [offers["single"]]

    # Claimed while the first order is open: no longer offered, refused here and by the
    # claim itself when bought another way; nothing held or sold.
    with pytest.raises(NotAvailable):
        await _start(stripe_gateway, clinic, user, offers["intro"], hour=12)
    with pytest.raises(NotAvailable):
        await payments.start_checkout(
            stripe_gateway, client_id=user.id, client_email=user.email,
            package_id=offers["intro"], location_id=clinic.location_id,
            base_url="http://testserver",
        )  # fmt: skip
    held = await Appointment.select().where(Appointment.client == user.id).run()
    assert [row["status"] for row in held] == ["held"]
    assert await Sale.count().where(Sale.client == user.id).run() == 1

    # The first order abandoned: the offer may be taken again, once.
    await payments.cancel_order(stripe_gateway, user, first.sale_id)
    again = await _start(stripe_gateway, clinic, user, offers["intro"], hour=12)
    await _pay(stripe_standin, webhook_receiver, again.sale_id)
    event = webhook_receiver.events("checkout.session.completed")[-1]
    await payments.HANDLERS["checkout.session.completed"](stripe_gateway, event["data"]["object"])
    assert (await _hold(again.sale_id))["status"] == "booked"
    assert await sales.had_introductory(user.id)


async def test_refusals_hold_and_sell_nothing(clinic, offers, stripe_gateway, stripe_standin):
    _, user = await _newcomer()
    five = 999_999  # not a single-session offer of this clinic
    with pytest.raises(Invalid) as refused:
        await _start(stripe_gateway, clinic, user, five)
    assert refused.value.errors == {"package": booked.CHOOSE_OFFER}
    await booking.book(
        clinic.as_client(), client_id=clinic.client.id, location_id=clinic.location_id,
        service_id=clinic.service_id, start_at=ny(future_day(), 10), notify_client=False,
    )  # fmt: skip
    with pytest.raises(booking.SlotTaken):
        await _start(stripe_gateway, clinic, user, offers["single"])
    with pytest.raises(Invalid):
        await booked.book_and_pay(
            stripe_gateway, user, location_id=clinic.location_id, service_id=clinic.service_id,
            start_at=utcnow() - timedelta(hours=1), therapist_id=None,
            package_id=offers["single"], base_url="http://testserver",
        )  # fmt: skip
    assert await Appointment.count().where(Appointment.client == user.id).run() == 0
    assert await Sale.count().where(Sale.client == user.id).run() == 0


async def test_the_same_form_sent_twice_starts_one_order(
    clinic, offers, stripe_gateway, stripe_standin
):
    _, user = await _newcomer()
    key = onetime.new_key()
    first = await _start(stripe_gateway, clinic, user, offers["single"], request_key=key)
    again = await _start(stripe_gateway, clinic, user, offers["single"], request_key=key)
    assert again.sale_id == first.sale_id and again.url == first.url
    assert await Appointment.count().where(Appointment.client == user.id).run() == 1


# -- the pages -----------------------------------------------------------------------


async def test_a_newcomer_books_and_pays_through_the_pages(
    clinic, offers, stripe_settings, stripe_standin, webhook_receiver
):
    account, _ = await _newcomer()
    day = future_day()
    async with using_app(stripe_settings) as app, factories.make_client(app) as browser:
        await factories.login(browser, account)
        page = await browser.get(
            f"/appointments/new?location={clinic.location_id}&service={clinic.service_id}&day={day}"
        )
        assert "You have no unused session of this service." in page.text
        assert 'action="/appointments/checkout"' in page.text
        start = ny(day, 10).isoformat()
        query = {"location": clinic.location_id, "service": clinic.service_id, "start": start}
        chosen = await browser.get("/appointments/checkout", params=query)
        assert chosen.status_code == 200
        assert "First visit NMT 60" in chosen.text and "Introductory offer" in chosen.text
        assert "10:00" in chosen.text and 'name="request_key"' in chosen.text

        unreadable = await browser.get("/appointments/checkout", params={**query, "start": "noon"})
        assert unreadable.status_code == 422
        assert factories.field_error(unreadable.text, "start") == "Choose one of the free times."
        missing = await factories.post_form(browser, "/appointments/checkout", query)
        assert missing.status_code == 422
        assert factories.field_error(missing.text, "package") == booked.CHOOSE_OFFER
        assert "10:00" in missing.text  # the time chosen is kept

        form = {**query, "package": offers["intro"], "request_key": onetime.new_key()}
        sent = await factories.post_form(browser, "/appointments/checkout", form)
        assert sent.status_code == 303
        assert sent.headers["location"].startswith(stripe_standin.base_url)
        [sale] = await Sale.select().where(Sale.client == account.id).run()
        waiting = await browser.get(f"/purchases/{sale['id']}")
        assert "We are holding" in waiting.text and "Cancel this order" in waiting.text

        event = await _pay(stripe_standin, webhook_receiver, int(sale["id"]))
        session_id = event["data"]["object"]["id"]
        back = await browser.get(f"/purchases/{sale['id']}", params={"session_id": session_id})
        assert back.status_code == 200
        assert "Your appointment is booked" in back.text

        taken = await factories.post_form(
            browser, "/appointments/checkout",
            {**query, "package": offers["single"], "request_key": onetime.new_key()},
        )  # fmt: skip
        assert taken.status_code == 409
        assert "taken a moment ago" in (factories.field_error(taken.text, "start") or "")
    assert (await _hold(int(sale["id"])))["status"] == "booked"
    assert await Sale.count().where(Sale.client == account.id).run() == 1
