"""Stripe Billing in the stand-in, through the official SDK: a subscription started by
Checkout, renewals paid and failed, paying a failed invoice, pausing and cancelling."""

from __future__ import annotations

import uuid

import httpx
import pytest

from portal.payments.gateway import (
    GatewayError,
    StripeCheckoutSession,
    StripeGateway,
    invoice_from_dict,
    subscription_from_dict,
)
from tests.stripe_standin import StandIn, WebhookReceiver

pytestmark = pytest.mark.filterwarnings(
    "ignore:Use 'content=<...>' to upload raw bytes/text content.:DeprecationWarning"
)


async def new_subscription_checkout(
    gateway: StripeGateway, landing: str, *, interval: str = "month", count: int = 1
) -> StripeCheckoutSession:
    ref = uuid.uuid4().hex[:8]
    return await gateway.create_subscription_checkout(
        amount_cents=12990,
        currency="USD",
        interval=interval,  # type: ignore[arg-type]
        interval_count=count,
        product_name="Monthly 60 min",
        success_url=f"{landing}/joined?session_id={{CHECKOUT_SESSION_ID}}",
        cancel_url=f"{landing}/catalog",
        client_reference_id=f"membership-{ref}",
        metadata={"membership_id": ref},
        idempotency_key=f"join:{ref}",
        customer_email="member@example.test",
    )


async def test_checkout_in_subscription_mode_starts_a_paid_subscription(
    stripe_gateway: StripeGateway, stripe_standin: StandIn, webhook_receiver: WebhookReceiver
) -> None:
    session = await new_subscription_checkout(stripe_gateway, webhook_receiver.url)
    assert session.mode == "subscription" and session.url and session.subscription_id is None
    async with httpx.AsyncClient() as browser:
        page = await browser.get(session.url)
        assert "Monthly 60 min" in page.text
    await stripe_standin.complete_session(session.id)
    done = await stripe_gateway.retrieve_checkout_session(session.id)
    assert done.status == "complete" and done.payment_status == "paid"
    assert done.subscription_id and done.customer_id and done.payment_intent_id is None

    subscription = await stripe_gateway.retrieve_subscription(done.subscription_id)
    assert subscription.status == "active"
    assert subscription.metadata == session.metadata
    start, end = subscription.current_period_start, subscription.current_period_end
    assert start is not None and end is not None
    assert (end.month - start.month) % 12 == 1  # one calendar month

    invoice = await stripe_gateway.retrieve_invoice(str(subscription.latest_invoice_id))
    assert (invoice.status, invoice.billing_reason, invoice.amount_paid, invoice.currency) == (
        "paid", "subscription_create", 12990, "USD",
    )  # fmt: skip
    assert (invoice.period_start, invoice.period_end) == (start, end)
    assert invoice.subscription_id == subscription.id
    assert invoice.subscription_metadata == session.metadata
    intent = await stripe_gateway.retrieve_payment_intent(str(invoice.payment_intent_id))
    assert intent.amount == 12990 and intent.latest_charge is not None  # refundable as usual

    for event_type in (
        "customer.subscription.created",
        "invoice.paid",
        "invoice.payment_succeeded",
        "checkout.session.completed",
    ):
        await webhook_receiver.wait_for(
            event_type,
            lambda e: subscription.id in str(e["data"]["object"]),
        )
    paid = (await webhook_receiver.wait_for("invoice.paid"))[0].event["data"]["object"]
    assert invoice_from_dict(paid) == invoice
    completed = (await webhook_receiver.wait_for("checkout.session.completed"))[0].event
    assert completed["data"]["object"]["subscription"] == subscription.id


async def test_renewals_paid_then_failed_then_paid_after_a_card_update(
    stripe_gateway: StripeGateway, stripe_standin: StandIn, webhook_receiver: WebhookReceiver
) -> None:
    session = await new_subscription_checkout(
        stripe_gateway, webhook_receiver.url, interval="week", count=4
    )
    await stripe_standin.complete_session(session.id)
    done = await stripe_gateway.retrieve_checkout_session(session.id)
    first = await stripe_gateway.retrieve_subscription(str(done.subscription_id))
    assert first.current_period_end and first.current_period_start
    assert (first.current_period_end - first.current_period_start).days == 28

    renewed = await stripe_standin.advance_subscription(first.id)
    second = subscription_from_dict(renewed["subscription"])
    assert second.current_period_start == first.current_period_end
    invoice = invoice_from_dict(renewed["invoice"])
    assert (invoice.status, invoice.billing_reason, invoice.amount_paid) == (
        "paid", "subscription_cycle", 12990,
    )  # fmt: skip
    assert invoice.period_start == first.current_period_end

    await stripe_standin.set_card_declines(str(done.customer_id), True)
    failed = await stripe_standin.advance_subscription(first.id)
    assert failed["subscription"]["status"] == "past_due"
    open_invoice = invoice_from_dict(failed["invoice"])
    assert (open_invoice.status, open_invoice.amount_paid, open_invoice.attempt_count) == (
        "open", 0, 1,
    )  # fmt: skip
    await webhook_receiver.wait_for(
        "invoice.payment_failed", lambda e: e["data"]["object"]["id"] == open_invoice.id
    )
    with pytest.raises(GatewayError):  # the card still declines
        await stripe_standin_pay(stripe_standin, open_invoice.id)

    await stripe_standin.set_card_declines(str(done.customer_id), False)
    response = await stripe_standin_pay(stripe_standin, open_invoice.id)
    assert response["status"] == "paid" and response["attempt_count"] == 3
    assert (await stripe_gateway.retrieve_subscription(first.id)).status == "active"
    await webhook_receiver.wait_for(
        "invoice.paid", lambda e: e["data"]["object"]["id"] == open_invoice.id
    )


async def stripe_standin_pay(standin: StandIn, invoice_id: str) -> dict:
    response = await standin.api("POST", f"/v1/invoices/{invoice_id}/pay")
    if response.status_code != 200:
        raise GatewayError(response.json()["error"]["message"])
    return response.json()


async def test_pause_skips_a_charge_and_cancel_ends_at_the_period_end(
    stripe_gateway: StripeGateway, stripe_standin: StandIn, webhook_receiver: WebhookReceiver
) -> None:
    session = await new_subscription_checkout(stripe_gateway, webhook_receiver.url)
    await stripe_standin.complete_session(session.id)
    sub_id = str((await stripe_gateway.retrieve_checkout_session(session.id)).subscription_id)

    paused = await stripe_gateway.update_subscription(
        sub_id, idempotency_key=f"pause:{uuid.uuid4()}", pause=True
    )
    assert paused.paused
    skipped = await stripe_standin.advance_subscription(sub_id)
    assert skipped["invoice"] is None and skipped["subscription"]["status"] == "active"
    resumed = await stripe_gateway.update_subscription(
        sub_id, idempotency_key=f"resume:{uuid.uuid4()}", pause=False
    )
    assert not resumed.paused and resumed.current_period_end is not None

    ending = await stripe_gateway.update_subscription(
        sub_id, idempotency_key=f"cancel:{uuid.uuid4()}", cancel_at=resumed.current_period_end
    )
    assert ending.cancel_at == resumed.current_period_end and ending.status == "active"
    ended = await stripe_standin.advance_subscription(sub_id)
    assert ended["invoice"] is None and ended["subscription"]["status"] == "canceled"
    (deleted,) = await webhook_receiver.wait_for(
        "customer.subscription.deleted", lambda e: e["data"]["object"]["id"] == sub_id
    )
    assert deleted.event["data"]["object"]["ended_at"] == int(
        resumed.current_period_end.timestamp()
    )
