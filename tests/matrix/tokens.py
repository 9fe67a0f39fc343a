from __future__ import annotations

from portal.auth.service import OWNER, CurrentUser
from portal.auth.tokens import create_token
from tests.matrix import Param, World


async def provide(world: World) -> dict[str, Param]:
    # Tokens belong to a user, not a location: revoking someone else's token
    # answers 404 (tested in tests/foundation/test_api_tokens.py).
    owner = world.accounts[OWNER]
    token_id, _ = await create_token(
        CurrentUser(owner.id, owner.email, "", OWNER, frozenset()), "Matrix"
    )
    return {"token_id": Param(own=token_id, other=token_id, scoped=False)}
