"""Passkey ceremonies without a browser: challenges are single-use, expire and are bound
to their purpose and account; a bad answer is refused, never a 500. The whole ceremony
through a real authenticator is tests/e2e/test_passkeys_browser.py."""

from __future__ import annotations

from datetime import timedelta

import pytest

from portal.auth import passkeys
from portal.auth.tables import WebauthnChallenge
from portal.errors import Invalid
from portal.settings import Settings
from portal.timeutil import utcnow
from tests import factories


def test_the_relying_party_comes_from_base_url():
    settings = Settings(
        database_url="sqlite:///x",
        secret_key="k" * 40,
        embedded=False,
        base_url="https://portal.example.clinic:8443",
    )
    assert passkeys.rp_id(settings) == "portal.example.clinic"
    assert passkeys.expected_origin(settings) == "https://portal.example.clinic:8443"
    assert passkeys.user_handle(settings, 1) != passkeys.user_handle(settings, 2)
    assert len(passkeys.user_handle(settings, 1)) == 32


async def test_registration_options_require_a_discoverable_verified_key(settings, db, owner):
    options = await passkeys.registration_options(settings, owner.id, owner.email, "Olivia")
    public_key = options["publicKey"]
    assert public_key["rp"]["id"] == "testserver"
    assert public_key["authenticatorSelection"]["residentKey"] == "required"
    assert public_key["authenticatorSelection"]["userVerification"] == "required"
    stored = await WebauthnChallenge.select().run()
    assert len(stored) == 1 and stored[0]["user"] == owner.id
    # The ticket is not stored, only its hash.
    assert options["ticket"] not in stored[0]["token_hash"]


async def test_a_challenge_works_once_for_its_purpose_and_account(settings, db, owner, manager):
    options = await passkeys.authentication_options(settings, passkeys.SECOND_STEP, owner.id)
    ticket = options["ticket"]
    with pytest.raises(Invalid):
        await passkeys.take_challenge(ticket, passkeys.SIGN_IN, owner.id)
    # A wrong purpose used it up too: single use whatever the outcome.
    with pytest.raises(Invalid):
        await passkeys.take_challenge(ticket, passkeys.SECOND_STEP, owner.id)
    other = await passkeys.authentication_options(settings, passkeys.SECOND_STEP, owner.id)
    with pytest.raises(Invalid):
        await passkeys.take_challenge(other["ticket"], passkeys.SECOND_STEP, manager.id)
    good = await passkeys.authentication_options(settings, passkeys.SECOND_STEP, owner.id)
    assert await passkeys.take_challenge(good["ticket"], passkeys.SECOND_STEP, owner.id)
    with pytest.raises(Invalid):
        await passkeys.take_challenge(good["ticket"], passkeys.SECOND_STEP, owner.id)


async def test_a_challenge_expires(settings, db):
    options = await passkeys.authentication_options(settings, passkeys.SIGN_IN)
    await WebauthnChallenge.update(
        {WebauthnChallenge.expires_at: utcnow() - timedelta(seconds=1)}, force=True
    ).run()
    with pytest.raises(Invalid):
        await passkeys.take_challenge(options["ticket"], passkeys.SIGN_IN, None)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"ticket": "nope", "credential": {}},
        {"ticket": "x" * 500, "credential": "not an object"},
        {"credential": {"id": "abc", "response": {"userHandle": 5}}},
    ],
)
async def test_bad_answers_are_refused_not_errors(client, body):
    await factories.csrf_token(client)
    token = client.cookies.get("portal_csrf")
    options = await client.post("/login/passkey/options", json={}, headers={"x-csrftoken": token})
    assert options.status_code == 200 and options.json()["ticket"]
    if "ticket" not in body:
        body = {**body, "ticket": options.json()["ticket"]}
    response = await client.post("/login/passkey", json=body, headers={"x-csrftoken": token})
    assert response.status_code in (400, 401), response.text
    assert "error" in response.json()
    assert "portal_session" not in response.cookies


async def test_the_json_routes_need_the_csrf_header(client):
    await factories.csrf_token(client)
    assert (await client.post("/login/passkey/options", json={})).status_code == 403


async def test_passkey_failures_are_throttled_by_address(client):
    await factories.csrf_token(client)
    token = client.cookies.get("portal_csrf")
    headers = {"x-csrftoken": token}
    for _ in range(5):
        options = (await client.post("/login/passkey/options", json={}, headers=headers)).json()
        bad = {"ticket": options["ticket"], "credential": {"id": "unknown", "response": {}}}
        assert (await client.post("/login/passkey", json=bad, headers=headers)).status_code == 401
    options = (await client.post("/login/passkey/options", json={}, headers=headers)).json()
    bad = {"ticket": options["ticket"], "credential": {"id": "unknown", "response": {}}}
    throttled = await client.post("/login/passkey", json=bad, headers=headers)
    assert throttled.status_code == 429 and "Try again in" in throttled.json()["error"]


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        ("ticket=x&credential=y", "application/x-www-form-urlencoded"),
        ('["ticket", "credential"]', "application/json"),
        ('{"ticket": ', "application/json"),
    ],
)
async def test_answers_that_are_not_a_json_object_are_refused_as_such(
    client, owner_client, content, content_type
):
    """Signing in with a passkey and adding one both answer 400 with the same message."""
    await factories.csrf_token(client)
    for browser, path in ((client, "/login/passkey"), (owner_client, "/account/two-step/passkeys")):
        headers = {"x-csrftoken": browser.cookies.get("portal_csrf"), "content-type": content_type}
        response = await browser.post(path, content=content, headers=headers)
        assert response.status_code == 400, response.text
        assert response.json() == {"error": "Send the passkey's answer as JSON."}
        assert "portal_session" not in response.cookies
