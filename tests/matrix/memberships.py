from __future__ import annotations

import json

from portal.auth.service import CLIENT
from portal.catalog.tables import Service
from portal.memberships.tables import Membership
from portal.timeutil import utcnow
from tests import factories
from tests.matrix import Param, World
from tests.memberships.helpers import make_plan

ORDER = 1  # after the catalog's matrix service


async def _membership(client_id: int, plan_id: int, location_id: int) -> int:
    rows = (
        await Membership.insert(
            Membership(
                client=client_id, plan=plan_id, location=location_id, name="Matrix monthly",
                terms=json.dumps({"interval": "month", "sessions_per_period": 2,
                                  "service_name": "Matrix massage", "total_cents": 9900,
                                  "currency": "USD"}),
                currency="USD", total_cents=9900, sessions_per_period=2, status="active",
                created_at=utcnow(),
            )
        )
        .returning(Membership.id)
        .run()
    )  # fmt: skip
    return int(rows[0]["id"])


async def provide(world: World) -> dict[str, Param]:
    service = (await Service.select(Service.id).order_by(Service.id).first().run())["id"]
    own = await make_plan(world.own_location, service, name="Matrix monthly")
    other = await make_plan(world.other_location, service, name="Matrix monthly")
    stranger = await factories.make_user(CLIENT)
    return {
        "plan_id": Param(own=own, other=other),
        # Any client may join any location's plan: not scoped to the client's places.
        "joinable_plan_id": Param(own=own, other=other, scoped=False),
        "membership_id": Param(
            own=await _membership(world.accounts[CLIENT].id, own, world.own_location),
            other=await _membership(stranger.id, other, world.other_location),
        ),
    }
