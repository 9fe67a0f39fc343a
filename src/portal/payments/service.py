"""Payments: buying a package, the Stripe webhook, refunds, disputes, reconciliation.

Money rules (see docs/architecture.md):

* A sale is activated only by evidence from Stripe (a webhook, or the
  reconcile command reading Stripe) or by a payment staff record in the
  clinic. The success page never activates anything.
* Each Stripe object maps to one row (unique ids), each event is stored
  once (unique event id) and every transition is compare-and-set, so
  repeated and out-of-order deliveries end in the same state as one in-order
  delivery.
* Network calls to Stripe never run inside a database transaction: what an
  event needs from Stripe is fetched first, then applied in one transaction
  together with its journal lines.

This module holds the webhook's payment, refund and dispute handlers and the
readings of a sale's payments; the rules live beside it, one module per
concern, and every name callers use is re-exported here: ``states`` (the
state machines and shared names), ``evidence`` (recording Stripe's payments
and fees), ``checkout`` (buying online and at the front desk), ``refunds``,
``disputes`` and ``reconcile``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from portal.errors import Forbidden, Invalid
from portal.payments.abandon import cancel_order, cancel_unpaid, expire_abandoned
from portal.payments.checkout import (
    IN_CLINIC_METHODS,
    CardEvidence,
    Checkout,
    member_quote,
    pay_in_clinic,
    record_earned_sale,
    record_in_clinic_sale,
    start_checkout,
)
from portal.payments.disputes import (
    CHARGEBACK_REASON,
    DISPUTE_LOST_STATUSES,
    DISPUTE_WON_STATUSES,
    _book_chargeback,
    _book_withdrawal,
    record_dispute,
)
from portal.payments.evidence import (
    _ensure_payment_recorded,
    _payment_by_charge,
    _payment_by_intent,
    _payment_for_sale,
    _record_fee,
    _sale_id_of,
    record_stripe_payment,
)
from portal.payments.gateway import GatewayError, StripeGateway, StripePaymentIntent
from portal.payments.giveback import (
    RefundQuote,
    compute_refund,
    cumulative_tax,
    quote_refund,
    refunded_so_far,
    sessions_covered,
)
from portal.payments.listing import disputes_of, open_dispute, payments_of, refunds_of
from portal.payments.notices import send_receipt_for, send_refund_notice_for
from portal.payments.reconcile import RECONCILE_KINDS, ReconcileReport, reconcile
from portal.payments.refunds import (
    REFUND_ACCEPTED,
    REFUND_RESULT,
    check_refund,
    record_external_refund,
    refund_of_sale,
    refund_sale,
    retry_refund,
    settle_own_refund,
)
from portal.payments.states import (
    CANCELLED,
    FAILED,
    IN_CLINIC,
    PAYMENT_MOVES,
    PENDING,
    REFUND_MOVES,
    REFUND_RULES,
    RULE_LABELS,
    RULE_LIST_PRICE,
    RULE_PRO_RATA,
    STRIPE,
    SUCCEEDED,
    idempotency_key,
)
from portal.payments.tables import Payment
from portal.sales import service as sales
from portal.timeutil import utcnow

log = logging.getLogger("portal.payments")

__all__ = [
    "CANCELLED",
    "CHARGEBACK_REASON",
    "DISPUTE_LOST_STATUSES",
    "DISPUTE_WON_STATUSES",
    "FAILED",
    "HANDLERS",
    "IN_CLINIC",
    "IN_CLINIC_METHODS",
    "PAYMENT_MOVES",
    "PENDING",
    "RECONCILE_KINDS",
    "REFUND_ACCEPTED",
    "REFUND_MOVES",
    "REFUND_RESULT",
    "REFUND_RULES",
    "RULE_LABELS",
    "RULE_LIST_PRICE",
    "RULE_PRO_RATA",
    "STRIPE",
    "SUCCEEDED",
    "CardEvidence",
    "Checkout",
    "Forbidden",
    "Handler",
    "Invalid",
    "ReconcileReport",
    "RefundQuote",
    "_book_chargeback",
    "_book_withdrawal",
    "_ensure_payment_recorded",
    "_payment_by_charge",
    "_payment_by_intent",
    "_record_fee",
    "cancel_order",
    "cancel_unpaid",
    "check_refund",
    "compute_refund",
    "cumulative_tax",
    "disputes_of",
    "expire_abandoned",
    "idempotency_key",
    "member_quote",
    "open_dispute",
    "pay_in_clinic",
    "payments_of",
    "quote_refund",
    "reconcile",
    "record_dispute",
    "record_earned_sale",
    "record_external_refund",
    "record_in_clinic_sale",
    "record_stripe_payment",
    "refund_of_sale",
    "refund_sale",
    "refunded_so_far",
    "refunds_of",
    "retry_refund",
    "sales",
    "send_receipt_for",
    "send_refund_notice_for",
    "sessions_covered",
    "settle_own_refund",
    "settle_return",
    "start_checkout",
]


def _str_or_none(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("id")
    return str(value) if value else None


# -- the webhook -----------------------------------------------------------------------


Handler = Callable[[StripeGateway, dict[str, Any]], Awaitable[None]]


async def _on_checkout_completed(gateway: StripeGateway, obj: dict[str, Any]) -> None:
    if obj.get("payment_status") != "paid" or obj.get("mode") == "subscription":
        return  # a membership's (memberships.stripe_events)
    sale_id = _sale_id_of({k: str(v) for k, v in (obj.get("metadata") or {}).items()})
    intent_id = _str_or_none(obj.get("payment_intent"))
    if sale_id is None or intent_id is None:
        log.warning("checkout session %s without our sale id", obj.get("id"))
        return
    intent: StripePaymentIntent | None = None
    try:
        intent = await gateway.retrieve_payment_intent(intent_id)
    except GatewayError as exc:
        # The fee can be filled in later (charge.updated or reconcile).
        log.warning("could not fetch %s: %s", intent_id, exc)
    created = (
        datetime.fromtimestamp(int(obj.get("created") or 0), UTC)
        if obj.get("created")
        else utcnow()
    )
    named: tuple[int | None, ...] = ()
    if intent is not None:
        named = (_sale_id_of(intent.metadata),)
        if intent.amount != int(obj.get("amount_total") or 0):
            named = (*named, -1)  # the intent and the session disagree: review
    await record_stripe_payment(
        sale_id,
        payment_intent_id=intent_id,
        amount_cents=int(obj.get("amount_total") or 0),
        currency=str(obj.get("currency") or "") or None,
        charge=intent.latest_charge if intent else None,
        occurred_at=intent.created if intent else created,
        checkout_session_id=str(obj.get("id")),
        named_sale_ids=named,
    )
    await send_receipt_for(sale_id)


async def settle_return(gateway: StripeGateway, sale_id: int, session_id: str) -> None:
    """The client is back from Checkout: when Stripe says the session is paid, record
    it now as its webhook would (whichever comes first; the second changes nothing).

    The evidence is read from Stripe, never taken from the browser; a failure to ask
    leaves the payment to the webhook."""
    try:
        session = await gateway.retrieve_checkout_session(session_id)
    except GatewayError as exc:
        log.warning("could not read checkout session %s: %s", session_id, exc)
        return
    if session.metadata.get("sale_id") != str(sale_id) or session.mode != "payment":
        return
    await _on_checkout_completed(
        gateway,
        {
            "id": session.id,
            "mode": session.mode,
            "payment_status": session.payment_status,
            "metadata": session.metadata,
            "payment_intent": session.payment_intent_id,
            "amount_total": session.amount_total,
            "currency": session.currency,
            "created": int(session.created.timestamp()),
        },
    )


async def _on_payment_intent_succeeded(gateway: StripeGateway, obj: dict[str, Any]) -> None:
    payment = await _ensure_payment_recorded(gateway, str(obj.get("id")))
    if payment is not None:
        await send_receipt_for(int(payment["sale"]))


async def _on_checkout_expired(gateway: StripeGateway, obj: dict[str, Any]) -> None:
    sale_id = _sale_id_of({k: str(v) for k, v in (obj.get("metadata") or {}).items()})
    if sale_id is not None:
        await cancel_unpaid(sale_id)


async def _on_payment_failed(gateway: StripeGateway, obj: dict[str, Any]) -> None:
    sale_id = _sale_id_of({k: str(v) for k, v in (obj.get("metadata") or {}).items()})
    if sale_id is None:
        return
    error = obj.get("last_payment_error") or {}
    message = (
        str(error.get("message") or "The payment was declined.")
        if isinstance(error, dict)
        else str(error)
    )
    payment = await _payment_for_sale(sale_id)
    if payment is not None:
        # Only a pending payment records the failure; the client may try again.
        await (
            Payment.update({Payment.failure_message: message[:500]})
            .where((Payment.id == payment["id"]) & (Payment.status == PENDING))
            .run()
        )


async def _on_charge_updated(gateway: StripeGateway, obj: dict[str, Any]) -> None:
    payment = await _ensure_payment_recorded(gateway, _str_or_none(obj.get("payment_intent")))
    if payment is None or payment["fee_cents"] is not None:
        return
    charge = await gateway.retrieve_charge(str(obj["id"]))
    if charge.balance_transaction is not None:
        async with sales.locked(int(payment["sale"])):
            await _record_fee(payment, charge.balance_transaction)


async def _on_charge_refunded(gateway: StripeGateway, obj: dict[str, Any]) -> None:
    for refund in await gateway.list_refunds_for_charge(str(obj["id"])):
        await record_external_refund(gateway, refund)


async def _on_refund(gateway: StripeGateway, obj: dict[str, Any]) -> None:
    refund = await gateway.retrieve_refund(str(obj["id"]))
    await record_external_refund(gateway, refund)


async def _on_dispute_created(gateway: StripeGateway, obj: dict[str, Any]) -> None:
    await record_dispute(gateway, obj, closed=False)


async def _on_dispute_closed(gateway: StripeGateway, obj: dict[str, Any]) -> None:
    await record_dispute(gateway, obj, closed=True)


# The payment, refund and dispute events; payout.* events are handled by
# ``payouts`` (which builds on this module). ``webhooks.handle_event`` dispatches both.
HANDLERS: dict[str, Handler] = {
    "checkout.session.completed": _on_checkout_completed,
    "checkout.session.async_payment_succeeded": _on_checkout_completed,
    "checkout.session.expired": _on_checkout_expired,
    "payment_intent.succeeded": _on_payment_intent_succeeded,
    "payment_intent.payment_failed": _on_payment_failed,
    "charge.succeeded": _on_charge_updated,
    "charge.updated": _on_charge_updated,
    "charge.refunded": _on_charge_refunded,
    "refund.created": _on_refund,
    "refund.updated": _on_refund,
    "charge.refund.updated": _on_refund,
    "charge.dispute.created": _on_dispute_created,
    "charge.dispute.updated": _on_dispute_created,
    "charge.dispute.closed": _on_dispute_closed,
    "charge.dispute.funds_withdrawn": _on_dispute_created,
    "charge.dispute.funds_reinstated": _on_dispute_created,
}


# -- reading ---------------------------------------------------------------------------
