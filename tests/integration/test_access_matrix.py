"""Role × route × own/other location, generated from the app's route table.

Every route in the app is requested by every role (and anonymously), for a
parameter of the own location and of another location. The expected answer
comes from the route's ``requires_role`` guard and the location scope rule:
a role outside the guard gets 403; a manager or therapist gets 403 for
anything of a location they do not work at; everyone else is served.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from litestar.routes import HTTPRoute

from portal.auth.service import ACCOUNTANT, CLIENT, MANAGER, OWNER, THERAPIST
from portal.web.guards import route_roles
from tests import factories
from tests.matrix import Visitors, World, provide_all

ROLES = [OWNER, MANAGER, ACCOUNTANT, THERAPIST, CLIENT]
# Roles whose reach is their own things: a manager's or therapist's locations,
# a client's own purchases. They get 403 for the "other" variant.
LOCATION_BOUND = {MANAGER, THERAPIST, CLIENT}
PARAM_RE = re.compile(r"\{(\w+)(?::\w+)?\}")
# Routes that are not part of the portal's own access rules.
SKIP_PREFIXES = ("/static",)


def portal_routes(app: Any) -> list[tuple[str, str, Any]]:
    out = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or route.path.startswith(SKIP_PREFIXES):
            continue
        for handler in route.route_handlers:
            for method in sorted(handler.http_methods - {"OPTIONS", "HEAD"}):
                out.append((route.path, method, handler))
    return out


async def _world(settings) -> World:
    a = await factories.make_location(name="Own Clinic", slug="own-clinic")
    b = await factories.make_location(name="Other Clinic", slug="other-clinic")
    accounts = {
        OWNER: await factories.make_user(OWNER),
        MANAGER: await factories.make_user(MANAGER, location_ids=[a]),
        ACCOUNTANT: await factories.make_user(ACCOUNTANT),
        THERAPIST: await factories.make_user(THERAPIST, location_ids=[a]),
        CLIENT: await factories.make_user(CLIENT),
    }
    return World(own_location=a, other_location=b, accounts=accounts)


def _expected(role: str | None, roles: frozenset[str] | None, scoped: bool, variant: str) -> str:
    if roles is None:
        return "public"
    if role is None:
        return "login"
    if role not in roles:
        return "deny"
    if scoped and variant == "other" and role in LOCATION_BOUND:
        return "deny"
    return "allow"


async def test_access_matrix(app, settings, db):
    world = await _world(settings)
    params = await provide_all(world)
    # Every page is read before anything is posted: a POST allowed for a role
    # (deactivating the matrix's package, say) must not change what a later GET sees.
    routes = sorted(portal_routes(app), key=lambda route: route[1] != "GET")
    assert len(routes) > 10
    failures: list[str] = []
    checked = 0
    visitors = Visitors(app, settings, world.accounts)
    for path, method, handler in routes:
        roles = route_roles(handler)
        names = PARAM_RE.findall(path)
        missing = [n for n in names if n not in params]
        assert not missing, f"{path}: add a provider for {missing} in tests/matrix/"
        scoped = any(params[n].scoped for n in names)
        for variant in ("own", "other") if scoped else ("own",):
            url = PARAM_RE.sub(lambda m: str(getattr(params[m.group(1)], variant)), path)
            for role in [None, *ROLES]:
                expected = _expected(role, roles, scoped, variant)
                response = await visitors.request(role, method, url)
                status = response.status_code
                checked += 1
                ok = status < 500
                if expected == "deny":
                    ok = status == 403
                elif expected == "login":
                    if path.startswith("/api/"):
                        ok = status == 401
                    else:
                        ok = status == 303 and response.headers["location"].startswith("/login")
                elif expected == "allow":
                    ok = (
                        status == 200
                        if method == "GET"
                        else status not in (401, 403) and status < 500
                    )
                if not ok:
                    failures.append(
                        f"{method} {url} as {role or 'anonymous'}: "
                        f"expected {expected}, got {status}"
                    )
    assert checked > 100
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("with_token", ["none", "forged"])
async def test_every_post_route_requires_a_csrf_token(app, settings, db, with_token):
    world = await _world(settings)
    params = await provide_all(world)
    failures = []
    posts = [(p, m) for p, m, _ in portal_routes(app) if m in ("POST", "PUT", "PATCH", "DELETE")]
    assert posts
    visitors = Visitors(app, settings, world.accounts)
    for path, method in posts:
        if path == "/stripe/webhook":
            continue  # the single exemption: Stripe signs its requests instead
        url = PARAM_RE.sub(lambda m: str(params[m.group(1)].own), path)
        async with visitors.client(OWNER, method) as client:
            data = {} if with_token == "none" else {"_csrf_token": "f" * 128}
            response = await client.request(method, url, data=data)
        if response.status_code != 403:
            failures.append(f"{method} {url}: {response.status_code}")
    assert not failures, failures
