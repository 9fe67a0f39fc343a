"""Disputes, booked as Stripe moves the money.

Withdrawal when the dispute opens, reinstatement when won, chargeback when lost.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from portal import db
from portal.ledger import service as ledger
from portal.payments import totals
from portal.payments.evidence import _ensure_payment_recorded, _payment_by_charge
from portal.payments.gateway import GatewayError, StripeDispute, StripeGateway, dispute_from_dict
from portal.payments.giveback import give_back_lines, tax_given_back
from portal.payments.tables import Dispute
from portal.sales import service as sales
from portal.timeutil import utcnow

log = logging.getLogger("portal.payments")

DISPUTE_LOST_STATUSES = ("lost", "charge_refunded")
DISPUTE_WON_STATUSES = ("won", "warning_closed")


async def record_dispute(gateway: StripeGateway, obj: dict[str, Any], *, closed: bool) -> None:
    """Apply a dispute event as Stripe moved the money, once, under the sale's lock.

    Stripe's dispute object (read again from Stripe, falling back to the
    event's copy) carries its balance transactions: the withdrawal when it
    opened (−amount and the dispute fee) and, if won, the reinstatement
    (+amount). Each money movement is booked once (compare-and-set on its
    timestamp, keyed journal entry), whatever the order and number of
    events:

    * withdrawn: Dr disputed funds + Dr dispute fees / Cr Stripe clearing; the
      sale's remaining sessions are frozen;
    * won: Dr Stripe clearing / Cr disputed funds; the sessions thaw;
    * lost: the sale is reversed as a chargeback — its unused and booked
      sessions are revoked (bookings released, the client told), their value
      leaves deferred revenue, the tax in the disputed amount is given back
      (cumulatively with refunds), the rest reverses revenue of sessions
      already given — against the disputed funds, which are gone.
    """
    dispute = await _dispute_from_stripe(gateway, obj)
    payment = await _ensure_payment_recorded(gateway, dispute.payment_intent_id)
    if payment is None and dispute.charge_id:
        payment = await _payment_by_charge(dispute.charge_id)
    if payment is None:
        log.warning("dispute %s for an unknown payment", dispute.id)
        return
    released: list[int] = []
    async with sales.locked(int(payment["sale"])) as sale:
        row = await _dispute_row(dispute, sale, payment)
        withdrawal = next((t for t in dispute.balance_transactions if t.amount < 0), None)
        reinstatement = next((t for t in dispute.balance_transactions if t.amount > 0), None)
        if withdrawal is not None:
            row = await _book_withdrawal(row, sale, withdrawal.fee, withdrawal.created)
        status = dispute.status
        if row["outcome"]:
            return  # closed before: every later event finds nothing to do
        if not closed and status not in DISPUTE_WON_STATUSES + DISPUTE_LOST_STATUSES:
            await (
                Dispute.update({Dispute.status: status or row["status"]})
                .where(Dispute.id == row["id"])
                .run()
            )
            await sales.set_frozen(int(sale["id"]), True)
            return
        outcome = "lost" if status in DISPUTE_LOST_STATUSES else "won"
        changed = (
            await Dispute.update(
                {Dispute.status: status, Dispute.outcome: outcome, Dispute.closed_at: utcnow()}
            )
            .where((Dispute.id == row["id"]) & (Dispute.outcome == ""))
            .returning(Dispute.id)
            .run()
        )
        if not changed:
            return
        await sales.set_frozen(int(sale["id"]), False)
        if outcome == "won":
            if row["withdrawn_at"] is not None:
                await _book_reinstatement(
                    row, sale, reinstatement.created if reinstatement else None
                )
            return
        if row["withdrawn_at"] is None:
            # Lost without a withdrawal seen (an inquiry turned dispute): the money
            # leaves now.
            row = await _book_withdrawal(row, sale, 0, None)
        released = await _book_chargeback(row, sale)
    if released:
        from portal.bookings import service as bookings  # bookings builds on payments' data

        await bookings.notify_released(released, CHARGEBACK_REASON)


CHARGEBACK_REASON = (
    "The payment for your package was reversed by your card issuer, so its sessions, "
    "including this booking, are no longer available. Please contact the clinic."
)


async def _dispute_from_stripe(gateway: StripeGateway, obj: dict[str, Any]) -> StripeDispute:
    try:
        return await gateway.retrieve_dispute(str(obj["id"]))
    except GatewayError as exc:
        if exc.retryable:
            raise  # Stripe will send the event again
        log.warning("could not read dispute %s from Stripe: %s", obj.get("id"), exc)
        return dispute_from_dict(obj)


async def _dispute_row(
    dispute: StripeDispute, sale: dict[str, Any], payment: dict[str, Any]
) -> dict[str, Any]:
    await (
        Dispute.insert(
            Dispute(
                sale=sale["id"],
                payment=payment["id"],
                stripe_dispute_id=dispute.id,
                amount_cents=dispute.amount,
                currency=dispute.currency.upper(),
                reason=dispute.reason[:60],
                status=dispute.status or "needs_response",
                created_at=dispute.created or utcnow(),
            )
        )
        .on_conflict(target=Dispute.stripe_dispute_id, action="DO NOTHING")
        .run()
    )
    row = await Dispute.select().where(Dispute.stripe_dispute_id == dispute.id).first().run()
    assert row is not None
    return row


async def _book_withdrawal(
    row: dict[str, Any], sale: dict[str, Any], fee: int, at: datetime | None
) -> dict[str, Any]:
    """Stripe took the disputed amount and its fee from the balance (once)."""
    if row["withdrawn_at"] is not None:
        return row
    when = at or utcnow()
    async with totals.tracked(dispute=int(row["id"])):
        changed = await db.update_where(
            Dispute,
            {Dispute.withdrawn_at: when, Dispute.fee_cents: fee},
            (Dispute.id == row["id"]) & Dispute.withdrawn_at.is_null(),
        )
    if not changed:
        return row
    amount = int(row["amount_cents"])
    await sales.journal(
        sale,
        f"dispute:{row['stripe_dispute_id']}:withdrawn",
        "dispute_withdrawn",
        "Dispute opened: Stripe withdrew the amount and its dispute fee",
        lines=[
            ledger.debit("disputed_funds", amount),
            ledger.debit("dispute_fees", fee),
            ledger.credit("stripe_clearing", amount + fee),
        ],
        at=when,
    )
    await sales.set_frozen(int(sale["id"]), True)
    return {**row, "withdrawn_at": when, "fee_cents": fee}


async def _book_reinstatement(
    row: dict[str, Any], sale: dict[str, Any], at: datetime | None
) -> None:
    """A won dispute: Stripe put the amount back (the fee stays spent)."""
    when = at or utcnow()
    async with totals.tracked(dispute=int(row["id"])):
        changed = await db.update_where(
            Dispute,
            {Dispute.reinstated_at: when},
            (Dispute.id == row["id"]) & Dispute.reinstated_at.is_null(),
        )
    if not changed:
        return
    amount = int(row["amount_cents"])
    await sales.journal(
        sale,
        f"dispute:{row['stripe_dispute_id']}:reinstated",
        "dispute_reinstated",
        "Dispute won: Stripe returned the amount",
        lines=[ledger.debit("stripe_clearing", amount), ledger.credit("disputed_funds", amount)],
        at=when,
    )


async def _book_chargeback(row: dict[str, Any], sale: dict[str, Any]) -> list[int]:
    """A lost dispute reverses the sale; returns the appointments it released."""
    from portal.bookings import service as bookings  # bookings builds on payments' data

    sale_id = int(sale["id"])
    released = await bookings.release_held_credits(sale_id, CHARGEBACK_REASON)
    revoked = [*released.credits]
    revoked += await sales.revoke_unused(sale_id, int(sale["sessions_total"]))
    amount = int(row["amount_cents"])
    tax = await tax_given_back(sale, amount, revoked, dispute_id=int(row["id"]))
    await sales.journal(
        sale,
        f"dispute:{row['stripe_dispute_id']}:lost",
        "dispute_lost",
        f"Chargeback: dispute lost, {len(revoked)} session(s) revoked",
        lines=give_back_lines(amount, tax, revoked, "disputed_funds"),
    )
    await sales.mark_refunded_if_nothing_left(sale_id)
    return released.appointment_ids
