"""Self sign-up: the account, its profile, the session, the welcome email, `next`, bad input."""

from __future__ import annotations

import json

import pytest

from portal.app import create_app
from portal.audit.tables import AuditLog
from portal.auth.tables import User, UserSession
from portal.clients.accounts import EXISTS_MESSAGE
from portal.clients.tables import ClientProfile
from portal.email.tables import OutboxMessage
from tests import factories

GOOD = {
    "name": "Robin Vale",
    "email": "Robin.Vale@Example.test",
    "password": "long-enough-secret-9",
    "confirm_password": "long-enough-secret-9",
    "consent": "on",
}


async def test_sign_in_page_links_to_sign_up_and_password_reset(client):
    page = await client.get("/login?next=/buy/3")
    assert 'href="/password/forgot"' in page.text
    assert "Forgot your password?" in page.text
    assert 'href="/signup?next=/buy/3"' in page.text
    signup = await client.get("/signup")
    assert signup.status_code == 200
    for field, label in (
        ("name", "Your name"),
        ("email", "Email"),
        ("password", "Password"),
        ("confirm_password", "Repeat the password"),
    ):
        assert f'<label for="{field}">{label}</label>' in signup.text
    assert 'id="consent" name="consent"' in signup.text
    assert 'name="_csrf_token"' in signup.text


async def test_sign_up_creates_a_signed_in_client_with_a_profile_and_a_welcome(client):
    response = await factories.post_form(client, "/signup", GOOD)
    assert response.status_code == 303, response.text[:400]
    assert response.headers["location"] == "/account"
    assert response.cookies.get("portal_session")

    user = await User.select().where(User.email == "robin.vale@example.test").first().run()
    assert user["role"] == "client" and user["name"] == "Robin Vale" and user["active"]
    assert user["password_hash"].startswith("$argon2id$")
    profile = await ClientProfile.select().where(ClientProfile.user == user["id"]).first().run()
    assert profile["terms_accepted_at"] is not None and profile["email_reminders"] is True
    assert await UserSession.count().where(UserSession.user == user["id"]).run() == 1

    account = await client.get("/account")
    assert account.status_code == 200
    assert "Robin Vale" in account.text
    assert "Fill in the intake form" in account.text
    assert "Welcome! Your account is ready." in account.text
    for placeholder in ("not bought a session package", "No appointments", "No receipts"):
        assert placeholder in account.text

    mail = await OutboxMessage.select().first().run()
    assert mail["to_address"] == "robin.vale@example.test"
    assert mail["kind"] == "welcome" and mail["status"] == "queued"
    assert "Hello Robin Vale," in mail["body_text"]

    audits = await AuditLog.select().order_by(AuditLog.id).run()
    assert [(a["action"], a["entity"], a["actor_email"]) for a in audits] == [
        ("create", "user", "system"),
        ("signup", "client", "robin.vale@example.test"),
    ]
    assert json.loads(audits[1]["after"])["terms_accepted"] is True
    assert "password" not in audits[0]["after"]


async def test_sign_up_sends_the_welcome_through_smtp(app, db, settings, smtp_server):
    smtp_app = create_app(smtp_server.settings_for(settings), manage_database=False)
    async with factories.make_client(smtp_app) as client:
        response = await factories.post_form(client, "/signup", GOOD)
        assert response.status_code == 303
    received = smtp_server.wait_for(1)
    assert len(received) == 1
    assert received[0].rcpt_tos == ["robin.vale@example.test"]
    assert received[0].message["Subject"] == "Welcome to Clinic Portal"
    assert "http://testserver/account/intake" in received[0].text
    row = await OutboxMessage.select().first().run()
    assert row["status"] == "sent" and row["transport"] == "smtp"


@pytest.mark.parametrize(
    ("next_url", "expected"),
    [
        ("/buy/7?package=3", "/buy/7?package=3"),
        ("//evil.example/steal", "/account"),
        ("https://evil.example/", "/account"),
        ("/\\evil.example", "/account"),
    ],
)
async def test_sign_up_follows_only_local_next_urls(client, next_url, expected):
    page = await client.get("/signup", params={"next": next_url})
    if expected != "/account":
        assert f'name="next" value="{next_url}"' in page.text.replace("&amp;", "&")
    response = await factories.post_form(client, "/signup", {**GOOD, "next": next_url})
    assert response.status_code == 303
    assert response.headers["location"] == expected


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"confirm_password": "something-else-entirely"}, "confirm_password", "differ"),
        ({"consent": ""}, "consent", "accept the terms"),
        ({"password": "short", "confirm_password": "short"}, "password", "at least 10"),
        (
            {"password": "password123", "confirm_password": "password123"},
            "password",
            "too common",
        ),
        ({"email": "not-an-email"}, "email", "valid email"),
        # Characters that break a mail header used to create the account, then 500.
        ({"email": 'ro"bin@example.test'}, "email", "valid email"),
        ({"email": "robin<x>@example.test"}, "email", "valid email"),
        ({"email": "robin,eve@example.test"}, "email", "valid email"),
        ({"email": "robin;eve@example.test"}, "email", "valid email"),
        ({"email": ""}, "email", "Enter your email"),
        ({"name": "  "}, "name", "Tell us your name"),
    ],
)
async def test_bad_sign_up_input_is_shown_beside_the_field_and_nothing_is_saved(
    client, change, field, message
):
    data = {**GOOD, **change}
    response = await factories.post_form(client, "/signup", data)
    assert response.status_code == 422
    shown = factories.field_error(response.text, field)
    assert shown is not None and message in shown, shown
    if field != "email":
        assert factories.input_value(response.text, "email") == data["email"]
    if field != "name":
        assert factories.input_value(response.text, "name") == data["name"]
    assert "portal_session" not in response.cookies
    assert await User.count().run() == 0
    assert await OutboxMessage.count().run() == 0


async def test_an_existing_email_says_sign_in_or_reset_with_the_same_status(client):
    existing = await factories.make_user("client", email="taken@example.test")
    response = await factories.post_form(client, "/signup", {**GOOD, "email": "Taken@Example.test"})
    assert response.status_code == 422
    assert factories.field_error(response.text, "email") == EXISTS_MESSAGE
    assert 'href="/password/forgot"' in response.text
    # An invalid form for a free address gets the very same status.
    other = await factories.post_form(
        client, "/signup", {**GOOD, "email": "free@example.test", "consent": ""}
    )
    assert other.status_code == response.status_code
    assert await User.count().run() == 1
    row = await User.select(User.password_hash).where(User.id == existing.id).first().run()
    assert row["password_hash"] != ""


async def test_sign_ups_from_one_address_are_throttled(client):
    for n in range(10):
        response = await factories.post_form(
            client, "/signup", {**GOOD, "email": f"n{n}@example.test", "consent": ""}
        )
        assert response.status_code == 422
    response = await factories.post_form(client, "/signup", {**GOOD, "email": "late@example.test"})
    assert response.status_code == 429
    assert "Try again in" in response.text
    assert int(response.headers["retry-after"]) > 0
    assert await User.count().run() == 0


async def test_signed_in_people_are_sent_on_from_the_sign_up_page(client):
    account = await factories.make_user("client")
    await factories.login(client, account)
    page = await client.get("/signup")
    assert page.status_code == 303 and page.headers["location"] == "/account"
    page = await client.get("/signup?next=/buy/2")
    assert page.headers["location"] == "/buy/2"
    response = await factories.post_form(client, "/signup", GOOD)
    assert response.status_code == 303
    assert await User.count().run() == 1
