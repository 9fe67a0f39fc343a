from __future__ import annotations

from portal.catalog.tables import Service
from tests.matrix import Param, World
from tests.memberships.helpers import make_plan

ORDER = 1  # after the catalog's matrix service


async def provide(world: World) -> dict[str, Param]:
    service = (await Service.select(Service.id).order_by(Service.id).first().run())["id"]
    return {
        "plan_id": Param(
            own=await make_plan(world.own_location, service, name="Matrix monthly"),
            other=await make_plan(world.other_location, service, name="Matrix monthly"),
        )
    }
