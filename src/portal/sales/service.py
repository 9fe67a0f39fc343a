"""Sold packages: the snapshot, its session credits, activation and expiry.

A sale is created *pending* with every term frozen from the catalog
(:func:`portal.catalog.service.quote_package`). It becomes *active* when
paid — by the Stripe webhook, or at once for an in-clinic payment — and only
then gets its session credits and its journal entry. Every transition is a
compare-and-set update, so a webhook delivered twice, or two processes
racing, change it once.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from piccolo.query import WhereRaw

from portal import access, db, progress, records
from portal.auth.service import CLIENT, CurrentUser
from portal.catalog.service import NotAvailable, PackageTerms
from portal.ledger import daily
from portal.ledger import service as ledger
from portal.sales.tables import IntroClaim, Sale, SaleSession
from portal.timeutil import utcnow

if TYPE_CHECKING:
    from piccolo.columns import Column
    from piccolo.table import Table

PENDING = "pending"
ACTIVE = "active"
CANCELLED = "cancelled"
REFUNDED = "refunded"
NEEDS_REVIEW = "needs_review"
# A sale's status as staff read it in lists.
SALE_STATUS_LABELS = {
    PENDING: "Awaiting payment",
    ACTIVE: "Active",
    REFUNDED: "Refunded",
    CANCELLED: "Cancelled",
    NEEDS_REVIEW: "Needs review",
}

AVAILABLE = "available"
HELD = "held"
REDEEMED = "redeemed"
REVOKED = "revoked"
EXPIRED = "expired"
FORFEITED = "forfeited"

# The allowed moves of each state machine, in one place (docs/architecture.md,
# "Money transitions"). ``move_sale`` and ``move_credit`` refuse anything else.
SALE_MOVES: dict[str, frozenset[str]] = {
    PENDING: frozenset({ACTIVE, CANCELLED, NEEDS_REVIEW}),
    # Money that arrives for an abandoned checkout still counts.
    CANCELLED: frozenset({PENDING, NEEDS_REVIEW}),
    # Stripe's evidence did not match the sale; an owner settles it.
    NEEDS_REVIEW: frozenset(),
    # Every session refunded or lost to a chargeback.
    ACTIVE: frozenset({REFUNDED}),
    REFUNDED: frozenset(),
}
CREDIT_MOVES: dict[str, frozenset[str]] = {
    AVAILABLE: frozenset({HELD, REVOKED, EXPIRED}),
    HELD: frozenset({AVAILABLE, REDEEMED, FORFEITED, REVOKED}),
    # A refund reserves its sessions before Stripe is asked; Stripe refusing
    # it gives them back.
    REVOKED: frozenset({AVAILABLE}),
    REDEEMED: frozenset(),
    EXPIRED: frozenset(),
    FORFEITED: frozenset(),
}


class TransitionNotAllowed(RuntimeError):
    """A move the state machine does not have: a bug in the caller, never user input."""


def check_move(moves: dict[str, frozenset[str]], old: str, new: str, what: str = "") -> None:
    """Refuse a move ``moves`` does not allow (``what`` names the machine in the error)."""
    if new not in moves.get(old, frozenset()):
        raise TransitionNotAllowed(f"{what} {old} → {new}".lstrip())


async def compare_and_set(
    status: Column, row_id: int, old: str, new: str, values: dict[str, Any], *returning: Column
) -> list[dict[str, Any]]:
    """Set one row's ``status`` column ``old`` → ``new`` with ``values`` (column name → value),
    only while it still is ``old``; the changed rows (empty when another request moved it
    first). Every state machine here (sales, credits, payments, refunds, appointments) moves
    through this one update, so a webhook delivered twice or two racing requests change a
    row once."""
    table: type[Table] = status._meta.table
    row_key = table._meta.primary_key
    update: dict[Any, Any] = {status: new}
    for name, value in values.items():
        update[getattr(table, name)] = value
    rows: list[dict[str, Any]] = (
        await table.update(update)
        .where((row_key == row_id) & (status == old))
        .returning(*(returning or (row_key,)))
        .run()
    )
    return rows


async def journal(
    sale: dict[str, Any],
    event_key: str,
    kind: str,
    memo: str,
    *,
    lines: Sequence[ledger.Line],
    at: datetime | None = None,
) -> int | None:
    """One journal entry about ``sale``: in its currency, at its location, referenced and
    linked by it. ``event_key`` names the event, so it is journalled once (``ledger.post``)."""
    return await ledger.post(
        event_key=event_key,
        kind=kind,
        occurred_at=at,
        currency=sale["currency"],
        location_id=sale["location"],
        reference=f"sale:{sale['id']}",
        memo=memo,
        sale_id=int(sale["id"]),
        channel=str(sale["channel"]),
        lines=lines,
    )


@asynccontextmanager
async def locked(sale_id: int) -> AsyncIterator[dict[str, Any]]:
    """The one rule for changing a sale's money or sessions.

    Opens (or joins) a write transaction, takes the sale's lock (PostgreSQL
    ``FOR UPDATE``; SQLite's immediate transaction) and yields the sale as it
    is now, read after the lock. Refunds, completions, late cancels, no-shows,
    expiry, disputes and every payment webhook run their checks and writes
    inside it, so two of them on one sale happen one after the other, the
    second seeing what the first did.
    """
    async with db.transaction():
        await db.lock_row(Sale, sale_id)
        yield await get_sale(sale_id)


async def move_sale(sale_id: int, old: str, new: str, **values: Any) -> bool:
    """Compare-and-set ``old`` → ``new`` (an allowed move); False when the sale was not ``old``."""
    check_move(SALE_MOVES, old, new)
    return bool(await compare_and_set(Sale.status, sale_id, old, new, values))


async def move_credit(credit_id: int, old: str, new: str, **values: Any) -> dict[str, Any] | None:
    """Compare-and-set one credit ``old`` → ``new``; returns it, or None if it was not ``old``.

    A move into or out of a final state moves the credit between the daily
    totals' movements in the same transaction (``ledger.daily``).
    """
    check_move(CREDIT_MOVES, old, new)
    values = {"changed_at": utcnow(), **values}
    async with db.transaction():
        before = await _credit_dated(credit_id) if old in daily.MOVEMENT_OF_STATE else None
        rows = await compare_and_set(
            SaleSession.state, credit_id, old, new, values,
            SaleSession.id, SaleSession.sale, SaleSession.value_cents,
            SaleSession.total_cents, SaleSession.appointment_id, SaleSession.changed_at,
        )  # fmt: skip
        if not rows:
            return None
        row = rows[0]
        moves = []
        if before is not None:
            moves.append(_credit_movement(old, before, -1, int(row["value_cents"])))
        if new in daily.MOVEMENT_OF_STATE:
            moves.append(_credit_movement(new, row["changed_at"], 1, int(row["value_cents"])))
        await _count_credits(int(row["sale"]), moves)
    return row


async def _credit_dated(credit_id: int) -> datetime | None:
    row = (
        await SaleSession.select(SaleSession.changed_at)
        .where(SaleSession.id == credit_id)
        .first()
        .run()
    )
    return row["changed_at"] if row is not None else None


def _credit_movement(
    state: str, at: datetime, sign: int, value: int
) -> tuple[str, datetime, int, int]:
    return (daily.MOVEMENT_OF_STATE[state], at, sign, sign * value)


async def _count_credits(sale_id: int, moves: list[tuple[str, datetime, int, int]]) -> None:
    """Credits of one sale into the daily totals of its location (``ledger.daily``)."""
    if not moves:
        return
    sale = (
        await Sale.select(Sale.location, Sale.currency, Sale.channel)
        .where(Sale.id == sale_id)
        .first()
        .run()
    )
    if sale is not None:
        await daily.credits(
            int(sale["location"]), str(sale["currency"]), moves, channel=str(sale["channel"])
        )


ONLINE = "online"
FRONT_DESK = "front_desk"
MEMBERSHIP = "membership"  # one paid period of a membership (memberships.subscriptions)

# A membership's fee (``memberships.fees``: a freeze fee) is a sale of no sessions, named
# after its membership: "Freeze fee of membership <id> (<plan>) for the period …".
FEE_NAME = "Freeze fee of membership {membership} ({plan})"
_FEE_NAMED = re.compile(r"Freeze fee of membership (\d+) \(")


def is_fee(sale: dict[str, Any]) -> bool:
    """A sale of no sessions (a membership's freeze fee): refunded by amount, not by
    session, and shown as the fee it is rather than by its sessions."""
    return int(sale["sessions_total"]) == 0


def fee_membership(sale: dict[str, Any]) -> int | None:
    """The membership a fee's sale was taken for, as its name says (None: not a fee, or
    a name that does not say)."""
    found = _FEE_NAMED.match(str(sale["item_name"])) if is_fee(sale) else None
    return int(found.group(1)) if found else None


# How a sale was paid, worded once: the sale and purchase pages, the desk's sale form,
# the reports (page, CSV, filter) and the receipt all read these words.
PAYMENT_METHODS = {
    "card": "Card (online)",
    "cash": "Cash",
    "cheque": "Cheque",
    "terminal": "Card terminal in the clinic",
}
# Where the money of a payment method sits until it is banked.
CLEARING_ACCOUNT = {
    "card": "stripe_clearing",
    "cash": "cash_on_hand",
    "cheque": "cash_on_hand",
    "terminal": "cash_on_hand",
}


@dataclass(frozen=True)
class SessionCounts:
    total: int
    available: int
    held: int
    redeemed: int
    revoked: int
    expired: int
    forfeited: int

    @property
    def remaining(self) -> int:
        """Sessions the client can still book."""
        return self.available

    @property
    def used(self) -> int:
        return self.redeemed + self.forfeited


# The terms a sale keeps in columns of the same name (package_id, the amounts, the tax
# rule…); the rest go to location, item_name and sessions_total, and all of them to
# ``terms`` as JSON. A term given a column of its name is stored without more code here.
_FROZEN_TERMS = tuple(
    term.name
    for term in fields(PackageTerms)
    if term.name in {column._meta.name for column in Sale._meta.columns}
)


async def create_pending_sale(
    client_id: int,
    terms: PackageTerms,
    *,
    channel: str,
    payment_method: str = "card",
    sold_by: int | None = None,
    request_key: str | None = None,
) -> int:
    if payment_method not in PAYMENT_METHODS:
        raise ValueError(f"unknown payment method {payment_method!r}")
    rows = (
        await Sale.insert(
            Sale(
                client=client_id,
                location=terms.location_id,
                item_name=terms.name,
                sessions_total=terms.sessions,
                **{column: getattr(terms, column) for column in _FROZEN_TERMS},
                terms=json.dumps(terms.as_dict()),
                status=PENDING,
                channel=channel,
                payment_method=payment_method,
                sold_by=sold_by,
                frozen=False,
                created_at=utcnow(),
                request_key=request_key,
            )
        )
        .returning(Sale.id)
        .run()
    )
    sale_id = int(rows[0]["id"])
    if terms.introductory:
        await claim_introductory(client_id, sale_id)
    return sale_id


INTRO_TAKEN = (
    "The introductory offer is for a first visit, once per client, and this account "
    "already has it. Choose a single session or a package instead."
)


async def claim_introductory(client_id: int, sale_id: int) -> None:
    """Claim the client's one introductory offer for ``sale_id``, in the caller's
    transaction; ``NotAvailable`` when another sale holds it.

    One row per client (unique): the first insert wins, a concurrent one waits for
    it and inserts nothing. A claim whose sale was cancelled (an abandoned
    checkout) passes to the new sale, compare-and-set on its ``sale_id``.
    """
    inserted = (
        await IntroClaim.insert(IntroClaim(client=client_id, sale_id=sale_id, claimed_at=utcnow()))
        .on_conflict(target=IntroClaim.client, action="DO NOTHING")
        .returning(IntroClaim.id)
        .run()
    )
    if inserted:
        return
    claim = await IntroClaim.select().where(IntroClaim.client == client_id).first().run()
    old = int(claim["sale_id"]) if claim else 0
    if old == sale_id:
        return
    holder = await Sale.select(Sale.status).where(Sale.id == old).first().run()
    if holder is not None and holder["status"] != CANCELLED:
        raise NotAvailable(INTRO_TAKEN)
    moved = await db.update_where(
        IntroClaim,
        {IntroClaim.sale_id: sale_id, IntroClaim.claimed_at: utcnow()},
        (IntroClaim.client == client_id) & (IntroClaim.sale_id == old),
    )
    if not moved:
        raise NotAvailable(INTRO_TAKEN)


async def had_introductory(client_id: int) -> bool:
    """Has the client bought (or is buying) their introductory offer?"""
    claim = await IntroClaim.select().where(IntroClaim.client == client_id).first().run()
    if claim is None:
        return False
    holder = await Sale.select(Sale.status).where(Sale.id == claim["sale_id"]).first().run()
    return holder is not None and holder["status"] != CANCELLED


async def sale_by_request_key(request_key: str, user_id: int) -> int | None:
    """The sale a form (its one-time key) already created: sold by ``user_id`` at the
    front desk, or bought online by ``user_id``."""
    row = (
        await Sale.select(Sale.id)
        .where(
            (Sale.request_key == request_key)
            & ((Sale.sold_by == user_id) | ((Sale.client == user_id) & Sale.sold_by.is_null()))
        )
        .first()
        .run()
    )
    return int(row["id"]) if row else None


def session_shares(sale: dict[str, Any]) -> list[tuple[int, int]]:
    """(net value, total paid) per session, from the snapshot."""
    terms = json.loads(sale["terms"])
    return list(zip(terms["session_values"], terms["session_totals"], strict=True))


async def activate(
    sale_id: int, *, occurred_at: datetime | None = None, payment_method: str | None = None
) -> bool:
    """Pending → active: the sale is paid. Creates its credits and journal entry.

    Returns False when the sale was not pending (already active: a repeated
    event; cancelled: see the caller, which decides whether a late payment
    revives it).
    """
    when = occurred_at or utcnow()
    async with db.transaction():
        sale = await get_sale(sale_id)
        method = payment_method or sale["payment_method"]
        changed = await move_sale(
            sale_id,
            PENDING,
            ACTIVE,
            activated_at=when,
            valid_until=when + timedelta(days=int(sale["validity_days"])),
            payment_method=method,
        )
        if not changed:
            return False
        shares = session_shares(sale)
        await SaleSession.insert(
            *[
                SaleSession(
                    sale=sale_id,
                    position=i,
                    value_cents=value,
                    total_cents=total,
                    state=AVAILABLE,
                    changed_at=when,
                )
                for i, (value, total) in enumerate(shares, start=1)
            ]
        ).run()
        await daily.credits(
            int(sale["location"]),
            str(sale["currency"]),
            [(daily.SOLD, when, len(shares), sum(value for value, _ in shares))],
            channel=str(sale["channel"]),
        )
        await journal(
            sale,
            f"sale:{sale_id}:paid",
            "sale_paid",
            f"{sale['item_name']} ({PAYMENT_METHODS.get(method, method)})",
            lines=[
                ledger.debit(CLEARING_ACCOUNT[method], int(sale["total_cents"])),
                ledger.credit("deferred_revenue", int(sale["net_cents"])),
                ledger.credit("tax_payable", int(sale["tax_cents"])),
            ],
            at=when,
        )
    return True


async def revive_cancelled(sale_id: int) -> bool:
    """Cancelled → pending, when a payment arrives for an abandoned checkout.

    Stripe can deliver ``checkout.session.completed`` after ``expired`` only
    out of order; money that really arrived must not be lost.
    """
    return await move_sale(sale_id, CANCELLED, PENDING, closed_at=None)


async def cancel_pending(sale_id: int) -> bool:
    return await move_sale(sale_id, PENDING, CANCELLED, closed_at=utcnow())


async def hold_for_review(sale_id: int, reason: str) -> bool:
    """Pending (or an abandoned checkout) → needs review: Stripe's evidence does not match.

    A sale past those states (already paid) keeps its state; the first reason
    is still recorded on it for an owner. Returns True when the sale moved.
    """
    for old in (PENDING, CANCELLED):
        if await move_sale(sale_id, old, NEEDS_REVIEW, review_reason=reason[:2000]):
            return True
    await (
        Sale.update({Sale.review_reason: reason[:2000]})
        .where((Sale.id == sale_id) & (Sale.review_reason == ""))
        .run()
    )
    return False


async def date_credit(credit_id: int, at: datetime) -> None:
    """A credit's last change takes the date its journal entry was posted at, so the
    liability report's session counts move with its money (and its daily total)."""
    async with db.transaction():
        rows = (
            await SaleSession.select(
                SaleSession.sale, SaleSession.state, SaleSession.changed_at, SaleSession.value_cents
            )
            .where(SaleSession.id == credit_id)
            .run()
        )
        await (
            SaleSession.update({SaleSession.changed_at: at})
            .where(SaleSession.id == credit_id)
            .run()
        )
        if rows and rows[0]["state"] in daily.MOVEMENT_OF_STATE:
            row = rows[0]
            value = int(row["value_cents"])
            await _count_credits(
                int(row["sale"]),
                [
                    _credit_movement(row["state"], row["changed_at"], -1, value),
                    _credit_movement(row["state"], at, 1, value),
                ],
            )


async def set_valid_until(sale_id: int, valid_until: datetime) -> None:
    """A membership period's sessions last until the period Stripe billed ends, an
    instant rather than a number of days from the payment."""
    await Sale.update({Sale.valid_until: valid_until}).where(Sale.id == sale_id).run()


async def expire_beyond(sale_id: int, keep: int, at: datetime) -> int:
    """Expire the sale's available sessions beyond the first ``keep`` (by position),
    journalling their value as breakage; returns how many expired.

    For a membership period at its renewal: what the plan lets roll over stays, the rest
    ends with the period. Call under ``locked(sale_id)``.
    """
    available = (
        await SaleSession.select(SaleSession.id, SaleSession.value_cents)
        .where((SaleSession.sale == sale_id) & (SaleSession.state == AVAILABLE))
        .order_by(SaleSession.position)
        .run()
    )
    surplus = available[max(keep, 0) :]
    expired = [
        row
        for row in surplus
        if await move_credit(int(row["id"]), AVAILABLE, EXPIRED, changed_at=at)
    ]
    if not expired:
        return 0
    value = sum(int(r["value_cents"]) for r in expired)
    await journal(
        await get_sale(sale_id),
        f"sale:{sale_id}:expired:{min(int(r['id']) for r in expired)}",
        "package_expired",
        f"{len(expired)} unused session(s) beyond the rollover ended with the period",
        lines=[ledger.debit("deferred_revenue", value), ledger.credit("breakage_revenue", value)],
        at=at,
    )
    return len(expired)


async def get_sale(sale_id: int) -> dict[str, Any]:
    return await records.get(Sale, sale_id, "No such sale.")


async def get_sale_for(user: CurrentUser, sale_id: int, *, write: bool = False) -> dict[str, Any]:
    """The sale if ``user`` may see it: its client, or staff of its location."""
    sale = await get_sale(sale_id)
    refused = "This is not your purchase."
    access.ensure_own(user, sale, {CLIENT: "client"}, refused, write=write, read_only=(CLIENT,))
    return sale


async def sessions_of(sale_id: int) -> list[dict[str, Any]]:
    return (
        await SaleSession.select()
        .where(SaleSession.sale == sale_id)
        .order_by(SaleSession.position)
        .run()
    )


def count_states(rows: list[dict[str, Any]], total: int) -> SessionCounts:
    counts = Counter(r["state"] for r in rows)
    return SessionCounts(
        total=total,
        available=counts[AVAILABLE],
        held=counts[HELD],
        redeemed=counts[REDEEMED],
        revoked=counts[REVOKED],
        expired=counts[EXPIRED],
        forfeited=counts[FORFEITED],
    )


async def counts_for(sale_ids: list[int]) -> dict[int, Counter[str]]:
    if not sale_ids:
        return {}
    rows = (
        await SaleSession.select(SaleSession.sale, SaleSession.state)
        .where(SaleSession.sale.is_in(sale_ids))
        .run()
    )
    out: dict[int, Counter[str]] = {i: Counter() for i in sale_ids}
    for row in rows:
        out[int(row["sale"])][row["state"]] += 1
    return out


async def session_counts(sale_id: int) -> SessionCounts:
    sale = await get_sale(sale_id)
    return count_states(await sessions_of(sale_id), int(sale["sessions_total"]))


async def revoke_unused(
    sale_id: int, count: int, *, refund_id: int | None = None
) -> list[dict[str, Any]]:
    """Revoke up to ``count`` available sessions, latest first; returns those revoked.

    Each one is a compare-and-set, so a session booked a moment ago is never
    revoked under the booking.
    """
    revoked: list[dict[str, Any]] = []
    if count <= 0:
        return revoked
    candidates = (
        await SaleSession.select()
        .where((SaleSession.sale == sale_id) & (SaleSession.state == AVAILABLE))
        .order_by(SaleSession.position, ascending=False)
        .run()
    )
    for row in candidates:
        if len(revoked) == count:
            break
        if await move_credit(int(row["id"]), AVAILABLE, REVOKED, refund_id=refund_id):
            revoked.append(row)
    return revoked


async def link_appointment(credit_id: int, appointment_id: int) -> None:
    """Record which appointment holds a credit (set in the booking's transaction)."""
    await (
        SaleSession.update({SaleSession.appointment_id: appointment_id})
        .where(SaleSession.id == credit_id)
        .run()
    )


async def credit_sale_id(credit_id: int | None) -> int | None:
    """The sale a credit belongs to (for taking the sale's lock)."""
    if credit_id is None:
        return None
    row = (
        await SaleSession.select(SaleSession.sale).where(SaleSession.id == credit_id).first().run()
    )
    return int(row["sale"]) if row else None


async def revoked_by_refund(refund_id: int) -> list[dict[str, Any]]:
    """The credits a refund reserved (revoked), latest first."""
    return (
        await SaleSession.select()
        .where((SaleSession.refund_id == refund_id) & (SaleSession.state == REVOKED))
        .order_by(SaleSession.position, ascending=False)
        .run()
    )


async def release_reserved(refund_id: int) -> int:
    """Stripe refused a refund: the sessions it reserved are the client's again."""
    released = 0
    for row in await revoked_by_refund(refund_id):
        if await move_credit(int(row["id"]), REVOKED, AVAILABLE, refund_id=None):
            released += 1
    return released


async def set_frozen(sale_id: int, frozen: bool) -> None:
    await Sale.update({Sale.frozen: frozen}).where(Sale.id == sale_id).run()


async def mark_refunded_if_nothing_left(sale_id: int) -> None:
    """A sale whose sessions are all revoked is fully refunded."""
    counts = await session_counts(sale_id)
    if counts.revoked == counts.total:
        await move_sale(sale_id, ACTIVE, REFUNDED, closed_at=utcnow())


async def needing_review(limit: int = 20) -> list[dict[str, Any]]:
    """Sales whose Stripe evidence did not match them, newest first (owners settle them).

    The status is written into the SQL, not passed as a parameter: PostgreSQL keeps a
    plan for a parameter after a few runs, and such a plan cannot know that sales to
    review are rare, so it walked every sale newest first to find none (0.4 s at a
    million sales, on every visit to the owner's home); the literal's plan reads the
    status index. The value is the module's own constant."""
    return (
        await Sale.select(
            Sale.id, Sale.item_name, Sale.total_cents, Sale.currency, Sale.review_reason,
            Sale.created_at, Sale.location.name.as_alias("location_name"),
        )
        .where(WhereRaw(f"\"sale\".\"status\" = '{NEEDS_REVIEW}'"))
        .order_by(Sale.id, ascending=False)
        .limit(limit)
        .run()
    )  # fmt: skip


def sessions_left(free: int, booked: int, valid_until: datetime | None, now: datetime) -> int:
    """The one meaning of "sessions left" on every page: the sessions of a package not
    yet given or forfeited (free to book, or booked), none once the package has expired."""
    return 0 if valid_until is not None and valid_until <= now else free + booked


async def client_sales(client_id: int, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """A client's purchases, newest first; abandoned checkouts (nothing charged) left out;
    each says whether it is a fee (``is_fee``: no sessions to count)."""
    rows = (
        await Sale.select(
            *Sale.all_columns(),
            Sale.location.name.as_alias("location_name"),
            Sale.location.timezone.as_alias("location_timezone"),
        )
        .where((Sale.client == client_id) & (Sale.status != CANCELLED))
        .order_by(Sale.id, ascending=False)
        .run()
    )
    counts = await counts_for([int(r["id"]) for r in rows])
    now = now or utcnow()
    for row in rows:
        c = counts.get(int(row["id"]), Counter())
        row["free"] = c[AVAILABLE]
        row["used"] = c[REDEEMED] + c[FORFEITED]
        row["booked"] = c[HELD]
        row["left"] = sessions_left(c[AVAILABLE], c[HELD], row["valid_until"], now)
        row["fee"] = is_fee(row)
    return rows


@dataclass(frozen=True)
class ExpiryRun:
    sales: int  # sales that had sessions expire in this run
    sessions: int
    value_cents: dict[str, int]  # breakage recognised, per currency


async def expire_due(
    now: datetime | None = None, *, location_ids: Collection[int] | None = None
) -> ExpiryRun:
    """Expire unused sessions of sales past their validity; journal the breakage.

    Idempotent: a session expires once (compare-and-set from available), and
    each journal entry is keyed by the sale and its first expired session.
    Sales are found through their *available* sessions, so the work per run
    follows the open liability, not every sale ever made. A disputed
    (frozen) sale waits for its dispute to close. Sessions booked for an
    appointment are not expired; if that booking is cancelled later, the
    next run expires the session it gives back. ``location_ids``: only sales
    made at these locations (None: all).
    """
    now = now or utcnow()
    query = SaleSession.select(SaleSession.sale).where(
        (SaleSession.state == AVAILABLE)
        & (SaleSession.sale.status == ACTIVE)
        & (SaleSession.sale.frozen == False)  # noqa: E712
        & (SaleSession.sale.valid_until <= now)
    )
    if location_ids is not None:
        query = query.where(SaleSession.sale.location.is_in(list(location_ids) or [-1]))
    due = await query.distinct().run()
    sale_ids = sorted({int(r["sale"]) for r in due})
    sessions = 0
    expired_sales = 0
    value_by_currency: Counter[str] = Counter()
    for done, sale_id in enumerate(sale_ids):
        await progress.report(done, len(sale_ids), "Expiring unused sessions")
        async with locked(sale_id) as sale:
            if sale["status"] != ACTIVE or sale["frozen"] or sale["valid_until"] > now:
                continue  # changed since it was listed
            rows = (
                await SaleSession.update({SaleSession.state: EXPIRED, SaleSession.changed_at: now})
                .where((SaleSession.sale == sale_id) & (SaleSession.state == AVAILABLE))
                .returning(SaleSession.id, SaleSession.value_cents)
                .run()
            )
            if not rows:
                continue
            value = sum(int(r["value_cents"]) for r in rows)
            first = min(int(r["id"]) for r in rows)
            await daily.credits(
                int(sale["location"]),
                str(sale["currency"]),
                [(daily.EXPIRED, now, len(rows), value)],
                channel=str(sale["channel"]),
            )
            await journal(
                sale,
                f"sale:{sale_id}:expired:{first}",
                "package_expired",
                f"{len(rows)} unused session(s) expired",
                lines=[
                    ledger.debit("deferred_revenue", value),
                    ledger.credit("breakage_revenue", value),
                ],
                at=now,
            )
            sessions += len(rows)
            expired_sales += 1
            value_by_currency[str(sale["currency"])] += value
    return ExpiryRun(sales=expired_sales, sessions=sessions, value_cents=dict(value_by_currency))


IMPORTED = "import"  # the channel of a balance brought in from another system
OPENING_BALANCE = "opening_balance"  # its journal entries' kind (reports.liability)


@dataclass(frozen=True)
class ImportedBalance:
    """A client's remaining sessions in another system, as an import row gives them."""

    client_id: int
    location_id: int
    currency: str
    item_name: str
    package_id: int
    service_id: int
    service_name: str
    session_values: list[int]  # the value of each remaining session, in cents
    sessions_total: int
    # What the client paid for the whole package, when the row says (else the value left).
    price_paid: int | None
    purchased_at: datetime
    valid_until: datetime | None
    request_key: str  # the import row's fingerprint: the same row never opens twice

    @property
    def paid(self) -> int:
        """The sale's price: the price paid, or the value left when the row gives none."""
        return sum(self.session_values) if self.price_paid is None else self.price_paid


def split_value(value: int, sessions: int) -> list[int]:
    """``value`` cents over ``sessions`` shares that add up exactly (the first ones
    take the odd cents)."""
    base, odd = divmod(value, sessions)
    return [base + (1 if i < odd else 0) for i in range(sessions)]


async def open_imported(balances: Sequence[ImportedBalance], at: datetime) -> list[int]:
    """Active sales with their remaining sessions as available credits, in one insert
    per table; the daily totals count them as sold at ``at``. The journal entry is
    :func:`journal_opening_balance`'s, one per batch, location and currency."""
    if not balances:
        return []
    sale_ids = await db.insert_rows(
        Sale,
        [
            {
                "client": b.client_id, "location": b.location_id, "package_id": b.package_id,
                "price_version_id": 0, "price_is_override": False, "service_id": b.service_id,
                "service_name": b.service_name, "item_name": b.item_name[:160],
                "sessions_total": b.sessions_total,
                "validity_days": max((b.valid_until - at).days, 0) if b.valid_until else 0,
                "currency": b.currency, "price_cents": b.paid,
                "unit_list_price_cents": None, "net_cents": b.paid,
                "tax_cents": 0, "total_cents": b.paid, "tax_rate_bp": 0,
                "prices_include_tax": False,
                "terms": json.dumps(
                    {
                        "imported": True,
                        "purchased_at": b.purchased_at.isoformat(),
                        "session_values": b.session_values,
                        "session_totals": b.session_values,
                    }
                ),
                "status": ACTIVE, "channel": IMPORTED, "payment_method": "cash",
                "sold_by": None, "frozen": False, "created_at": b.purchased_at,
                "activated_at": at, "valid_until": b.valid_until, "closed_at": None,
                "request_key": b.request_key, "review_reason": "",
            }
            for b in balances
        ],
        returning=True,
    )  # fmt: skip
    await db.insert_rows(
        SaleSession,
        [
            {
                "sale": sale_id, "position": position, "value_cents": value,
                "total_cents": value, "state": AVAILABLE, "changed_at": at,
                "appointment_id": None, "refund_id": None,
            }
            for sale_id, b in zip(sale_ids, balances, strict=True)
            for position, value in enumerate(b.session_values, start=1)
        ],
    )  # fmt: skip
    sold: dict[tuple[int, str], tuple[int, int]] = {}
    for b in balances:
        count, value = sold.get((b.location_id, b.currency), (0, 0))
        sold[(b.location_id, b.currency)] = (
            count + len(b.session_values),
            value + sum(b.session_values),
        )
    for (location_id, currency), (count, value) in sorted(sold.items()):
        await daily.credits(
            location_id, currency, [(daily.SOLD, at, count, value)], channel=IMPORTED
        )
    return sale_ids


async def journal_opening_balance(
    event_key: str,
    *,
    location_id: int,
    currency: str,
    cents: int,
    memo: str,
    at: datetime,
    reverse: bool = False,
) -> int | None:
    """Imported balances owed to clients: Dr opening-balance equity / Cr deferred revenue
    (``reverse``: the entry undone)."""
    lines = [
        ledger.debit("opening_balance_equity", cents),
        ledger.credit("deferred_revenue", cents),
    ]
    if reverse:
        lines = [
            ledger.debit("deferred_revenue", cents),
            ledger.credit("opening_balance_equity", cents),
        ]
    return await ledger.post(
        event_key=event_key, kind=OPENING_BALANCE, occurred_at=at, currency=currency,
        location_id=location_id, reference=event_key[:80], memo=memo, lines=lines,
    )  # fmt: skip


async def imported_unused(sale_ids: Sequence[int]) -> bool:
    """Whether every credit of these imported sales is still available and unbooked."""
    for start in range(0, len(sale_ids), 1000):
        chunk = list(sale_ids[start : start + 1000])
        used = (
            await SaleSession.exists()
            .where(
                SaleSession.sale.is_in(chunk)
                & ((SaleSession.state != AVAILABLE) | SaleSession.appointment_id.is_not_null())
            )
            .run()
        )
        if used:
            return False
    return True


async def remove_imported(sale_ids: Sequence[int]) -> dict[tuple[int, str], int]:
    """Take back imported sales whose credits are all unused (an import undone): their
    credits and sales are deleted and leave the daily totals on the day they came in.
    Returns the value taken back per (location, currency), for the reversing entries.
    Call inside a transaction, after :func:`imported_unused`."""
    taken: dict[tuple[int, str], int] = {}
    for start in range(0, len(sale_ids), 1000):
        chunk = list(sale_ids[start : start + 1000])
        sales = (
            await Sale.select(Sale.id, Sale.location, Sale.currency, Sale.activated_at)
            .where(Sale.id.is_in(chunk) & (Sale.channel == IMPORTED))
            .run()
        )
        ids = [int(s["id"]) for s in sales]
        if not ids:
            continue
        credits = (
            await SaleSession.delete()
            .where(SaleSession.sale.is_in(ids) & (SaleSession.state == AVAILABLE))
            .returning(SaleSession.sale, SaleSession.value_cents)
            .run()
        )
        by_sale: dict[int, tuple[int, int]] = {}
        for c in credits:
            n, v = by_sale.get(int(c["sale"]), (0, 0))
            by_sale[int(c["sale"])] = (n + 1, v + int(c["value_cents"]))
        await Sale.delete().where(Sale.id.is_in(ids)).run()
        for sale in sales:
            n, v = by_sale.get(int(sale["id"]), (0, 0))
            key = (int(sale["location"]), str(sale["currency"]))
            taken[key] = taken.get(key, 0) + v
            await daily.credits(
                key[0], key[1], [(daily.SOLD, sale["activated_at"], -n, -v)], channel=IMPORTED
            )
    return taken
