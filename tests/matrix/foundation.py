from __future__ import annotations

from tests import factories
from tests.matrix import Param, World


async def provide(world: World) -> dict[str, Param]:
    # Users are chain-wide (owner-only pages); the target is a spare account so
    # that deactivating it does not sign out anyone under test.
    target = await factories.make_user("client", email="matrix-target@example.test")
    return {
        "location_id": Param(own=world.own_location, other=world.other_location),
        "user_id": Param(own=target.id, other=target.id, scoped=False),
        # The OpenAPI router's catch-all for its render plugins.
        "path": Param(own="openapi.json", other="openapi.json", scoped=False),
    }
