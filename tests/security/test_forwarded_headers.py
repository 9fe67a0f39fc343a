"""A forged ``X-Forwarded-For`` does not choose the address the portal records.

The app is built with the setting the shipped ``docker-compose.yml`` gives and
with a named proxy (``FORWARDED_ALLOW_IPS``: the app applies uvicorn's
``ProxyHeadersMiddleware`` for those proxies only, ``portal.web.requestcontext``),
loaded the way ``portal serve`` has uvicorn load it (``cli.uvicorn_options``:
no forwarded headers at the server) and called at the ASGI level from a peer
address. The addresses checked are the ones the sign-in throttle counts and
the audit log keeps.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import httpx
import uvicorn
import yaml

from portal import cli
from portal.auth.tables import LoginAttempt
from portal.clients.tables import SignupConfirmation
from portal.settings import Settings
from tests import factories
from tests.conftest import shared_app

ROOT = Path(__file__).resolve().parents[2]
PEER = "203.0.113.50"
BASE_ENV = {"DATABASE_URL": "postgresql://nobody@127.0.0.1/none", "SECRET_KEY": "k" * 40}
FORGED = "198.51.100.1"


def compose_env() -> dict[str, str]:
    """``FORWARDED_ALLOW_IPS`` as the shipped compose file sets it with nothing exported."""
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    raw = str(document["services"]["app"]["environment"].get("FORWARDED_ALLOW_IPS", ""))
    default = re.fullmatch(r"\$\{\w+:?-([^}]*)\}", raw)
    return {"FORWARDED_ALLOW_IPS": default.group(1) if default else raw}


def served(settings, env: dict[str, str], peer: str = PEER) -> httpx.AsyncClient:
    app = shared_app(replace(settings, forwarded_allow_ips=env["FORWARDED_ALLOW_IPS"] or ""))
    config = uvicorn.Config(app, lifespan="off", **cli.uvicorn_options())
    config.load()
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=config.loaded_app, client=(peer, 51000)),
        base_url="http://testserver",
        follow_redirects=False,
    )


async def _fail_sign_in(http: httpx.AsyncClient, forged: str) -> int:
    token = await factories.csrf_token(http)
    response = await http.post(
        "/login",
        data={
            "email": "someone@example.test",
            "password": "not-the-password",
            "_csrf_token": token,
        },
        headers={"x-forwarded-for": forged},
    )
    return response.status_code


async def _sign_up(http: httpx.AsyncClient, email: str, forged: str) -> None:
    token = await factories.csrf_token(http)
    response = await http.post(
        "/signup",
        data={
            "name": "Forwarded Person", "email": email, "password": "a-long-enough-passphrase",
            "confirm_password": "a-long-enough-passphrase", "consent": "on", "_csrf_token": token,
        },
        headers={"x-forwarded-for": forged},
    )  # fmt: skip
    assert response.status_code in (200, 303), response.text[:500]


def test_the_shipped_compose_file_trusts_no_forwarded_headers():
    env = compose_env()
    assert env["FORWARDED_ALLOW_IPS"] in ("", None)
    # The server believes nobody's headers (uvicorn would trust 127.0.0.1 by
    # default); the app believes the named proxies' only.
    assert cli.uvicorn_options()["proxy_headers"] is False
    assert Settings.from_env({**BASE_ENV, **env}).forwarded_allow_ips == ""
    assert Settings.from_env({**BASE_ENV}).forwarded_allow_ips == ""
    named = Settings.from_env({**BASE_ENV, "FORWARDED_ALLOW_IPS": "10.0.0.5"})
    assert named.forwarded_allow_ips == "10.0.0.5"


async def test_a_forged_header_does_not_change_the_recorded_address(settings, db):
    async with served(settings, compose_env()) as http:
        assert await _fail_sign_in(http, FORGED) == 401
        await _sign_up(http, "forwarded@example.test", FORGED)
    attempts = await LoginAttempt.select(LoginAttempt.address).run()
    assert [row["address"] for row in attempts] == [PEER]
    pending = await SignupConfirmation.select(SignupConfirmation.address).run()
    assert [row["address"] for row in pending] == [PEER]


async def test_a_new_forged_address_per_try_does_not_escape_the_throttle(settings, db):
    async with served(settings, compose_env()) as http:
        statuses = [await _fail_sign_in(http, f"198.51.100.{i}") for i in range(1, 8)]
    assert statuses[:5] == [401] * 5
    assert statuses[5:] == [429, 429]


async def test_a_named_proxys_header_is_believed_and_only_its(settings, db):
    env = {"FORWARDED_ALLOW_IPS": PEER}
    async with served(settings, env) as proxy:
        assert await _fail_sign_in(proxy, FORGED) == 401
    async with served(settings, env, peer="192.0.2.77") as stranger:
        assert await _fail_sign_in(stranger, FORGED) == 401
    attempts = await LoginAttempt.select(LoginAttempt.address).order_by(LoginAttempt.id).run()
    assert [row["address"] for row in attempts] == [FORGED, "192.0.2.77"]
