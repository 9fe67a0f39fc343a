"""Password reset by an emailed link: same answer for every address, single use, expiry, throttle."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

from portal.app import create_app
from portal.audit.tables import AuditLog
from portal.auth import passwords
from portal.auth.service import open_session
from portal.auth.tables import LoginAttempt, User, UserSession
from portal.clients import accounts
from portal.clients.tables import PasswordReset
from portal.email.tables import OutboxMessage
from portal.timeutil import utcnow
from portal.web.forms import ValidationFailed
from tests import factories

NEW = "a-brand-new-passphrase"
LINK_RE = re.compile(r"http://testserver(/password/reset/[A-Za-z0-9_\-]+)")


async def _request(client, email: str):
    return await factories.post_form(client, "/password/forgot", {"email": email})


async def _link_from_outbox(to: str) -> str:
    row = (
        await OutboxMessage.select(OutboxMessage.body_text)
        .where(OutboxMessage.to_address == to)
        .order_by(OutboxMessage.id, ascending=False)
        .first()
        .run()
    )
    match = LINK_RE.search(row["body_text"])
    assert match, row["body_text"]
    return match.group(1)


async def test_known_and_unknown_addresses_get_the_same_answer(client):
    account = await factories.make_user("client", email="known@example.test")
    known = await _request(client, "Known@Example.test")
    unknown = await _request(client, "nobody@example.test")
    assert known.status_code == unknown.status_code == 303
    assert known.headers["location"] == unknown.headers["location"] == "/password/forgot?sent=1"
    page = await client.get("/password/forgot?sent=1")
    assert "If an account exists for that address" in page.text
    # Only the account's mailbox got something.
    assert await PasswordReset.count().run() == 1
    mails = await OutboxMessage.select().run()
    assert [m["to_address"] for m in mails] == ["known@example.test"]
    assert mails[0]["subject"] == "Reset your Clinic Portal password"
    reset = await PasswordReset.select().first().run()
    assert reset["user"] == account.id
    link = await _link_from_outbox("known@example.test")
    token = link.rsplit("/", 1)[1]
    # The database keeps only a hash of the token; the link is valid for 30 minutes.
    assert reset["token_hash"] != token and len(reset["token_hash"]) == 64
    assert reset["expires_at"] - reset["created_at"] == timedelta(minutes=30)


async def test_reset_by_emailed_link_through_smtp_signs_in_and_ends_other_sessions(
    app, db, settings, smtp_server
):
    account = await factories.make_user("client", email="casey@example.test")
    other_device = await open_session(settings, account.id)
    smtp_app = create_app(smtp_server.settings_for(settings), manage_database=False)
    async with factories.make_client(smtp_app) as client:
        response = await _request(client, "casey@example.test")
        assert response.status_code == 303
        received = smtp_server.wait_for(1)
        assert len(received) == 1 and received[0].rcpt_tos == ["casey@example.test"]
        link = LINK_RE.search(received[0].text)
        assert link, received[0].text
        assert link.group(0) in received[0].html
        path = link.group(1)

        form = await client.get(path)
        assert form.status_code == 200
        assert "casey@example.test" in form.text
        assert '<label for="password">New password</label>' in form.text
        done = await factories.post_form(client, path, {"password": NEW, "confirm_password": NEW})
        assert done.status_code == 303
        assert done.headers["location"] == "/account"
        assert done.cookies.get("portal_session")
        account_page = await client.get("/account")
        assert account_page.status_code == 200
        assert "Your password has been changed" in account_page.text

    stored = await User.select(User.password_hash).where(User.id == account.id).first().run()
    assert passwords.verify_password(stored["password_hash"], NEW)
    # Every earlier session is gone; only the one just opened remains.
    sessions = await UserSession.select().where(UserSession.user == account.id).run()
    assert len(sessions) == 1
    from portal.auth.service import hash_token

    assert sessions[0]["token_hash"] != hash_token(other_device)
    assert (await PasswordReset.select().first().run())["used_at"] is not None
    audit = await AuditLog.select().where(AuditLog.action == "reset_password").first().run()
    assert audit["actor_email"] == "casey@example.test" and audit["entity_id"] == str(account.id)

    async with factories.make_client(app) as fresh:
        await factories.login(fresh, account, password=NEW)
        refused = await factories.post_form(
            fresh, "/login", {"email": account.email, "password": account.password}
        )
        assert refused.status_code == 401


async def test_a_used_link_is_refused_and_changes_nothing(client):
    account = await factories.make_user("client", email="once@example.test")
    await _request(client, account.email)
    path = await _link_from_outbox(account.email)
    ok = await factories.post_form(client, path, {"password": NEW, "confirm_password": NEW})
    assert ok.status_code == 303
    before = await User.select(User.password_hash).where(User.id == account.id).first().run()
    again = await client.get(path)
    assert again.status_code == 410
    assert "already been used" in again.text
    replay = await factories.post_form(
        client,
        path,
        {"password": "yet-another-passphrase", "confirm_password": "yet-another-passphrase"},
    )
    assert replay.status_code == 410
    after = await User.select(User.password_hash).where(User.id == account.id).first().run()
    assert after == before


async def test_an_expired_link_is_refused(client):
    account = await factories.make_user("client", email="late@example.test")
    await _request(client, account.email)
    path = await _link_from_outbox(account.email)
    await (
        PasswordReset.update({PasswordReset.expires_at: utcnow() - timedelta(seconds=1)})
        .where(PasswordReset.user == account.id)
        .run()
    )
    page = await client.get(path)
    assert page.status_code == 410
    assert "expired" in page.text
    response = await factories.post_form(client, path, {"password": NEW, "confirm_password": NEW})
    assert response.status_code == 410
    stored = await User.select(User.password_hash).where(User.id == account.id).first().run()
    assert passwords.verify_password(stored["password_hash"], account.password)


async def test_an_unknown_link_is_a_bad_request(client):
    for path in ("/password/reset/not-a-real-token", "/password/reset/" + "x" * 150):
        page = await client.get(path)
        assert page.status_code == 400
        assert "not valid" in page.text
        response = await factories.post_form(
            client, path, {"password": NEW, "confirm_password": NEW}
        )
        assert response.status_code == 400


async def test_bad_new_passwords_keep_the_link_usable(client):
    account = await factories.make_user("client", email="typo@example.test")
    await _request(client, account.email)
    path = await _link_from_outbox(account.email)
    mismatch = await factories.post_form(
        client, path, {"password": NEW, "confirm_password": NEW + "x"}
    )
    assert mismatch.status_code == 422
    assert "differ" in factories.field_error(mismatch.text, "confirm_password")
    weak = await factories.post_form(
        client, path, {"password": "typo-typo", "confirm_password": "typo-typo"}
    )
    assert weak.status_code == 422
    assert factories.field_error(weak.text, "password")
    own_email = await factories.post_form(
        client, path, {"password": "typo@example-1", "confirm_password": "typo@example-1"}
    )
    assert own_email.status_code == 422
    assert (await PasswordReset.select().first().run())["used_at"] is None
    ok = await factories.post_form(client, path, {"password": NEW, "confirm_password": NEW})
    assert ok.status_code == 303


async def test_requests_are_throttled_per_account_and_per_address_alike(client):
    await factories.make_user("client", email="busy@example.test")
    for _ in range(3):
        assert (await _request(client, "busy@example.test")).status_code == 303
    known = await _request(client, "busy@example.test")
    assert known.status_code == 429
    assert "Try again in" in known.text
    for _ in range(2):
        assert (await _request(client, "ghost@example.test")).status_code == 303
    # Five requests from this address in the window: everything from here waits,
    # whether or not the account exists.
    for email in ("ghost@example.test", "someone-else@example.test"):
        response = await _request(client, email)
        assert response.status_code == 429
    assert await OutboxMessage.count().run() == 3


async def test_a_reset_clears_the_sign_in_throttle(client, settings):
    account = await factories.make_user("client", email="locked@example.test")
    for _ in range(5):
        await factories.post_form(
            client, "/login", {"email": account.email, "password": "wrong-wrong-1"}
        )
    locked = await factories.post_form(
        client, "/login", {"email": account.email, "password": account.password}
    )
    assert locked.status_code == 429
    # The reset is made from the same address as the failed sign-ins (the test client's).
    await accounts.request_password_reset(settings, account.email, address="203.0.113.7")
    path = await _link_from_outbox(account.email)
    await accounts.reset_password(settings, path.rsplit("/", 1)[1], NEW, NEW, address="203.0.113.7")
    assert await LoginAttempt.count().where(LoginAttempt.success == True).run() == 1  # noqa: E712
    client.cookies.clear()
    await factories.login(client, account, password=NEW)


async def test_inactive_accounts_get_no_link(client):
    await factories.make_user("client", email="gone@example.test", active=False)
    response = await _request(client, "gone@example.test")
    assert response.status_code == 303
    assert await OutboxMessage.count().run() == 0


async def test_two_submissions_of_one_link_at_once_change_the_password_once(db, settings):
    account = await factories.make_user("client", email="race@example.test")
    await accounts.request_password_reset(settings, account.email, address="198.51.100.2")
    token = (await _link_from_outbox(account.email)).rsplit("/", 1)[1]
    results = await asyncio.gather(
        accounts.reset_password(settings, token, NEW, NEW),
        accounts.reset_password(settings, token, NEW + "-2", NEW + "-2"),
        return_exceptions=True,
    )
    ok = [r for r in results if isinstance(r, accounts.SignedIn)]
    refused = [r for r in results if isinstance(r, accounts.ResetLinkInvalid)]
    assert len(ok) == 1 and len(refused) == 1, results
    assert await UserSession.count().where(UserSession.user == account.id).run() == 1
    assert not any(isinstance(r, ValidationFailed) for r in results)
