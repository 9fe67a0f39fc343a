"""Stripe payouts: what reached the bank, and which payments and refunds it contained.

A payout moves money from the Stripe balance to the clinic's bank account.
It is imported from the ``payout.*`` webhooks and by ``portal stripe
payouts`` (which lists Stripe's payouts and imports the ones the portal
missed), through the same idempotent steps:

* Network first: the payout is read from Stripe (an event's copy may be
  stale or arrive out of order) and, for an automatic payout not itemised
  yet, its balance transactions (charges, refunds, adjustments, payout
  failures), with each charge's or refund's source expanded. Stripe lists
  the contents of automatic payouts only.
* A payment or refund in the payout that the portal missed is recorded first
  (the same transitions as the webhook and ``portal stripe reconcile``), and a
  missing card fee is filled from the balance transaction, so the clearing
  account holds what the payout takes out of it.
* Then one transaction: the payout row (unique Stripe id), its lines (unique
  balance transaction ids) matched to the portal's payments, refunds, sales
  and locations, the status moved forward only (compare-and-set), and the
  journal: a paid payout debits ``bank`` and credits ``stripe_clearing`` per
  location, by the sum of its lines' net at that location (lines the portal
  cannot place, and whatever Stripe does not itemise, without a location); a
  payout that fails after it was paid reverses exactly what was posted. Event
  keys are unique, so nothing is journalled twice.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from portal import db
from portal.ledger import periods
from portal.ledger import service as ledger
from portal.ledger.tables import JournalEntry, JournalLine
from portal.money import format_money
from portal.payments import service as payments
from portal.payments.gateway import StripeGateway, StripePayout, StripePayoutItem
from portal.payments.tables import Dispute, Payment, Payout, PayoutLine, Refund
from portal.sales.tables import Sale
from portal.timeutil import utcnow

log = logging.getLogger("portal.payments.payouts")

PENDING = "pending"
IN_TRANSIT = "in_transit"
PAID = "paid"
FAILED = "failed"
CANCELED = "canceled"
# Statuses only move forward: a late or repeated event never undoes a later one.
RANK = {PENDING: 0, IN_TRANSIT: 1, PAID: 2, FAILED: 3, CANCELED: 3}

CHARGE_TYPES = ("charge", "payment")
REFUND_TYPES = ("refund", "payment_refund")
DISPUTE_PREFIXES = ("dp_", "du_")
PAYOUT_FAILURE = "payout_failure"
MAX_FAILURE_DEPTH = 5
INSERT_BATCH = 200  # rows per INSERT (SQLite limits the parameters of one statement)

PAYOUT_KIND = "payout"
PAYOUT_FAILED_KIND = "payout_failed"


def journal_reference(stripe_payout_id: str) -> str:
    return f"payout:{stripe_payout_id}"


@dataclass
class PayoutImport:
    """What importing one payout did."""

    payout_id: int
    stripe_payout_id: str
    created: bool = False
    status_changed: bool = False
    lines: int = 0
    posted: str = ""  # "paid" | "reversed" | ""
    settled: list[str] = field(default_factory=list)  # payments/refunds/fees recorded first
    mismatch: str = ""  # the lines do not add up to the payout

    @property
    def changed(self) -> bool:
        return bool(
            self.created or self.status_changed or self.lines or self.posted or self.settled
        )


# -- importing ---------------------------------------------------------------------------


async def on_payout_event(gateway: StripeGateway, obj: dict[str, Any]) -> None:
    """The webhook's handler for every ``payout.*`` event: import the payout as Stripe has it."""
    payout_id = obj.get("id")
    if not isinstance(payout_id, str) or not payout_id:
        return
    await import_payout(gateway, await gateway.retrieve_payout(payout_id))


async def import_payout(gateway: StripeGateway, payout: StripePayout) -> PayoutImport:
    """Record ``payout`` (and its contents, once) and journal it; idempotent."""
    existing = await _payout_row(payout.id)
    items: list[StripePayoutItem] | None = None
    settled: list[str] = []
    if payout.automatic and (existing is None or not existing["itemized"]):
        items = await gateway.list_payout_items(payout.id)
        settled = await _settle_contents(gateway, items)
    return await record_payout(payout, items, settled=settled)


async def record_payout(
    payout: StripePayout, items: list[StripePayoutItem] | None, *, settled: list[str] | None = None
) -> PayoutImport:
    """The database part of an import: the payout, its lines (``None``: not read) and journal."""
    settled = settled or []
    async with db.transaction():
        payout_id, created = await _insert_payout(payout)
        result = PayoutImport(
            payout_id=payout_id, stripe_payout_id=payout.id, created=created, settled=settled
        )
        result.status_changed = await _advance(payout_id, payout) and not created
        if items is not None:
            result.lines = await _insert_lines(payout_id, items)
        row = await _payout_row(payout.id)
        assert row is not None
        if row["status"] == PAID:
            result.posted = "paid" if await _post_paid(row) else ""
        elif row["status"] == FAILED:
            result.posted = "reversed" if await _post_reversal(row) else ""
        if row["itemized"]:
            lines_net = await _lines_net(payout_id)
            if lines_net != int(row["amount_cents"]):
                result.mismatch = (
                    f"{payout.id}: Stripe's payout is {_money(int(row['amount_cents']), row)}, "
                    f"its transactions add up to {_money(lines_net, row)}"
                )
    return result


def _money(cents: int, row: dict[str, Any]) -> str:
    return format_money(cents, str(row["currency"]))


async def _payout_row(stripe_payout_id: str) -> dict[str, Any] | None:
    return await Payout.select().where(Payout.stripe_payout_id == stripe_payout_id).first().run()


async def _insert_payout(payout: StripePayout) -> tuple[int, bool]:
    now = utcnow()
    inserted = (
        await Payout.insert(
            Payout(
                stripe_payout_id=payout.id,
                amount_cents=payout.amount,
                currency=payout.currency.upper(),
                status=payout.status,
                arrival_date=payout.arrival_date,
                automatic=payout.automatic,
                itemized=False,
                failure_message=(payout.failure_message or "")[:500],
                stripe_created=payout.created,
                imported_at=now,
                updated_at=now,
            )
        )
        .on_conflict(target=Payout.stripe_payout_id, action="DO NOTHING")
        .returning(Payout.id)
        .run()
    )
    if inserted:
        return int(inserted[0]["id"]), True
    row = await _payout_row(payout.id)
    assert row is not None
    return int(row["id"]), False


async def _advance(payout_id: int, payout: StripePayout) -> bool:
    """Move the status forward (never back); the arrival date follows Stripe until paid."""
    rank = RANK.get(payout.status)
    if rank is None:
        log.warning("payout %s has an unknown status %r", payout.id, payout.status)
        return False
    earlier = [status for status, r in RANK.items() if r < rank]
    changed = (
        await Payout.update(
            {
                Payout.status: payout.status,
                Payout.arrival_date: payout.arrival_date,
                Payout.failure_message: (payout.failure_message or "")[:500],
                Payout.updated_at: utcnow(),
            }
        )
        .where((Payout.id == payout_id) & Payout.status.is_in(earlier))
        .returning(Payout.id)
        .run()
        if earlier
        else []
    )
    return bool(changed)


async def _settle_contents(gateway: StripeGateway, items: list[StripePayoutItem]) -> list[str]:
    """Record the payments, refunds and fees of the payout the portal missed.

    Network calls happen here, before the payout's own transaction; each
    step is one of the idempotent transitions the webhook uses.
    """
    notes: list[str] = []
    for item in items:
        if item.type in CHARGE_TYPES and item.payment_intent_id:
            known = await payments._payment_by_intent(item.payment_intent_id)
            if known is None or known["status"] != payments.SUCCEEDED:
                payment = await payments._ensure_payment_recorded(gateway, item.payment_intent_id)
                if payment is not None and payment["status"] == payments.SUCCEEDED:
                    notes.append(f"payment {item.payment_intent_id} of sale {payment['sale']}")
            else:
                payment = known
            if payment is not None and payment["fee_cents"] is None:
                async with db.transaction():
                    if await payments._record_fee(payment, item.balance_transaction):
                        notes.append(f"fee of {item.payment_intent_id}")
        elif (
            item.type in REFUND_TYPES
            and item.refund is not None
            and not await Refund.exists().where(Refund.stripe_refund_id == item.refund.id).run()
            and await payments.record_external_refund(gateway, item.refund)
        ):
            notes.append(f"refund {item.refund.id}")
        elif item.source_id and item.source_id.startswith("dp_"):
            known_dispute = (
                await Dispute.select(Dispute.withdrawn_at, Dispute.reinstated_at)
                .where(Dispute.stripe_dispute_id == item.source_id)
                .first()
                .run()
            )
            moved = "reinstated_at" if item.amount > 0 else "withdrawn_at"
            if known_dispute is None or known_dispute[moved] is None:
                # A dispute's money movement whose webhook the portal missed.
                await payments.record_dispute(gateway, {"id": item.source_id}, closed=False)
                notes.append(f"dispute {item.source_id}")
    return notes


async def _match(item: StripePayoutItem) -> dict[str, int | None]:
    """The portal's payment, refund, sale and location behind one transaction."""
    payment: dict[str, Any] | None = None
    refund: dict[str, Any] | None = None
    if item.type in REFUND_TYPES and item.source_id:
        refund = (
            await Refund.select().where(Refund.stripe_refund_id == item.source_id).first().run()
        )
        if refund is not None:
            payment = await Payment.select().where(Payment.id == refund["payment"]).first().run()
    elif item.source_id and item.source_id.startswith(DISPUTE_PREFIXES):
        dispute = (
            await Dispute.select(Dispute.payment)
            .where(Dispute.stripe_dispute_id == item.source_id)
            .first()
            .run()
        )
        if dispute is not None:
            payment = await Payment.select().where(Payment.id == dispute["payment"]).first().run()
    if payment is None and item.type in CHARGE_TYPES and item.source_id:
        payment = await payments._payment_by_charge(item.source_id)
    if payment is None and item.type in CHARGE_TYPES + REFUND_TYPES:
        if item.payment_intent_id:
            payment = await payments._payment_by_intent(item.payment_intent_id)
        charge_id = item.refund.charge_id if item.refund is not None else None
        if payment is None and charge_id:
            payment = await payments._payment_by_charge(charge_id)
    if payment is None and item.type in CHARGE_TYPES:
        payment = (
            await Payment.select().where(Payment.balance_transaction_id == item.id).first().run()
        )
    sale_id = int(payment["sale"]) if payment is not None else None
    location_id = None
    if sale_id is not None:
        sale = await Sale.select(Sale.location).where(Sale.id == sale_id).first().run()
        location_id = int(sale["location"]) if sale is not None else None
    return {
        "payment": int(payment["id"]) if payment is not None else None,
        "refund": int(refund["id"]) if refund is not None else None,
        "sale": sale_id,
        "location": location_id,
    }


async def _insert_lines(payout_id: int, items: list[StripePayoutItem]) -> int:
    """Insert the payout's lines once; returns how many this call inserted."""
    if not items:
        await (
            Payout.update({Payout.itemized: True})
            .where((Payout.id == payout_id) & (Payout.itemized == False))  # noqa: E712
            .run()
        )
        return 0
    rows = []
    for item in items:
        match = await _match(item)
        rows.append(
            PayoutLine(
                payout=payout_id,
                balance_transaction_id=item.id,
                type=item.type[:40],
                source_id=item.source_id or "",
                payment_intent_id=item.payment_intent_id or "",
                description=item.description[:500],
                gross_cents=item.amount,
                fee_cents=item.fee,
                net_cents=item.net,
                currency=item.currency.upper(),
                payment=match["payment"],
                refund=match["refund"],
                sale=match["sale"],
                location=match["location"],
                stripe_created=item.created,
            )
        )
    inserted = 0
    for start in range(0, len(rows), INSERT_BATCH):
        batch = (
            await PayoutLine.insert(*rows[start : start + INSERT_BATCH])
            .on_conflict(target=PayoutLine.balance_transaction_id, action="DO NOTHING")
            .returning(PayoutLine.id)
            .run()
        )
        inserted += len(batch)
    await (
        Payout.update({Payout.itemized: True})
        .where((Payout.id == payout_id) & (Payout.itemized == False))  # noqa: E712
        .run()
    )
    return inserted


async def _lines_net(payout_id: int) -> int:
    rows = await PayoutLine.select(PayoutLine.net_cents).where(PayoutLine.payout == payout_id).run()
    return sum(int(r["net_cents"]) for r in rows)


# -- journal -------------------------------------------------------------------------------


async def location_split(payout_id: int, depth: int = 0) -> dict[int | None, int]:
    """The payout's net per location (None: lines the portal cannot place).

    A payout failure returns an earlier payout's money to the balance; when
    that payout is known, its amount is split the way that payout was.
    """
    split: dict[int | None, int] = defaultdict(int)
    rows = (
        await PayoutLine.select(
            PayoutLine.location, PayoutLine.type, PayoutLine.source_id, PayoutLine.net_cents
        )
        .where(PayoutLine.payout == payout_id)
        .run()
    )
    for row in rows:
        net = int(row["net_cents"])
        if row["location"] is not None:
            split[int(row["location"])] += net
            continue
        if row["type"] == PAYOUT_FAILURE and row["source_id"] and depth < MAX_FAILURE_DEPTH:
            failed = (
                await Payout.select(Payout.id, Payout.amount_cents, Payout.itemized)
                .where(Payout.stripe_payout_id == row["source_id"])
                .first()
                .run()
            )
            if failed is not None and failed["itemized"] and int(failed["amount_cents"]) == net:
                inner = await location_split(int(failed["id"]), depth + 1)
                if sum(inner.values()) == net:
                    for location_id, cents in inner.items():
                        split[location_id] += cents
                    continue
        split[None] += net
    return dict(split)


def _day_start(day: date, zone: str) -> datetime:
    """The first instant of a local day, in UTC."""
    return datetime.combine(day, time.min, tzinfo=ZoneInfo(zone)).astimezone(UTC)


def _transfer(cents: int, location_id: int | None, *, to_bank: bool) -> list[ledger.Line]:
    """Dr bank / Cr clearing for money paid out (the other way round when negative)."""
    into_bank = cents if to_bank else -cents
    if into_bank >= 0:
        return [
            ledger.debit("bank", into_bank, location_id=location_id),
            ledger.credit("stripe_clearing", into_bank, location_id=location_id),
        ]
    return [
        ledger.debit("stripe_clearing", -into_bank, location_id=location_id),
        ledger.credit("bank", -into_bank, location_id=location_id),
    ]


def _order(item: tuple[int | None, int]) -> tuple[bool, int]:
    return item[0] is None, item[0] or 0


async def _post_transfer(
    row: dict[str, Any], location_id: int | None, cents: int, *, to_bank: bool, at: datetime
) -> bool:
    """One location's share of a payout: from Stripe to the bank, or back when the payout
    failed. Keyed per payout, outcome and location, so each is journalled once."""
    payout = str(row["stripe_payout_id"])
    entry = await ledger.post(
        event_key=f"payout:{payout}:{'paid' if to_bank else 'failed'}:{location_id or 0}",
        kind=PAYOUT_KIND if to_bank else PAYOUT_FAILED_KIND,
        lines=_transfer(cents, location_id, to_bank=to_bank),
        currency=str(row["currency"]),
        location_id=location_id,
        occurred_at=at,
        reference=journal_reference(payout),
        memo=f"Stripe payout {payout}" if to_bank else f"Stripe payout {payout} failed",
    )
    return entry is not None


async def _post_paid(row: dict[str, Any]) -> bool:
    """One entry per location, dated on the arrival day in that location's zone."""
    split = await location_split(int(row["id"])) if row["itemized"] else {}
    residual = int(row["amount_cents"]) - sum(split.values())
    if residual:
        split[None] = split.get(None, 0) + residual
    zones = await periods.zones(split)
    posted = False
    for location_id, cents in sorted(split.items(), key=_order):
        at = _day_start(row["arrival_date"], zones.get(location_id, periods.UTC_ZONE))
        if await _post_transfer(row, location_id, cents, to_bank=True, at=at):
            posted = True
    return posted


async def _post_reversal(row: dict[str, Any]) -> bool:
    """Undo what the paid entries put in the bank, location by location."""
    reference = journal_reference(str(row["stripe_payout_id"]))
    entries = (
        await JournalEntry.select(JournalEntry.id)
        .where((JournalEntry.reference == reference) & (JournalEntry.kind == PAYOUT_KIND))
        .run()
    )
    if not entries:
        return False  # never paid here: nothing reached the bank, nothing to undo
    lines = (
        await JournalLine.select(
            JournalLine.location, JournalLine.debit_cents, JournalLine.credit_cents
        )
        .where(
            JournalLine.entry.is_in([int(e["id"]) for e in entries])
            & (JournalLine.account == "bank")
        )
        .run()
    )
    in_bank: dict[int | None, int] = defaultdict(int)
    for line in lines:
        location = int(line["location"]) if line["location"] is not None else None
        in_bank[location] += int(line["debit_cents"]) - int(line["credit_cents"])
    posted = False
    now = utcnow()
    for location_id, cents in sorted(in_bank.items(), key=_order):
        if await _post_transfer(row, location_id, cents, to_bank=False, at=now):
            posted = True
    return posted


# -- the command -----------------------------------------------------------------------------


@dataclass
class PayoutRun:
    """What one ``portal stripe payouts`` run saw and changed."""

    since: date
    seen: int = 0
    imported: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    settled: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"Stripe: {self.seen} payout(s) arriving since {self.since.isoformat()}."]
        if not (self.imported or self.updated or self.settled):
            out.append("Nothing to import: the portal already had every payout.")
        sections = (
            (f"Imported {len(self.imported)} payout(s):", self.imported),
            (f"Updated {len(self.updated)} payout(s):", self.updated),
            (f"Recorded first, as the payouts contained them: {len(self.settled)}:", self.settled),
            (f"{len(self.mismatches)} mismatch(es) to settle by hand:", self.mismatches),
        )
        for title, items in sections:
            if items:
                out.append(title)
                out.extend(f"  {item}" for item in items)
        return out


async def import_payouts(gateway: StripeGateway, since: date) -> PayoutRun:
    """List Stripe's payouts arriving on or after ``since`` and import what the portal lacks.

    A payout already imported with Stripe's status (and its contents, when
    Stripe lists them) is skipped without a further call, so a second run
    changes nothing. Raises :class:`GatewayError` when Stripe cannot be read.
    """
    run = PayoutRun(since=since)
    async for payout in gateway.iter_payouts(since):
        run.seen += 1
        row = await _payout_row(payout.id)
        if (
            row is not None
            and row["status"] == payout.status
            and (row["itemized"] or not payout.automatic)
        ):
            continue
        result = await import_payout(gateway, payout)
        amount = format_money(payout.amount, payout.currency.upper())
        described = (
            f"{payout.id} {amount} {payout.status}, arriving {payout.arrival_date.isoformat()}"
            + (f", {result.lines} transaction(s)" if result.lines else "")
            + (", journalled" if result.posted == "paid" else "")
            + (", journal reversed" if result.posted == "reversed" else "")
        )
        if result.created:
            run.imported.append(described)
        elif result.changed:
            run.updated.append(described)
        run.settled.extend(result.settled)
        if result.mismatch:
            run.mismatches.append(result.mismatch)
    return run
