"""A declined card against the stand-in: the client sees what to do next (try another card,
cancel the order) instead of an endless "Confirming…", and orders nobody pays expire in
Stripe and here, through the same steps, on both databases."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from portal.payments import service as payments
from portal.payments.tables import Payment
from portal.sales import service as sales
from portal.sales.tables import Sale
from portal.timeutil import utcnow
from tests import factories
from tests.payments.helpers import Shop, start_purchase
from tests.stripe_standin import StandIn


async def _declined(shop: Shop, standin: StandIn) -> tuple[int, dict[str, Any]]:
    sale_id, payment = await start_purchase(shop)
    await standin.decline_session(payment["checkout_session_id"])
    await standin.drain()
    return sale_id, payment


async def _intent_status(shop: Shop, session_id: str) -> tuple[str, str]:
    session = await shop.gateway.retrieve_checkout_session(session_id)
    assert session.payment_intent_id, "the declined attempt left a PaymentIntent"
    intent = await shop.gateway.retrieve_payment_intent(session.payment_intent_id)
    return session.status, intent.status


async def test_after_a_decline_the_client_may_try_another_card_or_cancel(
    shop, stripe_standin, portal_webhook
):
    sale_id, payment = await _declined(shop, stripe_standin)
    async with factories.make_client(shop.app) as browser:
        await factories.login(browser, shop.client)
        page = await browser.get(f"/purchases/{sale_id}")
        assert page.status_code == 200
        assert "Your card was declined." in page.text
        assert "Confirming your payment" not in page.text and "hx-trigger" not in page.text
        assert "Try another card" in page.text and payment["checkout_url"] in page.text
        assert f'action="/purchases/{sale_id}/cancel"' in page.text

        cancelled = await factories.post_form(browser, f"/purchases/{sale_id}/cancel")
        assert cancelled.status_code == 303
        await stripe_standin.drain()
        again = await factories.post_form(browser, f"/purchases/{sale_id}/cancel")
        assert again.status_code == 303
        after = await browser.get(f"/purchases/{sale_id}")
    assert "nothing was charged" in after.text
    assert (await sales.get_sale(sale_id))["status"] == sales.CANCELLED
    [row] = await Payment.select().where(Payment.sale == sale_id).run()
    assert row["status"] == payments.CANCELLED
    assert await _intent_status(shop, payment["checkout_session_id"]) == ("expired", "canceled")


async def test_another_client_cannot_cancel_the_order(shop, stripe_standin, portal_webhook):
    sale_id, _ = await _declined(shop, stripe_standin)
    stranger = await factories.make_user("client")
    async with factories.make_client(shop.app) as browser:
        await factories.login(browser, stranger)
        refused = await factories.post_form(browser, f"/purchases/{sale_id}/cancel")
    assert refused.status_code in (403, 404)
    assert (await sales.get_sale(sale_id))["status"] == sales.PENDING


async def test_orders_nobody_paid_expire_and_recent_or_paid_ones_stay(
    shop, stripe_standin, portal_webhook
):
    old_declined, declined_payment = await _declined(shop, stripe_standin)
    old_paid, paid_payment = await start_purchase(shop)
    await stripe_standin.complete_session(paid_payment["checkout_session_id"])
    await stripe_standin.drain()
    recent, _ = await start_purchase(shop)
    day_ago = utcnow() - timedelta(hours=25)
    await (
        Sale.update({Sale.created_at: day_ago}).where(Sale.id.is_in([old_declined, old_paid])).run()
    )

    run = await payments.expire_abandoned(shop.gateway)
    await stripe_standin.drain()
    assert (run.expired, run.paid, run.failed) == (1, 0, 0)
    assert (await sales.get_sale(old_declined))["status"] == sales.CANCELLED
    assert (await sales.get_sale(old_paid))["status"] == sales.ACTIVE
    assert (await sales.get_sale(recent))["status"] == sales.PENDING
    assert await _intent_status(shop, declined_payment["checkout_session_id"]) == (
        "expired",
        "canceled",
    )
    # A second run (or the expiry webhook it caused) changes nothing.
    second = await payments.expire_abandoned(shop.gateway)
    assert (second.expired, second.paid, second.failed) == (0, 0, 0)
