"""Buying, the webhook, refunds and disputes against the Stripe stand-in, on both databases."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from portal.ledger import service as ledger
from portal.ledger.tables import JournalLine
from portal.payments import service as payments
from portal.payments import webhooks
from portal.payments.gateway import StripeGateway
from portal.payments.tables import Dispute, Payment, Refund, StripeEvent
from portal.sales import service as sales
from tests import factories
from tests.payments.helpers import Shop
from tests.payments.helpers import as_user as _user
from tests.stripe_standin import StandIn, WebhookReceiver


async def _buy(shop: Shop, standin: StandIn) -> tuple[int, dict[str, Any]]:
    checkout = await payments.start_checkout(
        shop.gateway,
        client_id=shop.client.id,
        client_email=shop.client.email,
        package_id=shop.package_id,
        location_id=shop.location_id,
        base_url="http://testserver",
    )
    payment = await Payment.select().where(Payment.id == checkout.payment_id).first().run()
    assert payment["checkout_session_id"] and checkout.url
    completed = await standin.complete_session(payment["checkout_session_id"])
    await standin.drain()
    return checkout.sale_id, completed


async def test_online_purchase_is_activated_by_the_webhook_exactly_once(
    shop, stripe_standin, portal_webhook
):
    sale_id, _ = await _buy(shop, stripe_standin)
    sale = await sales.get_sale(sale_id)
    assert sale["status"] == sales.ACTIVE
    # Tax is added at 8.25 %: 450.00 + 37.13 (half-up) = 487.13.
    assert (sale["net_cents"], sale["tax_cents"], sale["total_cents"]) == (45000, 3713, 48713)
    counts = await sales.session_counts(sale_id)
    assert counts.available == 5 and counts.total == 5
    payment = (await payments.payments_of(sale_id))[0]
    assert payment["status"] == payments.SUCCEEDED and payment["payment_intent_id"]
    # The stand-in's fee: 2.9 % + 30 cents.
    assert payment["fee_cents"] == round(48713 * 0.029 + 30)
    assert payment["net_cents"] == 48713 - payment["fee_cents"]
    assert await ledger.balance("deferred_revenue", sale_id=sale_id) == 45000
    assert await ledger.balance("tax_payable", sale_id=sale_id) == 3713
    assert await ledger.balance("processing_fees", sale_id=sale_id) == payment["fee_cents"]
    # Every delivery of the completed event (and its repeats) leaves one state.
    completed = [
        d.event
        for d in portal_webhook.deliveries
        if d.event["type"] == "checkout.session.completed"
    ]
    assert completed
    for _ in range(20):
        await stripe_standin.redeliver(completed[0]["id"])
    await stripe_standin.drain()
    assert await sales.session_counts(sale_id) == counts
    assert await JournalLine.count().where(JournalLine.sale_id == sale_id).run() == 5
    assert len(await payments.payments_of(sale_id)) == 1


async def test_success_page_never_activates(shop, stripe_standin):
    checkout = await payments.start_checkout(
        shop.gateway,
        client_id=shop.client.id,
        client_email=shop.client.email,
        package_id=shop.package_id,
        location_id=shop.location_id,
        base_url="http://testserver",
    )
    async with factories.make_client(shop.app) as client:
        await factories.login(client, shop.client)
        page = await client.get(f"/purchases/{checkout.sale_id}?session_id=cs_whatever")
        assert page.status_code == 200 and "Confirming your payment" in page.text
        assert 'hx-trigger="every 2s"' in page.text
    assert (await sales.get_sale(checkout.sale_id))["status"] == sales.PENDING


async def test_webhook_rejects_bad_signature_and_accepts_unknown_types(shop, stripe_standin):
    import hashlib
    import hmac
    import time

    body = json.dumps(
        {
            "id": "evt_unknown_1",
            "object": "event",
            "type": "customer.created",
            "data": {"object": {}},
        }
    )
    async with factories.make_client(shop.app) as client:
        bad = await client.post(
            "/stripe/webhook",
            content=body,
            headers={"stripe-signature": "t=1,v1=deadbeef", "content-type": "application/json"},
        )
        assert bad.status_code == 400
        assert await StripeEvent.count().run() == 0
        t = int(time.time())
        signature = hmac.new(
            stripe_standin.webhook_secret.encode(), f"{t}.{body}".encode(), hashlib.sha256
        ).hexdigest()
        good = await client.post(
            "/stripe/webhook",
            content=body,
            headers={
                "stripe-signature": f"t={t},v1={signature}",
                "content-type": "application/json",
            },
        )
        assert good.status_code == 200 and good.json() == {"status": "unhandled"}
        again = await client.post(
            "/stripe/webhook",
            content=body,
            headers={
                "stripe-signature": f"t={t},v1={signature}",
                "content-type": "application/json",
            },
        )
        assert again.json() == {"status": "duplicate"}


async def test_abandoned_checkout_expires_the_pending_sale(shop, stripe_standin, portal_webhook):
    checkout = await payments.start_checkout(
        shop.gateway,
        client_id=shop.client.id,
        client_email=shop.client.email,
        package_id=shop.package_id,
        location_id=shop.location_id,
        base_url="http://testserver",
    )
    payment = await Payment.select().where(Payment.id == checkout.payment_id).first().run()
    await stripe_standin.expire_session_now(payment["checkout_session_id"])
    await stripe_standin.drain()
    assert (await sales.get_sale(checkout.sale_id))["status"] == sales.CANCELLED
    assert await JournalLine.count().run() == 0


async def test_staff_refund_of_two_unused_sessions(shop, stripe_standin, portal_webhook):
    sale_id, _ = await _buy(shop, stripe_standin)
    manager = _user(shop.manager, frozenset({shop.location_id}))
    quote = await payments.quote_refund(await sales.get_sale(sale_id), 2, payments.RULE_PRO_RATA)
    refund = await payments.refund_sale(
        shop.gateway,
        manager,
        sale_id,
        sessions=2,
        reason="Moving away",
        rule=payments.RULE_PRO_RATA,
    )
    assert refund["status"] == payments.SUCCEEDED
    assert refund["amount_cents"] == quote.amount_cents == 2 * (48713 // 5)
    counts = await sales.session_counts(sale_id)
    assert (counts.available, counts.revoked) == (3, 2)
    await stripe_standin.drain()
    # The refund's own webhooks do not record it a second time.
    assert await Refund.count().where(Refund.sale == sale_id).run() == 1
    assert await sales.session_counts(sale_id) == counts
    # Liability left: the net value of three sessions.
    assert await ledger.balance("deferred_revenue", sale_id=sale_id) == 3 * 9000
    assert await ledger.balance("stripe_clearing", sale_id=sale_id) == (
        48713 - refund["amount_cents"] - (await payments.payments_of(sale_id))[0]["fee_cents"]
    )


async def test_refund_needs_reason_and_unused_sessions_and_scope(
    shop, stripe_standin, portal_webhook
):
    sale_id, _ = await _buy(shop, stripe_standin)
    manager = _user(shop.manager, frozenset({shop.location_id}))
    with pytest.raises(payments.Invalid) as missing_reason:
        await payments.refund_sale(shop.gateway, manager, sale_id, sessions=1, reason=" ")
    assert "reason" in missing_reason.value.errors
    with pytest.raises(payments.Invalid) as too_many:
        await payments.refund_sale(shop.gateway, manager, sale_id, sessions=6, reason="x")
    assert "between 1 and 5" in too_many.value.errors["sessions"]
    other = _user(await factories.make_user("manager"), frozenset({999}))
    with pytest.raises(payments.Forbidden):
        await payments.refund_sale(shop.gateway, other, sale_id, sessions=1, reason="x")
    assert await Refund.count().run() == 0


async def test_list_price_rule_never_refunds_more_than_paid(shop, stripe_standin, portal_webhook):
    sale_id, _ = await _buy(shop, stripe_standin)
    manager = _user(shop.manager, frozenset({shop.location_id}))
    # Two sessions used: the list-price rule charges them at the single price.
    from portal.sales.tables import SaleSession

    for position in (1, 2):
        await (
            SaleSession.update({SaleSession.state: sales.REDEEMED})
            .where((SaleSession.sale == sale_id) & (SaleSession.position == position))
            .run()
        )
    quote = await payments.quote_refund(await sales.get_sale(sale_id), 3, payments.RULE_LIST_PRICE)
    unit_gross = 10000 + 825  # list price plus 8.25 % tax
    assert quote.amount_cents == 48713 - 2 * unit_gross
    refund = await payments.refund_sale(
        shop.gateway, manager, sale_id, sessions=3, reason="Injury", rule=payments.RULE_LIST_PRICE
    )
    assert refund["amount_cents"] == quote.amount_cents
    assert (await sales.get_sale(sale_id))["status"] == sales.ACTIVE  # used sessions remain
    again = await payments.quote_refund(await sales.get_sale(sale_id), 0)
    assert again.sessions == 0


async def test_stripe_unreachable_leaves_refund_pending_with_its_sessions_reserved(
    shop, stripe_standin, portal_webhook
):
    sale_id, _ = await _buy(shop, stripe_standin)
    manager = _user(shop.manager, frozenset({shop.location_id}))
    dead = StripeGateway(api_key="sk_test_x", api_base="http://127.0.0.1:9", max_network_retries=0)
    refund = await payments.refund_sale(dead, manager, sale_id, sessions=1, reason="Test")
    assert refund["status"] == payments.PENDING and refund["error"]
    # Reserved while the outcome is unknown: nobody can book or refund it twice.
    assert (await sales.session_counts(sale_id)).available == 4
    journal = await ledger.balance("deferred_revenue", sale_id=sale_id)
    assert journal == (await sales.get_sale(sale_id))["net_cents"]  # nothing journalled yet
    # Retried with the same idempotency key once Stripe answers again.
    retried = await payments.retry_refund(shop.gateway, manager, refund["id"])
    assert retried["status"] == payments.SUCCEEDED
    assert (await sales.session_counts(sale_id)).available == 4


async def test_dashboard_refund_is_recorded_as_external(shop, stripe_standin, portal_webhook):
    sale_id, _ = await _buy(shop, stripe_standin)
    payment = (await payments.payments_of(sale_id))[0]
    response = await stripe_standin.api(
        "POST", "/v1/refunds", {"payment_intent": payment["payment_intent_id"], "amount": 48713}
    )
    assert response.status_code == 200, response.text
    await stripe_standin.drain()
    refunds = await payments.refunds_of(sale_id)
    assert len(refunds) == 1 and refunds[0]["external"] and refunds[0]["amount_cents"] == 48713
    counts = await sales.session_counts(sale_id)
    assert counts.revoked == 5
    assert (await sales.get_sale(sale_id))["status"] == sales.REFUNDED
    assert await ledger.balance("deferred_revenue", sale_id=sale_id) == 0


async def test_dispute_freezes_then_lost_revokes(shop, stripe_standin, portal_webhook):
    sale_id, _ = await _buy(shop, stripe_standin)
    payment = (await payments.payments_of(sale_id))[0]
    dispute = await stripe_standin.open_dispute(payment["charge_id"])
    await stripe_standin.drain()
    assert (await sales.get_sale(sale_id))["frozen"]
    await stripe_standin.close_dispute(dispute["id"], "lost")
    await stripe_standin.drain()
    sale = await sales.get_sale(sale_id)
    assert not sale["frozen"] and sale["status"] == sales.REFUNDED
    row = await Dispute.select().where(Dispute.sale == sale_id).first().run()
    assert row["outcome"] == "lost"
    assert await ledger.balance("deferred_revenue", sale_id=sale_id) == 0


async def test_in_clinic_sale_is_active_at_once(shop):
    manager = _user(shop.manager, frozenset({shop.location_id}))
    sale_id = await payments.record_in_clinic_sale(
        manager, client_id=shop.client.id, package_id=shop.package_id,
        location_id=shop.location_id, method="cash",
    )  # fmt: skip
    sale = await sales.get_sale(sale_id)
    assert sale["status"] == sales.ACTIVE and sale["payment_method"] == "cash"
    assert await ledger.balance("cash_on_hand", sale_id=sale_id) == 48713
    refund = await payments.refund_sale(None, manager, sale_id, sessions=5, reason="Changed mind")
    assert refund["status"] == payments.SUCCEEDED
    assert await ledger.balance("cash_on_hand", sale_id=sale_id) == 0


# -- repeated and out-of-order delivery -------------------------------------------------


async def _scenario_events(
    shop: Shop, standin: StandIn, receiver: WebhookReceiver
) -> list[dict[str, Any]]:
    """A purchase, a partial dashboard refund, and a dispute opened and won,
    as the events Stripe sent for them (not yet given to the portal)."""
    checkout = await payments.start_checkout(
        shop.gateway,
        client_id=shop.client.id,
        client_email=shop.client.email,
        package_id=shop.package_id,
        location_id=shop.location_id,
        base_url="http://testserver",
    )
    payment = await Payment.select().where(Payment.id == checkout.payment_id).first().run()
    session = await standin.complete_session(payment["checkout_session_id"])
    intent_id = session["payment_intent"]
    intent = await shop.gateway.retrieve_payment_intent(intent_id)
    charge_id = intent.latest_charge_id
    refund = await standin.api("POST", "/v1/refunds", {"payment_intent": intent_id, "amount": 9742})
    assert refund.status_code == 200, refund.text
    dispute = await standin.open_dispute(charge_id, amount=10000)
    await standin.close_dispute(dispute["id"], "won")
    await standin.fire_event(
        {
            "type": "payment_intent.payment_failed",
            "data": {"object": {"id": intent_id, "object": "payment_intent",
                                "metadata": {"sale_id": str(checkout.sale_id)},
                                "last_payment_error": {"message": "Your card was declined."}}},
        }
    )  # fmt: skip
    await standin.drain()

    def ours(event: dict[str, Any]) -> bool:
        obj = event["data"]["object"]
        return (
            obj.get("id") in (session["id"], intent_id, charge_id, dispute["id"])
            or obj.get("payment_intent") == intent_id
            or obj.get("charge") == charge_id
        )

    wanted = [
        "checkout.session.completed",
        "payment_intent.payment_failed",
        "charge.refunded",
        "refund.created",
        "charge.dispute.created",
        "charge.dispute.closed",
    ]
    events = {e["type"]: e for e in receiver.events() if ours(e) and e["type"] in wanted}
    assert set(events) == set(wanted), sorted(events)
    return [events[t] for t in wanted] + [{"_sale_id": checkout.sale_id}]


async def _state(sale_id: int) -> tuple[Any, ...]:
    sale = await sales.get_sale(sale_id)
    sessions = tuple(r["state"] for r in await sales.sessions_of(sale_id))
    pays = tuple(
        (p["status"], p["amount_cents"], p["fee_cents"])
        for p in await payments.payments_of(sale_id)
    )
    refunds = tuple(
        sorted(
            (r["amount_cents"], r["sessions_revoked"], r["status"])
            for r in await payments.refunds_of(sale_id)
        )
    )
    disputes = tuple((d["outcome"], d["amount_cents"]) for d in await payments.disputes_of(sale_id))
    lines = await JournalLine.select().where(JournalLine.sale_id == sale_id).run()
    balances = tuple(
        sorted(
            (
                acct,
                sum(
                    int(line["debit_cents"]) - int(line["credit_cents"])
                    for line in lines
                    if line["account"] == acct
                ),
            )
            for acct in {line["account"] for line in lines}
        )
    )
    return (sale["status"], sale["frozen"], sessions, pays, refunds, disputes, balances)


async def test_every_pair_order_and_repeats_end_in_the_same_state(
    shop, stripe_standin, webhook_receiver
):
    """Each ordered pair of events first, then the rest in order, then 20-fold repeats."""
    baseline: tuple[Any, ...] | None = None
    types = 6
    orders = [None, *itertools.permutations(range(types), 2)]
    for order in orders:
        *events, marker = await _scenario_events(shop, stripe_standin, webhook_receiver)
        sale_id = marker["_sale_id"]
        sequence = (
            list(range(types))
            if order is None
            else [*order, *(i for i in range(types) if i not in order)]
        )
        for index in sequence:
            await webhooks.handle_event(shop.gateway, events[index])
        if order is None:
            baseline = await _state(sale_id)
            # In order: active, one session refunded, dispute won, nothing frozen.
            assert baseline[0] == sales.ACTIVE and baseline[1] is False
            assert baseline[2].count(sales.REVOKED) == 1
            continue
        assert await _state(sale_id) == baseline, f"order {order}"
        for _ in range(20):
            for index in order:
                assert await webhooks.handle_event(shop.gateway, events[index]) == "duplicate"
        assert await _state(sale_id) == baseline
    debits, credits = await ledger.totals()
    assert debits == credits
