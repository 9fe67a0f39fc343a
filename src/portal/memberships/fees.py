"""The freeze fee: a plan may charge a fee for each period a member spends frozen.

A frozen subscription is paused in Stripe (no renewal invoice). When a frozen
period begins (Stripe's ``customer.subscription.updated`` shows a period later
than the last one paid while collection is paused), the plan's fee, tax as the
location's rules say, is charged on the subscription's card: an invoice item on
the subscription and an invoice of it (``billing_reason`` manual), paid at once.
Its idempotency key is the membership's and the period's, so each frozen period is
charged once however often the event arrives.

A paid fee invoice grants no sessions; it is earned when charged:
Dr stripe_clearing (total) / Cr service_revenue (net) + Cr tax_payable (tax), and
Stripe's fee Dr processing_fees / Cr stripe_clearing — one entry per invoice
(``membership_fee:<invoice>``), whether the charge's answer or ``invoice.paid``
is heard first.

A member paid at the front desk has no card on file: the fee of a frozen period is
taken in the clinic (cash, cheque or the card terminal) — the first one when staff
freeze the membership at the desk, each later one as the desk's next payment while
it stays frozen. The entry is the same but for where the money sits:
Dr cash_on_hand (total) / Cr service_revenue (net) + Cr tax_payable (tax), keyed by
the membership and the frozen period's start (``membership_fee:desk:<id>:<start>``),
so each frozen period is charged once however often the form is sent.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from portal import money
from portal.ledger import service as ledger
from portal.ledger.tables import JournalEntry
from portal.payments.gateway import GatewayError, StripeGateway, StripeInvoice
from portal.sales import service as sales
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
            idempotency_key=f"membership:{membership['id']}:freeze-fee:"
            f"{int(period_start.timestamp())}",
        )
    except GatewayError:
        log.exception("freeze fee of membership %s not charged", membership["id"])
        return None


async def record_fee(
    gateway: StripeGateway, membership: dict[str, Any], invoice: StripeInvoice
) -> bool:
    """Journal a paid freeze-fee invoice once; True when this call wrote it."""
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
    entry = await ledger.post(
        event_key=f"{KIND}:{invoice.id}",
        kind=KIND,
        lines=[
            ledger.debit("stripe_clearing", quote.total_cents),
            ledger.credit("service_revenue", quote.net_cents),
            ledger.credit("tax_payable", quote.tax_cents),
            ledger.debit("processing_fees", stripe_fee),
            ledger.credit("stripe_clearing", stripe_fee),
        ],
        currency=str(membership["currency"]),
        location_id=int(membership["location"]),
        occurred_at=invoice.paid_at or utcnow(),
        reference=invoice.id,
        memo=f"Freeze fee, membership {membership['id']}",
    )
    return entry is not None


def desk_fee_key(membership_id: int, period_start: datetime) -> str:
    """The journal's key of the desk-paid fee of the frozen period from ``period_start``."""
    return f"{KIND}:desk:{membership_id}:{int(period_start.timestamp())}"


async def desk_fee_paid(membership_id: int, period_start: datetime) -> bool:
    key = desk_fee_key(membership_id, period_start)
    return bool(await JournalEntry.exists().where(JournalEntry.event_key == key).run())


async def take_at_desk(
    membership: dict[str, Any], period_start: datetime, method: str, at: datetime
) -> int:
    """Journal the freeze fee of the frozen period from ``period_start`` as paid in the
    clinic by ``method``; returns the amount taken (0: no fee, or paid before)."""
    quote = fee_quote(json.loads(membership["terms"]))
    if quote is None:
        return 0
    entry = await ledger.post(
        event_key=desk_fee_key(int(membership["id"]), period_start),
        kind=KIND,
        lines=[
            ledger.debit(sales.CLEARING_ACCOUNT[method], quote.total_cents),
            ledger.credit("service_revenue", quote.net_cents),
            ledger.credit("tax_payable", quote.tax_cents),
        ],
        currency=str(membership["currency"]),
        location_id=int(membership["location"]),
        occurred_at=at,
        reference=f"desk-freeze:{membership['id']}:{int(period_start.timestamp())}",
        memo=f"Freeze fee, membership {membership['id']}, paid at the desk "
        f"({sales.PAYMENT_METHODS[method].lower()})",
    )
    return quote.total_cents if entry is not None else 0
