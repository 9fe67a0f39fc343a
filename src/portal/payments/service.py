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
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from portal import db
from portal.audit import service as audit
from portal.auth.service import CLIENT, CurrentUser
from portal.catalog import service as catalog
from portal.errors import Forbidden, Invalid, NotFound
from portal.ledger import service as ledger
from portal.locations import service as location_service
from portal.locations.service import ensure_location_access
from portal.locations.tables import Location
from portal.money import format_money, round_half_up
from portal.onetime import service as onetime
from portal.payments.gateway import (
    GatewayError,
    GatewayUnavailable,
    StripeBalanceTransaction,
    StripeCharge,
    StripeDispute,
    StripeGateway,
    StripePaymentIntent,
    StripeRefund,
    dispute_from_dict,
)
from portal.payments.tables import Dispute, Payment, Refund
from portal.sales import service as sales
from portal.sales.tables import Sale, SaleSession
from portal.timeutil import utcnow

log = logging.getLogger("portal.payments")

PENDING = "pending"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"

# The payment and refund state machines, declared once (docs/architecture.md,
# "Money transitions"); ``_set_payment`` and ``_move_refund`` refuse other moves.
PAYMENT_MOVES: dict[str, frozenset[str]] = {
    PENDING: frozenset({SUCCEEDED, FAILED, CANCELLED}),
    # Money that arrives after the checkout failed or was abandoned still counts.
    FAILED: frozenset({SUCCEEDED}),
    CANCELLED: frozenset({SUCCEEDED}),
    SUCCEEDED: frozenset(),
}
REFUND_MOVES: dict[str, frozenset[str]] = {
    PENDING: frozenset({SUCCEEDED, FAILED}),
    SUCCEEDED: frozenset(),
    FAILED: frozenset(),
}

STRIPE = "stripe"
IN_CLINIC = "in_clinic"

RULE_LIST_PRICE = "list_price"
RULE_PRO_RATA = "pro_rata"
REFUND_RULES = location_service.REFUND_RULES
# How the refund form names the rules (see compute_refund for the arithmetic).
RULE_LABELS = {
    RULE_LIST_PRICE: "Used sessions at the single-session price",
    RULE_PRO_RATA: "Pro rata (paid share per session)",
}


async def idempotency_key(kind: str, row_id: int, table: type[Sale] | type[Refund]) -> str:
    """``kind:id:created`` — derived from our row, stable across retries of it.

    The creation time makes the key unique even when ids repeat (a database
    restored or recreated against the same Stripe account).
    """
    row = await table.select(table.created_at).where(table.id == row_id).first().run()
    stamp = int(row["created_at"].timestamp() * 1_000_000) if row else 0
    return f"{kind}:{row_id}:{stamp}"


# -- buying --------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkout:
    sale_id: int
    payment_id: int
    url: str


async def start_checkout(
    gateway: StripeGateway,
    *,
    client_id: int,
    client_email: str,
    package_id: int,
    location_id: int,
    base_url: str,
    online: bool = True,
    sold_by: int | None = None,
    request_key: str | None = None,
) -> Checkout:
    """Create the pending sale (the full snapshot) and its Stripe Checkout Session.

    A front-desk form's ``request_key`` makes a resubmission of the same form
    return the sale it already created.
    """
    key = request_key
    buyer = sold_by if sold_by is not None else client_id
    if key:
        existing = await sales.sale_by_request_key(key, buyer)
        if existing is not None:
            return await _checkout_of(existing)
    terms = await catalog.quote_package(package_id, location_id, utcnow(), online=online)
    try:
        async with db.transaction():
            sale_id = await sales.create_pending_sale(
                client_id,
                terms,
                channel=sales.ONLINE if sold_by is None else sales.FRONT_DESK,
                payment_method="card",
                sold_by=sold_by,
                request_key=key,
            )
            rows = (
                await Payment.insert(
                    Payment(
                        sale=sale_id,
                        provider=STRIPE,
                        method="card",
                        status=PENDING,
                        amount_cents=terms.total_cents,
                        currency=terms.currency,
                        created_at=utcnow(),
                        recorded_by=sold_by,
                    )
                )
                .returning(Payment.id)
                .run()
            )
            payment_id = int(rows[0]["id"])
    except Exception as exc:
        if key and db.is_unique_violation(exc):
            return await _checkout_of(await _replayed_sale(key, buyer))
        raise
    ids = {"sale_id": str(sale_id), "payment_id": str(payment_id), "location_id": str(location_id)}
    slug = await _location_slug(location_id)
    try:
        session = await gateway.create_checkout_session(
            amount_cents=terms.total_cents,
            currency=terms.currency,
            product_name=terms.name,
            product_description=(
                f"{terms.sessions} sessions, valid {terms.validity_days} days"
                + ("" if terms.tax_cents == 0 else " (tax included)")
            ),
            success_url=f"{base_url}/purchases/{sale_id}?session_id={{CHECKOUT_SESSION_ID}}",
            cancel_url=f"{base_url}/book/{slug}",
            client_reference_id=str(client_id),
            metadata=ids,
            payment_intent_metadata=ids,
            idempotency_key=await idempotency_key("checkout", sale_id, Sale),
            customer_email=client_email,
        )
    except GatewayError as exc:
        async with db.transaction():
            await sales.cancel_pending(sale_id)
            await _set_payment(payment_id, PENDING, FAILED, failure_message=exc.message)
        raise
    await (
        Payment.update(
            {Payment.checkout_session_id: session.id, Payment.checkout_url: session.url or ""}
        )
        .where(Payment.id == payment_id)
        .run()
    )
    return Checkout(sale_id=sale_id, payment_id=payment_id, url=session.url or "")


async def record_in_clinic_sale(
    actor: CurrentUser,
    *,
    client_id: int,
    package_id: int,
    location_id: int,
    method: str,
    request_key: str | None = None,
) -> int:
    """A package paid at the front desk (cash, cheque, card terminal): active at once.

    ``request_key`` is the form's one-time token: the same form sent again (a
    double click, the browser retrying after a lost response) returns the
    sale it already recorded instead of selling and journalling it twice.
    """
    ensure_location_access(actor, location_id, write=True)
    if method not in ("cash", "cheque", "terminal"):
        raise Invalid({"method": "Choose how the client paid."})
    if request_key:
        existing = await sales.sale_by_request_key(request_key, actor.id)
        if existing is not None:
            return existing
    terms = await catalog.quote_package(package_id, location_id, utcnow())
    try:
        return await _record_in_clinic_sale(
            actor, client_id, package_id, terms, method, request_key
        )
    except Exception as exc:
        if request_key and db.is_unique_violation(exc):
            return await _replayed_sale(request_key, actor.id)
        raise


async def _replayed_sale(request_key: str, sold_by: int) -> int:
    """The sale a concurrent submission of the same form created."""
    existing = await sales.sale_by_request_key(request_key, sold_by)
    if existing is None:
        raise Invalid(
            {"method": "This form was already used. Reload the page and enter the sale again."}
        )
    return existing


async def _checkout_of(sale_id: int) -> Checkout:
    payment = await _payment_for_sale(sale_id)
    if payment is None:
        raise Invalid(
            {"method": "This form was already used. Reload the page and enter the sale again."}
        )
    return Checkout(sale_id=sale_id, payment_id=int(payment["id"]), url=payment["checkout_url"])


async def _record_in_clinic_sale(
    actor: CurrentUser,
    client_id: int,
    package_id: int,
    terms: catalog.PackageTerms,
    method: str,
    request_key: str | None,
) -> int:
    now = utcnow()
    async with db.transaction():
        sale_id = await sales.create_pending_sale(
            client_id,
            terms,
            channel=sales.FRONT_DESK,
            payment_method=method,
            sold_by=actor.id,
            request_key=request_key,
        )
        await Payment.insert(
            Payment(
                sale=sale_id,
                provider=IN_CLINIC,
                method=method,
                status=SUCCEEDED,
                amount_cents=terms.total_cents,
                currency=terms.currency,
                fee_cents=0,
                net_cents=terms.total_cents,
                created_at=now,
                succeeded_at=now,
                recorded_by=actor.id,
            )
        ).run()
        await sales.activate(sale_id, occurred_at=now, payment_method=method)
        await audit.record(
            actor,
            "sell",
            "sale",
            sale_id,
            after={"package_id": package_id, "client_id": client_id, "method": method,
                   "total_cents": terms.total_cents, "currency": terms.currency},
        )  # fmt: skip
    return sale_id


async def _location_slug(location_id: int) -> str:
    row = await Location.select(Location.slug).where(Location.id == location_id).first().run()
    return str(row["slug"]) if row else ""


async def _set_payment(payment_id: int, expected: str, new: str, **values: Any) -> bool:
    """Compare-and-set a payment ``expected`` → ``new`` (an allowed move)."""
    if new not in PAYMENT_MOVES.get(expected, frozenset()):
        raise sales.TransitionNotAllowed(f"payment {expected} → {new}")
    update: dict[Any, Any] = {Payment.status: new}
    for key, value in values.items():
        update[getattr(Payment, key)] = value
    changed = (
        await Payment.update(update)
        .where((Payment.id == payment_id) & (Payment.status == expected))
        .returning(Payment.id)
        .run()
    )
    return bool(changed)


# -- recording Stripe's evidence ------------------------------------------------------


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
    changed = (
        await Payment.update(
            {
                Payment.fee_cents: txn.fee,
                Payment.net_cents: txn.net,
                Payment.balance_transaction_id: txn.id,
            }
        )
        .where((Payment.id == payment["id"]) & Payment.fee_cents.is_null())
        .returning(Payment.id)
        .run()
    )
    if not changed:
        return False
    sale = await sales.get_sale(int(payment["sale"]))
    await ledger.post(
        event_key=f"fee:{txn.id}",
        kind="processing_fee",
        occurred_at=payment["succeeded_at"] or utcnow(),
        currency=sale["currency"],
        location_id=sale["location"],
        reference=f"sale:{sale['id']}",
        memo="Stripe fee",
        sale_id=sale["id"],
        lines=[ledger.debit("processing_fees", txn.fee), ledger.credit("stripe_clearing", txn.fee)],
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
            if not await sales.hold_for_review(sale_id, reason) and not sale["review_reason"]:
                await (
                    Sale.update({Sale.review_reason: reason[:2000]}).where(Sale.id == sale_id).run()
                )
            if payment is not None and payment["status"] == PENDING:
                await (
                    Payment.update({Payment.failure_message: f"Needs review: {reason}"[:500]})
                    .where(Payment.id == payment["id"])
                    .run()
                )
            return False
        if payment is None:
            rows = (
                await Payment.insert(
                    Payment(
                        sale=sale_id,
                        provider=STRIPE,
                        method="card",
                        status=PENDING,
                        amount_cents=amount_cents,
                        currency=sale["currency"],
                        created_at=occurred_at,
                    )
                )
                .returning(Payment.id)
                .run()
            )
            payment = await Payment.select().where(Payment.id == rows[0]["id"]).first().run()
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
        if charge is not None and charge.balance_transaction is not None:
            fresh = await Payment.select().where(Payment.id == payment["id"]).first().run()
            assert fresh is not None
            await _record_fee(fresh, charge.balance_transaction)
        return activated


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


# -- refunds --------------------------------------------------------------------------


@dataclass(frozen=True)
class RefundQuote:
    sessions: int  # unused sessions the refund revokes
    amount_cents: int
    refundable_cents: int  # still refundable on the payment
    rule: str
    explanation: str


async def refunded_so_far(payment_id: int) -> int:
    """Money that went back, or is on its way back, on a payment.

    Completed and pending refunds (a pending one may still go through), and
    disputed amounts not won back (Stripe withdrew them when the dispute opened).
    """
    rows = (
        await Refund.select(Refund.amount_cents)
        .where((Refund.payment == payment_id) & (Refund.status.is_in([PENDING, SUCCEEDED])))
        .run()
    )
    disputed = (
        await Dispute.select(Dispute.amount_cents)
        .where((Dispute.payment == payment_id) & (Dispute.outcome != "won"))
        .run()
    )
    return sum(int(r["amount_cents"]) for r in rows) + sum(int(d["amount_cents"]) for d in disputed)


async def _paid_payment(sale_id: int) -> dict[str, Any]:
    payment = (
        await Payment.select()
        .where((Payment.sale == sale_id) & (Payment.status == SUCCEEDED))
        .order_by(Payment.id)
        .first()
        .run()
    )
    if payment is None:
        raise Invalid({"sessions": "This sale has no completed payment to refund."})
    return payment


def compute_refund(
    *,
    rule: str,
    paid_cents: int,
    already_refunded_cents: int,
    sessions_total: int,
    revoked_before: int,
    unused_totals: list[int],
    refund_sessions: int,
    unit_list_price_gross: int | None,
    fmt: Callable[[int], str] = str,
) -> tuple[int, str]:
    """The refund for revoking ``refund_sessions`` of the unused sessions, and why.

    ``unused_totals`` are the client-paid shares of the available sessions,
    latest first (the order they are revoked in). Sessions neither unused nor
    revoked before count as used (given, booked, forfeited).

    * pro rata: the paid share of the sessions refunded;
    * list price: what was paid, minus what was refunded before, minus the
      used sessions at the single-session list price, minus the paid share of
      the unused sessions the client keeps — never below zero, never above
      the pro-rata amount. Valuing kept sessions at their paid share makes the
      rule path-independent: refunding 2 then 3 sessions returns what
      refunding 5 at once would.

    Whatever the rule, never more than is still refundable. Pure, so it is
    property-tested; ``fmt`` formats amounts in the explanation.
    """
    refundable = max(paid_cents - already_refunded_cents, 0)
    refund_sessions = max(0, min(refund_sessions, len(unused_totals)))
    pro_rata = sum(unused_totals[:refund_sessions])
    if rule == RULE_LIST_PRICE and unit_list_price_gross is not None:
        used = max(sessions_total - revoked_before - len(unused_totals), 0)
        kept = unused_totals[refund_sessions:]
        raw = paid_cents - already_refunded_cents - used * unit_list_price_gross - sum(kept)
        amount = min(max(raw, 0), pro_rata)
        parts = [f"paid {fmt(paid_cents)}"]
        if already_refunded_cents:
            parts.append(f"refunded before {fmt(already_refunded_cents)}")
        if used:
            parts.append(f"{used} used × list price {fmt(unit_list_price_gross)}")
        if kept:
            parts.append(f"{len(kept)} kept at their paid share {fmt(sum(kept))}")
        explanation = " − ".join(parts)
        if raw > pro_rata:
            explanation += f", capped at the paid share of the sessions, {fmt(pro_rata)}"
    else:
        amount = pro_rata
        explanation = f"the paid share of {refund_sessions} unused session(s)"
    return min(amount, refundable), explanation


async def quote_refund(
    sale: dict[str, Any], refund_sessions: int, rule: str | None = None
) -> RefundQuote:
    payment = await _paid_payment(int(sale["id"]))
    location = (
        await Location.select(Location.refund_rule)
        .where(Location.id == sale["location"])
        .first()
        .run()
    )
    rule = rule or (location["refund_rule"] if location else RULE_LIST_PRICE)
    if rule not in REFUND_RULES:
        rule = RULE_LIST_PRICE
    rows = await sales.sessions_of(int(sale["id"]))
    unused = sorted(
        (r for r in rows if r["state"] == sales.AVAILABLE), key=lambda r: -int(r["position"])
    )
    revoked_before = sum(1 for r in rows if r["state"] == sales.REVOKED)
    refund_sessions = max(0, min(refund_sessions, len(unused)))
    already = await refunded_so_far(int(payment["id"]))
    unit_gross = None
    if sale["unit_list_price_cents"] is not None:
        unit = int(sale["unit_list_price_cents"])
        unit_gross = (
            unit
            if sale["prices_include_tax"]
            else unit + round_half_up(unit * int(sale["tax_rate_bp"]), 10_000)
        )
    currency = str(sale["currency"])
    amount, explanation = compute_refund(
        fmt=lambda cents: format_money(cents, currency),
        rule=rule,
        paid_cents=int(payment["amount_cents"]),
        already_refunded_cents=already,
        sessions_total=int(sale["sessions_total"]),
        revoked_before=revoked_before,
        unused_totals=[int(r["total_cents"]) for r in unused],
        refund_sessions=refund_sessions,
        unit_list_price_gross=unit_gross,
    )
    return RefundQuote(
        sessions=refund_sessions,
        amount_cents=amount,
        refundable_cents=max(int(payment["amount_cents"]) - already, 0),
        rule=rule,
        explanation=explanation,
    )


def cumulative_tax(*, total_cents: int, tax_cents: int, returned_cents: int) -> int:
    """The tax inside ``returned_cents`` of a sale's money, computed on the cumulative amount.

    Each refund (or lost chargeback) gives back the tax of everything returned
    so far minus what earlier ones gave back, so rounding never adds up across
    partial refunds: the tax returned never exceeds the tax collected, and the
    whole amount returns exactly the whole tax. Pure, property-tested.
    """
    if total_cents <= 0 or returned_cents <= 0:
        return 0
    if returned_cents >= total_cents:
        return tax_cents
    return round_half_up(returned_cents * tax_cents, total_cents)


async def _returned_before(
    sale: dict[str, Any], *, refund_id: int | None = None, dispute_id: int | None = None
) -> tuple[int, int, list[dict[str, Any]]]:
    """Money and tax already given back on the sale (completed refunds, lost
    chargebacks), other than the one being booked, and the credits those
    refunds revoked."""
    sale_id = int(sale["id"])
    refunds = (
        await Refund.select(Refund.id, Refund.amount_cents)
        .where((Refund.sale == sale_id) & (Refund.status == SUCCEEDED))
        .run()
    )
    refunds = [r for r in refunds if r["id"] != refund_id]
    lost = (
        await Dispute.select(Dispute.id, Dispute.amount_cents)
        .where((Dispute.sale == sale_id) & (Dispute.outcome == "lost"))
        .run()
    )
    lost = [d for d in lost if d["id"] != dispute_id]
    money = sum(int(r["amount_cents"]) for r in refunds) + sum(int(d["amount_cents"]) for d in lost)
    # Tax is what the journal says was given back: the sale's tax minus what is still payable.
    tax = int(sale["tax_cents"]) - await ledger.balance("tax_payable", sale_id=sale_id)
    credits: list[dict[str, Any]] = []
    if refunds and not lost:
        credits = (
            await SaleSession.select(SaleSession.value_cents, SaleSession.total_cents)
            .where(
                (SaleSession.sale == sale_id)
                & (SaleSession.state == sales.REVOKED)
                & SaleSession.refund_id.is_in([int(r["id"]) for r in refunds])
            )
            .run()
        )
    return money, max(tax, 0), credits


async def _tax_given_back(
    sale: dict[str, Any],
    amount: int,
    revoked: list[dict[str, Any]],
    *,
    refund_id: int | None = None,
    dispute_id: int | None = None,
) -> int:
    """The tax this refund or chargeback gives back (see :func:`cumulative_tax`).

    When everything returned so far is exactly the paid shares of the sessions
    revoked for it (pro-rata refunds), the tax is those sessions' own tax
    shares, so nothing is left over as a cent of breakage.
    """
    total, tax = int(sale["total_cents"]), int(sale["tax_cents"])
    money_before, tax_before, credits_before = await _returned_before(
        sale, refund_id=refund_id, dispute_id=dispute_id
    )
    returned = money_before + amount
    shares = [*credits_before, *revoked]
    if dispute_id is None and returned == sum(int(c["total_cents"]) for c in shares):
        target = sum(int(c["total_cents"]) - int(c["value_cents"]) for c in shares)
    else:
        target = cumulative_tax(total_cents=total, tax_cents=tax, returned_cents=returned)
    return max(0, min(target, tax) - tax_before)


def _give_back_lines(*, amount: int, tax: int, value: int, paid_from: str) -> list[ledger.Line]:
    """Money going back to the client, against what it bought.

    Dr deferred revenue (the revoked sessions' value) + Dr tax payable / Cr
    ``paid_from``. If the revoked sessions were worth more than the net money
    returned, the rest is breakage (the client gave it up); if less, the money
    returned for sessions already given reverses revenue (contra-revenue).
    """
    net_part = amount - tax
    difference = value - net_part
    lines = [
        ledger.debit("deferred_revenue", value),
        ledger.debit("tax_payable", tax),
        ledger.credit(paid_from, amount),
    ]
    if difference > 0:
        lines.append(ledger.credit("breakage_revenue", difference))
    elif difference < 0:
        lines.append(ledger.debit("revenue_reversals", -difference))
    return lines


async def _journal_refund(
    sale: dict[str, Any], refund_id: int, amount: int, revoked: list[dict[str, Any]], method: str
) -> None:
    tax = await _tax_given_back(sale, amount, revoked, refund_id=refund_id)
    await Refund.update({Refund.tax_cents: tax}).where(Refund.id == refund_id).run()
    await ledger.post(
        event_key=f"refund:{refund_id}",
        kind="refund",
        currency=sale["currency"],
        location_id=sale["location"],
        reference=f"sale:{sale['id']}",
        memo=f"Refund of {len(revoked)} session(s)",
        sale_id=sale["id"],
        lines=_give_back_lines(
            amount=amount,
            tax=tax,
            value=sum(int(r["value_cents"]) for r in revoked),
            paid_from=sales.CLEARING_ACCOUNT.get(method, "stripe_clearing"),
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
    await sales.mark_refunded_if_nothing_left(int(sale["id"]))
    return True


async def _move_refund(refund_id: int, old: str, new: str, **values: Any) -> list[dict[str, Any]]:
    """Compare-and-set a refund ``old`` → ``new`` (an allowed move); the rows changed."""
    if new not in REFUND_MOVES.get(old, frozenset()):
        raise sales.TransitionNotAllowed(f"refund {old} → {new}")
    update: dict[Any, Any] = {Refund.status: new}
    for key, value in values.items():
        update[getattr(Refund, key)] = value
    changed: list[dict[str, Any]] = (
        await Refund.update(update)
        .where((Refund.id == refund_id) & (Refund.status == old))
        .returning(Refund.id, Refund.amount_cents)
        .run()
    )
    return changed


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


async def refund_sale(
    gateway: StripeGateway | None,
    actor: CurrentUser,
    sale_id: int,
    *,
    sessions: int,
    reason: str,
    rule: str | None = None,
    request_key: str | None = None,
) -> dict[str, Any]:
    """Staff refund, under the sale's lock; returns the refund row.

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
            request_key, user_id=actor.id, action="refund", field="sessions"
        )
        if first is not None:
            return await _refund_row(int(first.removeprefix(REFUND_RESULT) or 0))
        errors: dict[str, str] = {}
        if not reason.strip():
            errors["reason"] = "Give a reason for the refund."
        if sale["status"] != sales.ACTIVE:
            errors["sessions"] = "Only an active sale can be refunded."
        if sale["frozen"]:
            errors["sessions"] = "This sale is disputed; wait for the dispute to close."
        if errors:
            raise Invalid(errors)
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
        payment = await _paid_payment(sale_id)
        rows = (
            await Refund.insert(
                Refund(
                    sale=sale_id,
                    payment=payment["id"],
                    amount_cents=quote.amount_cents,
                    currency=sale["currency"],
                    sessions_requested=sessions,
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
        reserved = await sales.revoke_unused(sale_id, sessions, refund_id=refund_id)
        await (
            Refund.update({Refund.sessions_revoked: len(reserved)})
            .where(Refund.id == refund_id)
            .run()
        )
        await audit.record(
            actor, "refund", "sale", sale_id,
            after={"refund_id": refund_id, "amount_cents": quote.amount_cents,
                   "sessions": sessions, "rule": quote.rule, "reason": reason.strip()},
        )  # fmt: skip
        await onetime.finish(request_key, f"{REFUND_RESULT}{refund_id}")
        if payment["provider"] != STRIPE or quote.amount_cents == 0:
            await _complete_refund(refund_id, sale, None, payment["method"])
            return await _refund_row(refund_id)
    if gateway is None:
        raise RuntimeError("Stripe is not configured")
    return await _send_refund(gateway, await _refund_row(refund_id), payment)


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
    return await _send_refund(gateway, refund, payment)


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
    row = await Refund.select().where(Refund.id == refund_id).first().run()
    if row is None:
        raise NotFound("No such refund.")
    return row


def sessions_covered(
    *, cumulative_cents: int, paid_cents: int, revoked_totals: int, available_totals: list[int]
) -> int:
    """How many more unused sessions the money refunded so far pays for.

    Refunds made in Stripe's dashboard come with an amount only. They
    accumulate: the available sessions (latest first) are revoked as the
    cumulative refunded amount, beyond the paid shares of the sessions already
    revoked, covers each one's share; everything refunded revokes everything
    unused. Pure, property-tested.
    """
    if cumulative_cents >= paid_cents:
        return len(available_totals)
    left = cumulative_cents - revoked_totals
    count = 0
    for share in available_totals:
        if share > left:
            break
        left -= share
        count += 1
    return count


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


# -- reconciliation ---------------------------------------------------------------------


@dataclass
class ReconcileReport:
    """What one reconciliation run saw, changed, and could not settle."""

    since: datetime
    until: datetime
    payments_seen: int = 0
    refunds_seen: int = 0
    not_ours: int = 0  # Stripe payments without a portal sale id (other uses of the account)
    changes: list[tuple[str, str]] = field(default_factory=list)  # (kind, description)
    mismatches: list[str] = field(default_factory=list)

    def change(self, kind: str, description: str) -> None:
        self.changes.append((kind, description))

    def count(self, kind: str) -> int:
        return sum(1 for k, _ in self.changes if k == kind)

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def lines(self) -> list[str]:
        """The summary the command prints."""
        last_day = self.until - timedelta(microseconds=1)
        out = [
            f"Stripe, {self.since:%Y-%m-%d %H:%M} to {last_day:%Y-%m-%d %H:%M} UTC: "
            f"{self.payments_seen} payment(s), {self.refunds_seen} refund(s) listed"
            + (f", {self.not_ours} payment(s) not from the portal" if self.not_ours else "")
            + "."
        ]
        if self.changes:
            out.append(
                "Recorded: "
                + ", ".join(
                    f"{self.count(kind)} {label}"
                    for kind, label in RECONCILE_KINDS.items()
                    if self.count(kind)
                )
                + "."
            )
            out.extend(f"  {description}" for _, description in self.changes)
        else:
            out.append("Nothing to record: the portal already had everything.")
        if self.mismatches:
            out.append(f"{len(self.mismatches)} mismatch(es) to settle by hand:")
            out.extend(f"  {m}" for m in self.mismatches)
        return out


RECONCILE_KINDS = {
    "payment": "missed payment(s)",
    "fee": "missing fee(s)",
    "refund": "refund(s) made in Stripe",
    "completed": "pending refund(s) completed",
    "failed": "pending refund(s) refused by Stripe",
}


def _amount(cents: int, currency: str) -> str:
    return format_money(cents, currency.upper())


async def reconcile(gateway: StripeGateway, since: datetime, until: datetime) -> ReconcileReport:
    """Compare Stripe's payments and refunds created in ``[since, until)`` with ours.

    Records what the portal missed (a lost webhook, a refund made in the
    dashboard, a refund whose answer timed out), fills missing fees, and
    lists what it could not settle. Every step is one of the idempotent
    transitions the webhook uses, so a second run over the same window
    changes nothing. Raises :class:`GatewayError` when Stripe cannot be read.
    """
    report = ReconcileReport(since=since, until=until)
    async for intent in gateway.iter_payment_intents(since, until):
        report.payments_seen += 1
        await _reconcile_payment(gateway, intent, report)
    async for refund in gateway.iter_refunds(since, until):
        report.refunds_seen += 1
        await _reconcile_refund(gateway, refund, report)
    return report


async def _reconcile_payment(
    gateway: StripeGateway, intent: StripePaymentIntent, report: ReconcileReport
) -> None:
    if intent.status != "succeeded":
        return  # nothing was paid (yet); the sale stays as it is
    sale_id = _sale_id_of(intent.metadata)
    if sale_id is None:
        report.not_ours += 1
        return
    paid = _amount(intent.amount, intent.currency)
    sale = await Sale.select().where(Sale.id == sale_id).first().run()
    if sale is None:
        report.mismatches.append(f"{intent.id}: {paid} paid for sale {sale_id}, unknown here")
        return
    if intent.amount != int(sale["total_cents"]) or intent.currency.upper() != sale["currency"]:
        report.mismatches.append(
            f"{intent.id}: {paid} paid for sale {sale_id}, whose total is "
            f"{_amount(int(sale['total_cents']), sale['currency'])}"
        )
        return
    payment = await _payment_by_intent(intent.id)
    if payment is None:
        existing = await _payment_for_sale(sale_id)
        if existing is not None and existing["payment_intent_id"]:
            report.mismatches.append(
                f"{intent.id}: a second payment of {paid} for sale {sale_id}, "
                f"already paid by {existing['payment_intent_id']} (refund one of them)"
            )
            return
    if payment is None or payment["status"] != SUCCEEDED:
        async with db.transaction():
            activated = await record_stripe_payment(
                sale_id,
                payment_intent_id=intent.id,
                amount_cents=intent.amount,
                charge=intent.latest_charge,
                occurred_at=intent.created,
            )
        report.change(
            "payment",
            f"sale {sale_id}: payment {intent.id} of {paid} recorded"
            + ("; the sale is active" if activated else ""),
        )
        payment = await _payment_by_intent(intent.id)
        if payment is not None and payment["fee_cents"] is not None:
            report.change(
                "fee", f"sale {sale_id}: fee {_amount(int(payment['fee_cents']), intent.currency)}"
            )
        return
    if payment["fee_cents"] is None:
        txn = intent.balance_transaction
        if txn is None and intent.latest_charge_id:
            txn = (await gateway.retrieve_charge(intent.latest_charge_id)).balance_transaction
        if txn is None:
            return  # Stripe has not settled the charge yet; a later run fills it
        async with db.transaction():
            if not payment["charge_id"] and intent.latest_charge_id:
                await (
                    Payment.update({Payment.charge_id: intent.latest_charge_id})
                    .where((Payment.id == payment["id"]) & Payment.charge_id.is_null())
                    .run()
                )
            recorded = await _record_fee(payment, txn)
        if recorded:
            report.change("fee", f"sale {sale_id}: fee {_amount(txn.fee, txn.currency)} ({txn.id})")


async def _reconcile_refund(
    gateway: StripeGateway, refund: StripeRefund, report: ReconcileReport
) -> None:
    amount = _amount(refund.amount, refund.currency)
    own = await _own_refund_of(refund)
    if own is not None:
        outcome = await settle_own_refund(own, refund)
        sale = own["sale"]
        if outcome == "completed":
            report.change(
                "completed", f"sale {sale}: refund {own['id']} of {amount} completed ({refund.id})"
            )
        elif outcome == "failed":
            report.change(
                "failed", f"sale {sale}: refund {own['id']} refused by Stripe ({refund.status})"
            )
        elif outcome == "mismatch":
            ours = _amount(int(own["amount_cents"]), own["currency"])
            report.mismatches.append(
                f"{refund.id}: Stripe has {amount} {refund.status}; the portal has refund "
                f"{own['id']} of {ours} {own['status']}"
            )
        return
    if refund.status not in ("succeeded", "pending"):
        return  # a refund Stripe did not make changes nothing here
    if await record_external_refund(gateway, refund):
        row = await Refund.select().where(Refund.stripe_refund_id == refund.id).first().run()
        detail = (
            f"sale {row['sale']}: {amount} refunded in Stripe ({refund.id}), "
            f"{row['sessions_revoked']} session(s) revoked"
            if row
            else f"{amount} refunded in Stripe ({refund.id})"
        )
        report.change("refund", detail)
    elif not await Refund.exists().where(Refund.stripe_refund_id == refund.id).run():
        report.mismatches.append(
            f"{refund.id}: {amount} refunded in Stripe for a payment the portal does not know"
        )


# -- disputes --------------------------------------------------------------------------

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
    changed = (
        await Dispute.update({Dispute.withdrawn_at: when, Dispute.fee_cents: fee})
        .where((Dispute.id == row["id"]) & Dispute.withdrawn_at.is_null())
        .returning(Dispute.id)
        .run()
    )
    if not changed:
        return row
    amount = int(row["amount_cents"])
    await ledger.post(
        event_key=f"dispute:{row['stripe_dispute_id']}:withdrawn",
        kind="dispute_withdrawn",
        occurred_at=when,
        currency=sale["currency"],
        location_id=sale["location"],
        reference=f"sale:{sale['id']}",
        memo="Dispute opened: Stripe withdrew the amount and its dispute fee",
        sale_id=sale["id"],
        lines=[
            ledger.debit("disputed_funds", amount),
            ledger.debit("dispute_fees", fee),
            ledger.credit("stripe_clearing", amount + fee),
        ],
    )
    await sales.set_frozen(int(sale["id"]), True)
    return {**row, "withdrawn_at": when, "fee_cents": fee}


async def _book_reinstatement(
    row: dict[str, Any], sale: dict[str, Any], at: datetime | None
) -> None:
    """A won dispute: Stripe put the amount back (the fee stays spent)."""
    when = at or utcnow()
    changed = (
        await Dispute.update({Dispute.reinstated_at: when})
        .where((Dispute.id == row["id"]) & Dispute.reinstated_at.is_null())
        .returning(Dispute.id)
        .run()
    )
    if not changed:
        return
    amount = int(row["amount_cents"])
    await ledger.post(
        event_key=f"dispute:{row['stripe_dispute_id']}:reinstated",
        kind="dispute_reinstated",
        occurred_at=when,
        currency=sale["currency"],
        location_id=sale["location"],
        reference=f"sale:{sale['id']}",
        memo="Dispute won: Stripe returned the amount",
        sale_id=sale["id"],
        lines=[ledger.debit("stripe_clearing", amount), ledger.credit("disputed_funds", amount)],
    )


async def _book_chargeback(row: dict[str, Any], sale: dict[str, Any]) -> list[int]:
    """A lost dispute reverses the sale; returns the appointments it released."""
    from portal.bookings import service as bookings  # bookings builds on payments' data

    sale_id = int(sale["id"])
    released = await bookings.release_held_credits(sale_id, CHARGEBACK_REASON)
    revoked = [*released.credits]
    revoked += await sales.revoke_unused(sale_id, int(sale["sessions_total"]))
    amount = int(row["amount_cents"])
    tax = await _tax_given_back(sale, amount, revoked, dispute_id=int(row["id"]))
    await ledger.post(
        event_key=f"dispute:{row['stripe_dispute_id']}:lost",
        kind="dispute_lost",
        currency=sale["currency"],
        location_id=sale["location"],
        reference=f"sale:{sale['id']}",
        memo=f"Chargeback: dispute lost, {len(revoked)} session(s) revoked",
        sale_id=sale_id,
        lines=_give_back_lines(
            amount=amount,
            tax=tax,
            value=sum(int(r["value_cents"]) for r in revoked),
            paid_from="disputed_funds",
        ),
    )
    await sales.mark_refunded_if_nothing_left(sale_id)
    return released.appointment_ids


def _str_or_none(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("id")
    return str(value) if value else None


# -- the webhook -----------------------------------------------------------------------


Handler = Callable[[StripeGateway, dict[str, Any]], Awaitable[None]]


async def _on_checkout_completed(gateway: StripeGateway, obj: dict[str, Any]) -> None:
    if obj.get("payment_status") != "paid":
        return
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


async def _on_payment_intent_succeeded(gateway: StripeGateway, obj: dict[str, Any]) -> None:
    await _ensure_payment_recorded(gateway, str(obj.get("id")))


async def _on_checkout_expired(gateway: StripeGateway, obj: dict[str, Any]) -> None:
    sale_id = _sale_id_of({k: str(v) for k, v in (obj.get("metadata") or {}).items()})
    if sale_id is None:
        return
    async with sales.locked(sale_id):
        if await sales.cancel_pending(sale_id):
            payment = await _payment_for_sale(sale_id)
            if payment is not None:
                await _set_payment(int(payment["id"]), PENDING, CANCELLED)


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


async def payments_of(sale_id: int) -> list[dict[str, Any]]:
    return await Payment.select().where(Payment.sale == sale_id).order_by(Payment.id).run()


async def refunds_of(sale_id: int) -> list[dict[str, Any]]:
    return await Refund.select().where(Refund.sale == sale_id).order_by(Refund.id).run()


async def disputes_of(sale_id: int) -> list[dict[str, Any]]:
    return await Dispute.select().where(Dispute.sale == sale_id).order_by(Dispute.id).run()


def ensure_can_view_sale(user: CurrentUser, sale: dict[str, Any]) -> None:
    if user.role == CLIENT:
        if sale["client"] != user.id:
            raise Forbidden("This is not your purchase.")
        return
    ensure_location_access(user, int(sale["location"]))
