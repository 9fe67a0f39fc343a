"""Credentials that outlive what they were tied to.

* The CSRF token is renewed when a session begins and when it ends: a token
  read (or planted) before signing in does not work after it, nor the
  session's after signing out.
* API tokens are revoked with a new password (changed or reset), with a
  deactivation (reactivating brings none back) and a new role.
* The OpenAPI document is for those who may hold API tokens (owners,
  managers, accountants); therapists and clients are refused it.
"""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from portal.auth import service as auth
from portal.auth import tokens
from portal.auth.service import (
    ACCOUNTANT,
    CLIENT,
    MANAGER,
    OWNER,
    THERAPIST,
    CurrentUser,
    hash_token,
    open_session,
)
from portal.clients import accounts
from portal.clients.tables import PasswordReset
from portal.timeutil import utcnow
from portal.users import service as users
from tests import factories

SCHEMA = "/api/v1/schema/openapi.json"
NEW_PASSWORD = "a-completely-new-passphrase"


def _as(account: factories.Account, role: str) -> CurrentUser:
    return CurrentUser(account.id, account.email, "", role, frozenset())


async def _signed_in(app, settings, account: factories.Account) -> httpx.AsyncClient:
    browser = factories.make_client(app)
    browser.cookies.set("portal_session", await open_session(settings, account.id))
    return browser


async def test_the_csrf_token_is_renewed_at_sign_in_and_sign_out(app, db):
    account = await factories.make_user(CLIENT)
    async with factories.make_client(app) as browser:
        before = await factories.csrf_token(browser)
        response = await browser.post(
            "/login",
            data={"email": account.email, "password": account.password, "_csrf_token": before},
        )
        assert response.status_code == 303
        during = response.cookies.get("portal_csrf")
        assert during and during != before
        # The token from before signing in no longer passes (the browser holds the new one).
        stale = await browser.post("/logout", data={"_csrf_token": before})
        assert stale.status_code == 403
        assert (await browser.get("/account")).status_code == 200  # still signed in
        out = await browser.post("/logout", data={"_csrf_token": during})
        assert out.status_code == 303
        after = out.cookies.get("portal_csrf")
        assert after and after not in (before, during)
        again = await browser.post(
            "/login",
            data={"email": account.email, "password": "whatever-it-was", "_csrf_token": during},
        )
        assert again.status_code == 403


async def _live(token: str) -> bool:
    return await tokens.authenticate(token) is not None


async def test_a_password_change_revokes_api_tokens(db, settings):
    account = await factories.make_user(ACCOUNTANT)
    _, token = await tokens.create_token(_as(account, ACCOUNTANT), "books")
    assert await _live(token)
    _, errors = await auth.change_password(
        settings, _as(account, ACCOUNTANT), account.password, NEW_PASSWORD
    )
    assert errors == {}
    assert not await _live(token)


async def test_a_password_reset_revokes_api_tokens(db, settings):
    account = await factories.make_user(MANAGER)
    _, token = await tokens.create_token(_as(account, MANAGER), "sync")
    link = "reset-token-for-the-test-0123456789abcdef"
    await PasswordReset.insert(
        PasswordReset(
            token_hash=hash_token(link), user=account.id, created_at=utcnow(),
            expires_at=utcnow() + timedelta(minutes=10), used_at=None, address="",
        )
    ).run()  # fmt: skip
    await accounts.reset_password(settings, link, NEW_PASSWORD, NEW_PASSWORD)
    assert not await _live(token)


@pytest.mark.parametrize("change", ["deactivate", "role", "owner sets password"])
async def test_deactivation_and_other_owner_changes_revoke_api_tokens(db, change):
    owner = await factories.make_user(OWNER)
    account = await factories.make_user(ACCOUNTANT)
    _, token = await tokens.create_token(_as(account, ACCOUNTANT), "books")
    actor = _as(owner, OWNER)
    if change == "deactivate":
        await users.set_active(actor, account.id, False)
        await users.set_active(actor, account.id, True)  # reactivated: no token comes back
    elif change == "role":
        await users.update_user(
            actor, account.id, users.UserInput(email=account.email, name="", role=OWNER)
        )
    else:
        await users.set_password(actor, account.id, NEW_PASSWORD)
    assert not await _live(token)
    assert all(row["revoked_at"] is not None for row in await tokens.tokens_of(account.id))


async def test_only_api_token_holders_read_the_openapi_document(app, settings):
    expected = {OWNER: 200, MANAGER: 200, ACCOUNTANT: 200, THERAPIST: 403, CLIENT: 403}
    for role, status in expected.items():
        account = await factories.make_user(role)
        async with await _signed_in(app, settings, account) as browser:
            assert (await browser.get(SCHEMA)).status_code == status, role
    async with factories.make_client(app) as anonymous:
        assert (await anonymous.get(SCHEMA)).status_code == 401
