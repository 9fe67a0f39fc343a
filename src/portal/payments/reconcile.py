"""Reconciliation: Stripe's payments and refunds of a window against the portal's.

Every change goes through the same idempotent transitions as the webhook.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from portal import db
from portal.money import format_money
from portal.payments.evidence import (
    _payment_by_intent,
    _payment_for_sale,
    _record_fee,
    _sale_id_of,
    record_stripe_payment,
)
from portal.payments.gateway import StripeGateway, StripePaymentIntent, StripeRefund
from portal.payments.refunds import _own_refund_of, record_external_refund, settle_own_refund
from portal.payments.states import SUCCEEDED
from portal.payments.tables import Payment, Refund
from portal.sales.tables import Sale


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
