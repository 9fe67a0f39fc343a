"""Times on the staff's pages are shown in a clinic's zone, named, never in bare UTC:
a record's history in its own clinic's, the outbox, tokens, access log and two-step
pages in the reader's clinic's, a client's intake date in their clinic's."""

from __future__ import annotations

from datetime import UTC, datetime

from portal.audit.tables import AuditLog
from portal.auth import tokens
from portal.auth.service import CLIENT, MANAGER, OWNER
from portal.auth.tables import ApiToken
from portal.clients.tables import ClientIntake, ClientProfile
from portal.email import service as email
from portal.email.tables import OutboxMessage
from portal.identity import CurrentUser
from portal.notes.tables import NoteAccessLog
from tests import factories

# 2026-03-01 20:30 UTC is 2026-03-02 05:30 in Tokyo (JST, UTC+9).
AT = datetime(2026, 3, 1, 20, 30, tzinfo=UTC)
TOKYO = "2026-03-02 05:30 JST"


async def test_history_outbox_and_access_log_in_the_clinics_zone(db, app, settings):
    tokyo = await factories.make_location(name="Tokyo", slug="tokyo", timezone="Asia/Tokyo")
    await AuditLog.insert(
        AuditLog(at=AT, actor_email="x@example.test", action="update", entity="location",
                 entity_id=str(tokyo), before='{"name": "Old"}', after='{"name": "Tokyo"}')
    ).run()  # fmt: skip
    message_id = await email.send("a@example.test", "welcome", {"name": "A"}, "welcome",
                                  settings=settings)  # fmt: skip
    await (
        OutboxMessage.update({OutboxMessage.created_at: AT})
        .where(OutboxMessage.id == message_id)
        .run()
    )
    await NoteAccessLog.insert(
        NoteAccessLog(at=AT, actor_email="t@example.test", actor_role="therapist",
                      action="view", client_id=1)
    ).run()  # fmt: skip
    owner = await factories.make_user(OWNER)
    async with factories.make_client(app) as client:
        await factories.login(client, owner)
        history = (await client.get(f"/locations/{tokyo}/history")).text
        outbox = (await client.get("/outbox")).text
        message = (await client.get(f"/outbox/{message_id}")).text
        log = (await client.get("/notes/access-log")).text
        # The reader's day, not UTC's: 2026-03-02 in Tokyo holds the reading.
        same_day = (await client.get("/notes/access-log?from=2026-03-02&to=2026-03-02")).text
        day_before = (await client.get("/notes/access-log?from=2026-03-01&to=2026-03-01")).text
    for page in (history, outbox, message):
        assert TOKYO in page and "UTC" not in page
    assert "2026-03-02 05:30:00 JST" in log and "(UTC)" not in log
    assert "t@example.test" in same_day and "t@example.test" not in day_before


async def test_tokens_and_intake_dates_in_the_clinics_zone(db, app):
    tokyo = await factories.make_location(name="Tokyo", slug="tokyo", timezone="Asia/Tokyo")
    manager = await factories.make_user(MANAGER, location_ids=(tokyo,))
    who = CurrentUser(id=manager.id, email=manager.email, name="", role=MANAGER,
                      location_ids=frozenset({tokyo}))  # fmt: skip
    await tokens.create_token(who, "Spreadsheet")
    await ApiToken.update({ApiToken.created_at: AT}).where(ApiToken.user == manager.id).run()
    person = await factories.make_user(CLIENT)
    await ClientProfile.insert(ClientProfile(user=person.id, preferred_location=tokyo)).run()
    await ClientIntake.insert(ClientIntake(client=person.id, version=1, created_at=AT)).run()
    async with factories.make_client(app) as client:
        await factories.login(client, manager)
        token_page = (await client.get("/account/tokens")).text
        clients = (await client.get("/clients")).text
    assert TOKYO in token_page and "UTC" not in token_page
    assert "02 Mar 2026" in clients and "01 Mar 2026" not in clients
