"""The owners' audit log: every change across the chain, by name, in words, searchable
by who, what, location and dates, in keyset pages; and the trail records each change's
clinic."""

from __future__ import annotations

from datetime import UTC, datetime

from portal import db as database
from portal.audit import service as audit
from portal.audit.tables import AuditLog
from portal.auth.service import MANAGER, OWNER
from portal.identity import CurrentUser
from tests import factories


def _actor(account, name: str, location_ids=()) -> CurrentUser:
    return CurrentUser(id=account.id, email=account.email, name=name, role=account.role,
                       location_ids=frozenset(location_ids))  # fmt: skip


async def test_the_trail_records_each_changes_clinic(db):
    loc = await factories.make_location(name="North", slug="north")
    owner = _actor(await factories.make_user(OWNER), "Olive Owner")
    async with database.transaction():
        await audit.record(owner, "update", "location", loc, after={"name": "North"})
        await audit.record(owner, "create", "room", 7, after={"location": loc, "name": "A"})
        await audit.record(owner, "create", "service", 3, after={"name": "Massage"})
    rows = (
        await AuditLog.select(AuditLog.entity, AuditLog.location_id, AuditLog.actor_name)
        .order_by(AuditLog.id)
        .run()
    )
    assert [(r["entity"], r["location_id"]) for r in rows[-3:]] == [
        ("location", loc), ("room", loc), ("service", None),
    ]  # fmt: skip
    assert rows[-1]["actor_name"] == "Olive Owner"


async def test_owner_searches_the_audit_log(db, app):
    north = await factories.make_location(name="North", slug="north", timezone="UTC")
    south = await factories.make_location(name="South", slug="south", timezone="UTC")
    owner_account = await factories.make_user(OWNER)
    manager_account = await factories.make_user(MANAGER, location_ids=(north,))
    mia = _actor(manager_account, "Mia Manager", (north,))
    for i in range(55):
        await audit.record(mia, "add_time_off", "therapist", i, after={"location": north})
    await audit.record(mia, "create", "room", 99, after={"location": south, "name": "Blue"})
    await AuditLog.insert(
        AuditLog(at=datetime(2026, 1, 5, 12, tzinfo=UTC), actor_email="old@example.test",
                 action="deactivate", entity="service", entity_id="4")
    ).run()  # fmt: skip
    async with factories.make_client(app) as client:
        await factories.login(client, owner_account)
        first = await client.get("/audit")
        assert first.status_code == 200
        assert "Mia Manager" in first.text and "Added time off" in first.text
        assert "add_time_off" not in first.text.split("<table")[1]
        # Newest first: the room in South leads the first page of 50.
        assert first.text.index("Room #99") < first.text.index("Therapist #54")
        cursor = first.text.split("after=")[1].split('"')[0]
        second = await client.get(f"/audit?after={cursor}")
        assert "Therapist #4<" in second.text and "Service #4" in second.text
        assert "Therapist #54" not in second.text
        by_place = await client.get(f"/audit?location={south}")
        assert "Room #99" in by_place.text and "Therapist #" not in by_place.text
        by_name = await client.get("/audit?who=mia&what=room")
        assert "Room #99" in by_name.text and "Therapist #" not in by_name.text
        by_action = await client.get("/audit?action=deactivate")
        assert "Service #4" in by_action.text and "Deactivated" in by_action.text
        by_dates = await client.get("/audit?from=2026-01-01&to=2026-01-31")
        assert "Service #4" in by_dates.text and "Room #99" not in by_dates.text
        nobody = await client.get("/audit?who=zed")
        assert "No changes match." in nobody.text
    async with factories.make_client(app) as client:
        await factories.login(client, manager_account)
        assert (await client.get("/audit")).status_code == 403
