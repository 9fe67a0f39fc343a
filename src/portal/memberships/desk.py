"""Memberships paid at the front desk ("invoiced for cash"): no Stripe subscription.

Staff enrol a client into a plan and take the first period's fee in the clinic
(cash, cheque or the card terminal); each later period is paid the same way.
A paid period is what a paid invoice is for a Stripe member: a
``membership_period`` (its key ``desk:<membership>:<period start>`` unique, as
an invoice id is) and a sale of channel ``membership`` paid in the clinic
(``payments.pay_in_clinic``): the period's session credits, a succeeded payment
and the entry Dr cash on hand / Cr deferred revenue + tax payable.

Every change runs inside ``subscriptions.locked`` (the membership's lock, then
a fresh read). Recording a period's payment claims the form's one-time key in
the same transaction, and the period it pays is the first one not yet paid,
read under the lock: two clicks of one form answer the first one's sale, and
two forms sent at once pay the period once (the second finds it paid and the
next one not yet payable).

Arrears: the hourly ``membership_arrears`` job (:func:`fall_due`) turns a desk
member whose period ended unpaid *past due* with its grace period, the period
owed listed as due, exactly as a failed renewal does; ``enforce_arrears`` then
freezes its sessions after the grace. Frozen desk members' periods roll on
uncharged, and a cancelled one ends at its ``cancel_at``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from portal import db
from portal.audit import service as audit
from portal.auth.service import CLIENT, CurrentUser
from portal.clients import service as clients
from portal.errors import Forbidden, Invalid
from portal.memberships import fees
from portal.memberships import service as plans
from portal.memberships import subscriptions as subs
from portal.memberships.tables import Membership, MembershipPeriod
from portal.onetime import service as onetime
from portal.payments import service as payments
from portal.sales import service as sales
from portal.timeutil import utcnow

DESK = subs.DESK
# A period can be paid at the desk from this long before it begins (not two ahead).
ADVANCE = timedelta(days=7)
ENROL = "membership_desk_enrol"
PAY = "membership_desk_payment"
METHODS = fees.DESK_METHODS


def period_key(membership_id: int, start: datetime) -> str:
    """The period's unique key, in the column Stripe members keep their invoice id in."""
    return f"desk:{membership_id}:{int(start.timestamp())}"


def _method(method: str) -> str:
    if method not in METHODS:
        raise Invalid({"method": "Choose how the client paid."})
    return method


async def enrol(
    staff: CurrentUser,
    client_id: int,
    plan_id: int,
    method: str,
    *,
    request_key: str,
    address: str = "",
) -> int:
    """Enrol the client into the plan, the first period paid now at the desk: an active
    membership from now, its first period's sessions granted. Returns its id (the same
    id again for the same form)."""
    _method(method)
    plan = await plans.get_plan_for(staff, plan_id, write=True)
    await clients.client_account(client_id)
    now = utcnow()
    try:
        terms = await plans.quote_plan(plan_id, now)
    except plans.NotAvailable as exc:
        raise Invalid({"plan_id": str(exc)}) from exc
    end = subs.next_period_end(now, terms.interval)
    async with db.transaction():
        first = await onetime.claim(request_key, user_id=staff.id, action=ENROL, field="plan_id")
        if first:
            return int(first)
        membership_id = await db.insert_row(
            subs.new_membership(
                client_id, terms, status=subs.ACTIVE, billing=DESK, created_at=now,
                joined_at=now, current_period_start=now, current_period_end=end,
            )
        )  # fmt: skip
        async with subs.locked(membership_id) as membership:
            sale_id = await _pay(staff, membership, now, end, method, now)
        await audit.record(
            staff, "desk_join", "membership", membership_id,
            after={"client_id": client_id, "plan_id": int(plan["id"]), "billing": DESK,
                   "method": method, "sale_id": sale_id,
                   "total_cents": terms.total_cents, "currency": terms.currency},
            address=address,
        )  # fmt: skip
        await onetime.finish(request_key, str(membership_id))
    await payments.send_receipt_for(sale_id, defer=True)
    return membership_id


@dataclass(frozen=True)
class Due:
    """The period the desk takes money for next, or why none can be paid now."""

    start: datetime | None
    end: datetime | None
    amount_cents: int
    currency: str
    overdue: bool  # it has begun unpaid (the membership is past due)
    reason: str  # why it cannot be paid now ("" when it can)
    payable_from: datetime | None = None
    freeze_fee: bool = False  # the plan's fee for a frozen period, not the period's price


async def _latest_paid_end(membership_id: int) -> datetime | None:
    row = (
        await MembershipPeriod.select(MembershipPeriod.period_end)
        .where(
            (MembershipPeriod.membership == membership_id) & (MembershipPeriod.status == subs.PAID)
        )
        .order_by(MembershipPeriod.period_end, ascending=False)
        .first()
        .run()
    )
    return row["period_end"] if row else None


async def _owed(membership_id: int) -> dict[str, Any] | None:
    """The earliest period that fell due unpaid (``open``), if any."""
    return (
        await MembershipPeriod.select()
        .where(
            (MembershipPeriod.membership == membership_id)
            & MembershipPeriod.status.is_in([subs.OPEN, subs.FAILED])
        )
        .order_by(MembershipPeriod.period_start)
        .first()
        .run()
    )


async def next_due(membership: dict[str, Any], now: datetime | None = None) -> Due:
    """The next period to pay at the desk: one owed, else the one after the last paid."""
    now = now or utcnow()
    code, amount = str(membership["currency"]), int(membership["total_cents"])
    if not subs.is_desk(membership):
        return Due(None, None, amount, code, False, "This membership is paid through Stripe.")
    if membership["status"] not in (subs.ACTIVE, subs.PAST_DUE):
        return Due(None, None, amount, code, False, "The membership has ended.")
    owed = await _owed(int(membership["id"]))
    if owed is not None:
        return Due(owed["period_start"], owed["period_end"], int(owed["amount_cents"]),
                   code, True, "")  # fmt: skip
    if membership["paused"]:
        return await _freeze_fee_due(membership, now)
    # After the last period paid, or after the current one when it began frozen (uncharged).
    paid_to = await _latest_paid_end(int(membership["id"]))
    start = max(paid_to or membership["current_period_end"], membership["current_period_end"])
    end = subs.next_period_end(start, str(subs._terms(membership)["interval"]))
    cancel_at = membership["cancel_at"]
    if cancel_at is not None and start >= cancel_at:
        return Due(start, end, amount, code, False, "The membership ends before another period.")
    if membership["next_plan"] is not None and start >= membership["changes_at"]:
        amount = int(json.loads(str(membership["next_terms"]))["total_cents"])
    if start - now > ADVANCE:
        return Due(start, end, amount, code, False, "The next period is not payable yet.",
                   payable_from=start - ADVANCE)  # fmt: skip
    return Due(start, end, amount, code, start <= now, "")


async def _freeze_fee_due(membership: dict[str, Any], now: datetime) -> Due:
    """While frozen, the fee of the next frozen period not yet paid (payable from a week
    before it begins), when the plan has one."""
    code = str(membership["currency"])
    quote = fees.fee_quote(subs._terms(membership))
    start = await subs.frozen_period_start(membership)
    if quote is None or await fees.desk_fee_paid(int(membership["id"]), start):
        amount = int(membership["total_cents"])
        return Due(None, None, amount, code, False, "The membership is frozen: nothing is due.")
    end = subs.next_period_end(start, str(subs._terms(membership)["interval"]))
    if membership["cancel_at"] is not None and start >= membership["cancel_at"]:
        return Due(None, None, 0, code, False, "The membership ends before another period.")
    if start - now > ADVANCE:
        return Due(start, end, quote.total_cents, code, False, "The next period is not payable "
                   "yet.", payable_from=start - ADVANCE, freeze_fee=True)  # fmt: skip
    return Due(start, end, quote.total_cents, code, False, "", freeze_fee=True)


async def record_payment(
    staff: CurrentUser,
    membership_id: int,
    method: str,
    *,
    request_key: str,
    address: str = "",
) -> int:
    """Take the next period's fee at the desk; returns the sale holding its sessions (the
    same sale again for the same form). Refused when no period is payable now. While
    frozen, the next frozen period's freeze fee is what is taken (a sale of no sessions,
    ``fees.take_at_desk``: returns 0). Either way the client is sent the receipt."""
    _method(method)
    if staff.role == CLIENT:
        raise Forbidden("Periods are paid at the front desk.")
    await subs.get_membership_for(staff, membership_id, write=True)
    now = utcnow()
    async with subs.locked(membership_id) as membership:
        first = await onetime.claim(request_key, user_id=staff.id, action=PAY, field="method")
        if first is not None:
            return int(first)
        due = await next_due(membership, now)
        if due.reason or due.start is None or due.end is None:
            raise Invalid({"method": due.reason or "Nothing is due."})
        if due.freeze_fee:
            _, receipt = await fees.take_at_desk(staff, membership, due.start, method, now)
            await audit.record(
                staff, "desk_freeze_fee", "membership", membership_id,
                after={"period_start": due.start.isoformat(), "method": method,
                       "freeze_fee_cents": due.amount_cents, "sale_id": receipt},
                address=address,
            )  # fmt: skip
            sale_id = 0
        else:
            sale_id = receipt = await _pay(staff, membership, due.start, due.end, method, now)
            await audit.record(
                staff, "desk_payment", "membership", membership_id,
                after={"period_start": due.start.isoformat(), "method": method,
                       "sale_id": sale_id, "total_cents": int(membership["total_cents"])},
                address=address,
            )  # fmt: skip
        await onetime.finish(request_key, str(sale_id))
    if receipt:
        await payments.send_receipt_for(receipt, defer=True)
    return sale_id


async def _pay(
    staff: CurrentUser,
    membership: dict[str, Any],
    start: datetime,
    end: datetime,
    method: str,
    now: datetime,
) -> int:
    """One period paid in the clinic, under the membership's lock: its period row (made,
    or the owed one), its sale, credits, payment and journal entry; then as a paid
    invoice: rollover, the membership active again and its sessions thawed."""
    membership_id = int(membership["id"])
    membership = await subs.switch_plan_if_due(membership, start)
    period = await _period_row(membership_id, start, end, membership)
    if period["status"] == subs.PAID:
        raise Invalid({"method": "This period is paid already."})
    sale_id = await payments.pay_in_clinic(
        staff,
        int(membership["client"]),
        subs.period_terms(membership, start),
        method,
        channel=sales.MEMBERSHIP,
    )
    rollover = int(subs._terms(membership)["rollover_cap"])
    await sales.set_valid_until(sale_id, end + (subs.ROLLOVER_WINDOW if rollover else timedelta(0)))
    if rollover:
        await subs._roll_over(membership_id, period, rollover, now)
    await subs._move_period(int(period["id"]), str(period["status"]), subs.PAID,
                            paid_at=now, sale_id=sale_id)  # fmt: skip
    if await _owed(membership_id) is None and await subs.move(
        membership_id, subs.PAST_DUE, subs.ACTIVE, grace_until=None
    ):
        await subs._set_sessions_frozen(membership_id, False)
    if start <= now:  # a period paid ahead becomes the current one when it begins
        await subs._advance_period(membership, start, end)
    return sale_id


async def _period_row(
    membership_id: int, start: datetime, end: datetime, membership: dict[str, Any]
) -> dict[str, Any]:
    key = period_key(membership_id, start)
    await (
        MembershipPeriod.insert(
            MembershipPeriod(
                membership=membership_id,
                invoice_id=key,
                period_start=start,
                period_end=end,
                amount_cents=int(membership["total_cents"]),
                currency=str(membership["currency"]),
                status=subs.OPEN,
                created_at=utcnow(),
            )
        )
        .on_conflict(target=MembershipPeriod.invoice_id, action="DO NOTHING")
        .run()
    )
    row = await MembershipPeriod.select().where(MembershipPeriod.invoice_id == key).first().run()
    assert row is not None
    return row


# -- the hourly run: periods that end at the desk ------------------------------------


async def fall_due(now: datetime | None = None) -> list[int]:
    """Desk members whose period ended: a cancelled one ends; a frozen one's next period
    begins uncharged; otherwise the next period is owed and the member falls past due
    (grace until the period's start + ``GRACE``), as a failed renewal does. Safe to run
    again. Returns the memberships that fell past due now."""
    now = now or utcnow()
    rows = (
        await Membership.select(Membership.id)
        .where(
            (Membership.billing == DESK)
            & Membership.status.is_in([subs.ACTIVE, subs.PAST_DUE])
            & (Membership.current_period_end <= now)
        )
        .run()
    )
    fell = []
    for row in rows:
        membership_id = int(row["id"])
        async with subs.locked(membership_id) as membership:
            # Period by period up to now: frozen or paid-ahead periods begin and go on.
            while (step := await _period_ended(membership, now)) == ADVANCED:
                membership = await subs.get_membership(membership_id)
            if step == FELL_DUE:
                fell.append(membership_id)
    return fell


ADVANCED, FELL_DUE, DONE = "advanced", "fell_due", "done"


async def _period_ended(membership: dict[str, Any], now: datetime) -> str:
    """One step of :func:`fall_due` for a membership under its lock."""
    membership_id = int(membership["id"])
    end = membership["current_period_end"]
    if membership["status"] not in (subs.ACTIVE, subs.PAST_DUE) or end is None or end > now:
        return DONE
    if membership["cancel_at"] is not None and membership["cancel_at"] <= end:
        if membership["cancel_at"] <= now:
            await subs.move(membership_id, str(membership["status"]), subs.ENDED,
                            ended_at=membership["cancel_at"], grace_until=None)  # fmt: skip
        return DONE
    if membership["status"] != subs.ACTIVE:
        return DONE  # already owes a period: one owed period at a time
    following = subs.next_period_end(end, str(subs._terms(membership)["interval"]))
    membership = await subs.switch_plan_if_due(membership, end)
    if membership["paused"]:
        await subs._advance_period(membership, end, following)
        return ADVANCED
    period = await _period_row(membership_id, end, following, membership)
    await subs._advance_period(membership, end, following)
    if period["status"] != subs.OPEN:
        return ADVANCED  # paid ahead
    fell = await subs.move(membership_id, subs.ACTIVE, subs.PAST_DUE, grace_until=end + subs.GRACE)
    return FELL_DUE if fell else DONE
