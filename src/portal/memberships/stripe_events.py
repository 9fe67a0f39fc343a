"""The Stripe events memberships handle; ``payments.webhooks`` finds them through
``contexts.stripe_handlers`` (memberships build on payments, so payments cannot import them)."""

from __future__ import annotations

from portal.memberships import subscriptions
from portal.payments.service import Handler

HANDLERS: dict[str, Handler] = {
    "checkout.session.completed": subscriptions.on_checkout_completed,
    "invoice.paid": subscriptions.on_invoice_paid,
    "invoice.payment_failed": subscriptions.on_invoice_failed,
    "customer.subscription.created": subscriptions.on_subscription_changed,
    "customer.subscription.updated": subscriptions.on_subscription_changed,
    "customer.subscription.deleted": subscriptions.on_subscription_changed,
}
