"""Self sign-up: the answer (the same for new and taken emails), the confirmation link,
the account, its profile, the session, the welcome email, `next`, bad input."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest

from portal.app import create_app
from portal.audit.tables import AuditLog
from portal.auth.tables import LoginAttempt, User, UserSession
from portal.clients.tables import ClientProfile, SignupConfirmation
from portal.email.tables import OutboxMessage
from portal.timeutil import utcnow
from tests import factories

CONFIRM_RE = re.compile(r"http://testserver(/signup/confirm/[A-Za-z0-9_\-]+)")
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


async def _confirm_path(email: str) -> str:
    """The confirmation link's path, from the stored message (the recipient's mailbox)."""
    mail = (
        await OutboxMessage.select()
        .where((OutboxMessage.to_address == email) & (OutboxMessage.kind == "signup_confirm"))
        .order_by(OutboxMessage.id, ascending=False)
        .first()
        .run()
    )
    assert mail is not None, f"no confirmation mailed to {email}"
    match = CONFIRM_RE.search(mail["body_text"])
    assert match and match.group(0) in mail["body_html"], mail["body_text"]
    return match.group(1)


async def test_sign_up_mails_a_link_and_creates_nothing_until_it_is_used(app, client):
    response = await factories.post_form(client, "/signup", GOOD)
    assert response.status_code == 303, response.text[:400]
    assert response.headers["location"] == "/signup/sent"
    assert "portal_session" not in response.cookies
    sent = await client.get("/signup/sent")
    assert sent.status_code == 200 and "Check your email to finish signing up" in sent.text
    assert await User.count().run() == 0
    pending = await SignupConfirmation.select().first().run()
    assert pending["email"] == "robin.vale@example.test" and pending["name"] == "Robin Vale"
    assert pending["password_hash"].startswith("$argon2id$")
    assert GOOD["password"] not in json.dumps(pending, default=str)
    assert (pending["expires_at"] - pending["created_at"]) == timedelta(hours=24)
    mail = await OutboxMessage.select().first().run()
    assert mail["kind"] == "signup_confirm" and mail["to_address"] == "robin.vale@example.test"
    path = await _confirm_path("robin.vale@example.test")
    assert pending["token_hash"] not in path  # only the hash is kept

    # Opening the link shows a button; it changes nothing (mail scanners open links too).
    page = await client.get(path)
    assert page.status_code == 200 and "Confirm my account" in page.text
    assert "robin.vale@example.test" in page.text
    assert await User.count().run() == 0

    confirmed = await factories.post_form(client, path)
    assert confirmed.status_code == 303, confirmed.text[:400]
    assert confirmed.headers["location"] == "/account"
    assert confirmed.cookies.get("portal_session")
    user = await User.select().where(User.email == "robin.vale@example.test").first().run()
    assert user["role"] == "client" and user["name"] == "Robin Vale" and user["active"]
    assert user["password_hash"] == pending["password_hash"]
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

    welcome = await OutboxMessage.select().where(OutboxMessage.kind == "welcome").first().run()
    assert welcome["to_address"] == "robin.vale@example.test" and welcome["status"] == "queued"
    assert "Hello Robin Vale," in welcome["body_text"]

    audits = await AuditLog.select().order_by(AuditLog.id).run()
    assert [(a["action"], a["entity"], a["actor_email"]) for a in audits] == [
        ("create", "user", "system"),
        ("signup", "client", "robin.vale@example.test"),
    ]
    assert json.loads(audits[1]["after"])["terms_accepted"] is True
    assert "password" not in audits[0]["after"]

    # The password chosen in the form signs in.
    async with factories.make_client(app) as fresh:
        signed = await factories.post_form(
            fresh, "/login", {"email": GOOD["email"], "password": GOOD["password"]}
        )
        assert signed.status_code == 303


async def test_a_link_works_once(client):
    await factories.post_form(client, "/signup", GOOD)
    path = await _confirm_path("robin.vale@example.test")
    assert (await factories.post_form(client, path)).status_code == 303
    for again in (await factories.post_form(client, path), await client.get(path)):
        assert again.status_code == 410
        assert "already been used" in again.text
    assert await User.count().run() == 1
    unknown = await client.get("/signup/confirm/not-a-real-token")
    assert unknown.status_code == 400 and "not valid" in unknown.text


async def test_an_expired_link_says_so_and_creates_nothing(client):
    await factories.post_form(client, "/signup", GOOD)
    path = await _confirm_path("robin.vale@example.test")
    await SignupConfirmation.update(
        {SignupConfirmation.expires_at: utcnow() - timedelta(seconds=1)}, force=True
    ).run()
    for response in (await client.get(path), await factories.post_form(client, path)):
        assert response.status_code == 410
        assert "expired" in response.text and "Sign up again" in response.text
    assert await User.count().run() == 0
    assert await OutboxMessage.count().where(OutboxMessage.kind == "welcome").run() == 0


async def test_a_link_for_an_email_taken_meanwhile_creates_nothing(client):
    await factories.post_form(client, "/signup", GOOD)
    path = await _confirm_path("robin.vale@example.test")
    await factories.make_user("client", email="robin.vale@example.test")
    response = await factories.post_form(client, path)
    assert response.status_code == 409 and "already exists" in response.text
    assert await User.count().run() == 1
    assert "portal_session" not in response.cookies


@pytest.mark.parametrize("role", ["client", "owner", "therapist"])
async def test_new_and_taken_emails_get_the_same_answer_and_the_owner_is_told(app, client, role):
    existing = await factories.make_user(role, email="taken@example.test")
    before = await User.select(User.password_hash).where(User.id == existing.id).first().run()
    answers = []
    for email in ("Taken@Example.test", "free@example.test"):
        # The same browser both times, so that only the email differs.
        response = await factories.post_form(client, "/signup", {**GOOD, "email": email})
        sent = await client.get(response.headers.get("location", "/signup/sent"))
        answers.append(
            (
                response.status_code,
                response.text.replace(email, "EMAIL"),
                response.headers.get("location"),
                sorted(response.cookies),
                sent.status_code,
                sent.text,
            )
        )
    assert answers[0] == answers[1]
    assert answers[0][0] == 303
    # Nothing was created or changed for the taken address; its owner is told.
    assert await User.count().run() == 1
    after = await User.select(User.password_hash).where(User.id == existing.id).first().run()
    assert after == before
    assert (
        await SignupConfirmation.count()
        .where(SignupConfirmation.email == "taken@example.test")
        .run()
        == 0
    )
    notice = (
        await OutboxMessage.select().where(OutboxMessage.to_address == "taken@example.test").run()
    )
    assert [m["kind"] for m in notice] == ["signup_exists"]
    assert "tried to create a new" in notice[0]["body_text"]
    assert "http://testserver/login" in notice[0]["body_text"]
    assert "http://testserver/password/forgot" in notice[0]["body_text"]
    assert "/signup/confirm/" not in notice[0]["body_text"]
    # The new address got its link.
    assert await _confirm_path("free@example.test")


async def test_an_unconfirmed_sign_up_cannot_sign_in_and_the_throttle_counts(client, settings):
    await factories.make_user("client", email="someone@example.test")
    await factories.post_form(client, "/signup", GOOD)
    unconfirmed = await factories.post_form(
        client, "/login", {"email": GOOD["email"], "password": GOOD["password"]}
    )
    wrong = await factories.post_form(
        client, "/login", {"email": "someone@example.test", "password": "not-the-password-1"}
    )
    assert unconfirmed.status_code == wrong.status_code == 401
    assert "portal_session" not in unconfirmed.cookies
    assert unconfirmed.text.replace(GOOD["email"], "E") == wrong.text.replace(
        "someone@example.test", "E"
    )
    assert (
        await LoginAttempt.count()
        .where(
            (LoginAttempt.account_key == "robin.vale@example.test")
            & (LoginAttempt.success == False)  # noqa: E712
        )
        .run()
        == 1
    )
    for _ in range(settings.login_max_failures_per_account - 1):
        await factories.post_form(
            client, "/login", {"email": GOOD["email"], "password": GOOD["password"]}
        )
    throttled = await factories.post_form(
        client, "/login", {"email": GOOD["email"], "password": GOOD["password"]}
    )
    assert throttled.status_code == 429


async def test_the_outbox_hides_confirmation_links(app, client):
    owner = await factories.make_user("owner")
    await factories.post_form(client, "/signup", GOOD)
    path = await _confirm_path("robin.vale@example.test")
    message = await OutboxMessage.select().first().run()
    async with factories.make_client(app) as owners:
        await factories.login(owners, owner)
        page = await owners.get(f"/outbox/{message['id']}")
        html = await owners.get(f"/outbox/{message['id']}/html")
    for shown in (page.text, html.text):
        assert "[confirmation link hidden]" in shown
        assert "/signup/confirm/" not in shown
        assert path.rsplit("/", 1)[1] not in shown


async def test_sign_up_sends_the_link_and_the_welcome_through_smtp(app, db, settings, smtp_server):
    smtp_app = create_app(smtp_server.settings_for(settings), manage_database=False)
    async with factories.make_client(smtp_app) as client:
        response = await factories.post_form(client, "/signup", GOOD)
        assert response.status_code == 303
        received = smtp_server.wait_for(1)
        assert received[0].message["Subject"] == "Confirm your Clinic Portal account"
        link = CONFIRM_RE.search(received[0].text)
        assert link
        confirmed = await factories.post_form(client, link.group(1))
        assert confirmed.status_code == 303
    received = smtp_server.wait_for(2)
    assert len(received) == 2
    assert received[1].rcpt_tos == ["robin.vale@example.test"]
    assert received[1].message["Subject"] == "Welcome to Clinic Portal"
    assert "http://testserver/account/intake" in received[1].text
    rows = await OutboxMessage.select().order_by(OutboxMessage.id).run()
    assert [(r["kind"], r["status"], r["transport"]) for r in rows] == [
        ("signup_confirm", "sent", "smtp"),
        ("welcome", "sent", "smtp"),
    ]


@pytest.mark.parametrize(
    ("next_url", "expected"),
    [
        ("/buy/7?package=3", "/buy/7?package=3"),
        ("/buy/3?location=2", "/buy/3?location=2"),
        ("//evil.example/steal", "/account"),
        ("https://evil.example/", "/account"),
        ("/\\evil.example", "/account"),
    ],
)
async def test_sign_up_carries_only_local_next_urls_through_the_link(client, next_url, expected):
    page = await client.get("/signup", params={"next": next_url})
    if expected != "/account":
        assert f'name="next" value="{next_url}"' in page.text.replace("&amp;", "&")
    response = await factories.post_form(client, "/signup", {**GOOD, "next": next_url})
    assert response.status_code == 303
    assert response.headers["location"] == "/signup/sent"
    path = await _confirm_path("robin.vale@example.test")
    confirmed = await factories.post_form(client, path)
    assert confirmed.status_code == 303
    assert confirmed.headers["location"] == expected


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
