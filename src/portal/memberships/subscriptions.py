"""Memberships: joining through Stripe Checkout, and Stripe Billing's events applied once.

A membership is created *pending* with the plan's terms frozen (``PlanTerms``),
then a Checkout Session in subscription mode is opened for it; its id travels
in the subscription's metadata, so every invoice of every renewal names it.

Every change of a membership — each webhook, whatever its order or however
often it arrives — runs inside :func:`locked`: one write transaction that
takes the membership's row lock first and then reads it again, the rule
``sales.service.locked`` keeps for sales. The moves are data
(``MEMBERSHIP_MOVES``, ``PERIOD_MOVES``) applied by compare-and-set.

Each paid period is a sale (channel ``membership``) made through ``sales``
and recorded paid through ``payments.service.record_stripe_payment`` with the
invoice's PaymentIntent: the sale gets the period's session credits and the
journal entry (Dr Stripe clearing / Cr deferred revenue and tax payable), a
payment row with Stripe's fee, and from then on books, refunds and disputes
like any package. ``membership_period.invoice_id`` is unique and the period
moves open → paid once, so an invoice grants its sessions once.

Network first, then the lock: the subscription and the PaymentIntent are read
from Stripe before the transaction, never while holding it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from portal import access, db, money, records
from portal.audit import service as audit
from portal.auth.service import CLIENT, CurrentUser
from portal.catalog.service import PackageTerms
from portal.clients import service as clients
from portal.email import messages
from portal.errors import Invalid
from portal.locations.service import visible_location_ids
from portal.memberships import fees
from portal.memberships import service as plans
from portal.memberships.service import next_period_end
from portal.memberships.tables import Membership, MembershipPeriod
from portal.onetime import service as onetime
from portal.payments import service as payments
from portal.payments.gateway import (
    GatewayError,
    StripeGateway,
    StripeInvoice,
    StripeSubscription,
    invoice_from_dict,
)
from portal.sales import service as sales
from portal.settings import get_settings
from portal.timeutil import utcnow

log = logging.getLogger("portal.memberships")

PENDING = "pending"
ACTIVE = "active"
PAST_DUE = "past_due"
ABANDONED = "abandoned"
ENDED = "ended"

MEMBERSHIP_MOVES: dict[str, frozenset[str]] = {
    # Checkout open; Stripe may end the subscription before we hear it started.
    PENDING: frozenset({ACTIVE, ABANDONED, ENDED}),
    # Money that arrives for an abandoned checkout still counts.
    ABANDONED: frozenset({ACTIVE}),
    ACTIVE: frozenset({PAST_DUE, ENDED}),
    PAST_DUE: frozenset({ACTIVE, ENDED}),
    ENDED: frozenset(),
}

OPEN = "open"
PAID = "paid"
FAILED = "failed"
PERIOD_MOVES: dict[str, frozenset[str]] = {
    OPEN: frozenset({PAID, FAILED}),
    FAILED: frozenset({PAID}),  # paid after the card was updated
    PAID: frozenset(),
}

# How a membership is billed (``membership.billing``): its Stripe subscription, or each
# period paid at the front desk (``memberships.desk``: no subscription, Stripe never called).
STRIPE = "stripe"
DESK = "desk"


def is_desk(membership: dict[str, Any]) -> bool:
    return membership.get("billing") == DESK


# How long the sessions of a membership whose renewal failed stay bookable.
GRACE = timedelta(days=7)
# How long before the grace period ends the member is reminded.
GRACE_REMINDER = timedelta(days=2)
# How long past its period a rollover plan's sessions wait for the renewal to carry them.
ROLLOVER_WINDOW = timedelta(days=1)
JOIN = "membership_join"
STATUS_LABELS = {
    PENDING: "Waiting for payment",
    ACTIVE: "Active",
    PAST_DUE: "Payment failed",
    ABANDONED: "Not completed",
    ENDED: "Ended",
}


async def move(membership_id: int, old: str, new: str, **values: Any) -> bool:
    """Compare-and-set the membership ``old`` → ``new`` (an allowed move), through the one
    state-change update every machine uses (``sales.compare_and_set``)."""
    sales.check_move(MEMBERSHIP_MOVES, old, new)
    return bool(await sales.compare_and_set(Membership.status, membership_id, old, new, values))


async def _move_period(period_id: int, old: str, new: str, **values: Any) -> bool:
    sales.check_move(PERIOD_MOVES, old, new)
    return bool(await sales.compare_and_set(MembershipPeriod.status, period_id, old, new, values))


async def get_membership(membership_id: int) -> dict[str, Any]:
    return await records.get(Membership, membership_id, "No such membership.")


@asynccontextmanager
async def locked(membership_id: int) -> AsyncIterator[dict[str, Any]]:
    """The one rule for changing a membership: its lock, then a fresh read (as sales')."""
    async with db.transaction():
        await db.lock_row(Membership, membership_id)
        yield await get_membership(membership_id)


async def get_membership_for(
    user: CurrentUser, membership_id: int, *, write: bool = False
) -> dict[str, Any]:
    """The membership if ``user`` may see it (``write``: change it): its client, or staff
    of its location."""
    membership = await get_membership(membership_id)
    refused = "This is not your membership."
    access.ensure_own(user, membership, {CLIENT: "client"}, refused, write=write)
    return membership


# -- joining ---------------------------------------------------------------------


def new_membership(client_id: int, terms: plans.PlanTerms, **state: Any) -> Membership:
    """A membership row of the client on ``terms`` (the snapshot kept), in ``state``."""
    return Membership(
        client=client_id,
        plan=terms.plan_id,
        location=terms.location_id,
        name=terms.name,
        terms=json.dumps(terms.as_dict()),
        currency=terms.currency,
        total_cents=terms.total_cents,
        sessions_per_period=terms.sessions_per_period,
        **state,
    )


async def join(
    gateway: StripeGateway,
    client: CurrentUser,
    plan_id: int,
    *,
    base_url: str,
    request_key: str | None = None,
    sold_by: CurrentUser | None = None,
) -> tuple[int, str]:
    """A pending membership with the plan's terms and its Checkout Session: (id, page URL).

    The form's one-time key makes a resubmission answer the membership it
    created; the Checkout Session's idempotency key is the membership's, so
    asking Stripe again returns the same session. ``sold_by``: staff at the
    front desk, who may also sell a plan not sold online.
    """
    try:
        terms = await plans.quote_plan(plan_id, utcnow(), online=sold_by is None)
    except plans.NotAvailable as exc:
        raise Invalid({"plan": str(exc)}) from exc
    claimant = sold_by.id if sold_by is not None else client.id
    async with db.transaction():
        first = await onetime.claim(request_key, user_id=claimant, action=JOIN, field="plan")
        if first:
            membership_id = int(first)
        else:
            membership_id = await db.insert_row(
                new_membership(client.id, terms, status=PENDING, created_at=utcnow())
            )
            await onetime.finish(request_key, str(membership_id))
            if sold_by is not None:
                await audit.record(
                    sold_by, "desk_join", "membership", membership_id,
                    after={"client_id": client.id, "plan_id": plan_id,
                           "total_cents": terms.total_cents, "currency": terms.currency},
                )  # fmt: skip
    membership = await get_membership(membership_id)
    return membership_id, await _checkout_url(gateway, membership, client.email, base_url)


async def _checkout_url(
    gateway: StripeGateway, membership: dict[str, Any], email: str, base_url: str
) -> str:
    terms = json.loads(membership["terms"])
    membership_id = int(membership["id"])
    try:
        session = await gateway.create_subscription_checkout(
            amount_cents=int(membership["total_cents"]),
            currency=str(membership["currency"]),
            interval="month" if terms["interval"] == plans.MONTHLY else "week",
            interval_count=1 if terms["interval"] == plans.MONTHLY else 4,
            product_name=str(membership["name"]),
            success_url=f"{base_url}/memberships/{membership_id}?joined=1",
            cancel_url=f"{base_url}/memberships/{membership_id}",
            client_reference_id=f"membership:{membership_id}",
            metadata={
                "membership_id": str(membership_id),
                "location_id": str(membership["location"]),
            },
            # Creation time too: ids repeat when a database is recreated against one account.
            idempotency_key=f"membership:{membership_id}:"
            f"{int(membership['created_at'].timestamp() * 1_000_000)}:join",
            customer_email=email,
        )
    except GatewayError:
        if membership["status"] == PENDING and not membership["checkout_session_id"]:
            await move(membership_id, PENDING, ABANDONED, ended_at=utcnow())
        raise
    await (
        Membership.update({Membership.checkout_session_id: session.id})
        .where((Membership.id == membership_id) & Membership.checkout_session_id.is_null())
        .run()
    )
    return session.url or ""


async def join_at_desk(
    gateway: StripeGateway,
    staff: CurrentUser,
    client_id: int,
    plan_id: int,
    *,
    base_url: str,
    request_key: str,
) -> tuple[int, str]:
    """Staff start a membership for a client at the front desk: the Checkout link, for the
    client's own phone or card, is returned to show and emailed to the client (once)."""
    plan = await plans.get_plan_for(staff, plan_id, write=True)
    client = await clients.client_account(client_id)
    member = CurrentUser(int(client["id"]), str(client["email"]), str(client["name"]), CLIENT,
                         frozenset())  # fmt: skip
    membership_id, url = await join(
        gateway, member, plan_id, base_url=base_url, request_key=request_key, sold_by=staff
    )
    if url:
        await messages.send_membership_link(
            member.email, name=member.name, plan_name=str(plan["name"]),
            location_name=str(plan["location_name"]), url=url, membership_id=membership_id,
        )  # fmt: skip
    return membership_id, url


# -- Stripe's events -----------------------------------------------------------------


def membership_id_of(metadata: dict[str, str]) -> int | None:
    raw = metadata.get("membership_id", "")
    return int(raw) if raw.isdigit() else None


async def _exists(membership_id: int) -> bool:
    return bool(await Membership.exists().where(Membership.id == membership_id).run())


async def _note(membership_id: int, reason: str) -> None:
    """The first reason Stripe's evidence could not be applied, for an owner."""
    log.error("membership %s needs review: %s", membership_id, reason)
    await (
        Membership.update({Membership.review_reason: reason[:2000]})
        .where((Membership.id == membership_id) & (Membership.review_reason == ""))
        .run()
    )


async def _link(membership: dict[str, Any], subscription_id: str | None) -> bool:
    """Tie the membership to its subscription; False when it belongs to another one."""
    if subscription_id is None:
        return True
    known = membership["subscription_id"]
    if known is None:
        await (
            Membership.update({Membership.subscription_id: subscription_id})
            .where((Membership.id == membership["id"]) & Membership.subscription_id.is_null())
            .run()
        )
        return True
    if known != subscription_id:
        await _note(
            int(membership["id"]),
            f"Stripe subscription {subscription_id} names this membership, which is {known}'s.",
        )
        return False
    return True


async def on_checkout_completed(gateway: StripeGateway, obj: dict[str, Any]) -> None:
    """The client finished Checkout: link the subscription, then apply its first invoice
    (read from Stripe, so a lost or late ``invoice.paid`` changes nothing)."""
    if obj.get("mode") != "subscription":
        return
    membership_id = membership_id_of({k: str(v) for k, v in (obj.get("metadata") or {}).items()})
    subscription_id = obj.get("subscription")
    if membership_id is None or not isinstance(subscription_id, str):
        return
    if not await _exists(membership_id):
        return
    subscription = await gateway.retrieve_subscription(subscription_id)
    invoice = (
        await gateway.retrieve_invoice(subscription.latest_invoice_id)
        if subscription.latest_invoice_id
        else None
    )
    async with locked(membership_id) as membership:
        if await _link(membership, subscription_id):
            await _mirror(membership, subscription)
    if invoice is not None and invoice.status == PAID:
        await apply_paid_invoice(gateway, invoice)


async def on_invoice_paid(gateway: StripeGateway, obj: dict[str, Any]) -> None:
    await apply_paid_invoice(gateway, invoice_from_dict(obj))


async def _period(membership_id: int, invoice: StripeInvoice) -> dict[str, Any]:
    """The period row of ``invoice`` (made on first sight; the invoice id is unique)."""
    await (
        MembershipPeriod.insert(
            MembershipPeriod(
                membership=membership_id,
                invoice_id=invoice.id,
                period_start=invoice.period_start or invoice.created,
                period_end=invoice.period_end or invoice.created,
                amount_cents=invoice.amount_due,
                currency=invoice.currency,
                status=OPEN,
                created_at=utcnow(),
            )
        )
        .on_conflict(target=MembershipPeriod.invoice_id, action="DO NOTHING")
        .run()
    )
    row = (
        await MembershipPeriod.select()
        .where(MembershipPeriod.invoice_id == invoice.id)
        .first()
        .run()
    )
    assert row is not None
    return row


def _mismatches(membership: dict[str, Any], invoice: StripeInvoice) -> list[str]:
    """Why a paid invoice does not belong to this membership's terms (none: it does)."""
    out = []
    code, total = str(membership["currency"]), int(membership["total_cents"])
    if invoice.currency != code:
        out.append(f"Invoice {invoice.id} is in {invoice.currency}; the membership is in {code}.")
    elif invoice.amount_paid != total:
        out.append(f"Invoice {invoice.id} paid {invoice.amount_paid}; the terms say {total}.")
    if invoice.payment_intent_id is None:
        out.append(f"Invoice {invoice.id} is paid but names no payment.")
    return out


def period_terms(membership: dict[str, Any], period_start: datetime) -> PackageTerms:
    """The frozen terms of one paid period, as the sale that holds its credits keeps them."""
    t = json.loads(membership["terms"])
    name = f"{t['name']} — membership period from {period_start:%Y-%m-%d}"[:160]
    return plans.sale_terms(t, name=name, sessions=int(t["sessions_per_period"]))


async def switch_plan_if_due(membership: dict[str, Any], period_start: datetime) -> dict[str, Any]:
    """A change of plan scheduled for a period starting at or before ``period_start``
    takes effect (``memberships.changes``): the membership runs on the new plan's frozen
    terms from that period on. Under the membership's lock; the membership as it is now."""
    at = membership["changes_at"]
    if membership["next_plan"] is None or at is None or period_start < at:
        return membership
    terms = json.loads(str(membership["next_terms"]))
    await (
        Membership.update(
            {
                Membership.plan: int(membership["next_plan"]),
                Membership.name: str(terms["name"]),
                Membership.terms: str(membership["next_terms"]),
                Membership.total_cents: int(terms["total_cents"]),
                Membership.sessions_per_period: int(terms["sessions_per_period"]),
                Membership.next_plan: None,
                Membership.next_terms: None,
                Membership.changes_at: None,
            }
        )
        .where(
            (Membership.id == membership["id"]) & (Membership.next_plan == membership["next_plan"])
        )
        .run()
    )
    return await get_membership(int(membership["id"]))


async def apply_paid_invoice(gateway: StripeGateway, invoice: StripeInvoice) -> bool:
    """A paid invoice grants its period's sessions, once, and the client is sent the
    receipt of the sale it activated, as for a package; True when this call granted
    them. The receipt is keyed by its number, so a replay (or the call that finds the
    period already paid) sends none again, and a receipt lost to a crash after the
    grant goes with the replay."""
    if fees.is_fee_invoice(invoice):
        return await _apply_fee_invoice(gateway, invoice)
    paid = await _apply_paid_invoice(gateway, invoice)
    if paid is None:
        return False
    sale_id, granted = paid
    await payments.send_receipt_for(sale_id, defer=True)
    return granted


async def _apply_fee_invoice(gateway: StripeGateway, invoice: StripeInvoice) -> bool:
    """A paid freeze-fee invoice of the subscription its membership is linked to is
    recorded once (no period, no sessions); True when this call recorded it."""
    membership_id = membership_id_of(invoice.subscription_metadata)
    if membership_id is None or invoice.status != PAID or not await _exists(membership_id):
        return False
    membership = await get_membership(membership_id)
    if membership["subscription_id"] != invoice.subscription_id:
        return False
    return await fees.record_fee(gateway, membership, invoice)


async def _apply_paid_invoice(
    gateway: StripeGateway, invoice: StripeInvoice
) -> tuple[int, bool] | None:
    """The sale of the period ``invoice`` paid, and whether this call activated it
    (False: it was paid already); None when nothing is paid."""
    membership_id = membership_id_of(invoice.subscription_metadata)
    if membership_id is None or invoice.status != PAID or not await _exists(membership_id):
        return None
    intent = (
        await gateway.retrieve_payment_intent(invoice.payment_intent_id)
        if invoice.payment_intent_id
        else None
    )
    paid_at = invoice.paid_at or utcnow()
    async with locked(membership_id) as membership:
        if not await _link(membership, invoice.subscription_id):
            return None
        period = await _period(membership_id, invoice)
        if period["status"] == PAID:
            return (int(period["sale_id"]), False) if period["sale_id"] else None
        membership = await switch_plan_if_due(membership, period["period_start"])
        problems = _mismatches(membership, invoice)
        if problems or intent is None:
            await _note(membership_id, " ".join(problems))
            return None
        sale_id = period["sale_id"]
        if sale_id is None:
            sale_id = await sales.create_pending_sale(
                int(membership["client"]),
                period_terms(membership, period["period_start"]),
                channel=sales.MEMBERSHIP,
                payment_method="card",
            )
        await payments.record_stripe_payment(
            sale_id,
            payment_intent_id=intent.id,
            amount_cents=invoice.amount_paid,
            currency=invoice.currency,
            charge=intent.latest_charge,
            occurred_at=paid_at,
        )
        if (await sales.get_sale(sale_id))["status"] != sales.ACTIVE:
            await _note(membership_id, f"The sale of invoice {invoice.id} was not activated.")
            await (
                MembershipPeriod.update({MembershipPeriod.sale_id: sale_id})
                .where(MembershipPeriod.id == period["id"])
                .run()
            )
            return None
        rollover = int(_terms(membership)["rollover_cap"])
        # A plan with rollover keeps the sessions a day past the period, so the renewal
        # (charged at the period's end, heard moments later) finds them to carry over.
        await sales.set_valid_until(
            sale_id, period["period_end"] + (ROLLOVER_WINDOW if rollover else timedelta(0))
        )
        if rollover:
            await _roll_over(membership_id, period, rollover, paid_at)
        await _move_period(
            int(period["id"]), str(period["status"]), PAID, paid_at=paid_at, sale_id=sale_id
        )
        for old in (PENDING, ABANDONED):
            await move(membership_id, old, ACTIVE, joined_at=paid_at, ended_at=None)
        if not await _unpaid_failures(membership_id) and await move(
            membership_id, PAST_DUE, ACTIVE, grace_until=None
        ):
            await _set_sessions_frozen(membership_id, False)
        await _advance_period(membership, period["period_start"], period["period_end"])
    return int(sale_id), True


async def _roll_over(membership_id: int, period: dict[str, Any], cap: int, at: datetime) -> None:
    """The period just paid follows one whose unused sessions carry over up to ``cap``,
    valid to this period's end; the rest end now as breakage (``sales.expire_beyond``).
    Sessions carried once are not carried again: they end with this period."""
    previous = (
        await MembershipPeriod.select()
        .where(
            (MembershipPeriod.membership == membership_id)
            & (MembershipPeriod.period_end == period["period_start"])
            & (MembershipPeriod.status == PAID)
        )
        .first()
        .run()
    )
    if previous is None or previous["sale_id"] is None:
        return
    sale_id = int(previous["sale_id"])
    async with sales.locked(sale_id) as sale:
        if sale["status"] != sales.ACTIVE or sale["valid_until"] <= at:
            return  # refunded, or expired by the daily run before this renewal was heard
        await sales.expire_beyond(sale_id, cap, at)
        await sales.set_valid_until(sale_id, period["period_end"])


async def _unpaid_failures(membership_id: int) -> int:
    return int(
        await MembershipPeriod.count()
        .where((MembershipPeriod.membership == membership_id) & (MembershipPeriod.status == FAILED))
        .run()
    )


async def _advance_period(membership: dict[str, Any], start: datetime, end: datetime) -> None:
    """Keep the latest period Stripe billed (events of older ones may come later)."""
    await (
        Membership.update(
            {Membership.current_period_start: start, Membership.current_period_end: end}
        )
        .where(
            (Membership.id == membership["id"])
            & (Membership.current_period_end.is_null() | (Membership.current_period_end < end))
        )
        .run()
    )


async def on_invoice_failed(gateway: StripeGateway, obj: dict[str, Any]) -> None:
    """A renewal was declined: the period fails, and a membership whose latest period it is
    falls past due, its sessions bookable until the grace period ends."""
    invoice = invoice_from_dict(obj)
    membership_id = membership_id_of(invoice.subscription_metadata)
    if membership_id is None or fees.is_fee_invoice(invoice) or not await _exists(membership_id):
        return  # a declined freeze fee leaves the membership as it is
    now = utcnow()
    fell_due = False
    async with locked(membership_id) as membership:
        if not await _link(membership, invoice.subscription_id):
            return
        period = await _period(membership_id, invoice)
        membership = await switch_plan_if_due(membership, period["period_start"])
        if not await _move_period(int(period["id"]), OPEN, FAILED, failed_at=now):
            return  # paid already (events out of order), or failed before (a replay)
        later_paid = await (
            MembershipPeriod.exists()
            .where(
                (MembershipPeriod.membership == membership_id)
                & (MembershipPeriod.status == PAID)
                & (MembershipPeriod.period_start > period["period_start"])
            )
            .run()
        )
        fell_due = not later_paid and await move(
            membership_id, ACTIVE, PAST_DUE, grace_until=now + GRACE
        )
        await _advance_period(membership, period["period_start"], period["period_end"])
    if fell_due:
        await _tell_payment_due(membership_id, reminder=False, dedupe=invoice.id)


async def on_subscription_changed(gateway: StripeGateway, obj: dict[str, Any]) -> None:
    """``customer.subscription.updated`` / ``.deleted``: mirror the subscription as Stripe
    has it *now* (read again, so an older event arriving late cannot undo a newer one)."""
    subscription_id = obj.get("id")
    if not isinstance(subscription_id, str):
        return
    subscription = await gateway.retrieve_subscription(subscription_id)
    membership_id = membership_id_of(subscription.metadata)
    if membership_id is None or not await _exists(membership_id):
        return
    async with locked(membership_id) as membership:
        linked = await _link(membership, subscription.id)
        if linked:
            await _mirror(membership, subscription)
    if linked and subscription.paused and subscription.current_period_start is not None:
        await _charge_freeze_fee(gateway, membership_id, subscription.current_period_start)


async def _charge_freeze_fee(gateway: StripeGateway, membership_id: int, start: datetime) -> None:
    """A frozen period began (later than every period billed): charge the plan's fee."""
    membership = await get_membership(membership_id)
    if membership["status"] != ACTIVE or not membership["paused"]:
        return
    billed = await (
        MembershipPeriod.exists()
        .where((MembershipPeriod.membership == membership_id)
               & (MembershipPeriod.period_start >= start))
        .run()
    )  # fmt: skip
    if billed:
        return
    invoice = await fees.charge_frozen_period(gateway, membership, start)
    if invoice is not None:
        await fees.record_fee(gateway, membership, invoice, start)


async def _mirror(membership: dict[str, Any], subscription: StripeSubscription) -> None:
    membership_id = int(membership["id"])
    if subscription.current_period_start is not None:
        membership = await switch_plan_if_due(membership, subscription.current_period_start)
    await (
        Membership.update(
            {
                Membership.customer_id: subscription.customer_id,
                Membership.cancel_at: subscription.cancel_at,
                Membership.paused: subscription.paused,
            }
        )
        .where(Membership.id == membership_id)
        .run()
    )
    if subscription.current_period_start and subscription.current_period_end:
        await _advance_period(
            membership, subscription.current_period_start, subscription.current_period_end
        )
    if subscription.status in ("canceled", "incomplete_expired"):
        for old in (PENDING, ACTIVE, PAST_DUE):
            await move(membership_id, old, ENDED, ended_at=utcnow(), grace_until=None)


# -- reading -------------------------------------------------------------------------


async def list_memberships(
    user: CurrentUser, *, status: str = "", client_id: int | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    """A client's memberships, or the members at the locations a staff user sees, newest
    first; ``status`` filters (``past_due``: members in arrears), ``client_id`` keeps one
    client's."""
    query = Membership.select(
        *Membership.all_columns(),
        Membership.client.name.as_alias("client_name"),
        Membership.client.email.as_alias("client_email"),
        Membership.location.name.as_alias("location_name"),
        Membership.location.timezone.as_alias("location_timezone"),
    )
    if user.role == CLIENT:
        query = query.where(Membership.client == user.id)
    else:
        visible = visible_location_ids(user)
        if visible is not None:
            query = query.where(Membership.location.is_in(sorted(visible) or [-1]))
    if status in STATUS_LABELS:
        query = query.where(Membership.status == status)
    if client_id is not None:
        query = query.where(Membership.client == client_id)
    return await query.order_by(Membership.id, ascending=False).limit(limit).run()


async def periods_of(membership_id: int) -> list[dict[str, Any]]:
    return (
        await MembershipPeriod.select()
        .where(MembershipPeriod.membership == membership_id)
        .order_by(MembershipPeriod.period_start, ascending=False)
        .run()
    )


async def sessions_left(membership_id: int) -> int:
    """Sessions of the membership's paid periods that can still be booked."""
    sale_ids = [int(p["sale_id"]) for p in await periods_of(membership_id) if p["sale_id"]]
    counts = await sales.counts_for(sale_ids)
    return sum(c[sales.AVAILABLE] for c in counts.values())


# -- the member's changes: cancel, freeze ------------------------------------------------


def _terms(membership: dict[str, Any]) -> dict[str, Any]:
    terms: dict[str, Any] = json.loads(membership["terms"])
    return terms


@dataclass(frozen=True)
class CancelQuote:
    """When a cancel made now takes effect, and why not sooner."""

    ends_at: datetime
    billed_periods: int  # periods billed so far (paid or not)
    more_charges: int  # renewals still charged before the end
    notice_days: int
    min_term_periods: int


async def quote_cancel(membership: dict[str, Any], now: datetime | None = None) -> CancelQuote:
    """The first period end at least ``notice_days`` away that completes the minimum term."""
    now = now or utcnow()
    terms = _terms(membership)
    end = membership["current_period_end"]
    if membership["status"] not in (ACTIVE, PAST_DUE) or end is None:
        raise Invalid({"form": "Only a running membership can be cancelled."})
    if membership["cancel_at"] is not None:
        raise Invalid({"form": "This membership is already set to end."})
    billed = int(
        await MembershipPeriod.count().where(MembershipPeriod.membership == membership["id"]).run()
    )
    notice = timedelta(days=int(terms["notice_days"]))
    minimum = int(terms["min_term_periods"])
    periods, more = billed, 0
    while periods < minimum or end - now < notice:
        end = next_period_end(end, str(terms["interval"]))
        periods += 1
        more += 1
    return CancelQuote(end, billed, more, int(terms["notice_days"]), minimum)


async def cancel(
    gateway: StripeGateway,
    user: CurrentUser,
    membership_id: int,
    *,
    request_key: str,
    address: str = "",
) -> datetime:
    """Tell Stripe to end the subscription at the quoted period end; no proration."""
    membership = await get_membership_for(user, membership_id, write=True)
    quote = await quote_cancel(membership)
    subscription = None
    if not is_desk(membership):
        subscription = await gateway.update_subscription(
            str(membership["subscription_id"]),
            idempotency_key=f"membership:{membership_id}:cancel:{request_key}",
            cancel_at=quote.ends_at,
        )
    async with locked(membership_id) as fresh:
        if await onetime.claim(request_key, user_id=user.id, action="membership_cancel"):
            return quote.ends_at
        if subscription is not None:
            await _mirror(fresh, subscription)
        elif fresh["cancel_at"] is not None:
            raise Invalid({"form": "This membership is already set to end."})
        else:  # at the desk: it ends at that period end (``desk.fall_due``)
            await (
                Membership.update({Membership.cancel_at: quote.ends_at})
                .where(Membership.id == membership_id)
                .run()
            )
        await audit.record(
            user, "cancel", "membership", membership_id,
            before={"cancel_at": None},
            after={"cancel_at": quote.ends_at.isoformat()},
            address=address,
        )  # fmt: skip
        await onetime.finish(request_key, quote.ends_at.isoformat())
    return quote.ends_at


async def frozen_period_start(membership: dict[str, Any]) -> datetime:
    """The first period a freeze leaves unbilled: from the current period's end, past any
    period billed ahead (the one whose freeze fee is due)."""
    start = membership["current_period_end"]
    billed = {p["period_start"] for p in await periods_of(int(membership["id"]))}
    while start in billed:
        start = next_period_end(start, str(_terms(membership)["interval"]))
    return start


FREEZE_ACTION = "membership_freeze"  # the one-time key's action of freeze and resume


async def set_frozen(
    gateway: StripeGateway,
    user: CurrentUser,
    membership_id: int,
    frozen: bool,
    *,
    request_key: str,
    address: str = "",
    method: str = "",
) -> int:
    """Freeze (pause collection: no charge, no new sessions) or resume, as the plan allows.

    A desk member's freeze fee is taken in the clinic by ``method`` as staff freeze it:
    the fee of the first frozen period, once (a member cannot freeze it online). Returns
    the fee taken now (0: none, or the period's fee was paid before)."""
    membership = await get_membership_for(user, membership_id, write=True)
    done = await onetime.earlier_result(request_key, user_id=user.id, action=FREEZE_ACTION)
    if done is not None:  # the same form again: as the first one answered
        return int(done) if done.isdigit() else 0
    if frozen and not _terms(membership)["freeze_allowed"]:
        raise Invalid({"form": "This plan cannot be frozen."})
    desk = is_desk(membership)
    if membership["status"] != ACTIVE or (membership["subscription_id"] is None and not desk):
        raise Invalid({"form": "Only an active membership can be frozen or resumed."})
    if bool(membership["paused"]) == frozen:
        raise Invalid(
            {"form": "The membership is already " + ("frozen." if frozen else "running.")}
        )
    fee = fees.fee_quote(_terms(membership)) if desk and frozen else None
    if fee is not None:
        if user.role == CLIENT:
            amount = money.format_money(fee.total_cents, str(membership["currency"]))
            raise Invalid({"form": f"Freezing costs {amount} a period, paid at the front "
                                   "desk: ask the clinic to freeze it."})  # fmt: skip
        if method not in fees.DESK_METHODS:
            raise Invalid({"method": "Choose how the client paid the freeze fee."})
    subscription = None
    if not desk:
        subscription = await gateway.update_subscription(
            str(membership["subscription_id"]),
            idempotency_key=f"membership:{membership_id}:freeze:{request_key}",
            pause=frozen,
        )
    async with locked(membership_id) as fresh:
        first = await onetime.claim(request_key, user_id=user.id, action=FREEZE_ACTION)
        if first is not None:
            return int(first) if first.isdigit() else 0
        taken, fee_sale = 0, None
        if subscription is not None:
            await _mirror(fresh, subscription)
        elif fresh["status"] != ACTIVE or bool(fresh["paused"]) == frozen:
            raise Invalid({"form": "The membership changed meanwhile; please look again."})
        else:  # at the desk: periods roll on uncharged while frozen (``desk.fall_due``)
            await (
                Membership.update({Membership.paused: frozen})
                .where(Membership.id == membership_id)
                .run()
            )
            if fee is not None:
                start = await frozen_period_start(fresh)
                taken, fee_sale = await fees.take_at_desk(user, fresh, start, method, utcnow())
        after: dict[str, Any] = {"paused": frozen}
        if fee is not None:
            after |= {"freeze_fee_cents": taken, "method": method}
        await audit.record(
            user, "freeze" if frozen else "resume", "membership", membership_id,
            before={"paused": not frozen}, after=after, address=address,
        )  # fmt: skip
        await onetime.finish(request_key, str(taken))
    if fee_sale is not None:
        await payments.send_receipt_for(fee_sale, defer=True)
    return taken


async def card_customer(user: CurrentUser, membership_id: int) -> str:
    """The Stripe customer whose card ``user`` may update for this membership."""
    membership = await get_membership_for(user, membership_id, write=True)
    if membership["customer_id"] is None or membership["status"] in (ENDED, ABANDONED):
        raise Invalid({"form": "This membership has no card to update."})
    return str(membership["customer_id"])


async def card_update_url(
    gateway: StripeGateway, customer_id: str, membership_id: int, *, base_url: str
) -> str:
    """Stripe's hosted card update for the customer, back to the membership's page after."""
    return await gateway.create_card_update_session(
        customer_id, f"{base_url}/memberships/{membership_id}"
    )


# -- arrears: after the grace period, the membership's sessions cannot be booked -----------


async def _set_sessions_frozen(membership_id: int, frozen: bool) -> int:
    """Freeze (or thaw) the sales of the membership's paid periods, each under its own lock.

    Booking takes credits of unfrozen sales only. A sale frozen by an open dispute stays
    frozen when the arrears are paid; the dispute's outcome thaws it.
    """
    changed = 0
    for period in await periods_of(membership_id):
        sale_id = period["sale_id"]
        if sale_id is None:
            continue
        async with sales.locked(int(sale_id)) as sale:
            if bool(sale["frozen"]) == frozen or sale["status"] != sales.ACTIVE:
                continue
            if not frozen and await payments.open_dispute(int(sale_id)):
                continue
            await sales.set_frozen(int(sale_id), frozen)
            changed += 1
    return changed


async def _tell_payment_due(membership_id: int, *, reminder: bool, dedupe: str) -> None:
    """Email the member that a renewal is unpaid (once per ``dedupe``), through the outbox."""
    row = (
        await Membership.select(
            *Membership.all_columns(),
            Membership.client.name.as_alias("client_name"),
            Membership.client.email.as_alias("client_email"),
            Membership.location.name.as_alias("location_name"),
            Membership.location.timezone.as_alias("location_timezone"),
        )
        .where(Membership.id == membership_id)
        .first()
        .run()
    )
    if row is None or row["grace_until"] is None:
        return
    failed = (
        await MembershipPeriod.select(MembershipPeriod.amount_cents)
        .where((MembershipPeriod.membership == membership_id) & (MembershipPeriod.status == FAILED))
        .run()
    )
    await messages.send_membership_payment(
        str(row["client_email"]),
        name=str(row["client_name"]),
        due=messages.MembershipDue(
            membership_id=membership_id,
            plan_name=str(row["name"]),
            location_name=str(row["location_name"]),
            amount_cents=sum(int(p["amount_cents"]) for p in failed) or int(row["total_cents"]),
            currency=str(row["currency"]),
            grace_until=row["grace_until"],
            timezone=str(row["location_timezone"]),
            manage_url=f"{get_settings().base_url}/memberships/{membership_id}",
        ),
        reminder=reminder,
        dedupe=dedupe,
    )


async def remind_grace_ending(now: datetime | None = None) -> list[int]:
    """Members past due whose grace period ends within ``GRACE_REMINDER``: one reminder
    each per grace period (safe to run every hour: the outbox sends a reminder once).
    Returns the memberships whose grace period ends that soon."""
    now = now or utcnow()
    due = (
        await Membership.select(Membership.id, Membership.grace_until)
        .where(
            (Membership.status == PAST_DUE)
            & (Membership.billing != DESK)  # the desk asks its members in person
            & (Membership.grace_until > now)
            & (Membership.grace_until <= now + GRACE_REMINDER)
        )
        .run()
    )
    for row in due:
        await _tell_payment_due(
            int(row["id"]), reminder=True, dedupe=row["grace_until"].isoformat()
        )
    return [int(row["id"]) for row in due]


async def enforce_arrears(now: datetime | None = None) -> list[int]:
    """Memberships past due beyond their grace period: their sessions cannot be booked
    until the failed invoice is paid. Returns the memberships whose sessions were frozen
    now (safe to run again: a frozen sale is left as it is)."""
    now = now or utcnow()
    due = (
        await Membership.select(Membership.id)
        .where((Membership.status == PAST_DUE) & (Membership.grace_until <= now))
        .run()
    )
    frozen = []
    for row in due:
        async with locked(int(row["id"])) as membership:
            if membership["status"] != PAST_DUE or membership["grace_until"] > now:
                continue
            if await _set_sessions_frozen(int(row["id"]), True):
                frozen.append(int(row["id"]))
    return frozen
