"""Personal API tokens: read-only JSON API access, stored hashed, revocable."""

from __future__ import annotations

import re

from portal.auth.tables import ApiToken
from tests import factories


async def _new_token(client, name="Books export") -> str:
    """Made through the form, whose answer redirects to the page that shows it once."""
    form = await client.get("/account/tokens")
    key = factories.input_value(form.text, "request_key")
    response = await factories.post_form(
        client, "/account/tokens", {"name": name, "request_key": key}
    )
    assert response.status_code == 303 and response.headers["location"] == "/account/tokens"
    shown = await client.get("/account/tokens")
    match = re.search(r'<code id="new-token">([^<]+)</code>', shown.text)
    assert match
    return match.group(1)


async def api_status(app, token: str) -> int:
    async with factories.make_client(app) as api:
        answer = await api.get("/api/v1/locations", headers={"Authorization": f"Bearer {token}"})
    return answer.status_code


async def test_a_token_is_made_once_and_shown_once(app, db):
    owner = await factories.make_user("owner")
    async with factories.make_client(app) as browser:
        await factories.login(browser, owner)
        form = await browser.get("/account/tokens")
        fields = {"name": "Books", "request_key": factories.input_value(form.text, "request_key")}
        first = await factories.post_form(browser, "/account/tokens", fields)
        assert first.status_code == 303
        shown = await browser.get("/account/tokens")
        assert 'id="new-token"' in shown.text
        assert shown.headers["cache-control"] == "no-store"
        reloaded = await browser.get("/account/tokens")
        assert 'id="new-token"' not in reloaded.text, "a reload shows the secret no more"
        again = await factories.post_form(browser, "/account/tokens", fields)
        assert again.status_code == 303
        assert 'id="new-token"' not in (await browser.get("/account/tokens")).text
    assert await ApiToken.count().run() == 1


async def test_accountant_reads_reports_api_with_a_token(app, db):
    accountant = await factories.make_user("accountant")
    async with factories.make_client(app) as browser:
        await factories.login(browser, accountant)
        token = await _new_token(browser)
    row = await ApiToken.select().first().run()
    assert row["token_hash"] != token and token.startswith(row["prefix"])
    async with factories.make_client(app) as api:
        headers = {"Authorization": f"Bearer {token}"}
        ok = await api.get("/api/v1/locations", headers=headers)
        assert ok.status_code == 200
        # Read-only: the API has no writing routes, and a token never writes.
        refused = await api.post("/api/v1/locations", headers=headers)
        assert refused.status_code in (403, 405)
        # Only the API: a page is not opened by a token.
        page = await api.get("/locations", headers=headers)
        assert page.status_code == 303
        bad = await api.get("/api/v1/locations", headers={"Authorization": "Bearer cp_nope"})
        assert bad.status_code == 401


async def test_revoked_token_stops_working_and_others_cannot_revoke(app, db):
    owner = await factories.make_user("owner")
    other = await factories.make_user("owner")
    async with factories.make_client(app) as browser:
        await factories.login(browser, owner)
        token = await _new_token(browser)
        token_id = (await ApiToken.select(ApiToken.id).first().run())["id"]
    async with factories.make_client(app) as intruder:
        await factories.login(intruder, other)
        response = await factories.post_form(intruder, f"/account/tokens/{token_id}/revoke")
        assert response.status_code == 404
        response = await factories.post_form(
            intruder, f"/account/tokens/{token_id}/revoke", {"confirmed": "1"}
        )
        assert response.status_code == 404
    async with factories.make_client(app) as api:
        headers = {"Authorization": f"Bearer {token}"}
        assert (await api.get("/api/v1/locations", headers=headers)).status_code == 200
    async with factories.make_client(app) as browser:
        await factories.login(browser, owner)
        asked = await factories.post_form(browser, f"/account/tokens/{token_id}/revoke")
        assert asked.status_code == 200 and "Revoke the token" in asked.text
        assert (await api_status(app, token)) == 200, "asking revokes nothing"
        response = await factories.post_form(
            browser, f"/account/tokens/{token_id}/revoke", {"confirmed": "1"}
        )
        assert response.status_code == 303
    async with factories.make_client(app) as api:
        assert (await api.get("/api/v1/locations", headers=headers)).status_code == 401


async def test_manager_token_keeps_location_scope_and_clients_have_none(app, locations):
    own, other = locations
    manager = await factories.make_user("manager", location_ids=[own])
    async with factories.make_client(app) as browser:
        await factories.login(browser, manager)
        token = await _new_token(browser)
        bad = await factories.post_form(browser, "/account/tokens", {"name": " "})
        assert bad.status_code == 422 and factories.field_error(bad.text, "name")
    async with factories.make_client(app) as api:
        headers = {"Authorization": f"Bearer {token}"}
        assert (await api.get(f"/api/v1/locations/{own}", headers=headers)).status_code == 200
        assert (await api.get(f"/api/v1/locations/{other}", headers=headers)).status_code == 403
    client = await factories.make_user("client")
    async with factories.make_client(app) as browser:
        await factories.login(browser, client)
        assert (await browser.get("/account/tokens")).status_code == 403
