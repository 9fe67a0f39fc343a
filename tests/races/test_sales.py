"""Sale forms clicked at once: one sale, one journal entry, one Checkout Session.

* the front-desk form (cash) posted N times with its one-time key;
* the client's online ``/buy`` form posted N times with its key: one pending
  sale and one Checkout Session in "Stripe"; every click leads to that one
  purchase (its payment page, or its purchase page for a repeat).
"""

from __future__ import annotations

from typing import Any

from portal.payments.tables import Payment
from portal.sales.tables import Sale
from tests.races.conftest import Clinic, at_once, describe
from tests.races.invariants import assert_whole, rows
from tests.servers import Portal, stripe_client

CLICKS = 6


async def _sales_of(client_id: int) -> list[dict[str, Any]]:
    return await Sale.select().where(Sale.client == client_id).order_by(Sale.id).run()


async def test_front_desk_sale_clicked_at_once(portal: Portal, clinic: Clinic) -> None:
    manager = await portal.signed_in(clinic.manager)
    form = await manager.form(f"/sales/new?location={clinic.location_id}", "/sales")
    form.update(
        client_email=clinic.client.email,
        location_id=str(clinic.location_id),
        package_id=str(clinic.large_package),
        method="cash",
    )

    answers = await at_once(manager.post("/sales", form, process=i) for i in range(CLICKS))

    sales = await _sales_of(clinic.client.id)
    assert [s["status"] for s in sales] == ["active"], f"{CLICKS} clicks made {sales}"
    sale_id = int(sales[0]["id"])
    entries = await rows(
        "SELECT event_key FROM journal_entry WHERE reference = {}", f"sale:{sale_id}"
    )
    assert [e["event_key"] for e in entries] == [f"sale:{sale_id}:paid"]
    payments = await Payment.select().where(Payment.sale == sale_id).run()
    assert [p["status"] for p in payments] == ["succeeded"]
    await assert_whole(portal)
    assert {(a.status_code, a.headers.get("location")) for a in answers} == {
        (303, f"/sales/{sale_id}")
    }, describe(answers)
    assert form.get("request_key"), "the front-desk form carries a one-time request_key"


async def test_online_purchase_clicked_at_once(portal: Portal, clinic: Clinic) -> None:
    client = await portal.signed_in(clinic.client, "client")
    path = f"/buy/{clinic.large_package}"
    form = await client.form(f"{path}?location={clinic.slug}", path)

    answers = await at_once(client.post(path, form, process=i) for i in range(CLICKS))

    sales = await _sales_of(clinic.client.id)
    assert [s["status"] for s in sales] == ["pending"], f"{CLICKS} clicks made {sales}"
    payments = await Payment.select().where(Payment.sale == sales[0]["id"]).run()
    assert len(payments) == 1 and payments[0]["checkout_session_id"], payments
    # The stand-in filters by client_reference_id (Stripe's typed params do not name it).
    params: Any = {"client_reference_id": str(clinic.client.id), "limit": 100}
    async with stripe_client(portal.standin) as stripe:
        listed = await stripe.v1.checkout.sessions.list_async(params)
    sessions = [s for s in listed.data if s.customer_email == clinic.client.email]
    assert [s.id for s in sessions] == [payments[0]["checkout_session_id"]], (
        f"{len(sessions)} Checkout Sessions for one purchase"
    )
    await assert_whole(portal)
    # Each click leads to the one purchase: its payment page, or (a repeat
    # answered while or after the first was made) its purchase page.
    checkout_url = payments[0]["checkout_url"]
    places = {checkout_url, f"/purchases/{sales[0]['id']}"}
    assert all(a.status_code == 303 and a.headers.get("location") in places for a in answers), (
        describe(answers)
    )
    assert any(a.headers.get("location") == checkout_url for a in answers), describe(answers)
    assert form.get("request_key"), "the buy form carries a one-time request_key"
