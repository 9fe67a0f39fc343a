"""Demo memberships: a monthly plan at Portland (2 × 60 min neuromuscular, 15 % off
packages and extra sessions for members) and three members, each with a paid month.

The Stripe ids are made up (the local stand-in starts empty at every ``make run``), so
these memberships cannot be cancelled or frozen through Stripe."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from portal.auth.service import OWNER, CurrentUser
from portal.catalog.service import PriceInput
from portal.catalog.tables import Service
from portal.demo import DemoIds
from portal.memberships import service, subscriptions
from portal.memberships.tables import Membership, MembershipPeriod, MembershipPlan
from portal.payments.demo import pay_by_card
from portal.sales import service as sales
from portal.timeutil import utcnow

PLAN = "Monthly neuromuscular"
MEMBERS = ("jordan.lee@demo.clinic", "maria.gonzalez@demo.clinic", "sam.okafor@demo.clinic")


async def load_demo(ids: DemoIds) -> None:
    location_id, owner_id = ids.locations.get("portland-pearl"), ids.users.get("owner@demo.clinic")
    found = await Service.select(Service.id).where(Service.name == "Neuromuscular massage, 60 min")
    if location_id is None or owner_id is None or not found:
        return
    if await MembershipPlan.exists().where(MembershipPlan.name == PLAN).run():
        return
    owner = CurrentUser(owner_id, "owner@demo.clinic", "", OWNER, frozenset())
    plan = service.PlanInput(
        name=PLAN, description="Two 60-minute neuromuscular sessions every month.",
        interval=service.MONTHLY, sessions_per_period=2, rollover_cap=1, min_term_periods=3,
        notice_days=14, freeze_allowed=True, freeze_fee_cents=0, member_discount_bp=1500,
        ends_at=None, sellable_online=True, location_id=location_id,
        service_id=int(found[0]["id"]),
    )  # fmt: skip
    price = PriceInput(amount_cents=17000, currency="USD", effective_from=None, note="")
    plan_id = await service.create_plan(owner, plan, price)
    now = utcnow()
    terms = await service.quote_plan(plan_id, now)
    for n, email in enumerate(MEMBERS, start=1):
        client_id = ids.users.get(email)
        if client_id is None:
            continue
        joined = now - timedelta(days=3 * n)
        membership_id = await _membership(client_id, plan_id, terms, n, joined)
        membership = await subscriptions.get_membership(membership_id)
        period_end = subscriptions.next_period_end(joined, terms.interval)
        sale_id = await sales.create_pending_sale(
            client_id, subscriptions.period_terms(membership, joined),
            channel=sales.MEMBERSHIP, payment_method="card",
        )  # fmt: skip
        await pay_by_card(sale_id, terms.total_cents, terms.currency, f"demo_member_{n}", joined)
        await sales.set_valid_until(sale_id, period_end + subscriptions.ROLLOVER_WINDOW)
        await MembershipPeriod.insert(
            MembershipPeriod(
                membership=membership_id, invoice_id=f"in_demo_member_{n}",
                period_start=joined, period_end=period_end, amount_cents=terms.total_cents,
                currency=terms.currency, status=subscriptions.PAID, sale_id=sale_id,
                paid_at=joined, created_at=joined,
            )
        ).run()  # fmt: skip
        await (
            Membership.update(
                {Membership.current_period_start: joined, Membership.current_period_end: period_end}
            )
            .where(Membership.id == membership_id)
            .run()
        )


async def _membership(
    client_id: int, plan_id: int, terms: service.PlanTerms, n: int, joined: datetime
) -> int:
    rows = (
        await Membership.insert(
            Membership(
                client=client_id, plan=plan_id, location=terms.location_id, name=terms.name,
                terms=json.dumps(terms.as_dict()), currency=terms.currency,
                total_cents=terms.total_cents, sessions_per_period=terms.sessions_per_period,
                status=subscriptions.ACTIVE, subscription_id=f"sub_demo_member_{n}",
                customer_id=f"cus_demo_member_{n}", created_at=joined, joined_at=joined,
            )
        )
        .returning(Membership.id)
        .run()
    )  # fmt: skip
    return int(rows[0]["id"])
