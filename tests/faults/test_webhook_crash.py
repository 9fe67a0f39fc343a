"""A crash between storing a webhook event and applying it (or between applying
it and marking it processed): Stripe's retry applies it exactly once.

The portal stores the event id first, applies the event in one transaction,
then marks it processed; a stored event without ``processed_at`` is applied
again on the next delivery, idempotently.
"""

from __future__ import annotations

from typing import Any

import pytest

from portal.ledger.tables import JournalLine
from portal.payments import service as payments
from portal.payments.tables import Payment, StripeEvent
from portal.sales import service as sales
from portal.sales.tables import SaleSession
from portal.timeutil import utcnow
from tests import factories
from tests.payments.conftest import portal_webhook, shop
from tests.payments.helpers import Shop, pay, start_purchase
from tests.stripe_standin import StandIn, WebhookReceiver

__all__ = ["portal_webhook", "shop"]  # the payments tests' fixtures

COMPLETED = "checkout.session.completed"
# A paid sale: Dr clearing, Cr deferred revenue, Cr tax; the Stripe fee: two more.
LINES = 5


async def _exactly_once(sale_id: int) -> None:
    sale = await sales.get_sale(sale_id)
    assert sale["status"] == sales.ACTIVE
    assert await SaleSession.count().where(SaleSession.sale == sale_id).run() == 5
    assert (await sales.session_counts(sale_id)).available == 5
    pays = await payments.payments_of(sale_id)
    assert [p["status"] for p in pays] == [payments.SUCCEEDED]
    assert await JournalLine.count().where(JournalLine.sale_id == sale_id).run() == LINES


def _completed_of(receiver: WebhookReceiver, session_id: str) -> list[Any]:
    return [
        d
        for d in receiver.deliveries
        if d.event["type"] == COMPLETED and d.event["data"]["object"]["id"] == session_id
    ]


async def test_a_crash_while_applying_is_retried_and_applied_once(
    shop: Shop,
    stripe_standin: StandIn,
    portal_webhook: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first delivery stores the event, then dies half-way through the
    sale's activation (the payment row already updated): 500, rolled back.
    Stripe's retry applies it; five more deliveries of each change nothing."""
    activate = sales.activate
    crashes: list[int] = []

    async def crash_once(sale_id: int, **kwargs: Any) -> Any:
        if not crashes:
            crashes.append(sale_id)
            raise RuntimeError("the worker died here")
        return await activate(sale_id, **kwargs)

    monkeypatch.setattr(payments.sales, "activate", crash_once)
    sale_id, completed = await pay(shop, stripe_standin)
    assert crashes == [sale_id]
    # Whichever event came first (the intent's or the session's) failed once
    # and was delivered again.
    ours = {completed["id"], completed["payment_intent"]}
    seen: dict[str, int] = {}
    for delivery in portal_webhook.deliveries:
        obj = delivery.event["data"]["object"]
        if obj.get("id") in ours or obj.get("payment_intent") in ours:
            seen[delivery.event["id"]] = seen.get(delivery.event["id"], 0) + 1
    assert max(seen.values()) >= 2, seen
    await _exactly_once(sale_id)
    stored = await StripeEvent.select().where(StripeEvent.event_id.is_in(list(seen))).run()
    assert len(stored) == len(seen) and all(e["processed_at"] for e in stored)
    for _ in range(5):
        for event_id in seen:
            await stripe_standin.redeliver(event_id)
    await stripe_standin.drain()
    await _exactly_once(sale_id)


async def test_an_event_stored_but_never_applied_is_applied_by_the_next_delivery(
    shop: Shop, stripe_standin: StandIn, webhook_receiver: WebhookReceiver
) -> None:
    """The process stored the event id and was killed before applying it: the
    row is there, unprocessed. The next delivery must not take it for a
    duplicate."""
    sale_id, payment = await start_purchase(shop)
    await stripe_standin.complete_session(payment["checkout_session_id"])
    await stripe_standin.drain()
    (delivery,) = _completed_of(webhook_receiver, payment["checkout_session_id"])
    event = delivery.event
    await StripeEvent.insert(
        StripeEvent(
            event_id=event["id"], type=COMPLETED, received_at=utcnow(), processed_at=None,
            payload="{}",
        )
    ).run()  # fmt: skip
    assert (await sales.get_sale(sale_id))["status"] == sales.PENDING

    async with factories.make_client(shop.app) as stripe:
        headers = {"stripe-signature": delivery.signature, "content-type": "application/json"}
        first = await stripe.post("/stripe/webhook", content=delivery.body, headers=headers)
        again = await stripe.post("/stripe/webhook", content=delivery.body, headers=headers)
    assert first.json() == {"status": "processed"}
    assert again.json() == {"status": "duplicate"}
    await _exactly_once(sale_id)
    assert await StripeEvent.count().where(StripeEvent.event_id == event["id"]).run() == 1


async def test_applied_but_not_marked_processed_is_harmless(
    shop: Shop, stripe_standin: StandIn, portal_webhook: WebhookReceiver
) -> None:
    """The crash came after the transaction committed, before ``processed_at``:
    the retry applies the event again, and nothing doubles."""
    sale_id, completed = await pay(shop, stripe_standin)
    await _exactly_once(sale_id)
    (delivery,) = _completed_of(portal_webhook, completed["id"])
    await (
        StripeEvent.update({StripeEvent.processed_at: None})
        .where(StripeEvent.event_id == delivery.event["id"])
        .run()
    )
    await stripe_standin.redeliver(delivery.event["id"])
    await stripe_standin.drain()
    await _exactly_once(sale_id)
    marked = (
        await StripeEvent.select(StripeEvent.processed_at)
        .where(StripeEvent.event_id == delivery.event["id"])
        .run()
    )
    assert marked[0]["processed_at"] is not None
    assert await Payment.count().where(Payment.sale == sale_id).run() == 1
