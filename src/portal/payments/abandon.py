"""Orders nobody pays: the client cancels one, or it expires. No HTTP here.

A card order waits on its Stripe Checkout Session. After a declined card the
client may try another card (the session stays open) or cancel the order; an
order still unpaid :data:`ABANDONED_AFTER` after it was started expires (the
``abandoned_orders`` job). Either way the same steps, in this order:

1. Stripe's session is expired, so it can no longer be paid; if Stripe says it
   was paid meanwhile, the order is left to the payment's webhook.
2. The session's PaymentIntent, left waiting for a card by a decline, is
   cancelled (Stripe's intent cancel).
3. The sale moves pending → cancelled and its payment pending → cancelled,
   through the sales and payments state rules, under the sale's lock. Money that
   still arrives later revives it (``PAYMENT_MOVES``: cancelled → succeeded).

Every step is safe to repeat: the webhook ``checkout.session.expired`` that
step 1 causes finds the sale already cancelled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from portal.auth.service import CLIENT, CurrentUser
from portal.errors import Conflict, Forbidden
from portal.payments.evidence import _payment_for_sale
from portal.payments.gateway import GatewayError, StripeGateway
from portal.payments.states import CANCELLED, PENDING, STRIPE, _set_payment
from portal.payments.tables import Payment
from portal.sales import service as sales
from portal.sales.tables import Sale
from portal.timeutil import utcnow

log = logging.getLogger(__name__)

# Stripe's own Checkout Sessions last 24 hours by default.
ABANDONED_AFTER = timedelta(hours=24)
# Intent states in which a payment can still be made, and cancelled.
CANCELLABLE_INTENTS = frozenset(
    {"requires_payment_method", "requires_confirmation", "requires_action"}
)
PAID_MEANWHILE = "This order was paid meanwhile; it can no longer be cancelled."


async def cancel_unpaid(sale_id: int) -> bool:
    """Pending → cancelled for the sale and its Stripe payment; False if it was not pending."""
    from portal.bookings import holds  # bookings builds on payments' data

    async with sales.locked(sale_id):
        if not await sales.cancel_pending(sale_id):
            return False
        payment = await _payment_for_sale(sale_id)
        if payment is not None and payment["status"] == PENDING:
            await _set_payment(int(payment["id"]), PENDING, CANCELLED)
        await holds.release_hold(sale_id)  # a time chosen with the order is free again
    return True


async def _close_in_stripe(gateway: StripeGateway, session_id: str) -> bool:
    """Expire the session and cancel its waiting intent; False when it was paid."""
    try:
        session = await gateway.expire_checkout_session(session_id)
    except GatewayError:
        session = await gateway.retrieve_checkout_session(session_id)
    if session.status == "complete" or session.payment_status == "paid":
        return False
    if session.payment_intent_id:
        intent = await gateway.retrieve_payment_intent(session.payment_intent_id)
        if intent.status in CANCELLABLE_INTENTS:
            await gateway.cancel_payment_intent(intent.id)
    return True


async def _close(gateway: StripeGateway, sale_id: int) -> bool:
    """Close the order in Stripe, then here; False when Stripe says it was paid.

    The sale may be cancelled already by the time this cancels it (the webhook of
    the session's expiry): it is closed either way."""
    payment = await _payment_for_sale(sale_id)
    session_id = payment["checkout_session_id"] if payment else None
    if session_id and not await _close_in_stripe(gateway, str(session_id)):
        return False
    await cancel_unpaid(sale_id)
    return True


async def cancel_order(gateway: StripeGateway, actor: CurrentUser, sale_id: int) -> bool:
    """The client cancels their own unpaid card order ("Cancel this order")."""
    sale = await sales.get_sale(sale_id)
    if actor.role != CLIENT or int(sale["client"]) != actor.id:
        raise Forbidden("Only the client who placed this order may cancel it.")
    if sale["status"] == sales.CANCELLED:
        return False
    if sale["status"] != sales.PENDING:
        raise Conflict(PAID_MEANWHILE)
    if not await _close(gateway, sale_id):
        raise Conflict(PAID_MEANWHILE)
    return True


@dataclass(frozen=True)
class ExpiryRun:
    expired: int  # orders cancelled in this run
    paid: int  # orders found paid in Stripe (left to their webhook)
    failed: int  # orders Stripe could not be asked about (tried again next run)


async def expire_abandoned(gateway: StripeGateway, *, now: datetime | None = None) -> ExpiryRun:
    """Cancel card orders still unpaid :data:`ABANDONED_AFTER` after they started, and
    those whose held time has lapsed (``bookings.holds``)."""
    from portal.bookings import holds  # bookings builds on payments' data

    now = now or utcnow()
    cutoff = now - ABANDONED_AFTER
    lapsed = await holds.lapsed_hold_sales(now)
    rows = (
        await Sale.select(Sale.id)
        .where(
            (Sale.status == sales.PENDING)
            & ((Sale.created_at < cutoff) | Sale.id.is_in(lapsed or [0]))
            & Sale.id.is_in(Payment.select(Payment.sale).where(Payment.provider == STRIPE))
        )
        .order_by(Sale.id)
        .run()
    )
    expired = paid = failed = 0
    for row in rows:
        try:
            if await _close(gateway, int(row["id"])):
                expired += 1
            else:
                paid += 1
        except GatewayError as exc:
            log.warning("could not expire order %s: %s", row["id"], exc)
            failed += 1
    return ExpiryRun(expired=expired, paid=paid, failed=failed)
