"""A change of plan at a period end: the member (My account) or staff choose another plan
of the same location; it takes effect at the next period boundary, cancellable before.

Scheduling freezes the new plan's terms as they will be at the boundary (its price
version in effect then) on the membership (``next_plan``, ``next_terms``,
``changes_at``). A Stripe member's subscription is given the new price at once with
``proration_behavior=none``: the period already paid is neither credited nor charged
again, and the next invoice charges the new amount. A desk member simply pays the new
amount for the next period at the desk.

The switch itself happens once, under the membership's lock, when the first period at
or after the boundary is heard of: its invoice (paid or failed) or the subscription's
update for a Stripe member, its payment or falling due for a desk member
(``subscriptions.switch_plan_if_due``). So webhooks in any order or replayed apply it
once, and the new period's sessions are granted on the new terms.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from portal.audit import service as audit
from portal.auth.service import CLIENT, CurrentUser
from portal.errors import Invalid
from portal.locations.service import get_location
from portal.memberships import desk
from portal.memberships import service as plans
from portal.memberships import subscriptions as subs
from portal.memberships.tables import Membership
from portal.onetime import service as onetime
from portal.payments.gateway import StripeGateway

SCHEDULE = "membership_change"
KEEP = "membership_keep_plan"


async def boundary(membership: dict[str, Any]) -> datetime | None:
    """The period start a change made now applies from: the current period's end (a desk
    member who paid ahead: the first period not yet paid)."""
    end: datetime | None = membership["current_period_end"]
    if subs.is_desk(membership):
        return (await desk.next_due(membership)).start or end  # frozen: the current one's end
    return end


def _refusal(membership: dict[str, Any]) -> str:
    if membership["status"] != subs.ACTIVE:
        return "Only an active membership can change plan."
    if membership["cancel_at"] is not None:
        return "This membership is set to end; it cannot change plan."
    if not subs.is_desk(membership) and membership["subscription_id"] is None:
        return "This membership has no subscription yet."
    return ""


async def choices(
    user: CurrentUser, membership: dict[str, Any]
) -> list[tuple[dict[str, Any], plans.PlanTerms]]:
    """The plans the membership may change to (same location, not its own), with their
    terms at the boundary; a client sees those sold online."""
    at = await boundary(membership)
    if _refusal(membership) or at is None:
        return []
    location = await get_location(int(membership["location"]))
    offered = await plans.location_plans(location, at, online_only=user.role == CLIENT)
    return [(plan, terms) for plan, terms in offered if plan["id"] != membership["plan"]]


async def schedule(
    gateway: StripeGateway,
    user: CurrentUser,
    membership_id: int,
    plan_id: int,
    *,
    request_key: str,
    address: str = "",
) -> datetime:
    """Schedule the change to ``plan_id`` at the next period boundary; returns when."""
    membership = await subs.get_membership_for(user, membership_id, write=True)
    refusal = _refusal(membership)
    at = await boundary(membership)
    if refusal or at is None:
        raise Invalid({"plan_id": refusal or "No period is left to change."})
    offered = {int(plan["id"]): terms for plan, terms in await choices(user, membership)}
    terms = offered.get(plan_id)
    if terms is None:
        raise Invalid({"plan_id": "Choose one of the plans offered."})
    await _reprice(gateway, membership, terms.total_cents, f"change:{request_key}")
    async with subs.locked(membership_id) as fresh:
        if await onetime.claim(request_key, user_id=user.id, action=SCHEDULE, field="plan_id"):
            return at
        if _refusal(fresh):
            raise Invalid({"plan_id": _refusal(fresh)})
        await _set_next(membership_id, plan_id, json.dumps(terms.as_dict()), at)
        await audit.record(
            user, "change_plan", "membership", membership_id,
            before={"plan_id": int(fresh["plan"]), "next_plan_id": fresh["next_plan"]},
            after={"next_plan_id": plan_id, "changes_at": at.isoformat(),
                   "total_cents": terms.total_cents},
            address=address,
        )  # fmt: skip
        await onetime.finish(request_key, at.isoformat())
    return at


async def keep_plan(
    gateway: StripeGateway,
    user: CurrentUser,
    membership_id: int,
    *,
    request_key: str,
    address: str = "",
) -> None:
    """Call off the scheduled change before it applies (a Stripe member's price back)."""
    membership = await subs.get_membership_for(user, membership_id, write=True)
    if membership["next_plan"] is None:
        raise Invalid({"form": "No change of plan is scheduled."})
    await _reprice(gateway, membership, int(membership["total_cents"]), f"keep:{request_key}")
    async with subs.locked(membership_id) as fresh:
        if await onetime.claim(request_key, user_id=user.id, action=KEEP, field="form"):
            return
        if fresh["next_plan"] is None:
            raise Invalid({"form": "The change has already taken effect or been called off."})
        await _set_next(membership_id, None, None, None)
        await audit.record(
            user, "keep_plan", "membership", membership_id,
            before={"next_plan_id": fresh["next_plan"],
                    "changes_at": fresh["changes_at"].isoformat()},
            after={"next_plan_id": None},
            address=address,
        )  # fmt: skip
        await onetime.finish(request_key, "kept")


async def _reprice(
    gateway: StripeGateway, membership: dict[str, Any], amount_cents: int, key: str
) -> None:
    """A Stripe member's subscription charges ``amount_cents`` from its next invoice on
    (``key``: this request's, for Stripe's idempotency); a desk member pays at the desk."""
    if not subs.is_desk(membership):
        await gateway.reprice_subscription(
            str(membership["subscription_id"]),
            amount_cents=amount_cents,
            idempotency_key=f"membership:{membership['id']}:{key}",
        )


async def _set_next(
    membership_id: int, plan_id: int | None, terms: str | None, at: datetime | None
) -> None:
    """The change the membership has scheduled: the plan, its frozen terms (JSON) and
    when it applies; all three None when none is."""
    await (
        Membership.update(
            {Membership.next_plan: plan_id, Membership.next_terms: terms, Membership.changes_at: at}
        )
        .where(Membership.id == membership_id)
        .run()
    )


def scheduled(membership: dict[str, Any]) -> dict[str, Any] | None:
    """The scheduled change for the account page: the plan's name, amount and date."""
    if membership["next_plan"] is None or membership["next_terms"] is None:
        return None
    terms = json.loads(str(membership["next_terms"]))
    return {"name": terms["name"], "total_cents": int(terms["total_cents"]),
            "currency": terms["currency"], "at": membership["changes_at"],
            "sessions": int(terms["sessions_per_period"])}  # fmt: skip
