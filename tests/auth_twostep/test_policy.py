"""The owners' policy: a staff member of a role that requires two-step sign-in and has no
second factor reaches nothing but enrolment. Checked on every route of the app's table."""

from __future__ import annotations

import pytest

from portal.audit.tables import AuditLog
from portal.auth import twostep
from portal.auth.tables import Passkey
from portal.identity import ACCOUNTANT, CLIENT, MANAGER, OWNER, STAFF_ROLES, THERAPIST
from portal.web.guards import ENROL_PATH, route_roles
from tests import factories
from tests.auth_twostep.helpers import actor, code_at, enrol_totp, password_step
from tests.integration.test_access_matrix import PARAM_RE, _world, portal_routes
from tests.matrix import Visitors, provide_all


def _enrolment_route(handler) -> bool:
    return bool(handler.opt.get("enrolment"))


async def test_the_policy_page_saves_and_audits(owner_client, owner):
    page = await owner_client.get("/settings/two-step")
    assert page.status_code == 200 and 'value="manager"' in page.text
    saved = await factories.post_form(
        owner_client, "/settings/two-step", {"required": ["manager", "therapist", "client"]}
    )
    assert saved.status_code == 303
    assert await twostep.policy() == {
        OWNER: False,
        MANAGER: True,
        ACCOUNTANT: False,
        THERAPIST: True,
    }
    rows = await AuditLog.select().where(AuditLog.entity == "two_step_policy").run()
    assert len(rows) == 1 and rows[0]["actor_id"] == owner.id
    # Saving the same again changes nothing and writes nothing.
    await factories.post_form(
        owner_client, "/settings/two-step", {"required": ["manager", "therapist"]}
    )
    assert await AuditLog.count().where(AuditLog.entity == "two_step_policy").run() == 1


async def test_a_gated_member_reaches_only_enrolment_on_every_route(app, settings, db):
    """Generated from the route table, like the access matrix: for every staff role that
    requires two-step sign-in, a member without a second factor gets the enrolment
    redirect (403 under /api/) from every guarded route, GET and POST, whatever their
    role would otherwise allow; enrolment and sign-out stay open."""
    world = await _world(settings)
    params = await provide_all(world)
    owner = world.accounts[OWNER]
    # The matrix gives the owner a passkey (for the passkey routes): none here.
    await Passkey.delete().where(Passkey.user == owner.id).run()
    await twostep.set_policy(actor(owner), set(STAFF_ROLES))
    failures: list[str] = []
    checked = 0
    visitors = Visitors(app, settings, world.accounts)
    for path, method, handler in portal_routes(app):
        roles = route_roles(handler)
        if roles is None:
            continue  # public: the sign-in pages, the public catalog, static files
        url = PARAM_RE.sub(lambda m: str(params[m.group(1)].own), path)
        for role in STAFF_ROLES:
            response = await visitors.request(role, method, url)
            if method != "GET" and _enrolment_route(handler):
                # Set again: the request may have been the policy form's.
                await twostep.set_policy(actor(owner), set(STAFF_ROLES))
            checked += 1
            status = response.status_code
            if _enrolment_route(handler):
                ok = status < 500 and not (
                    status == 303 and response.headers["location"] == ENROL_PATH
                )
            elif path.startswith("/api/"):
                ok = status == 403 and "two-step" in response.text
            else:
                ok = status == 303 and response.headers["location"] == ENROL_PATH
            if not ok:
                failures.append(f"{method} {url} as gated {role}: got {status}")
    assert checked > 200
    assert not failures, "\n".join(failures)


async def test_clients_are_never_gated(app, settings, db):
    world = await _world(settings)
    await twostep.set_policy(actor(world.accounts[OWNER]), set(STAFF_ROLES))
    async with factories.make_client(app) as client:
        await factories.login(client, world.accounts[CLIENT])
        assert (await client.get("/account")).status_code == 200


async def test_enrol_right_after_the_password_then_a_new_session(client, owner):
    therapist = await factories.make_user(THERAPIST)
    await twostep.set_policy(actor(owner), {THERAPIST})
    response = await password_step(client, therapist, "/appointments")
    assert response.status_code == 303
    first_token = client.cookies.get("portal_session")
    assert first_token
    blocked = await client.get("/appointments")
    assert blocked.status_code == 303 and blocked.headers["location"] == ENROL_PATH
    page = await client.get(ENROL_PATH)
    assert page.status_code == 200 and "Your role requires two-step sign-in" in page.text
    assert (await client.get("/account/two-step/totp")).status_code == 200
    from portal.auth.tables import TotpFactor
    from portal.timeutil import utcnow
    from tests.auth_twostep.helpers import SECRET

    await TotpFactor.update({TotpFactor.secret: SECRET}, force=True).run()
    done = await factories.post_form(client, "/account/two-step/totp", {"code": code_at(utcnow())})
    assert done.status_code == 201
    # A new session (a new token) once enrolled; the old token is gone.
    assert client.cookies.get("portal_session") != first_token
    async with factories.make_client(client._transport.app) as old:  # type: ignore[attr-defined]
        old.cookies.set("portal_session", first_token)
        assert (await old.get("/")).headers["location"].startswith("/login")
    assert (await client.get("/")).status_code == 200


async def test_switching_the_policy_on_gates_members_already_signed_in(client, owner):
    manager = await factories.make_user(MANAGER, location_ids=[await factories.make_location()])
    await factories.login(client, manager)
    assert (await client.get("/")).status_code == 200
    await twostep.set_policy(actor(owner), {MANAGER})
    assert (await client.get("/")).headers["location"] == ENROL_PATH
    await twostep.set_policy(actor(owner), set())
    assert (await client.get("/")).status_code == 200


async def test_the_last_factor_cannot_be_removed_while_required(owner_client, owner):
    await enrol_totp(owner)
    await twostep.set_policy(actor(owner), {OWNER})
    refused = await factories.post_form(
        owner_client, "/account/two-step/totp/remove", {"confirm": "yes"}
    )
    assert refused.status_code == 409
    await twostep.set_policy(actor(owner), set())
    removed = await factories.post_form(
        owner_client, "/account/two-step/totp/remove", {"confirm": "yes"}
    )
    assert removed.status_code == 303


@pytest.mark.parametrize("role", [MANAGER, THERAPIST])
async def test_only_owners_set_the_policy(db, role):
    member = await factories.make_user(role)
    with pytest.raises(twostep.Forbidden):
        await twostep.set_policy(actor(member), {role})


async def test_api_tokens_of_a_gated_member_read_nothing_until_they_enrol(app, db):
    owner = await factories.make_user(OWNER)
    accountant = await factories.make_user(ACCOUNTANT)
    async with factories.make_client(app) as browser:
        await factories.login(browser, accountant)
        created = await factories.post_form(browser, "/account/tokens", {"name": "Books"})
        assert created.status_code == 303
        shown = await browser.get("/account/tokens")
    token = shown.text.split('<code id="new-token">', 1)[1].split("<", 1)[0]
    headers = {"Authorization": f"Bearer {token}"}
    async with factories.make_client(app) as api:
        assert (await api.get("/api/v1/locations", headers=headers)).status_code == 200
        # The owners now require two-step sign-in of accountants: the old token stops.
        await twostep.set_policy(actor(owner), {ACCOUNTANT})
        for path in ("/api/v1/locations", "/api/v1/schema"):
            refused = await api.get(path, headers=headers)
            assert refused.status_code == 403, path
            assert refused.headers["content-type"].startswith("application/json")
            assert "two-step sign-in" in refused.json()["detail"]
        # Enrolled: the token reads again.
        await enrol_totp(accountant)
        assert (await api.get("/api/v1/locations", headers=headers)).status_code == 200
        # Roles the policy does not cover are not affected.
        await twostep.set_policy(actor(owner), {THERAPIST})
        assert (await api.get("/api/v1/locations", headers=headers)).status_code == 200
