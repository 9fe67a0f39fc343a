"""The gateway against the local Stripe stand-in, through the official SDK.

Everything here crosses a real HTTP boundary: gateway → stripe SDK → the
stand-in process, and stand-in → signed webhook → a receiver in the test.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from portal.payments.demo import card_fee as demo_card_fee
from portal.payments.gateway import (
    GatewayError,
    GatewayUnavailable,
    StripeCheckoutSession,
    StripeGateway,
    WebhookSignatureError,
    dispute_from_dict,
)
from portal.settings import Settings
from stripe_standin import standin_process
from stripe_standin.patches import stripe_fee
from tests.stripe_standin import StandIn, WebhookReceiver

pytestmark = pytest.mark.filterwarnings(
    # The SDK's httpx client posts form bodies as ``data=str``.
    "ignore:Use 'content=<...>' to upload raw bytes/text content.:DeprecationWarning"
)


def key(prefix: str) -> str:
    return f"{prefix}:{uuid.uuid4().hex}"


async def new_session(
    gateway: StripeGateway,
    landing: str = "http://127.0.0.1:9",
    amount: int = 12500,
    **overrides: Any,
) -> StripeCheckoutSession:
    sale = uuid.uuid4().hex[:8]
    params: dict[str, Any] = {
        "amount_cents": amount,
        "currency": "USD",
        "product_name": "5 × 60 min neuromuscular therapy",
        "success_url": f"{landing}/success?session_id={{CHECKOUT_SESSION_ID}}",
        "cancel_url": f"{landing}/catalog",
        "client_reference_id": f"sale-{sale}",
        "metadata": {"sale_id": sale},
        "payment_intent_metadata": {"sale_id": sale},
        "idempotency_key": key("checkout"),
        "customer_email": "client@example.test",
    }
    params.update(overrides)
    return await gateway.create_checkout_session(**params)


async def paid_session(gateway: StripeGateway, standin: StandIn, amount: int = 12500) -> str:
    """A completed purchase; returns its PaymentIntent id."""
    session = await new_session(gateway, amount=amount)
    await standin.complete_session(session.id)
    done = await gateway.retrieve_checkout_session(session.id)
    assert done.payment_intent_id is not None
    return done.payment_intent_id


# -- Checkout Sessions ------------------------------------------------------------


async def test_create_retrieve_list_and_expire_a_session(stripe_gateway: StripeGateway) -> None:
    created = await new_session(stripe_gateway, expires_after_seconds=3600)
    assert created.id.startswith("cs_test_")
    assert created.status == "open" and created.payment_status == "unpaid"
    assert created.url and created.url.endswith(f"/checkout/pay/{created.id}")
    assert created.amount_total == 12500 and created.currency == "usd"
    assert created.payment_intent_id is None  # Stripe creates it when the client pays
    assert created.expires_at is not None
    assert timedelta(minutes=59) < created.expires_at - created.created <= timedelta(minutes=61)

    fetched = await stripe_gateway.retrieve_checkout_session(created.id)
    assert fetched == created

    expired = await stripe_gateway.expire_checkout_session(created.id)
    assert expired.status == "expired" and expired.url is None
    with pytest.raises(GatewayError) as caught:
        await stripe_gateway.expire_checkout_session(created.id)
    assert caught.value.code == "checkout_session_not_open"


async def test_a_session_is_found_by_its_payment_intent(
    stripe_gateway: StripeGateway, stripe_standin: StandIn
) -> None:
    session = await new_session(stripe_gateway)
    await stripe_standin.complete_session(session.id)
    payment_intent = (await stripe_gateway.retrieve_checkout_session(session.id)).payment_intent_id
    assert payment_intent is not None
    found = await stripe_gateway.find_checkout_session(payment_intent)
    assert found is not None and found.id == session.id
    assert found.client_reference_id == session.client_reference_id
    assert await stripe_gateway.find_checkout_session("pi_unknown") is None


async def test_same_idempotency_key_and_params_give_the_same_session(
    stripe_gateway: StripeGateway,
) -> None:
    same = {
        "idempotency_key": key("checkout"),
        "client_reference_id": "sale-1",
        "metadata": {"sale_id": "1"},
        "payment_intent_metadata": {"sale_id": "1"},
        "expires_at": datetime.now(tz=UTC) + timedelta(hours=2),
    }
    first = await new_session(stripe_gateway, **same)
    again = await new_session(stripe_gateway, **same)
    assert again.id == first.id
    assert again == first


async def test_same_idempotency_key_with_other_params_is_refused(
    stripe_gateway: StripeGateway,
) -> None:
    idempotency_key = key("checkout")
    await new_session(stripe_gateway, idempotency_key=idempotency_key, amount=1000)
    with pytest.raises(GatewayError) as caught:
        await new_session(stripe_gateway, idempotency_key=idempotency_key, amount=2000)
    assert caught.value.code == "idempotency_error"


async def test_stripe_validation_errors_become_gateway_errors(
    stripe_gateway: StripeGateway,
) -> None:
    with pytest.raises(GatewayError) as caught:
        await new_session(stripe_gateway, expires_after_seconds=60)
    assert caught.value.param == "expires_at"
    assert "30 minutes" in caught.value.message
    with pytest.raises(GatewayError) as missing:
        await stripe_gateway.retrieve_checkout_session("cs_test_nope")
    assert missing.value.code == "resource_missing"


# -- the hosted page and webhooks -----------------------------------------------------


async def test_paying_on_the_hosted_page_redirects_and_sends_a_signed_webhook(
    stripe_gateway: StripeGateway, webhook_receiver: WebhookReceiver
) -> None:
    session = await new_session(stripe_gateway, landing=webhook_receiver.url)
    assert session.url is not None
    async with httpx.AsyncClient() as browser:
        page = await browser.get(session.url)
        assert page.status_code == 200
        assert "125.00 USD" in page.text and "5 × 60 min" in page.text
        assert 'value="pay"' in page.text and 'value="decline"' in page.text

        paid = await browser.post(session.url, data={"action": "pay", "email": "x@example.test"})
        assert paid.status_code == 303
        assert paid.headers["location"] == (
            f"{webhook_receiver.url}/success?session_id={session.id}"
        )
        landing = await browser.get(paid.headers["location"])
        assert landing.status_code == 200
    assert webhook_receiver.pages == [f"/success?session_id={session.id}"]

    (delivery,) = await webhook_receiver.wait_for(
        "checkout.session.completed", lambda e: e["data"]["object"]["id"] == session.id
    )
    event = stripe_gateway.verify_webhook(delivery.body, delivery.signature)
    completed = event["data"]["object"]
    assert completed["status"] == "complete" and completed["payment_status"] == "paid"
    assert completed["metadata"] == session.metadata
    assert completed["client_reference_id"] == session.client_reference_id
    assert completed["payment_intent"].startswith("pi_")
    assert event["api_version"] == "2026-10-28.endive"
    with pytest.raises(WebhookSignatureError):
        stripe_gateway.verify_webhook(
            delivery.body.replace(b"complete", b"expired"), delivery.signature
        )

    (succeeded,) = await webhook_receiver.wait_for(
        "payment_intent.succeeded",
        lambda e: e["data"]["object"]["id"] == completed["payment_intent"],
    )
    intent_event = stripe_gateway.verify_webhook(succeeded.body, succeeded.signature)
    assert intent_event["data"]["object"]["metadata"] == session.metadata
    assert isinstance(intent_event["data"]["object"]["latest_charge"], str)  # an id, like Stripe

    now_paid = await stripe_gateway.retrieve_checkout_session(session.id)
    assert (now_paid.status, now_paid.payment_status) == ("complete", "paid")
    assert now_paid.customer_email == "client@example.test"
    async with httpx.AsyncClient() as browser:
        again = await browser.get(f"{session.url}")
    assert "already been paid" in again.text


async def test_a_declined_card_keeps_the_session_open(
    stripe_gateway: StripeGateway, webhook_receiver: WebhookReceiver
) -> None:
    session = await new_session(stripe_gateway, landing=webhook_receiver.url)
    assert session.url is not None
    async with httpx.AsyncClient() as browser:
        declined = await browser.post(session.url, data={"action": "decline"})
        assert declined.status_code == 200
        assert "Your card was declined." in declined.text
        failed_pi = (await stripe_gateway.retrieve_checkout_session(session.id)).payment_intent_id
        assert failed_pi is not None
        (failed,) = await webhook_receiver.wait_for(
            "payment_intent.payment_failed", lambda e: e["data"]["object"]["id"] == failed_pi
        )
        assert (
            stripe_gateway.verify_webhook(failed.body, failed.signature)["data"]["object"][
                "metadata"
            ]
            == session.metadata
        )
        intent = await stripe_gateway.retrieve_payment_intent(failed_pi)
        assert intent.status == "requires_payment_method"
        assert intent.last_payment_error == "Your card was declined."

        assert (await stripe_gateway.retrieve_checkout_session(session.id)).status == "open"
        paid = await browser.post(session.url, data={"action": "pay"})
        assert paid.status_code == 303
    intent = await stripe_gateway.retrieve_payment_intent(failed_pi)
    assert intent.status == "succeeded"  # the same intent, paid on the second attempt


async def test_cancel_link_and_expiry(
    stripe_gateway: StripeGateway, stripe_standin: StandIn, webhook_receiver: WebhookReceiver
) -> None:
    session = await new_session(stripe_gateway, landing=webhook_receiver.url)
    assert session.url is not None
    async with httpx.AsyncClient() as browser:
        page = await browser.get(session.url)
        assert f'href="{webhook_receiver.url}/catalog"' in page.text
        await stripe_standin.expire_session_now(session.id)
        expired_page = await browser.get(session.url)
        assert "expired" in expired_page.text
        refused = await browser.post(session.url, data={"action": "pay"})
        assert refused.status_code == 409
    (delivery,) = await webhook_receiver.wait_for(
        "checkout.session.expired", lambda e: e["data"]["object"]["id"] == session.id
    )
    assert (
        stripe_gateway.verify_webhook(delivery.body, delivery.signature)["data"]["object"]["status"]
        == "expired"
    )


async def test_failed_deliveries_are_retried(
    stripe_gateway: StripeGateway, stripe_standin: StandIn, webhook_receiver: WebhookReceiver
) -> None:
    webhook_receiver.scripted_statuses = [500, 503]
    session = await new_session(stripe_gateway)
    await stripe_standin.expire_session_now(session.id)
    deliveries = await webhook_receiver.wait_for(
        "checkout.session.expired", lambda e: e["data"]["object"]["id"] == session.id, count=3
    )
    assert len({d.event["id"] for d in deliveries}) == 1  # the same event each time
    for delivery in deliveries:  # each attempt is signed afresh
        stripe_gateway.verify_webhook(delivery.body, delivery.signature)
    attempts = await stripe_standin.deliveries(deliveries[0].event["id"])
    assert [(a["attempt"], a["status"], a["final"]) for a in attempts] == [
        (1, 500, False),
        (2, 503, False),
        (3, 200, True),
    ]


async def test_tests_can_fire_and_redeliver_any_event(
    stripe_gateway: StripeGateway, stripe_standin: StandIn, webhook_receiver: WebhookReceiver
) -> None:
    event_id = f"evt_test_{uuid.uuid4().hex[:10]}"
    dispute = {"id": "dp_test_1", "object": "dispute", "charge": "ch_x", "status": "lost"}
    fired = await stripe_standin.fire_event(
        {"id": event_id, "type": "charge.dispute.closed", "data": {"object": dispute}}
    )
    assert fired["id"] == event_id
    await stripe_standin.redeliver(event_id)
    deliveries = await webhook_receiver.wait_for(
        "charge.dispute.closed", lambda e: e["id"] == event_id, count=2
    )
    for delivery in deliveries:
        event = stripe_gateway.verify_webhook(delivery.body, delivery.signature)
        assert event["data"]["object"] == dispute


# -- fees ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "fee"),
    [(10000, 320), (12345, 388), (500, 45), (1500, 74), (2500, 103), (50, 31)],
)
def test_the_card_fee_is_2_9_percent_plus_30_cents_rounded_half_up(amount: int, fee: int) -> None:
    assert stripe_fee(amount) == fee
    # The demo data computes the same fee itself (the portal never imports the stand-in).
    assert demo_card_fee(amount) == fee


async def test_a_paid_session_has_fee_and_net_on_its_balance_transaction(
    stripe_gateway: StripeGateway, stripe_standin: StandIn
) -> None:
    payment_intent = await paid_session(stripe_gateway, stripe_standin, amount=12500)
    intent = await stripe_gateway.retrieve_payment_intent(payment_intent)
    assert intent.status == "succeeded" and intent.amount == 12500
    charge = intent.latest_charge
    assert charge is not None and charge.paid and charge.payment_intent_id == payment_intent
    txn = intent.balance_transaction
    assert txn is not None
    assert (txn.amount, txn.fee, txn.net, txn.currency) == (12500, 393, 12107, "usd")

    assert (await stripe_gateway.retrieve_charge(charge.id)).balance_transaction == txn
    assert await stripe_gateway.retrieve_balance_transaction(txn.id) == txn


# -- refunds ------------------------------------------------------------------------------


async def test_partial_then_full_refund_and_the_caps(
    stripe_gateway: StripeGateway, stripe_standin: StandIn, webhook_receiver: WebhookReceiver
) -> None:
    payment_intent = await paid_session(stripe_gateway, stripe_standin, amount=10000)

    partial = await stripe_gateway.create_refund(
        payment_intent_id=payment_intent,
        amount_cents=4000,
        idempotency_key=key("refund"),
        metadata={"refund_id": "1"},
        reason="requested_by_customer",
    )
    assert (partial.status, partial.amount, partial.currency) == ("succeeded", 4000, "usd")
    assert partial.payment_intent_id == payment_intent
    assert partial.metadata == {"refund_id": "1"}

    with pytest.raises(GatewayError) as too_much:
        await stripe_gateway.create_refund(
            payment_intent_id=payment_intent, amount_cents=6001, idempotency_key=key("refund")
        )
    assert too_much.value.code == "amount_too_large"
    assert "$60.00" in too_much.value.message

    # A dashboard "refund the rest" (no amount) refunds the remainder only.
    rest = await stripe_standin.api("POST", "/v1/refunds", {"payment_intent": payment_intent})
    assert rest.status_code == 200, rest.text
    assert rest.json()["amount"] == 6000

    with pytest.raises(GatewayError) as already:
        await stripe_gateway.create_refund(
            payment_intent_id=payment_intent, amount_cents=1, idempotency_key=key("refund")
        )
    assert already.value.code == "charge_already_refunded"

    charge = (await stripe_gateway.retrieve_payment_intent(payment_intent)).latest_charge
    assert charge is not None
    assert (charge.amount_refunded, charge.refunded, charge.refundable) == (10000, True, 0)
    listed = await stripe_gateway.list_refunds_for_charge(charge.id)
    assert [r.amount for r in listed] == [6000, 4000]  # newest first
    assert listed[1] == partial

    refunded = await webhook_receiver.wait_for(
        "charge.refunded",
        lambda e: e["data"]["object"]["payment_intent"] == payment_intent,
        count=2,
    )
    assert [d.event["data"]["object"]["amount_refunded"] for d in refunded] == [4000, 10000]
    created = await webhook_receiver.wait_for(
        "refund.created", lambda e: e["data"]["object"]["payment_intent"] == payment_intent, count=2
    )
    assert created[0].event["data"]["object"]["id"] == partial.id
    for delivery in refunded + created:
        stripe_gateway.verify_webhook(delivery.body, delivery.signature)


async def test_a_repeated_refund_request_refunds_once(
    stripe_gateway: StripeGateway, stripe_standin: StandIn
) -> None:
    payment_intent = await paid_session(stripe_gateway, stripe_standin)
    charge_id = (await stripe_gateway.retrieve_payment_intent(payment_intent)).latest_charge_id
    assert charge_id is not None
    idempotency_key = key("refund")
    first = await stripe_gateway.create_refund(
        charge_id=charge_id, amount_cents=2500, idempotency_key=idempotency_key
    )
    again = await stripe_gateway.create_refund(
        charge_id=charge_id, amount_cents=2500, idempotency_key=idempotency_key
    )
    assert again == first
    assert (await stripe_gateway.retrieve_refund(first.id)) == first
    charge = await stripe_gateway.retrieve_charge(charge_id)
    assert charge.amount_refunded == 2500


# -- listing for reconciliation ----------------------------------------------------------


async def test_payments_and_refunds_are_listed_by_creation_window(
    stripe_gateway: StripeGateway, stripe_standin: StandIn
) -> None:
    start = datetime.now(tz=UTC) - timedelta(seconds=1)
    paid = [await paid_session(stripe_gateway, stripe_standin, amount=a) for a in (5000, 7000)]
    refund = await stripe_gateway.create_refund(
        payment_intent_id=paid[0], amount_cents=1000, idempotency_key=key("refund")
    )
    end = datetime.now(tz=UTC) + timedelta(seconds=2)

    listed = [p async for p in stripe_gateway.iter_payment_intents(start, end)]
    by_id = {p.id: p for p in listed}
    assert set(paid) <= set(by_id)
    assert [p.id for p in listed if p.id in paid] == list(reversed(paid))  # newest first
    for payment_intent, amount in zip(paid, (5000, 7000), strict=True):
        txn = by_id[payment_intent].balance_transaction
        assert txn is not None and txn.fee == stripe_fee(amount)

    refunds = [r async for r in stripe_gateway.iter_refunds(start, end)]
    assert refund.id in {r.id for r in refunds}

    past = [p async for p in stripe_gateway.iter_payment_intents(start - timedelta(days=2), start)]
    assert not set(paid) & {p.id for p in past}


async def test_listing_pages_through_more_than_one_page(
    stripe_gateway: StripeGateway, stripe_standin: StandIn
) -> None:
    start = datetime.now(tz=UTC) - timedelta(seconds=1)
    mine = [await paid_session(stripe_gateway, stripe_standin) for _ in range(3)]
    end = datetime.now(tz=UTC) + timedelta(seconds=2)
    response = await stripe_standin.api(
        "GET",
        f"/v1/payment_intents?limit=2&created[gte]={int(start.timestamp())}"
        f"&created[lt]={int(end.timestamp())}",
    )
    page = response.json()
    assert len(page["data"]) == 2 and page["has_more"] is True
    one_page = [p.id async for p in stripe_gateway.iter_payment_intents(start, end)]
    paged = [p async for p in stripe_gateway.iter_payment_intents(start, end, page_size=2)]
    assert [p.id for p in paged] == one_page
    assert len(set(one_page)) == len(one_page) >= 3
    # The window's first second may hold an earlier test's unpaid intent: this test's own
    # three are listed, each with its balance transaction expanded, whichever page held it.
    ours = [p for p in paged if p.id in mine]
    assert len(ours) == 3
    assert all(p.balance_transaction is not None for p in ours)  # expansion kept on every page


# -- disputes -------------------------------------------------------------------------------


async def test_disputes_are_opened_and_closed_with_webhooks(
    stripe_gateway: StripeGateway, stripe_standin: StandIn, webhook_receiver: WebhookReceiver
) -> None:
    payment_intent = await paid_session(stripe_gateway, stripe_standin)
    charge_id = (await stripe_gateway.retrieve_payment_intent(payment_intent)).latest_charge_id
    assert charge_id is not None
    dispute = await stripe_standin.open_dispute(charge_id)
    assert re.match(r"^dp_", dispute["id"]) and dispute["status"] == "needs_response"
    await stripe_standin.close_dispute(dispute["id"], "lost")
    (opened,) = await webhook_receiver.wait_for(
        "charge.dispute.created", lambda e: e["data"]["object"]["id"] == dispute["id"]
    )
    (closed,) = await webhook_receiver.wait_for(
        "charge.dispute.closed", lambda e: e["data"]["object"]["id"] == dispute["id"]
    )
    assert opened.event["data"]["object"]["payment_intent"] == payment_intent
    assert closed.event["data"]["object"]["status"] == "lost"
    assert (await stripe_gateway.retrieve_charge(charge_id)).disputed


async def _charge_of(gateway: StripeGateway, standin: StandIn, amount: int) -> str:
    payment_intent = await paid_session(gateway, standin, amount=amount)
    charge_id = (await gateway.retrieve_payment_intent(payment_intent)).latest_charge_id
    assert charge_id is not None
    return charge_id


async def _hook(standin: StandIn, path: str, payload: dict[str, Any]) -> httpx.Response:
    """A test hook's raw answer (errors included)."""
    async with httpx.AsyncClient(base_url=standin.base_url, timeout=10) as client:
        return await client.post(path, json=payload)


def _events_of(receiver: WebhookReceiver, dispute_id: str) -> list[dict[str, Any]]:
    return [
        e
        for e in receiver.events()
        if e["type"].startswith("charge.dispute.") and e["data"]["object"]["id"] == dispute_id
    ]


async def test_opening_a_dispute_withdraws_the_amount_and_the_dispute_fee(
    stripe_gateway: StripeGateway, stripe_standin: StandIn, webhook_receiver: WebhookReceiver
) -> None:
    charge_id = await _charge_of(stripe_gateway, stripe_standin, 10200)
    opened = await stripe_standin.open_dispute(charge_id, reason="product_not_received")
    assert opened["amount"] == 10200 and opened["is_charge_refundable"] is False
    assert opened["currency"] == "usd" and opened["status"] == "needs_response"

    dispute = await stripe_gateway.retrieve_dispute(opened["id"])
    assert (dispute.id, dispute.amount, dispute.currency) == (opened["id"], 10200, "usd")
    assert (dispute.status, dispute.reason, dispute.charge_id) == (
        "needs_response",
        "product_not_received",
        charge_id,
    )
    assert dispute.payment_intent_id is not None and not dispute.is_closed
    (withdrawal,) = dispute.balance_transactions
    assert (withdrawal.amount, withdrawal.fee, withdrawal.net) == (-10200, 1500, -11700)
    assert withdrawal.reporting_category == "dispute" and withdrawal.currency == "usd"
    assert withdrawal.created is not None and withdrawal.status == "available"
    assert await stripe_gateway.retrieve_balance_transaction(withdrawal.id) == withdrawal

    listed = (
        await stripe_standin.api("GET", f"/v1/balance_transactions?source={dispute.id}")
    ).json()["data"]
    assert [t["id"] for t in listed] == [withdrawal.id]
    (txn,) = listed
    assert (txn["type"], txn["reporting_category"], txn["source"]) == (
        "adjustment",
        "dispute",
        dispute.id,
    )
    assert [(f["type"], f["amount"]) for f in txn["fee_details"]] == [("stripe_fee", 1500)]
    assert (await stripe_gateway.retrieve_charge(charge_id)).disputed

    # One open dispute per charge.
    again = await _hook(stripe_standin, "/_standin/disputes", {"charge": charge_id})
    assert again.status_code == 400
    assert again.json()["error"]["code"] == "charge_disputed"

    # The events carry the withdrawal already, as Stripe's do.
    await webhook_receiver.wait_for(
        "charge.dispute.funds_withdrawn", lambda e: e["data"]["object"]["id"] == dispute.id
    )
    events = _events_of(webhook_receiver, dispute.id)
    assert [e["type"] for e in events] == [
        "charge.dispute.created",
        "charge.dispute.funds_withdrawn",
    ]
    for event in events:
        assert dispute_from_dict(event["data"]["object"]) == dispute


async def test_a_dispute_is_capped_by_what_is_left_of_the_charge(
    stripe_gateway: StripeGateway, stripe_standin: StandIn
) -> None:
    charge_id = await _charge_of(stripe_gateway, stripe_standin, 10200)
    await stripe_gateway.create_refund(
        charge_id=charge_id, amount_cents=2500, idempotency_key=key("refund")
    )
    too_much = await _hook(
        stripe_standin, "/_standin/disputes", {"charge": charge_id, "amount": 7701}
    )
    assert too_much.status_code == 400
    error = too_much.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "amount_too_large",
        "amount",
    )
    nothing = await _hook(stripe_standin, "/_standin/disputes", {"charge": charge_id, "amount": 0})
    assert nothing.status_code == 400

    first = await stripe_standin.open_dispute(charge_id, amount=3000)
    await stripe_standin.close_dispute(first["id"], "lost")
    # What is left: 102.00 - 25.00 refunded - 30.00 lost.
    rest = await stripe_standin.open_dispute(charge_id)
    assert rest["amount"] == 4700
    (withdrawal,) = (await stripe_gateway.retrieve_dispute(rest["id"])).balance_transactions
    assert (withdrawal.amount, withdrawal.net) == (-4700, -6200)

    refunded = await _charge_of(stripe_gateway, stripe_standin, 5000)
    await stripe_gateway.create_refund(
        charge_id=refunded, amount_cents=5000, idempotency_key=key("refund")
    )
    gone = await _hook(stripe_standin, "/_standin/disputes", {"charge": refunded})
    assert gone.status_code == 400
    assert gone.json()["error"]["code"] == "charge_already_refunded"


async def test_a_won_dispute_reinstates_the_amount_but_not_the_fee(
    stripe_gateway: StripeGateway, stripe_standin: StandIn, webhook_receiver: WebhookReceiver
) -> None:
    charge_id = await _charge_of(stripe_gateway, stripe_standin, 10200)
    opened = await stripe_standin.open_dispute(charge_id)
    closed = await stripe_standin.close_dispute(opened["id"], "won")
    assert closed["status"] == "won"

    dispute = await stripe_gateway.retrieve_dispute(opened["id"])
    assert dispute.status == "won" and dispute.is_closed
    withdrawal, reinstatement = dispute.balance_transactions
    assert (withdrawal.amount, withdrawal.fee, withdrawal.net) == (-10200, 1500, -11700)
    assert (reinstatement.amount, reinstatement.fee, reinstatement.net) == (10200, 0, 10200)
    assert reinstatement.reporting_category == "dispute_reversal"
    assert sum(t.net for t in dispute.balance_transactions) == -1500  # the fee stays withdrawn

    again = await _hook(
        stripe_standin, f"/_standin/disputes/{dispute.id}/close", {"status": "lost"}
    )
    assert again.status_code == 400

    await webhook_receiver.wait_for(
        "charge.dispute.closed", lambda e: e["data"]["object"]["id"] == dispute.id
    )
    events = _events_of(webhook_receiver, dispute.id)
    assert [e["type"] for e in events] == [
        "charge.dispute.created",
        "charge.dispute.funds_withdrawn",
        "charge.dispute.funds_reinstated",
        "charge.dispute.closed",
    ]
    assert dispute_from_dict(events[-1]["data"]["object"]) == dispute


async def test_a_lost_dispute_moves_no_more_money(
    stripe_gateway: StripeGateway, stripe_standin: StandIn, webhook_receiver: WebhookReceiver
) -> None:
    charge_id = await _charge_of(stripe_gateway, stripe_standin, 10200)
    opened = await stripe_standin.open_dispute(charge_id, amount=6000)
    await stripe_standin.close_dispute(opened["id"], "lost")

    dispute = await stripe_gateway.retrieve_dispute(opened["id"])
    assert (dispute.status, dispute.amount) == ("lost", 6000)
    (withdrawal,) = dispute.balance_transactions
    assert (withdrawal.amount, withdrawal.fee, withdrawal.net) == (-6000, 1500, -7500)
    listed = (
        await stripe_standin.api("GET", f"/v1/balance_transactions?source={dispute.id}")
    ).json()["data"]
    assert [t["id"] for t in listed] == [withdrawal.id]

    await webhook_receiver.wait_for(
        "charge.dispute.closed", lambda e: e["data"]["object"]["id"] == dispute.id
    )
    assert [e["type"] for e in _events_of(webhook_receiver, dispute.id)] == [
        "charge.dispute.created",
        "charge.dispute.funds_withdrawn",
        "charge.dispute.closed",
    ]


async def test_an_unknown_dispute_is_resource_missing(stripe_gateway: StripeGateway) -> None:
    with pytest.raises(GatewayError) as missing:
        await stripe_gateway.retrieve_dispute("dp_unknown")
    assert missing.value.code == "resource_missing"


async def test_payouts_carry_the_dispute_transactions_and_add_up(
    stripe_settings: Settings,
) -> None:
    """On a stand-in of its own: a payout sweeps the whole balance."""
    process = standin_process(retry_delays=(0.05,))
    base_url = await asyncio.to_thread(process.__enter__)
    standin = StandIn(base_url=base_url, webhook_secret="whsec_unused", log_file=Path("/dev/null"))
    gateway = StripeGateway.from_settings(
        dataclasses.replace(stripe_settings, stripe_api_base=base_url), max_network_retries=0
    )
    try:
        charge_id = await _charge_of(gateway, standin, 20000)
        opened = await standin.open_dispute(charge_id, amount=10200)

        [first] = await standin.run_payouts()
        assert first["amount"] == 20000 - stripe_fee(20000) - 10200 - 1500
        items = await gateway.list_payout_items(first["id"])
        assert sum(item.net for item in items) == first["amount"]
        (adjustment,) = [item for item in items if item.type == "adjustment"]
        assert adjustment.source_id == opened["id"]
        assert (adjustment.amount, adjustment.fee, adjustment.net) == (-10200, 1500, -11700)
        assert adjustment.charge is None and adjustment.refund is None

        await standin.close_dispute(opened["id"], "won")
        [second] = await standin.run_payouts()
        assert second["amount"] == 10200
        (reinstatement,) = await gateway.list_payout_items(second["id"])
        assert (reinstatement.type, reinstatement.source_id, reinstatement.net) == (
            "adjustment",
            opened["id"],
            10200,
        )
        assert await standin.run_payouts() == []  # nothing left
    finally:
        await gateway.aclose()
        await asyncio.to_thread(process.__exit__, None, None, None)


# -- the process itself -----------------------------------------------------------------------


async def test_a_private_stand_in_delivers_to_its_start_up_webhook_and_then_stops(
    stripe_settings: Settings, webhook_receiver: WebhookReceiver
) -> None:
    """``--webhook-url``/``--webhook-secret`` at start-up; unreachable once stopped."""
    process = standin_process(
        webhook_urls=[f"{webhook_receiver.url}/webhook"], webhook_secret="whsec_private"
    )
    base_url = await asyncio.to_thread(process.__enter__)
    private = dataclasses.replace(
        stripe_settings, stripe_api_base=base_url, stripe_webhook_secret="whsec_private"
    )
    gateway = StripeGateway.from_settings(private, max_network_retries=0)
    try:
        session = await new_session(gateway)
        async with httpx.AsyncClient(base_url=base_url) as client:
            await client.post(f"/_standin/checkout/sessions/{session.id}/complete")
        (delivery,) = await webhook_receiver.wait_for(
            "checkout.session.completed", lambda e: e["data"]["object"]["id"] == session.id
        )
        assert gateway.verify_webhook(delivery.body, delivery.signature)["type"] == (
            "checkout.session.completed"
        )
        async with httpx.AsyncClient(base_url=base_url) as client:
            assert (await client.post("/_standin/reset")).status_code == 200
        with pytest.raises(GatewayError) as gone:
            await gateway.retrieve_checkout_session(session.id)
        assert gone.value.code == "resource_missing"
    finally:
        await asyncio.to_thread(process.__exit__, None, None, None)
    try:
        with pytest.raises(GatewayUnavailable):
            await gateway.retrieve_checkout_session(session.id)
    finally:
        await gateway.aclose()
