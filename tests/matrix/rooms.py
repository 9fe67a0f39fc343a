from __future__ import annotations

from tests.matrix import Param, World
from tests.staff import helpers


async def provide(world: World) -> dict[str, Param]:
    own = await helpers.make_room(world.own_location, "Own Room", "hydraulic table")
    other = await helpers.make_room(world.other_location, "Other Room")
    return {
        "room_id": Param(own=own, other=other),
        "outage_id": Param(
            own=await helpers.add_outage(own), other=await helpers.add_outage(other)
        ),
    }
