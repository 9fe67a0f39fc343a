"""Personal API tokens: read-only access to ``/api/v1`` for integrations.

A token is ``cp_`` + 43 random characters; only its SHA-256 is stored, and
the first characters (the prefix) are kept to tell tokens apart in lists.
A token acts as its user with that user's role and locations, but can only
read (GET): the middleware refuses anything else.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from portal import db
from portal.audit import service as audit
from portal.auth.service import (
    ACCOUNTANT,
    MANAGER,
    OWNER,
    CurrentUser,
    account_columns,
    actor_of,
    hash_token,
)
from portal.auth.tables import ApiToken, User
from portal.errors import Invalid
from portal.onetime import service as onetime
from portal.timeutil import utcnow

PREFIX = "cp_"
TOKEN_ROLES = (OWNER, MANAGER, ACCOUNTANT)


CREATED = "api_token"


async def create_token(
    user: CurrentUser, name: str, *, request_key: str | None = None
) -> tuple[int, str | None]:
    """A new token for ``user``; returns (id, the token — shown once).

    The form's one-time ``request_key`` is claimed with the token: the same form
    sent again (a reload of the answer, a double click) makes no second token and
    returns the first one's id with None, as its secret is not kept.
    """
    name = name.strip()
    if not name:
        raise Invalid({"name": "Name the token after what will use it."})
    if len(name) > 80:
        raise Invalid({"name": "Use at most 80 characters."})
    token = PREFIX + secrets.token_urlsafe(32)
    async with db.transaction():
        earlier = await onetime.claim(request_key, user_id=user.id, action=CREATED, field="name")
        if earlier:
            return int(earlier.partition(":")[2]), None
        token_id = await db.insert_row(
            ApiToken(
                user=user.id,
                name=name,
                prefix=token[:10],
                token_hash=hash_token(token),
                created_at=utcnow(),
            )
        )
        await audit.record(user, "create", "api_token", token_id, after={"name": name})
        await onetime.finish(request_key, f"{CREATED}:{token_id}")
    return token_id, token


async def live_token_of(user: CurrentUser, token_id: int) -> dict[str, Any] | None:
    """One of the user's own tokens that still works (for the revoke confirmation)."""
    row: dict[str, Any] | None = (
        await ApiToken.select(ApiToken.id, ApiToken.name, ApiToken.prefix, ApiToken.created_at)
        .where(
            (ApiToken.id == token_id) & (ApiToken.user == user.id) & ApiToken.revoked_at.is_null()
        )
        .first()
        .run()
    )
    return row


async def tokens_of(user_id: int) -> list[dict[str, Any]]:
    return (
        await ApiToken.select(
            ApiToken.id,
            ApiToken.name,
            ApiToken.prefix,
            ApiToken.created_at,
            ApiToken.last_used_at,
            ApiToken.revoked_at,
        )
        .where(ApiToken.user == user_id)
        .order_by(ApiToken.id, ascending=False)
        .run()
    )


async def revoke(user: CurrentUser, token_id: int) -> bool:
    """Revoke one of the user's own tokens; False if there is no such live token."""
    revoked = await db.update_where(
        ApiToken,
        {ApiToken.revoked_at: utcnow()},
        (ApiToken.id == token_id) & (ApiToken.user == user.id) & ApiToken.revoked_at.is_null(),
    )
    if revoked:
        await audit.record(user, "revoke", "api_token", token_id, after={"revoked": True})
    return revoked


async def authenticate(token: str) -> CurrentUser | None:
    """The user a live token acts as, or None."""
    if not token.startswith(PREFIX) or len(token) > 100:
        return None
    row = (
        await ApiToken.select(
            ApiToken.id,
            ApiToken.last_used_at,
            *account_columns(ApiToken.user),
        )
        .where((ApiToken.token_hash == hash_token(token)) & ApiToken.revoked_at.is_null())
        .first()
        .run()
    )
    if row is None or not row["active"] or row["role"] not in TOKEN_ROLES:
        return None
    now = utcnow()
    if row["last_used_at"] is None or now - row["last_used_at"] > timedelta(minutes=1):
        await ApiToken.update({ApiToken.last_used_at: now}).where(ApiToken.id == row["id"]).run()
    return await actor_of(row)


__all__ = ["TOKEN_ROLES", "User", "authenticate", "create_token", "revoke", "tokens_of"]
