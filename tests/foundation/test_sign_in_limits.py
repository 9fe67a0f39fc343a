"""The sign-in throttle's three counts and the clients' idle timeout.

* account from one address: five failures lock that account from that address
  only, so the owner's own device still gets in while someone guesses elsewhere;
* address: five failures lock the address whatever the account, and a success
  of another account (one's own, made for the purpose) resets nothing;
* account from every address: a generous limit against guessing spread out.
"""

from __future__ import annotations

from datetime import timedelta

import httpx

from portal.auth import service
from portal.auth.service import CLIENT, open_session
from portal.auth.tables import LoginAttempt, UserSession
from portal.timeutil import utcnow
from tests import factories

ATTACKER = "198.51.100.66"
OWNERS_DEVICE = "192.0.2.10"


def _client_from(app, address: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(address, 40000)),
        base_url="http://testserver",
        follow_redirects=False,
    )


async def _try(client: httpx.AsyncClient, email: str, password: str) -> int:
    response = await factories.post_form(client, "/login", {"email": email, "password": password})
    if response.status_code == 303:
        # Signed in: sign out again, as a script interleaving its own account would.
        await factories.post_form(client, "/logout")
    return response.status_code


async def test_another_accounts_success_does_not_reset_the_address_count(app, db):
    victims = [await factories.make_user("owner"), await factories.make_user("manager")]
    own = await factories.make_user(CLIENT)  # a free, self-made account
    statuses: list[int] = []
    async with _client_from(app, ATTACKER) as attacker:
        for round_ in range(8):
            for victim in victims:
                statuses.append(await _try(attacker, victim.email, f"guess-number-{round_}"))
            assert await _try(attacker, own.email, own.password) in (303, 429)
    failures = [s for s in statuses if s == 401]
    assert len(failures) == 5, statuses  # five guesses from this address, then 429s
    assert statuses[5:] == [429] * (len(statuses) - 5)


async def test_a_success_still_clears_its_own_accounts_failures(app, db):
    typist = await factories.make_user("accountant")
    async with _client_from(app, OWNERS_DEVICE) as device:
        for _ in range(4):
            assert await _try(device, typist.email, "not-my-password") == 401
        assert await _try(device, typist.email, typist.password) == 303
        for _ in range(4):
            assert await _try(device, typist.email, "not-my-password") == 401
        assert await _try(device, typist.email, typist.password) == 303


async def test_guessing_elsewhere_does_not_lock_the_owner_out(app, db):
    owner = await factories.make_user("owner")
    async with _client_from(app, ATTACKER) as attacker:
        for _ in range(5):
            assert await _try(attacker, owner.email, "wrong-password-1") == 401
        # From the guessing address even the right password waits.
        assert await _try(attacker, owner.email, owner.password) == 429
    async with _client_from(app, OWNERS_DEVICE) as device:
        assert await _try(device, owner.email, owner.password) == 303


async def test_guessing_spread_over_many_addresses_is_limited_per_account(app, db, settings):
    owner = await factories.make_user("owner")
    limit = settings.login_max_failures_per_account_total
    assert limit >= 20  # generous: a few typos from many places never reach it
    now = utcnow()
    for i in range(limit):
        await LoginAttempt.insert(
            LoginAttempt(
                account_key=owner.email,
                address=f"10.9.{i // 250}.{i % 250}",
                at=now - timedelta(seconds=limit - i),
                success=False,
            )
        ).run()
    async with _client_from(app, OWNERS_DEVICE) as device:
        response = await factories.post_form(
            device, "/login", {"email": owner.email, "password": owner.password}
        )
        assert response.status_code == 429
        assert int(response.headers["retry-after"]) > 14 * 60
    # One fewer is still allowed.
    await LoginAttempt.delete().where(LoginAttempt.address == "10.9.0.0").run()
    async with _client_from(app, OWNERS_DEVICE) as device:
        assert await _try(device, owner.email, owner.password) == 303


async def test_client_sessions_end_after_an_idle_day(app, db, settings, monkeypatch):
    client_account = await factories.make_user(CLIENT)
    real_now = service.utcnow

    async with factories.make_client(app) as browser:
        browser.cookies.set("portal_session", await open_session(settings, client_account.id))
        assert (await browser.get("/account")).status_code == 200
        # 23 idle hours: still signed in (and the visit counts as activity).
        monkeypatch.setattr(service, "utcnow", lambda: real_now() + timedelta(hours=23))
        assert (await browser.get("/account")).status_code == 200
        # Another 25 hours without a request: signed out, the session row gone.
        monkeypatch.setattr(service, "utcnow", lambda: real_now() + timedelta(hours=48))
        response = await browser.get("/account")
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login")
        assert await UserSession.count().where(UserSession.user == client_account.id).run() == 0
