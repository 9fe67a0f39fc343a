"""Membership test data: plans and price versions written directly at chosen times."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

from portal.memberships import desk, subscriptions
from portal.memberships.tables import (
    Membership,
    MembershipPeriod,
    MembershipPlan,
    MembershipPlanPrice,
)
from portal.sales.tables import Sale
from portal.timeutil import utcnow
from tests.catalog.helpers import LONG_AGO

_seq = itertools.count(1)


async def make_plan(
    location_id: int,
    service_id: int,
    *,
    name: str | None = None,
    sessions: int = 2,
    price: int | None = 12000,
    currency: str = "USD",
    since: datetime = LONG_AGO,
    interval: str = "month",
    rollover_cap: int = 0,
    min_term_periods: int = 0,
    notice_days: int = 0,
    freeze_allowed: bool = False,
    freeze_fee: int = 0,
    member_discount_bp: int = 0,
    online: bool = True,
) -> int:
    now = utcnow()
    rows = (
        await MembershipPlan.insert(
            MembershipPlan(
                location=location_id,
                name=name or f"Plan {next(_seq)}",
                service=service_id,
                interval=interval,
                sessions_per_period=sessions,
                rollover_cap=rollover_cap,
                min_term_periods=min_term_periods,
                notice_days=notice_days,
                freeze_allowed=freeze_allowed,
                freeze_fee_cents=freeze_fee,
                member_discount_bp=member_discount_bp,
                sellable_online=online,
                active=True,
                created_at=now,
                updated_at=now,
            )
        )
        .returning(MembershipPlan.id)
        .run()
    )
    plan_id = int(rows[0]["id"])
    if price is not None:
        await add_plan_price(plan_id, price, since, currency=currency)
    return plan_id


async def add_plan_price(
    plan_id: int, amount: int, since: datetime, *, currency: str = "USD"
) -> int:
    rows = (
        await MembershipPlanPrice.insert(
            MembershipPlanPrice(
                plan=plan_id,
                amount_cents=amount,
                currency=currency,
                effective_from=since,
                created_at=utcnow(),
            )
        )
        .returning(MembershipPlanPrice.id)
        .run()
    )
    return int(rows[0]["id"])


async def age(membership_id: int, days: int) -> None:
    """Move the membership ``days`` into its past: its periods, their keys and their sales'
    validity (as if it had been enrolled that much earlier)."""
    shift = timedelta(days=days)
    m = await subscriptions.get_membership(membership_id)
    await (
        Membership.update(
            {
                Membership.current_period_start: m["current_period_start"] - shift,
                Membership.current_period_end: m["current_period_end"] - shift,
                Membership.joined_at: m["joined_at"] - shift,
                Membership.cancel_at: m["cancel_at"] - shift if m["cancel_at"] else None,
                Membership.changes_at: m["changes_at"] - shift if m["changes_at"] else None,
            }
        )
        .where(Membership.id == membership_id)
        .run()
    )
    for p in await subscriptions.periods_of(membership_id):
        start = p["period_start"] - shift
        await (
            MembershipPeriod.update(
                {
                    MembershipPeriod.period_start: start,
                    MembershipPeriod.period_end: p["period_end"] - shift,
                    MembershipPeriod.invoice_id: desk.period_key(membership_id, start),
                }
            )
            .where(MembershipPeriod.id == p["id"])
            .run()
        )
        if p["sale_id"]:
            sale = await Sale.select(Sale.valid_until).where(Sale.id == p["sale_id"]).first().run()
            await (
                Sale.update({Sale.valid_until: sale["valid_until"] - shift})
                .where(Sale.id == p["sale_id"])
                .run()
            )
