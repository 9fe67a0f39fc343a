"""What membership gives a member elsewhere: the member price of packages and extra
sessions. ``contexts.member_discount_bp`` finds it (payments sell packages and cannot
import memberships, which build on them)."""

from __future__ import annotations

import json

from portal.memberships.subscriptions import ACTIVE, PAST_DUE
from portal.memberships.tables import Membership
from portal.timeutil import utcnow


async def discount_bp(client_id: int, location_id: int) -> int:
    """The largest member discount of the client's running memberships at the location
    (active, or past due within its grace period); 0 for a non-member, and for terms
    quoted before plans had a member discount."""
    rows = (
        await Membership.select(Membership.terms, Membership.status, Membership.grace_until)
        .where(
            (Membership.client == client_id)
            & (Membership.location == location_id)
            & Membership.status.is_in([ACTIVE, PAST_DUE])
        )
        .run()
    )
    now = utcnow()
    running = [
        r for r in rows if r["status"] == ACTIVE or (r["grace_until"] and r["grace_until"] > now)
    ]
    discounts = (int(json.loads(r["terms"]).get("member_discount_bp", 0)) for r in running)
    return max(discounts, default=0)
