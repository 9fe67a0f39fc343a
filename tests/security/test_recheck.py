"""Session cookie flags, security headers, CSRF exemptions and throttling,
re-checked across what exists now.

Headers and cookie flags on every page of every role are checked by the form
crawl in ``test_xss`` and on every hostile query in ``test_sql_injection``;
here: the responses no route produces (404, 405, 413, 500, static files,
the API's errors), cookies over https, the CSRF exemption list, throttles.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import httpx
import pytest
from litestar.middleware._utils import build_exclude_path_pattern
from litestar.routes import HTTPRoute

from portal.app import WEBHOOK_PATH, create_app
from portal.auth.service import CLIENT
from portal.settings import Settings
from tests import factories
from tests.security.harness import (
    STRONG_PASSWORD,
    cookie_problems,
    csrf,
    header_problems,
    make_client,
)


async def test_headers_on_errors_static_files_and_the_api(
    app: Any, owner_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from portal import records

    async with make_client(app) as anonymous:
        responses = {
            "404": await anonymous.get("/no-such-page"),
            "404 api": await owner_client.get("/api/v1/no-such-thing"),
            "401 api": await anonymous.get("/api/v1/locations"),
            "303 to sign-in": await anonymous.get("/locations"),
            "405": await owner_client.delete("/locations"),
            "400 NUL": await owner_client.get("/locations?q=%00"),
            "403 CSRF": await anonymous.post("/login", data={"email": "x"}),
            "413": await owner_client.post(
                "/locations",
                data={"name": "x" * (3 * 1024 * 1024)},
                headers={"x-csrftoken": await csrf(owner_client)},
            ),
            "static": await anonymous.get("/static/app.css"),
            "static 404": await anonymous.get("/static/no-such-file.css"),
            "healthz": await anonymous.get("/healthz"),
            "schema": await owner_client.get("/api/v1/schema/openapi.json"),
        }

        async def boom(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("secret internal detail")

        # Below the page and the API alike (the admin resource holds the list
        # function itself, so the failure is planted in what its page,
        # records.list_page, awaits).
        monkeypatch.setattr(records, "keyset_page", boom)
        responses["500"] = await owner_client.get("/locations")
        responses["500 api"] = await owner_client.get("/api/v1/locations")
    expected = {"405": 405, "400 NUL": 400, "413": 413, "500": 500, "500 api": 500}
    problems = []
    for label, response in responses.items():
        if label in expected and response.status_code != expected[label]:
            problems.append(f"{label}: status {response.status_code}")
        problems.extend(f"{label}: {p}" for p in header_problems(response))
        if response.status_code >= 500 and "secret internal detail" in response.text:
            problems.append(f"{label}: shows the exception")
    assert not problems, problems


def test_csrf_exempts_only_the_stripe_webhook(settings: Settings) -> None:
    """Every unsafe method of every route needs the token, the webhook aside;
    the matrix test proves the refusal route by route, this proves the list."""
    app = create_app(settings, manage_database=False)
    config = app.csrf_config
    assert config is not None
    assert set(config.safe_methods) <= {"GET", "HEAD", "OPTIONS"}
    # Litestar matches the exclusions anywhere in the path (re.findall).
    pattern = build_exclude_path_pattern(exclude=config.exclude)
    exempt = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            unsafe = set(handler.http_methods) - set(config.safe_methods)
            if not unsafe:
                continue
            by_path = pattern is not None and pattern.findall(route.path)
            by_opt = handler.opt.get(config.exclude_from_csrf_key)
            if by_path or by_opt:
                exempt.append((route.path, sorted(unsafe)))
    assert exempt == [(WEBHOOK_PATH, ["POST"])]
    assert config.cookie_httponly and config.cookie_samesite == "lax"


async def test_every_cookie_is_secure_over_https(
    db: Any, settings: Settings, cheap_hashing: None
) -> None:
    app = create_app(replace(settings, base_url="https://portal.example"), manage_database=False)
    owner = await factories.make_user("owner")
    problems: list[str] = []
    seen: set[str] = set()

    def check(label: str, response: httpx.Response) -> None:
        seen.update(c.split("=", 1)[0] for c in response.headers.get_list("set-cookie"))
        problems.extend(f"{label}: {p}" for p in cookie_problems(response, secure=True))

    async with make_client(app, base_url="https://testserver") as client:
        check("GET /login", await client.get("/login"))
        # The CSRF token is renewed at every sign-in, sign-out and password change:
        # each form below is sent with the one the browser holds by then.
        token = await csrf(client)
        check(
            "POST /login",
            await client.post(
                "/login",
                data={"email": owner.email, "password": owner.password, "_csrf_token": token},
            ),
        )
        check(
            "POST /locations",  # a flash message
            await client.post(
                "/locations",
                data={
                    "name": "Cookie Clinic", "slug": "cookie-clinic", "timezone": "Europe/Paris",
                    "currency": "EUR", "tax_rate_bp": "0", "cancellation_window_hours": "24",
                    "_csrf_token": await csrf(client),
                },
            ),
        )  # fmt: skip
        check(
            "POST /account/password",
            await client.post(
                "/account/password",
                data={
                    "current_password": owner.password, "new_password": STRONG_PASSWORD,
                    "confirm_password": STRONG_PASSWORD, "_csrf_token": await csrf(client),
                },
            ),
        )  # fmt: skip
        check(
            "POST /logout", await client.post("/logout", data={"_csrf_token": await csrf(client)})
        )
        check(
            "POST /signup",
            await client.post(
                "/signup",
                data={
                    "name": "Cookie Client", "email": "cookie@example.test",
                    "password": STRONG_PASSWORD, "confirm_password": STRONG_PASSWORD,
                    "consent": "on", "_csrf_token": await csrf(client),
                },
            ),
        )  # fmt: skip
    assert not problems, problems
    assert {"portal_csrf", "portal_session", "portal_flash"} <= seen, seen


async def test_throttles_still_hold(app: Any, cheap_hashing: None) -> None:
    owner = await factories.make_user("owner")
    client_account = await factories.make_user(CLIENT)

    async def post(client: httpx.AsyncClient, url: str, data: dict[str, str]) -> httpx.Response:
        return await factories.post_form(client, url, data)

    async with make_client(app) as attacker:
        # Sign-in: five failures for an account, then even the right password waits.
        for _ in range(5):
            wrong = {"email": owner.email, "password": "wrong-pass-1"}
            assert (await post(attacker, "/login", wrong)).status_code == 401
        right = {"email": owner.email, "password": owner.password}
        assert (await post(attacker, "/login", right)).status_code == 429
    async with make_client(app) as attacker:
        # Password reset links: three per account.
        statuses = [
            (await post(attacker, "/password/forgot", {"email": client_account.email})).status_code
            for _ in range(4)
        ]
        assert statuses == [303, 303, 303, 429], statuses
    # Sign-up: ten accounts from one address (a fresh browser each time).
    statuses = []
    for i in range(11):
        async with factories.make_client(app) as browser:
            data = {
                "name": "Many", "email": f"many{i}@example.test", "password": STRONG_PASSWORD,
                "confirm_password": STRONG_PASSWORD, "consent": "on",
            }  # fmt: skip
            statuses.append((await post(browser, "/signup", data)).status_code)
    assert statuses == [303] * 10 + [429], statuses
    # Guessing the current password from a signed-in browser (a borrowed laptop).
    victim = await factories.make_user("manager")
    async with make_client(app) as browser:
        await factories.login(browser, victim)
        change = {"new_password": STRONG_PASSWORD, "confirm_password": STRONG_PASSWORD}
        for _ in range(5):
            guess = {**change, "current_password": "guess-guess-1"}
            assert (await post(browser, "/account/password", guess)).status_code == 422
        response = await post(
            browser, "/account/password", {**change, "current_password": victim.password}
        )
        assert response.status_code == 429, response.status_code
        assert "Try again in" in response.text and int(response.headers["retry-after"]) > 0
