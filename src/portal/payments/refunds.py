"""Refunds: quotes, staff refunds, refunds made in Stripe's dashboard, settling.

A staff refund reserves its sessions under the sale's lock, then asks Stripe;
refunds made in Stripe arrive by webhook or reconcile; our pending refunds are
settled against Stripe's record. The tax and journal lines of money given back
are shared with lost disputes.
"""

from __future__ import annotations

import logging
from typing import Any

from portal import records
from portal.audit import service as audit
from portal.auth.service import CurrentUser
from portal.errors import Invalid, NotFound
from portal.money import format_money
from portal.onetime import service as onetime
from portal.payments import totals
from portal.payments.evidence import _ensure_payment_recorded, _payment_by_charge
from portal.payments.gateway import GatewayError, GatewayUnavailable, StripeGateway, StripeRefund
from portal.payments.giveback import (
    RefundQuote,
    give_back_lines,
    paid_payment,
    quote_refund,
    refunded_so_far,
    sessions_covered,
    tax_given_back,
)
from portal.payments.notices import send_refund_notice_for
from portal.payments.states import (
    FAILED,
    PENDING,
    STRIPE,
    SUCCEEDED,
    _move_refund,
    idempotency_key,
)
from portal.payments.tables import Payment, Refund
from portal.sales import service as sales
from portal.sales.tables import SaleSession
from portal.timeutil import utcnow

log = logging.getLogger("portal.payments")


async def _journal_refund(
    sale: dict[str, Any], refund_id: int, amount: int, revoked: list[dict[str, Any]], method: str
) -> None:
    tax = await tax_given_back(sale, amount, revoked, refund_id=refund_id)
    async with totals.tracked(refund=refund_id):
        await Refund.update({Refund.tax_cents: tax}).where(Refund.id == refund_id).run()
    await sales.journal(
        sale,
        f"refund:{refund_id}",
        "refund",
        f"Refund of {len(revoked)} session(s)" if not sales.is_fee(sale) else "Refund of a fee",
        lines=give_back_lines(
            amount, tax, revoked, sales.CLEARING_ACCOUNT.get(method, "stripe_clearing")
        ),
    )


async def _complete_refund(
    refund_id: int, sale: dict[str, Any], stripe_refund_id: str | None, method: str
) -> bool:
    """Pending → succeeded: journal the sessions it reserved. Under the sale's lock.

    Returns False when the refund was no longer pending (completed elsewhere).
    """
    changed = await _move_refund(
        refund_id,
        PENDING,
        SUCCEEDED,
        completed_at=utcnow(),
        stripe_refund_id=stripe_refund_id,
    )
    if not changed:
        return False
    revoked = await sales.revoked_by_refund(refund_id)
    await Refund.update({Refund.sessions_revoked: len(revoked)}).where(Refund.id == refund_id).run()
    await _journal_refund(sale, refund_id, int(changed[0]["amount_cents"]), revoked, method)
    if not sales.is_fee(sale):
        await sales.mark_refunded_if_nothing_left(int(sale["id"]))
    elif await refunded_so_far(int((await _refund_row(refund_id))["payment"])) >= int(
        sale["total_cents"]
    ):
        # A fee has no sessions: it is refunded once all of its money went back.
        await sales.move_sale(int(sale["id"]), sales.ACTIVE, sales.REFUNDED, closed_at=utcnow())
    return True


async def _fail_refund(
    refund_id: int, sale_id: int, message: str, stripe_refund_id: str | None = None
) -> None:
    """Stripe refused the refund: failed, and the sessions it reserved are the client's again."""
    values: dict[str, Any] = {"error": message}
    if stripe_refund_id:
        values["stripe_refund_id"] = stripe_refund_id
    async with sales.locked(sale_id):
        if await _move_refund(refund_id, PENDING, FAILED, **values):
            await sales.release_reserved(refund_id)
            await Refund.update({Refund.sessions_revoked: 0}).where(Refund.id == refund_id).run()


REFUND_RESULT = "refund:"
FEE_RULE = "amount"


async def quote_fee_refund(sale: dict[str, Any], amount_cents: int | None) -> RefundQuote:
    """The refund of ``amount_cents`` of a fee (None: all that is left), at most what is
    left of its payment (pending refunds count)."""
    payment = await paid_payment(int(sale["id"]), field="amount")
    if payment["provider"] == STRIPE and not (payment["payment_intent_id"] or payment["charge_id"]):
        raise Invalid(
            {"amount": "This card payment has no Stripe payment recorded here: "
             "refund it in Stripe's dashboard (the refund is recorded when Stripe tells us)."}
        )  # fmt: skip
    left = max(int(payment["amount_cents"]) - await refunded_so_far(int(payment["id"])), 0)
    if left <= 0:
        raise Invalid({"amount": "All of this fee was refunded: nothing is left to refund."})
    amount = left if amount_cents is None else amount_cents
    if amount <= 0:
        raise Invalid({"amount": "Refund more than nothing."})
    if amount > left:
        left_text = format_money(left, str(sale["currency"]))
        raise Invalid({"amount": f"At most {left_text} is left to refund."})
    explanation = "all of the fee left" if amount == left else "part of the fee"
    return RefundQuote(
        sessions=0, amount_cents=amount, refundable_cents=left, rule=FEE_RULE,
        explanation=explanation,
    )  # fmt: skip


async def check_refund(
    sale: dict[str, Any],
    *,
    sessions: int,
    reason: str,
    rule: str | None = None,
    amount_cents: int | None = None,
) -> RefundQuote:
    """The refund of ``sessions`` unused sessions of ``sale`` (of a fee: of ``amount_cents``),
    if it may be made; what the confirm step shows, and what :func:`refund_sale` checks
    again under the sale's lock."""
    errors: dict[str, str] = {}
    field = "amount" if sales.is_fee(sale) else "sessions"
    if not reason.strip():
        errors["reason"] = "Give a reason for the refund."
    if sale["status"] != sales.ACTIVE:
        errors[field] = "Only an active sale can be refunded."
    if sale["frozen"]:
        errors[field] = "This sale is disputed; wait for the dispute to close."
    if errors:
        raise Invalid(errors)
    if sales.is_fee(sale):
        return await quote_fee_refund(sale, amount_cents)
    quote = await quote_refund(sale, sessions, rule)
    if quote.sessions == 0:
        raise Invalid(
            {"sessions": "Every session of this package is used, booked or refunded: "
             "nothing is left to refund."}
        )  # fmt: skip
    if sessions < 1 or quote.sessions < sessions:
        raise Invalid({"sessions": f"Choose between 1 and {quote.sessions} unused session(s)."})
    if quote.amount_cents <= 0 and quote.refundable_cents <= 0:
        raise Invalid({"sessions": "Nothing is left to refund on this sale."})
    return quote


async def refund_sale(
    gateway: StripeGateway | None,
    actor: CurrentUser,
    sale_id: int,
    *,
    sessions: int,
    reason: str,
    rule: str | None = None,
    request_key: str | None = None,
    amount_cents: int | None = None,
) -> dict[str, Any]:
    """Staff refund, under the sale's lock; returns the refund row. A fee (no sessions)
    is refunded by ``amount_cents`` (None: all that is left) instead of sessions.

    Inside one locked transaction: the one-time key is claimed (the same form
    sent again returns the first refund), the state is read again, the refund
    is quoted against what is left (pending refunds count), and its sessions
    are reserved (revoked) before Stripe is asked. Stripe is called outside the
    transaction with an idempotency key from the refund row. Its answer then
    completes the refund (journal) or fails it (the reserved sessions come
    back); an unknown outcome (Stripe unreachable) keeps it pending, still
    counted against what is refundable, for "Retry".
    """
    await sales.get_sale_for(actor, sale_id, write=True)
    async with sales.locked(sale_id) as sale:
        first = await onetime.claim(
            request_key, user_id=actor.id, action="refund",
            field="amount" if sales.is_fee(sale) else "sessions",
        )  # fmt: skip
        if first is not None:
            return await _refund_row(int(first.removeprefix(REFUND_RESULT) or 0))
        quote = await check_refund(
            sale, sessions=sessions, reason=reason, rule=rule, amount_cents=amount_cents
        )
        payment = await paid_payment(sale_id)
        rows = (
            await Refund.insert(
                Refund(
                    sale=sale_id,
                    payment=payment["id"],
                    amount_cents=quote.amount_cents,
                    currency=sale["currency"],
                    sessions_requested=quote.sessions,
                    sessions_revoked=0,
                    rule=quote.rule,
                    reason=reason.strip()[:2000],
                    status=PENDING,
                    external=False,
                    created_by=actor.id,
                    created_at=utcnow(),
                )
            )
            .returning(Refund.id)
            .run()
        )
        refund_id = int(rows[0]["id"])
        await totals.added(refund=refund_id)
        reserved = await sales.revoke_unused(sale_id, quote.sessions, refund_id=refund_id)
        await (
            Refund.update({Refund.sessions_revoked: len(reserved)})
            .where(Refund.id == refund_id)
            .run()
        )
        await audit.record(
            actor, "refund", "sale", sale_id,
            after={"refund_id": refund_id, "amount_cents": quote.amount_cents,
                   "sessions": quote.sessions, "rule": quote.rule, "reason": reason.strip()},
        )  # fmt: skip
        await onetime.finish(request_key, f"{REFUND_RESULT}{refund_id}")
        in_clinic = payment["provider"] != STRIPE or quote.amount_cents == 0
        if in_clinic:
            await _complete_refund(refund_id, sale, None, payment["method"])
    if not in_clinic:
        if gateway is None:
            raise RuntimeError("Stripe is not configured")
        await _send_refund(gateway, await _refund_row(refund_id), payment)
    # Stored once the refund has committed, delivered by the outbox (once per refund).
    await send_refund_notice_for(refund_id, defer=True)
    return await _refund_row(refund_id)


async def _send_refund(
    gateway: StripeGateway, refund: dict[str, Any], payment: dict[str, Any]
) -> dict[str, Any]:
    """Ask Stripe for a pending refund (first time or retry), same idempotency key each time."""
    refund_id, sale_id = int(refund["id"]), int(refund["sale"])
    try:
        stripe_refund = await gateway.create_refund(
            amount_cents=int(refund["amount_cents"]),
            idempotency_key=await idempotency_key("refund", refund_id, Refund),
            payment_intent_id=payment["payment_intent_id"],
            charge_id=None if payment["payment_intent_id"] else payment["charge_id"],
            metadata={"refund_id": str(refund_id), "sale_id": str(sale_id)},
            reason="requested_by_customer",
        )
    except GatewayUnavailable as exc:
        # The outcome is unknown: keep it pending (it still counts against
        # what is refundable, its sessions stay reserved); "Retry" resends it
        # with the same idempotency key.
        await (
            Refund.update({Refund.error: exc.message})
            .where((Refund.id == refund_id) & (Refund.status == PENDING))
            .run()
        )
        return await _refund_row(refund_id)
    except GatewayError as exc:
        await _fail_refund(refund_id, sale_id, exc.message)
        return await _refund_row(refund_id)
    await _apply_stripe_refund(refund_id, sale_id, stripe_refund)
    return await _refund_row(refund_id)


async def retry_refund(
    gateway: StripeGateway, actor: CurrentUser, refund_id: int
) -> dict[str, Any]:
    """Send a pending refund again, with its original idempotency key."""
    refund = await _refund_row(refund_id)
    await sales.get_sale_for(actor, int(refund["sale"]), write=True)
    if refund["status"] != PENDING:
        return refund
    payment = await Payment.select().where(Payment.id == refund["payment"]).first().run()
    assert payment is not None
    await _send_refund(gateway, refund, payment)
    await send_refund_notice_for(refund_id, defer=True)
    return await _refund_row(refund_id)


async def _apply_stripe_refund(refund_id: int, sale_id: int, stripe_refund: StripeRefund) -> None:
    if stripe_refund.status not in REFUND_ACCEPTED:
        await _fail_refund(
            refund_id,
            sale_id,
            stripe_refund.failure_reason or stripe_refund.status,
            stripe_refund.id,
        )
        return
    # Stripe accepted it; "pending" refunds settle later but the sessions are
    # no longer the client's from now on.
    async with sales.locked(sale_id) as sale:
        await _complete_refund(refund_id, sale, stripe_refund.id, "card")


async def refund_of_sale(sale_id: int, refund_id: int) -> dict[str, Any]:
    """A refund, if it belongs to the sale (ids guessed in URLs find nothing)."""
    row = await _refund_row(refund_id)
    if int(row["sale"]) != sale_id:
        raise NotFound("No such refund.")
    return row


async def _refund_row(refund_id: int) -> dict[str, Any]:
    return await records.get(Refund, refund_id, "No such refund.")


async def record_external_refund(gateway: StripeGateway, refund: StripeRefund) -> bool:
    """A refund made in Stripe's dashboard (or one of ours seen again): record it once."""
    if refund.status not in ("succeeded", "pending"):
        return False
    if await Refund.exists().where(Refund.stripe_refund_id == refund.id).run():
        return False
    own = await _own_refund_of(refund)
    if own is not None:
        # Our own refund, seen from Stripe's side: completes it if the answer
        # to refund_sale was lost (a timeout); otherwise nothing to do.
        return await settle_own_refund(own, refund) == "completed"
    payment = await _ensure_payment_recorded(gateway, refund.payment_intent_id)
    if payment is None and refund.charge_id:
        payment = await _payment_by_charge(refund.charge_id)
    if payment is None:
        log.warning("refund %s for an unknown payment", refund.id)
        return False
    async with sales.locked(int(payment["sale"])) as sale:
        # Read again under the lock: the same refund may have arrived by
        # another event (refund.created racing charge.refunded) meanwhile.
        if await Refund.exists().where(Refund.stripe_refund_id == refund.id).run():
            return False
        if await _own_refund_of(refund) is not None:
            return False
        available = (
            await SaleSession.select(SaleSession.total_cents)
            .where((SaleSession.sale == sale["id"]) & (SaleSession.state == sales.AVAILABLE))
            .order_by(SaleSession.position, ascending=False)
            .run()
        )
        revoked = (
            await SaleSession.select(SaleSession.total_cents)
            .where((SaleSession.sale == sale["id"]) & (SaleSession.state == sales.REVOKED))
            .run()
        )
        sessions = sessions_covered(
            cumulative_cents=await refunded_so_far(int(payment["id"])) + refund.amount,
            paid_cents=int(payment["amount_cents"]),
            revoked_totals=sum(int(r["total_cents"]) for r in revoked),
            available_totals=[int(r["total_cents"]) for r in available],
        )
        rows = (
            await Refund.insert(
                Refund(
                    sale=sale["id"],
                    payment=payment["id"],
                    amount_cents=refund.amount,
                    currency=sale["currency"],
                    sessions_requested=sessions,
                    sessions_revoked=0,
                    rule="external",
                    reason=refund.reason or "Refunded in Stripe",
                    status=PENDING,
                    external=True,
                    created_at=refund.created,
                )
            )
            .returning(Refund.id)
            .run()
        )
        refund_id = int(rows[0]["id"])
        await totals.added(refund=refund_id)
        await sales.revoke_unused(int(sale["id"]), sessions, refund_id=refund_id)
        await _complete_refund(refund_id, sale, refund.id, "card")
    return True


async def _own_refund_of(refund: StripeRefund) -> dict[str, Any] | None:
    """Our refund row that a Stripe refund belongs to: by its id, or by our id in its metadata."""
    row = await Refund.select().where(Refund.stripe_refund_id == refund.id).first().run()
    if row is not None:
        return row
    ours = refund.metadata.get("refund_id", "")
    if not ours.isdigit():
        return None
    row = await Refund.select().where(Refund.id == int(ours)).first().run()
    if row is None or row["external"] or row["stripe_refund_id"]:
        return None
    named_sale = refund.metadata.get("sale_id", "")
    if named_sale and named_sale != str(row["sale"]):
        return None  # the metadata is not ours after all
    return row


REFUND_ACCEPTED = ("succeeded", "pending", "requires_action")


async def settle_own_refund(row: dict[str, Any], refund: StripeRefund) -> str:
    """Bring one of our refunds in line with what Stripe says about it.

    A refund stays pending here when Stripe's answer was lost (a timeout);
    Stripe's record is then the evidence. Returns ``"completed"`` (journalled
    now), ``"failed"`` (Stripe refused it; its sessions came back),
    ``"unchanged"``, or ``"mismatch"`` when the two records disagree in a way
    only a person can settle (amounts differ, or Stripe failed a refund
    recorded here as done). Under the sale's lock, reading the row again.
    """
    accepted = refund.status in REFUND_ACCEPTED
    if int(row["amount_cents"]) != refund.amount:
        return "mismatch"
    sale_id = int(row["sale"])
    if row["status"] == PENDING and not accepted:
        if refund.status not in ("failed", "canceled"):
            return "unchanged"
        await _fail_refund(
            int(row["id"]),
            sale_id,
            refund.failure_reason or refund.status,
            refund.id,
        )
        return "failed" if (await _refund_row(int(row["id"])))["status"] == FAILED else "unchanged"
    if row["status"] == PENDING:
        payment = (
            await Payment.select(Payment.method).where(Payment.id == row["payment"]).first().run()
        )
        method = str(payment["method"]) if payment else "card"
        async with sales.locked(sale_id) as sale:
            done = await _complete_refund(int(row["id"]), sale, refund.id, method)
        return "completed" if done else "unchanged"
    if (row["status"] == SUCCEEDED) != accepted:
        return "mismatch"
    return "unchanged"
