"""Recording Stripe's evidence of a payment.

The payment row and its fee, the checks that the evidence belongs to the sale
(a mismatch holds the sale for review), and the payment behind a refund or a
dispute that arrives before the checkout event.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from portal import contexts, db
from portal.ledger import service as ledger
from portal.money import format_money
from portal.payments import totals
from portal.payments.gateway import StripeBalanceTransaction, StripeCharge, StripeGateway
from portal.payments.states import (
    CANCELLED,
    FAILED,
    PENDING,
    STRIPE,
    SUCCEEDED,
    _set_payment,
    insert_payment,
)
from portal.payments.tables import Payment
from portal.sales import service as sales
from portal.timeutil import utcnow

log = logging.getLogger("portal.payments")


async def _payment_for_sale(sale_id: int) -> dict[str, Any] | None:
    return (
        await Payment.select()
        .where((Payment.sale == sale_id) & (Payment.provider == STRIPE))
        .order_by(Payment.id)
        .first()
        .run()
    )


async def _payment_by_intent(payment_intent_id: str) -> dict[str, Any] | None:
    return (
        await Payment.select().where(Payment.payment_intent_id == payment_intent_id).first().run()
    )


async def _payment_by_charge(charge_id: str) -> dict[str, Any] | None:
    return await Payment.select().where(Payment.charge_id == charge_id).first().run()


async def _record_fee(payment: dict[str, Any], txn: StripeBalanceTransaction) -> bool:
    """Fee and net from the balance transaction, once; journalled as an expense.

    Returns True when this call recorded the fee.
    """
    if payment["fee_cents"] is not None:
        return False
    async with totals.tracked(payment=int(payment["id"])):
        changed = await db.update_where(
            Payment,
            {
                Payment.fee_cents: txn.fee,
                Payment.net_cents: txn.net,
                Payment.balance_transaction_id: txn.id,
            },
            (Payment.id == payment["id"]) & Payment.fee_cents.is_null(),
        )
    if not changed:
        return False
    sale = await sales.get_sale(int(payment["sale"]))
    await sales.journal(
        sale,
        f"fee:{txn.id}",
        "processing_fee",
        "Stripe fee",
        lines=[ledger.debit("processing_fees", txn.fee), ledger.credit("stripe_clearing", txn.fee)],
        at=payment["succeeded_at"] or utcnow(),
    )
    return True


async def record_stripe_payment(
    sale_id: int,
    *,
    payment_intent_id: str,
    amount_cents: int,
    charge: StripeCharge | None,
    occurred_at: datetime,
    checkout_session_id: str | None = None,
    currency: str | None = None,
    named_sale_ids: tuple[int | None, ...] = (),
) -> bool:
    """Stripe says the sale is paid: record the payment and activate the sale.

    Idempotent, safe in any order with the other events, and under the sale's
    lock (it joins the caller's transaction). Returns True when this call
    activated the sale.

    The evidence must match the sale: the amount and currency, the Checkout
    Session the portal created for it, the payment intent already recorded
    for it, and every sale id Stripe's objects carry (``named_sale_ids``). A
    mismatch activates nothing: the sale needs review, with the reason, for
    an owner to settle with Stripe.
    """
    async with sales.locked(sale_id) as sale:
        payment = await _payment_for_sale(sale_id)
        problems = _mismatches(
            sale,
            payment,
            payment_intent_id=payment_intent_id,
            amount_cents=amount_cents,
            currency=currency,
            checkout_session_id=checkout_session_id,
            named_sale_ids=named_sale_ids,
        )
        if problems:
            reason = " ".join(problems)
            log.error("sale %s needs review: %s", sale_id, reason)
            await sales.hold_for_review(sale_id, reason)
            if payment is not None and payment["status"] == PENDING:
                await (
                    Payment.update({Payment.failure_message: f"Needs review: {reason}"[:500]})
                    .where(Payment.id == payment["id"])
                    .run()
                )
            return False
        if payment is None:
            payment_id = await insert_payment(
                sale_id,
                amount_cents=amount_cents,
                currency=sale["currency"],
                location=sale["location"],
                created_at=occurred_at,
            )
            payment = await Payment.select().where(Payment.id == payment_id).first().run()
            assert payment is not None
        ids: dict[Any, Any] = {Payment.payment_intent_id: payment_intent_id}
        if charge is not None:
            ids[Payment.charge_id] = charge.id
        if checkout_session_id and not payment["checkout_session_id"]:
            ids[Payment.checkout_session_id] = checkout_session_id
        await Payment.update(ids).where(Payment.id == payment["id"]).run()
        # A payment that arrives after the checkout was abandoned still counts.
        for old in (PENDING, CANCELLED, FAILED):
            await _set_payment(
                int(payment["id"]), old, SUCCEEDED, succeeded_at=occurred_at, failure_message=""
            )
        await sales.revive_cancelled(sale_id)
        activated = await sales.activate(sale_id, occurred_at=occurred_at, payment_method="card")
        if activated:
            await _book_held_time(sale_id)
        if charge is not None and charge.balance_transaction is not None:
            fresh = await Payment.select().where(Payment.id == payment["id"]).first().run()
            assert fresh is not None
            await _record_fee(fresh, charge.balance_transaction)
        return activated


async def _book_held_time(sale_id: int) -> None:
    """A sale paid for a time the client chose books it now, in the activation's
    transaction (``bookings.holds``); the confirmation waits in the outbox."""
    from portal.bookings import holds, notify  # bookings builds on payments' data

    appointment_id = await holds.confirm_hold(sale_id)
    if appointment_id is not None:
        await notify.booking_confirmed(appointment_id, deferred=[])


def _mismatches(
    sale: dict[str, Any],
    payment: dict[str, Any] | None,
    *,
    payment_intent_id: str,
    amount_cents: int,
    currency: str | None,
    checkout_session_id: str | None,
    named_sale_ids: tuple[int | None, ...],
) -> list[str]:
    """Why Stripe's evidence of a payment does not belong to this sale (none: it does)."""
    total, code = int(sale["total_cents"]), str(sale["currency"])
    out: list[str] = []
    if currency is not None and currency.upper() != code:
        out.append(f"Stripe reports a payment in {currency.upper()}; the sale is in {code}.")
    elif amount_cents != total:
        out.append(
            f"Stripe reports {format_money(amount_cents, code)} paid; "
            f"the sale's total is {format_money(total, code)}."
        )
    if any(named is not None and named != int(sale["id"]) for named in named_sale_ids):
        out.append("The Stripe payment names a different sale.")
    if payment is not None:
        known_session = payment["checkout_session_id"]
        if checkout_session_id and known_session and known_session != checkout_session_id:
            out.append(
                f"Checkout Session {checkout_session_id} is not the one created for this sale."
            )
        known_intent = payment["payment_intent_id"]
        if known_intent and known_intent != payment_intent_id:
            out.append(
                f"Payment {payment_intent_id} is a second payment; "
                f"the sale was paid by {known_intent}."
            )
    return out


def _sale_id_of(metadata: dict[str, str]) -> int | None:
    raw = metadata.get("sale_id", "")
    return int(raw) if raw.isdigit() else None


async def _ensure_payment_recorded(
    gateway: StripeGateway, payment_intent_id: str | None
) -> dict[str, Any] | None:
    """The payment row for an intent, recording the payment first if we missed it.

    Refunds and disputes may arrive before ``checkout.session.completed``;
    the intent's metadata tells which sale it paid for. Network first, then
    a transaction.
    """
    if not payment_intent_id:
        return None
    payment = await _payment_by_intent(payment_intent_id)
    if payment is not None and payment["status"] == SUCCEEDED:
        return payment
    intent = await gateway.retrieve_payment_intent(payment_intent_id)
    sale_id = _sale_id_of(intent.metadata)
    if sale_id is None and intent.status == "succeeded":
        for record in contexts.payment_recorders():  # an invoice of a membership, say
            await record(gateway, intent)
        return await _payment_by_intent(payment_intent_id)
    if sale_id is None or intent.status != "succeeded":
        return payment
    await record_stripe_payment(
        sale_id,
        payment_intent_id=intent.id,
        amount_cents=intent.amount,
        currency=intent.currency,
        charge=intent.latest_charge,
        occurred_at=intent.created,
    )
    return await _payment_by_intent(payment_intent_id)
