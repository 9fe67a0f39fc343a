"""A password-reset link reaches its recipient's mailbox and nobody else.

* the owners' outbox pages (text and HTML) show "[reset link hidden]"; SMTP
  still delivers the real link, which works for 30 minutes;
* the request log does not keep a reset link's token;
* a reset request answers the same, after the same work, for an address with
  an account and one without: the lookup, the link and the message come after
  the answer.
"""

from __future__ import annotations

import logging
import re

from portal.app import create_app
from portal.clients import accounts
from portal.clients.tables import PasswordReset
from portal.email.tables import OutboxMessage
from tests import factories

LINK_RE = re.compile(r"http://testserver/password/reset/[A-Za-z0-9_\-]+")


async def _forgot(client, email: str):
    return await factories.post_form(client, "/password/forgot", {"email": email})


async def test_the_outbox_hides_reset_links_that_smtp_delivers(app, db, settings, smtp_server):
    owner = await factories.make_user("owner")
    await factories.make_user("client", email="casey@example.test")
    smtp_app = create_app(smtp_server.settings_for(settings), manage_database=False)
    async with factories.make_client(smtp_app) as visitor:
        assert (await _forgot(visitor, "casey@example.test")).status_code == 303
    received = smtp_server.wait_for(1)
    link = LINK_RE.search(received[0].text)
    assert link and link.group(0) in received[0].html  # the mailbox gets the link
    message = await OutboxMessage.select().first().run()
    async with factories.make_client(app) as owners:
        await factories.login(owners, owner)
        page = await owners.get(f"/outbox/{message['id']}")
        html = await owners.get(f"/outbox/{message['id']}/html")
    for shown in (page.text, html.text):
        assert "[reset link hidden]" in shown
        assert "/password/reset/" not in shown
        assert link.group(0).rsplit("/", 1)[1] not in shown
    reset = await PasswordReset.select().first().run()
    assert (reset["expires_at"] - reset["created_at"]).total_seconds() == 30 * 60


async def test_the_request_log_hides_reset_tokens(client, caplog):
    """The request line names the route template; a path no route matches is hidden too."""
    caplog.set_level(logging.INFO, logger="portal.request")
    await client.get("/password/reset/abcDEF123_-xyz?x=1")
    await client.get("/signup/confirm/zzzTOKEN987/extra")  # matches no route
    lines = [r for r in caplog.records if r.name == "portal.request"]
    assert [line.route for line in lines] == ["/password/reset/{token}", "unmatched"]
    assert lines[1].path == "/signup/confirm/[hidden]"
    for line in lines:
        shown = " ".join(f"{k}={v}" for k, v in vars(line).items())
        assert "abcDEF123" not in shown and "zzzTOKEN987" not in shown


async def test_a_reset_request_answers_the_same_after_the_same_work(app, db, monkeypatch):
    await factories.make_user("client", email="known@example.test")
    scheduled: list[tuple[str, str]] = []

    async def after_the_answer(settings, key, *, address, defer=True):
        scheduled.append((key, address))

    monkeypatch.setattr(accounts, "send_reset_link", after_the_answer)
    answers = []
    for email in ("known@example.test", "nobody@example.test"):
        async with factories.make_client(app) as visitor:
            await factories.csrf_token(visitor)
            answers.append(await _forgot(visitor, email))
    known, unknown = answers

    def shape(response):
        headers = {k: v for k, v in response.headers.items() if k not in ("date", "x-request-id")}
        return response.status_code, headers, response.content

    assert shape(known) == shape(unknown)
    # Before answering, neither looked anything up nor stored a link or a message:
    assert scheduled == [
        ("known@example.test", "203.0.113.7"),
        ("nobody@example.test", "203.0.113.7"),
    ]
    assert await PasswordReset.count().run() == 0
    assert await OutboxMessage.count().run() == 0
