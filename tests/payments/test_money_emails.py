"""The client's emails about money, against the stand-in on both databases: a receipt when
a card purchase's webhook activates it (once, however often it is replayed) and when
the desk records a sale, a notice when a refund is done — each naming the clinic."""

from __future__ import annotations

from typing import Any

from portal.email.tables import OutboxMessage
from portal.locations.tables import Location
from portal.payments import service as payments
from portal.sales import service as sales
from tests.payments.helpers import Shop, start_purchase
from tests.stripe_standin import StandIn, WebhookReceiver


async def _outbox(kind: str) -> list[dict[str, Any]]:
    return await OutboxMessage.select().where(OutboxMessage.kind == kind).run()


async def _clinic_name(shop: Shop) -> str:
    row = await Location.select(Location.name).where(Location.id == shop.location_id).first().run()
    assert row is not None
    return str(row["name"])


async def test_a_card_purchase_gets_one_receipt_however_often_stripe_tells(
    shop: Shop, stripe_standin: StandIn, portal_webhook: WebhookReceiver
):
    sale_id, payment = await start_purchase(shop)
    assert await _outbox("receipt") == [], "no receipt before the money arrives"
    await stripe_standin.complete_session(payment["checkout_session_id"])
    await stripe_standin.drain()
    assert (await sales.get_sale(sale_id))["status"] == sales.ACTIVE
    for delivery in list(portal_webhook.deliveries):
        await stripe_standin.redeliver(delivery.event["id"])
    await stripe_standin.drain()

    [receipt] = await _outbox("receipt")
    assert receipt["to_address"] == shop.client.email
    assert receipt["dedupe_key"] == f"receipt:{sale_id:06d}"
    clinic = await _clinic_name(shop)
    assert clinic in receipt["subject"] and clinic in receipt["body_text"]
    assert "$487.13" in receipt["body_text"], receipt["body_text"]


async def test_a_desk_sale_and_its_refund_are_told_to_the_client_once(shop: Shop):
    sale_id = await payments.record_in_clinic_sale(
        shop.manager_user, client_id=shop.client.id, package_id=shop.package_id,
        location_id=shop.location_id, method="cash", request_key="k" * 24,
    )  # fmt: skip
    again = await payments.record_in_clinic_sale(
        shop.manager_user, client_id=shop.client.id, package_id=shop.package_id,
        location_id=shop.location_id, method="cash", request_key="k" * 24,
    )  # fmt: skip
    assert again == sale_id
    [receipt] = await _outbox("receipt")
    assert receipt["to_address"] == shop.client.email and "Cash" in receipt["body_text"]
    assert await _outbox("refund_notice") == [], "nothing refunded yet"

    refund = await payments.refund_sale(
        None, shop.manager_user, sale_id, sessions=2, reason="Moving away",
        request_key="r" * 24,
    )  # fmt: skip
    await payments.refund_sale(
        None, shop.manager_user, sale_id, sessions=2, reason="Moving away",
        request_key="r" * 24,
    )  # fmt: skip
    [notice] = await _outbox("refund_notice")
    assert notice["to_address"] == shop.client.email
    assert notice["dedupe_key"] == f"refund:{refund['id']}"
    clinic = await _clinic_name(shop)
    assert clinic in notice["subject"] and clinic in notice["body_text"]
    assert "2 unused sessions" in notice["body_text"], notice["body_text"]
    assert "at the clinic" in notice["body_text"]
