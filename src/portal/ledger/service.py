"""The double-entry journal: every financial event as balanced lines.

Postings (see docs/architecture.md, Money):

* sale paid:          Dr stripe_clearing (or cash_on_hand) / Cr deferred_revenue (+ tax_payable)
* processor fee:        Dr processing_fees                    / Cr stripe_clearing
* session completed:    Dr deferred_revenue                   / Cr service_revenue
                        (sold at one clinic, given at another: Dr deferred_revenue /
                        Cr due_to_locations at the seller, Dr due_from_locations /
                        Cr service_revenue where it was given; ``recognition_lines``)
* package expired:      Dr deferred_revenue                   / Cr breakage_revenue
* refund:               Dr deferred_revenue (unused part) (+ Dr tax_payable) / Cr stripe_clearing
* dispute lost:         Dr dispute_losses (+ fee)             / Cr stripe_clearing
* Stripe payout paid:   Dr bank                               / Cr stripe_clearing (per location)
* payout failed:        Dr stripe_clearing                    / Cr bank (the paid entry reversed)
* balances imported:    Dr opening_balance_equity             / Cr deferred_revenue (one entry
                        per batch, location and currency; undoing the batch reverses it)

Every location's lines of an entry balance on their own, so each clinic's
trial balance balances. A line belongs to the local day of its own location
(lines without one: UTC); an entry with a line in a closed month is posted at
the first instant of the first open day after it (``ledger.periods``).

Entries are written inside the caller's transaction, so the state change and
its journal lines commit together or not at all, and so do the lines' daily
totals (``ledger.daily``). Nothing here updates or
deletes a line; the database refuses it too.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from piccolo.query.functions.aggregate import Sum

from portal import db
from portal.ledger import daily, periods
from portal.ledger.tables import JournalEntry, JournalLine
from portal.timeutil import utcnow

ASSET = "asset"
LIABILITY = "liability"
REVENUE = "revenue"
EXPENSE = "expense"
EQUITY = "equity"

# code -> (name, type). Assets and expenses carry debit balances; liabilities
# and revenue carry credit balances.
ACCOUNTS: dict[str, tuple[str, str]] = {
    "stripe_clearing": ("Stripe clearing", ASSET),
    "cash_on_hand": ("Cash and in-clinic payments", ASSET),
    "bank": ("Bank account (Stripe payouts)", ASSET),
    # Money Stripe withdrew when a dispute opened, until the dispute closes.
    "disputed_funds": ("Funds held in disputes", ASSET),
    # What other locations owe this one for sessions it gave on their sales.
    "due_from_locations": ("Due from other locations", ASSET),
    "deferred_revenue": ("Deferred revenue (sessions sold, not yet given)", LIABILITY),
    "tax_payable": ("Sales tax payable", LIABILITY),
    # What this location owes others for sessions they gave on its sales.
    "due_to_locations": ("Due to other locations", LIABILITY),
    "service_revenue": ("Service revenue", REVENUE),
    "breakage_revenue": ("Breakage revenue (expired packages)", REVENUE),
    # Contra-revenue (debit balance): money given back, by refund or lost
    # chargeback, for sessions that had already been given or forfeited.
    "revenue_reversals": ("Refunds and chargebacks of given sessions", REVENUE),
    # The other side of balances imported from another system: clients' prepaid
    # sessions the chain owed before it moved in (``portal.imports``).
    "opening_balance_equity": ("Opening balances (imported)", EQUITY),
    "processing_fees": ("Payment processing fees", EXPENSE),
    "dispute_fees": ("Dispute fees", EXPENSE),
    "dispute_losses": ("Dispute losses", EXPENSE),
}


class UnbalancedEntry(ValueError):
    """Debits and credits differ, or a line is malformed: a bug, never user input."""


@dataclass(frozen=True)
class Line:
    """One side of an entry. ``location_id`` overrides the entry's location:
    a session sold at one clinic and given at another moves deferred revenue
    at the first and recognises revenue at the second (through the
    inter-location accounts, so each location's lines balance)."""

    account: str
    debit: int = 0
    credit: int = 0
    location_id: int | None = None

    def __post_init__(self) -> None:
        if self.account not in ACCOUNTS:
            raise UnbalancedEntry(f"Unknown account {self.account!r}")
        if not isinstance(self.debit, int) or not isinstance(self.credit, int):
            raise UnbalancedEntry("Amounts are integer cents")
        if self.debit < 0 or self.credit < 0 or (self.debit and self.credit):
            raise UnbalancedEntry("A line is either a non-negative debit or a credit")


def debit(account: str, cents: int, *, location_id: int | None = None) -> Line:
    return Line(account=account, debit=cents, location_id=location_id)


def credit(account: str, cents: int, *, location_id: int | None = None) -> Line:
    return Line(account=account, credit=cents, location_id=location_id)


def recognition_lines(value: int, *, sold_at: int, given_at: int) -> list[Line]:
    """A session given or forfeited: deferred revenue of the selling location becomes
    service revenue of the location where the session was due.

    At one location: Dr deferred_revenue / Cr service_revenue. Across two: the
    seller owes the other clinic (Dr deferred_revenue / Cr due_to_locations) and
    the other clinic is owed (Dr due_from_locations / Cr service_revenue).
    """
    if sold_at == given_at:
        return [
            debit("deferred_revenue", value, location_id=sold_at),
            credit("service_revenue", value, location_id=given_at),
        ]
    return [
        debit("deferred_revenue", value, location_id=sold_at),
        credit("due_to_locations", value, location_id=sold_at),
        debit("due_from_locations", value, location_id=given_at),
        credit("service_revenue", value, location_id=given_at),
    ]


def _check_balanced(
    kind: str, event_key: str, lines: Sequence[Line], location_id: int | None
) -> None:
    """Debits equal credits for the entry and for each location's lines."""
    if sum(line.debit for line in lines) != sum(line.credit for line in lines):
        raise UnbalancedEntry(f"{kind} {event_key}: debits differ from credits: {lines}")
    per_location: dict[int | None, int] = defaultdict(int)
    for line in lines:
        where = line.location_id if line.location_id is not None else location_id
        per_location[where] += line.debit - line.credit
    uneven = {where: net for where, net in per_location.items() if net}
    if uneven:
        raise UnbalancedEntry(
            f"{kind} {event_key}: the lines of location(s) {sorted(uneven, key=str)} do not "
            f"balance on their own: {lines}"
        )


async def post(
    *,
    event_key: str,
    kind: str,
    lines: Sequence[Line],
    currency: str,
    location_id: int | None,
    occurred_at: datetime | None = None,
    reference: str = "",
    memo: str = "",
    sale_id: int | None = None,
    channel: str | None = None,
    therapist_id: int | None = None,
) -> int | None:
    """Write one balanced entry; returns its id, or None if ``event_key`` was journalled before.

    An entry about a sale names the sale's ``channel`` too: the daily totals keep
    memberships' and packages' figures apart (``daily.product_of``).

    Zero-amount lines are dropped; an entry whose lines are all zero writes nothing.
    The lines of each location balance (``UnbalancedEntry`` otherwise). When a
    line's local date (its own location's zone) falls in a closed month, the whole
    entry is dated at the first instant of the first open day after it, and its
    memo says the day it belongs to.
    """
    if (sale_id is None) != (channel is None):
        raise ValueError("an entry about a sale names its channel, and only then")
    lines = [line for line in lines if line.debit or line.credit]
    _check_balanced(kind, event_key, lines, location_id)
    if not lines:
        return None
    if await JournalEntry.exists().where(JournalEntry.event_key == event_key).run():
        return None
    wanted = occurred_at or utcnow()
    line_locations = {
        line.location_id if line.location_id is not None else location_id for line in lines
    }
    async with db.transaction():
        # Closed months are read inside the write (after the lock a close waits
        # for), so a month closed meanwhile is never written into.
        await periods.lock_for_posting()
        when = await periods.open_instant(wanted, line_locations)
        if when != wanted:
            zone = (await periods.zones([location_id])).get(location_id, periods.UTC_ZONE)
            belongs = f"(belongs to {periods.local_date(zone, wanted).isoformat()})"
            memo = f"{memo} {belongs}" if memo else belongs
        rows = (
            await JournalEntry.insert(
                JournalEntry(
                    event_key=event_key,
                    kind=kind,
                    occurred_at=when,
                    location=location_id,
                    currency=currency,
                    reference=reference,
                    memo=memo,
                    created_at=utcnow(),
                )
            )
            .returning(JournalEntry.id)
            .run()
        )
        entry_id = int(rows[0]["id"])
        await JournalLine.insert(
            *[
                JournalLine(
                    entry=entry_id,
                    account=line.account,
                    debit_cents=line.debit,
                    credit_cents=line.credit,
                    location=line.location_id if line.location_id is not None else location_id,
                    currency=currency,
                    occurred_at=when,
                    sale_id=sale_id,
                    therapist_id=therapist_id,
                )
                for line in lines
            ]
        ).run()
        await daily.journal_lines(
            (
                (
                    line.location_id if line.location_id is not None else location_id,
                    line.account,
                    line.debit,
                    line.credit,
                )
                for line in lines
            ),
            at=when,
            currency=currency,
            kind=kind,
            therapist=therapist_id,
            product=daily.product_of(kind, channel),
        )
    return entry_id


async def posted_at(entry_id: int) -> datetime | None:
    """When an entry was dated (after any move out of a closed month)."""
    at: datetime | None = await db.value_where(
        JournalEntry.occurred_at, JournalEntry.id == entry_id
    )
    return at


async def balance(
    account: str,
    *,
    location_id: int | None = None,
    currency: str | None = None,
    sale_id: int | None = None,
    before: datetime | None = None,
) -> int:
    """The account's balance in its normal direction (debit for assets/expenses)."""
    query = JournalLine.select(
        Sum(JournalLine.debit_cents).as_alias("d"), Sum(JournalLine.credit_cents).as_alias("c")
    ).where(JournalLine.account == account)
    if location_id is not None:
        query = query.where(JournalLine.location == location_id)
    if currency is not None:
        query = query.where(JournalLine.currency == currency)
    if sale_id is not None:
        query = query.where(JournalLine.sale_id == sale_id)
    if before is not None:
        query = query.where(JournalLine.occurred_at < before)
    rows: list[dict[str, Any]] = await query.run()
    debits = int(rows[0]["d"] or 0) if rows else 0
    credits = int(rows[0]["c"] or 0) if rows else 0
    kind = ACCOUNTS[account][1]
    return debits - credits if kind in (ASSET, EXPENSE) else credits - debits


async def totals() -> tuple[int, int]:
    """(all debits, all credits) — equal in a healthy journal."""
    rows = await JournalLine.raw(
        "SELECT COALESCE(SUM(debit_cents), 0) AS d, COALESCE(SUM(credit_cents), 0) AS c "
        "FROM journal_line"
    ).run()
    return int(rows[0]["d"]), int(rows[0]["c"])
