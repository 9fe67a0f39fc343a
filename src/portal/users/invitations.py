"""Invitations: an account made for someone else gets a password nobody knows and
a single-use link (the password-reset machinery) by email to choose their own.

The front desk invites the clients it creates; owners and managers invite staff
(accounts, a therapist's sign-in) the same way, so no password is ever typed for
another person or passed on by word of mouth.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from portal import db
from portal.auth.service import CurrentUser, store_secret
from portal.auth.tables import PasswordReset
from portal.email import messages
from portal.settings import Settings, get_settings
from portal.users import service as users

# An invitation waits for someone who may read their email days later.
INVITE_VALID_FOR = timedelta(days=7)


def unknown_password() -> str:
    """The password of an invited account until its owner chooses one."""
    return secrets.token_urlsafe(24)


async def set_password_url(settings: Settings, user_id: int, *, address: str = "") -> str:
    """A new single-use link to choose a password, valid :data:`INVITE_VALID_FOR`."""
    token = await store_secret(
        PasswordReset, INVITE_VALID_FOR, used_at=None, address=address[:64], user=user_id
    )
    return f"{settings.base_url}/password/reset/{token}"


async def invite_staff(
    actor: CurrentUser | None,
    data: users.UserInput,
    *,
    address: str = "",
    settings: Settings | None = None,
) -> int:
    """A staff account (audited as any other) and its invitation email; the account's
    id. Whatever password ``data`` carries is ignored: the invited person chooses it."""
    settings = settings or get_settings()
    invited = users.UserInput(
        email=data.email,
        name=data.name,
        role=data.role,
        location_ids=data.location_ids,
        password=unknown_password(),
    )
    async with db.transaction():
        user_id = await users.create_user(actor, invited, address=address)
        url = await set_password_url(settings, user_id, address=address)
    row = await users.get_user(user_id)
    await messages.send_invitation(
        str(row["email"]),
        messages.STAFF_INVITATION,
        name=str(row["name"] or row["email"]),
        set_password_url=url,
        valid_days=INVITE_VALID_FOR.days,
        settings=settings,
        defer=True,
    )
    return user_id
