from __future__ import annotations

from portal.auth.tables import Passkey
from portal.identity import OWNER
from portal.timeutil import utcnow
from tests.matrix import Param, World


async def provide(world: World) -> dict[str, Param]:
    # A passkey belongs to its user, not a location: the owner's here. Anyone
    # else removing it gets 404 (tests/auth_twostep/test_passkeys.py).
    rows = (
        await Passkey.insert(
            Passkey(
                user=world.accounts[OWNER].id,
                name="Matrix key",
                credential_id="bWF0cml4LWNyZWRlbnRpYWw",
                public_key="AQID",
                sign_count=0,
                created_at=utcnow(),
            )
        )
        .returning(Passkey.id)
        .run()
    )
    passkey_id = int(rows[0]["id"])
    return {"passkey_id": Param(own=passkey_id, other=passkey_id, scoped=False)}
