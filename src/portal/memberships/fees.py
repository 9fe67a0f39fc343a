"""The freeze fee: a plan may charge a fee for each period a member spends frozen.

A frozen subscription is paused in Stripe (no renewal invoice). When a frozen
period begins (Stripe's ``customer.subscription.updated`` shows a period later
than the last one paid while collection is paused), the plan's fee, tax as the
location's rules say, is charged on the subscription's card: an invoice item on
the subscription and an invoice of it (``billing_reason`` manual), paid at once.
Its idempotency key is the membership's and the period's, so each frozen period is
charged once however often the event arrives.

A fee taken is money received like any other: a sale of channel ``membership`` with no
sessions ("Freeze fee of membership N … for the period …", package 0: the reports' kind
membership) that is active at once, and its succeeded payment
(``payments.record_earned_sale``), so the payments report, its daily totals (the
desk's cash of the day, revenue's cash collected) and the payouts see it, and the
client is sent its receipt. Unlike a period's sale it grants no sessions and defers
nothing: it is earned when charged. The sale's unique key is the fee's journal key,
and both are written under the membership's lock, so each fee is recorded once.

A paid fee invoice: a card payment (its payment intent, charge, balance transaction
and Stripe's fee; the sale's key ``membership_fee:<invoice>``) and one entry of kind
``membership_fee`` (the sale's ``sale:<id>:paid``, referenced by the invoice), whether
the charge's answer or ``invoice.paid`` is heard first:
Dr stripe_clearing (total) / Cr service_revenue (net) + Cr tax_payable (tax), and
Stripe's fee Dr processing_fees / Cr stripe_clearing.

A member paid at the front desk has no card on file: the fee of a frozen period is
taken in the clinic (cash, cheque or the card terminal) — the first one when staff
freeze the membership at the desk, each later one as the desk's next payment while
it stays frozen. The payment is in the clinic and the entry the same but for where
the money sits: Dr cash_on_hand (total) / Cr service_revenue (net) + Cr tax_payable
(tax), the sale keyed by the membership and the frozen period's start
(``membership_fee:desk:<id>:<start>``), so each frozen period is charged once however
often the form is sent.

A fee's sale has no sessions: the sale's page refunds it by amount, all or part of what
is left, the way it was paid (``payments.refund_sale``: handed back at the desk, or a
Stripe refund on the card); a refund made in Stripe's dashboard is recorded by the same
rule (``payments.record_external_refund``): no sessions to revoke, the net reverses
revenue, the tax is given back.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import datetime
from typing import Any

from portal import db, money
from portal.auth.service import CurrentUser
from portal.catalog.service import PackageTerms
from portal.ledger import service as ledger
from portal.ledger.tables import JournalEntry
from portal.memberships.service import next_period_end, sale_terms
from portal.memberships.tables import Membership
from portal.payments import service as payments
from portal.payments.gateway import GatewayError, StripeGateway, StripeInvoice
from portal.sales import service as sales
from portal.sales.tables import Sale
from portal.timeutil import utcnow

log = logging.getLogger("portal.memberships")

MANUAL = "manual"
KIND = "membership_fee"
# How a desk member pays in the clinic: a period's fee, or a freeze fee.
DESK_METHODS = {"cash": "Cash", "cheque": "Cheque", "terminal": "Card terminal"}


def fee_quote(terms: dict[str, Any]) -> money.TaxQuote | None:
    """The freeze fee with its tax per the membership's terms (None: the plan has none)."""
    fee = int(terms.get("freeze_fee_cents") or 0)
    if fee <= 0:
        return None
    return money.quote_tax(fee, int(terms["tax_rate_bp"]), bool(terms["prices_include_tax"]))


def is_fee_invoice(invoice: StripeInvoice) -> bool:
    return invoice.billing_reason == MANUAL


async def charge_frozen_period(
    gateway: StripeGateway, membership: dict[str, Any], period_start: datetime
) -> StripeInvoice | None:
    """Charge the plan's freeze fee for the frozen period starting at ``period_start``."""
    quote = fee_quote(json.loads(membership["terms"]))
    if quote is None or membership["subscription_id"] is None:
        return None
    try:
        return await gateway.charge_subscription_item(
            str(membership["subscription_id"]),
            amount_cents=quote.total_cents,
            currency=str(membership["currency"]),
            description=f"{membership['name']} — freeze fee from {period_start:%Y-%m-%d}",
            # Keyed by the subscription charged (one per membership, and unique in
            # Stripe's account, where membership ids of a restored database are not).
            idempotency_key=f"subscription:{membership['subscription_id']}:freeze-fee:"
            f"{int(period_start.timestamp())}",
        )
    except GatewayError:
        log.exception("freeze fee of membership %s not charged", membership["id"])
        return None


def fee_terms(
    membership: dict[str, Any], quote: money.TaxQuote, period_start: datetime
) -> PackageTerms:
    """The terms of the sale a freeze fee is: the fee of one frozen period, no sessions."""
    t = json.loads(membership["terms"])
    end = next_period_end(period_start, str(t["interval"]))
    name = (
        sales.FEE_NAME.format(membership=membership["id"], plan=t["name"])
        + f" for the period {period_start:%Y-%m-%d} to {end:%Y-%m-%d}"
    )
    return replace(
        sale_terms(t, name=name[:160], sessions=0),
        location_id=int(membership["location"]),
        currency=str(membership["currency"]),
        price_cents=int(t["freeze_fee_cents"]),
        net_cents=quote.net_cents,
        tax_cents=quote.tax_cents,
        total_cents=quote.total_cents,
        session_values=(),
        session_totals=(),
        quoted_at=period_start,
    )


async def _record(
    membership: dict[str, Any],
    quote: money.TaxQuote,
    period_start: datetime,
    *,
    event_key: str,
    method: str,
    at: datetime,
    lines: list[ledger.Line],
    reference: str,
    memo: str,
    recorded_by: int | None = None,
    card: payments.CardEvidence | None = None,
) -> int | None:
    """One freeze fee taken: its sale and payment (``payments.record_earned_sale``, keyed
    by ``event_key``) and its entry (``sale:<id>:paid``, as every paid sale's), under the
    membership's lock; the sale's id, or None when this fee was recorded before."""
    async with db.transaction():
        await db.lock_row(Membership, int(membership["id"]))
        if await _journalled_alone(event_key):
            return None
        sale_id = await payments.record_earned_sale(
            int(membership["client"]), fee_terms(membership, quote, period_start),
            channel=sales.MEMBERSHIP, method=method, at=at, request_key=event_key,
            recorded_by=recorded_by, card=card,
        )  # fmt: skip
        if sale_id is None:
            return None
        await ledger.post(
            event_key=f"sale:{sale_id}:paid", kind=KIND, lines=lines,
            currency=str(membership["currency"]), location_id=int(membership["location"]),
            occurred_at=at, reference=reference,
            memo=memo, sale_id=sale_id, channel=sales.MEMBERSHIP,
        )  # fmt: skip
    return sale_id


async def _journalled_alone(key: str) -> bool:
    """A fee journalled before fees were payments: its entry, under the sale's key, and no
    sale (it is not recorded again)."""
    return bool(await JournalEntry.exists().where(JournalEntry.event_key == key).run())


def fee_period_start(membership: dict[str, Any], invoice: StripeInvoice) -> datetime:
    """The frozen period a fee invoice was charged for: the membership's current period
    (the fee is charged as it begins), unless that began after the invoice was paid."""
    paid = invoice.paid_at or utcnow()
    start = membership["current_period_start"]
    return start if start is not None and start <= paid else (invoice.period_start or paid)


async def record_fee(
    gateway: StripeGateway,
    membership: dict[str, Any],
    invoice: StripeInvoice,
    period_start: datetime | None = None,
) -> bool:
    """Record a paid freeze-fee invoice once: a payment of a fee sale and its entry;
    True when this call recorded it (the client is sent the receipt)."""
    quote = fee_quote(json.loads(membership["terms"]))
    if invoice.status != "paid" or quote is None or invoice.payment_intent_id is None:
        return False
    if invoice.amount_paid != quote.total_cents or invoice.currency != membership["currency"]:
        log.error("freeze fee invoice %s does not match its plan's fee", invoice.id)
        return False
    intent = await gateway.retrieve_payment_intent(invoice.payment_intent_id)
    charge = intent.latest_charge
    txn = charge.balance_transaction if charge is not None else None
    stripe_fee = txn.fee if txn is not None else 0
    sale_id = await _record(
        membership, quote, period_start or fee_period_start(membership, invoice),
        event_key=f"{KIND}:{invoice.id}", method="card", at=invoice.paid_at or utcnow(),
        lines=[
            ledger.debit("stripe_clearing", quote.total_cents),
            ledger.credit("service_revenue", quote.net_cents),
            ledger.credit("tax_payable", quote.tax_cents),
            ledger.debit("processing_fees", stripe_fee),
            ledger.credit("stripe_clearing", stripe_fee),
        ],
        reference=invoice.id, memo=f"Freeze fee, membership {membership['id']}",
        card=payments.CardEvidence(
            payment_intent_id=intent.id,
            charge_id=charge.id if charge is not None else None,
            balance_transaction_id=txn.id if txn is not None else None,
            fee_cents=txn.fee if txn is not None else None,
        ),
    )  # fmt: skip
    if sale_id is None:
        return False
    await payments.send_receipt_for(sale_id, defer=True)
    return True


def desk_fee_key(membership_id: int, period_start: datetime) -> str:
    """The key of the sale that is the desk-paid fee of the frozen period from
    ``period_start``."""
    return f"{KIND}:desk:{membership_id}:{int(period_start.timestamp())}"


async def desk_fee_paid(membership_id: int, period_start: datetime) -> bool:
    key = desk_fee_key(membership_id, period_start)
    return bool(await Sale.exists().where(Sale.request_key == key).run()) or (
        await _journalled_alone(key)
    )


async def take_at_desk(
    staff: CurrentUser,
    membership: dict[str, Any],
    period_start: datetime,
    method: str,
    at: datetime,
) -> tuple[int, int | None]:
    """Record the freeze fee of the frozen period from ``period_start`` as paid in the
    clinic by ``method``, under the membership's lock: a payment the till and the reports
    count, and its entry. Returns the amount taken and its sale (0, None: no fee, or paid
    before); the caller sends the receipt once its transaction commits."""
    quote = fee_quote(json.loads(membership["terms"]))
    if quote is None:
        return 0, None
    sale_id = await _record(
        membership, quote, period_start,
        event_key=desk_fee_key(int(membership["id"]), period_start), method=method, at=at,
        lines=[
            ledger.debit(sales.CLEARING_ACCOUNT[method], quote.total_cents),
            ledger.credit("service_revenue", quote.net_cents),
            ledger.credit("tax_payable", quote.tax_cents),
        ],
        reference=f"desk-freeze:{membership['id']}:{int(period_start.timestamp())}",
        memo=f"Freeze fee, membership {membership['id']}, paid at the desk "
        f"({sales.PAYMENT_METHODS[method].lower()})",
        recorded_by=staff.id,
    )  # fmt: skip
    return (quote.total_cents, sale_id) if sale_id is not None else (0, None)
