"""Sign-in, sessions, throttling and passwords."""

from __future__ import annotations

from datetime import timedelta

from argon2 import PasswordHasher

from portal.auth import passwords
from portal.auth.service import open_session
from portal.auth.tables import LoginAttempt, User, UserSession
from portal.timeutil import utcnow
from tests import factories


async def test_sign_in_page_has_labelled_fields(client):
    response = await client.get("/login")
    assert response.status_code == 200
    assert '<label for="email">Email</label>' in response.text
    assert '<label for="password">Password</label>' in response.text
    assert 'name="_csrf_token"' in response.text


async def test_sign_in_creates_server_side_session_and_rotates_id(client, owner, settings):
    # A session that existed before sign-in (e.g. planted by an attacker) is not reused.
    planted = await factories.make_user("client")
    old_token = await open_session(settings, planted.id)
    client.cookies.set("portal_session", old_token)
    response = await factories.login_by_form(client, owner)
    new_token = response.cookies.get("portal_session")
    assert new_token and new_token != old_token
    cookie_header = response.headers.get_list("set-cookie")
    session_cookie = next(c for c in cookie_header if c.startswith("portal_session="))
    assert "HttpOnly" in session_cookie and "SameSite=lax" in session_cookie
    assert "Secure" not in session_cookie  # BASE_URL is http in tests
    # The old session is gone from the database; the new one is stored hashed.
    assert await UserSession.count().run() == 1
    row = await UserSession.select().first().run()
    assert row["user"] == owner.id
    assert row["token_hash"] != new_token and len(row["token_hash"]) == 64


async def test_wrong_password_is_refused_without_saying_which_part(client, owner):
    response = await factories.post_form(
        client, "/login", {"email": owner.email, "password": "not-the-password"}
    )
    assert response.status_code == 401
    assert "The email or password is not right." in response.text
    unknown = await factories.post_form(
        client, "/login", {"email": "nobody@example.test", "password": "whatever-password"}
    )
    assert unknown.status_code == 401
    assert "The email or password is not right." in unknown.text
    assert factories.input_value(unknown.text, "email") == "nobody@example.test"


async def test_empty_fields_get_messages_beside_them(client):
    response = await factories.post_form(client, "/login", {"email": "", "password": ""})
    assert response.status_code == 422
    assert factories.field_error(response.text, "email") == "Enter your email address."
    assert factories.field_error(response.text, "password") == "Enter your password."


async def test_throttling_after_five_failures_per_account(client, owner):
    for _ in range(5):
        response = await factories.post_form(
            client, "/login", {"email": owner.email, "password": "wrong-password-1"}
        )
        assert response.status_code == 401
    # Even the right password is refused now, with a clear time to wait.
    response = await factories.post_form(
        client, "/login", {"email": owner.email, "password": owner.password}
    )
    assert response.status_code == 429
    assert "Try again in 15 minutes" in response.text
    assert int(response.headers["retry-after"]) > 14 * 60
    assert "portal_session" not in response.cookies
    # An unknown account is throttled the same way: no hint that it does not exist.
    for _ in range(5):
        await factories.post_form(
            client, "/login", {"email": "ghost@example.test", "password": "wrong-password-1"}
        )


async def test_throttling_unknown_account_looks_the_same(app, db):
    async with factories.make_client(app) as client:
        for _ in range(5):
            await factories.post_form(
                client, "/login", {"email": "ghost@example.test", "password": "wrong-pass-12"}
            )
        response = await factories.post_form(
            client, "/login", {"email": "ghost@example.test", "password": "wrong-pass-12"}
        )
    assert response.status_code == 429
    assert "Too many failed sign-in attempts" in response.text


async def test_throttling_per_address_across_accounts(app, db):
    accounts = [await factories.make_user("client") for _ in range(6)]
    async with factories.make_client(app) as client:
        for account in accounts[:5]:
            await factories.post_form(
                client, "/login", {"email": account.email, "password": "wrong-pass-12"}
            )
        # The sixth account has no failures of its own, but this address has five.
        response = await factories.post_form(
            client, "/login", {"email": accounts[5].email, "password": accounts[5].password}
        )
    assert response.status_code == 429


async def test_throttle_window_expires(client, owner):
    long_ago = utcnow() - timedelta(minutes=16)
    for _ in range(5):
        await LoginAttempt.insert(
            LoginAttempt(account_key=owner.email, address="203.0.113.7", at=long_ago, success=False)
        ).run()
    await factories.login_by_form(client, owner)


async def test_sign_out_ends_the_session(client, owner):
    response = await factories.login_by_form(client, owner)
    token = response.cookies["portal_session"]
    assert (await client.get("/")).status_code == 200
    response = await factories.post_form(client, "/logout")
    assert response.status_code == 303
    assert await UserSession.count().where(UserSession.user == owner.id).run() == 0
    # Replaying the old cookie does not work either.
    client.cookies.set("portal_session", token)
    response = await client.get("/")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")


async def test_password_change_ends_other_sessions(app, owner):
    async with factories.make_client(app) as laptop, factories.make_client(app) as phone:
        await factories.login_by_form(laptop, owner)
        await factories.login_by_form(phone, owner)
        response = await factories.post_form(
            laptop,
            "/account/password",
            {
                "current_password": owner.password,
                "new_password": "a-much-better-passphrase",
                "confirm_password": "a-much-better-passphrase",
            },
        )
        assert response.status_code == 303
        assert (await laptop.get("/")).status_code == 200
        assert (await phone.get("/")).status_code == 303
    async with factories.make_client(app) as fresh:
        await factories.login_by_form(fresh, owner, password="a-much-better-passphrase")


async def test_password_change_validation(owner_client, owner):
    response = await factories.post_form(
        owner_client,
        "/account/password",
        {
            "current_password": "wrong",
            "new_password": "password123",
            "confirm_password": "password123",
        },
    )
    assert response.status_code == 422
    assert factories.field_error(response.text, "current_password")
    assert "too common" in factories.field_error(response.text, "new_password")
    response = await factories.post_form(
        owner_client,
        "/account/password",
        {"current_password": owner.password, "new_password": "short", "confirm_password": "short"},
    )
    assert "at least 10 characters" in factories.field_error(response.text, "new_password")
    stored = await User.select(User.password_hash).where(User.id == owner.id).first().run()
    assert passwords.verify_password(stored["password_hash"], owner.password)


async def test_passwords_are_argon2id_and_rehashed_on_parameter_change(client, db):
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
    account = await factories.make_user("manager")
    await (
        User.update({User.password_hash: weak.hash(account.password)})
        .where(User.id == account.id)
        .run()
    )
    await factories.login_by_form(client, account)
    stored = (await User.select(User.password_hash).where(User.id == account.id).first().run())[
        "password_hash"
    ]
    assert stored.startswith("$argon2id$")
    assert not passwords.needs_rehash(stored)
    assert "m=8192" not in stored


async def test_staff_idle_timeout_and_absolute_lifetime(client, owner):
    await factories.login_by_form(client, owner)
    await UserSession.update(
        {UserSession.last_seen_at: utcnow() - timedelta(hours=9)}, force=True
    ).run()
    response = await client.get("/")
    assert response.status_code == 303
    assert await UserSession.count().run() == 0

    await factories.login_by_form(client, owner)
    await UserSession.update(
        {UserSession.expires_at: utcnow() - timedelta(seconds=1)}, force=True
    ).run()
    assert (await client.get("/")).status_code == 303


async def test_session_is_touched_at_most_once_a_minute(client, owner):
    await factories.login_by_form(client, owner)
    before = (await UserSession.select(UserSession.last_seen_at).first().run())["last_seen_at"]
    for _ in range(3):
        assert (await client.get("/")).status_code == 200
    after = (await UserSession.select(UserSession.last_seen_at).first().run())["last_seen_at"]
    assert after == before
    await UserSession.update(
        {UserSession.last_seen_at: utcnow() - timedelta(minutes=2)}, force=True
    ).run()
    await client.get("/")
    touched = (await UserSession.select(UserSession.last_seen_at).first().run())["last_seen_at"]
    assert utcnow() - touched < timedelta(seconds=30)


async def test_deactivated_user_loses_access(app, owner):
    victim = await factories.make_user("accountant")
    async with factories.make_client(app) as c, factories.make_client(app) as admin:
        await factories.login_by_form(c, victim)
        await factories.login_by_form(admin, owner)
        response = await factories.post_form(admin, f"/users/{victim.id}/deactivate")
        assert response.status_code == 303
        assert (await c.get("/")).status_code == 303
        response = await factories.post_form(
            c, "/login", {"email": victim.email, "password": victim.password}
        )
        assert response.status_code == 401


async def test_next_parameter_only_follows_local_paths(client, owner):
    response = await factories.post_form(
        client,
        "/login",
        {"email": owner.email, "password": owner.password, "next": "//evil.example/x"},
    )
    assert response.headers["location"] == "/"
    await factories.post_form(client, "/logout")
    response = await factories.post_form(
        client, "/login", {"email": owner.email, "password": owner.password, "next": "/locations"}
    )
    assert response.headers["location"] == "/locations"


def test_password_policy():
    assert passwords.password_problem("short") is not None
    assert passwords.password_problem("password1") is not None
    assert "too common" in passwords.password_problem("qwertyuiop")
    assert passwords.password_problem("aaaaaaaaaaaa") is not None
    assert "email" in passwords.password_problem("jane.doe-2026!", email="jane.doe@example.com")
    assert passwords.password_problem("trigger-point-therapy-77") is None
