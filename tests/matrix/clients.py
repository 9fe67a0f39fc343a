from __future__ import annotations

from portal.clients import accounts
from portal.email import service as email
from portal.settings import get_settings
from tests import factories
from tests.matrix import Param, World


async def provide(world: World) -> dict[str, Param]:
    # Clients are chain-wide until bookings tie them to locations. The target
    # is a spare client, so editing it touches nobody under test.
    target = await factories.make_user("client", email="matrix-client@example.test")
    settings = get_settings()
    # A real, open reset link (of the spare client) for the public reset page.
    await accounts.request_password_reset(settings, target.email, address="192.0.2.1")
    reset = await email.list_messages(kind="password_reset")
    message = await email.get_message(reset.rows[0]["id"])
    token = message["body_text"].split("/password/reset/")[1].split()[0]
    return {
        "client_id": Param(own=target.id, other=target.id, scoped=False),
        "token": Param(own=token, other=token, scoped=False),
        "message_id": Param(own=message["id"], other=message["id"], scoped=False),
    }
