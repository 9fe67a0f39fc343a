"""``portal demo`` shows memberships: a plan at Portland and three members with a paid
month each, their sessions bookable, and the memberships report counting them."""

from __future__ import annotations

from portal import demo
from portal.memberships import subscriptions
from portal.memberships.tables import Membership, MembershipPlan


async def test_the_demo_has_a_plan_and_three_paying_members(db) -> None:
    assert await demo.load_demo()
    (plan,) = await MembershipPlan.select().run()
    assert (plan["name"], plan["member_discount_bp"]) == ("Monthly neuromuscular", 1500)
    members = await Membership.select().order_by(Membership.id).run()
    assert [m["status"] for m in members] == ["active"] * 3
    for member in members:
        assert await subscriptions.sessions_left(int(member["id"])) == 2
        (period,) = await subscriptions.periods_of(int(member["id"]))
        assert period["status"] == "paid" and period["amount_cents"] == member["total_cents"]
