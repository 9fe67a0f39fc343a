"""The Stripe events memberships handle; ``payments.webhooks`` finds them through
``contexts.stripe_handlers`` (memberships build on payments, so payments cannot import them)."""

from __future__ import annotations

from portal.memberships import subscriptions
from portal.payments.gateway import StripeGateway, StripePaymentIntent
from portal.payments.service import Handler


async def record_payment(gateway: StripeGateway, intent: StripePaymentIntent) -> None:
    """A refund or dispute named a payment of a membership invoice before the invoice was
    heard of: apply the invoice first (its period, sale and payment), read from Stripe."""
    invoice_id = intent.metadata.get("invoice", "")
    if invoice_id and subscriptions.membership_id_of(intent.metadata) is not None:
        await subscriptions.apply_paid_invoice(gateway, await gateway.retrieve_invoice(invoice_id))


HANDLERS: dict[str, Handler] = {
    "checkout.session.completed": subscriptions.on_checkout_completed,
    "invoice.paid": subscriptions.on_invoice_paid,
    "invoice.payment_failed": subscriptions.on_invoice_failed,
    "customer.subscription.created": subscriptions.on_subscription_changed,
    "customer.subscription.updated": subscriptions.on_subscription_changed,
    "customer.subscription.deleted": subscriptions.on_subscription_changed,
}
