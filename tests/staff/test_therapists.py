"""Therapist profiles: validation, location scope, accounts, audit, lists (service level)."""

from __future__ import annotations

from datetime import date, timedelta
from zoneinfo import ZoneInfo

import pytest

from portal.audit.tables import AuditLog
from portal.auth.service import MANAGER, THERAPIST, location_ids_of
from portal.auth.tables import User
from portal.email.tables import OutboxMessage
from portal.errors import Forbidden
from portal.staff import service
from portal.staff.service import TherapistInput
from portal.staff.tables import Therapist, WorkingHours
from portal.timeutil import utcnow
from portal.web.forms import ValidationFailed
from tests import factories
from tests.staff import helpers


@pytest.fixture
async def manager_a(locations):
    account = await factories.make_user(MANAGER, location_ids=[locations[0]])
    return helpers.actor(account, [locations[0]])


@pytest.fixture
async def owner_actor(owner):
    return helpers.actor(owner)


async def test_create_links_locations_and_services_and_is_audited(db, locations, manager_a):
    a, _ = locations
    massage = await helpers.make_service("Neuromuscular massage, 60 min")
    data = TherapistInput(
        name="Ana Silva",
        email="ana@example.com",
        licence_number="LMT 9",
        licence_expires=date(2030, 1, 1),
        service_ids=frozenset({massage}),
        location_ids=frozenset({a}),
    )
    therapist_id = await service.create_therapist(manager_a, data)
    row = await service.get_therapist(therapist_id)
    assert row["location_ids"] == {a} and row["service_ids"] == {massage}
    [entry] = await AuditLog.select().where(AuditLog.entity == "therapist").run()
    assert entry["action"] == "create" and "Neuromuscular massage" in entry["after"]


async def test_unknown_services_and_foreign_locations_are_refused(db, locations, manager_a):
    _, b = locations
    with pytest.raises(ValidationFailed) as caught:
        await service.create_therapist(
            manager_a,
            TherapistInput(name="X", service_ids=frozenset({4242}), location_ids=frozenset({b})),
        )
    assert "Unknown service (4242)" in caught.value.errors["service_ids"]
    assert "locations you manage" in caught.value.errors["location_ids"]
    with pytest.raises(ValidationFailed) as caught:
        await service.create_therapist(manager_a, TherapistInput(name="X"))
    assert "at least one location" in caught.value.errors["location_ids"]
    assert await Therapist.count().run() == 0


def test_form_parsing_reports_each_bad_field():
    with pytest.raises(ValidationFailed) as caught:
        service.parse_therapist_form(
            {
                "name": "",
                "email": "not-an-email",
                "phone": "call me",
                "licence_expires": "31/12/2027",
            },
            {"service_ids": ["x"], "location_ids": []},
        )
    assert set(caught.value.errors) == {"name", "email", "phone", "licence_expires", "service_ids"}


def test_past_expiry_dates_are_accepted_with_a_warning():
    data = service.parse_therapist_form(
        {"name": "Old Licence", "licence_expires": "2020-01-31", "insurance_expires": "2031-01-01"},
        {"location_ids": ["1"]},
    )
    assert data.licence_expires == date(2020, 1, 31)
    [warning] = service.expiry_warnings(data, today=date(2026, 11, 27))
    assert "licence expired on 2020-01-31" in warning


async def test_a_manager_changes_only_their_own_locations_on_a_shared_profile(
    db, locations, manager_a
):
    a, b = locations
    shared = await helpers.make_therapist(name="Shared", location_ids=[a, b])
    await helpers.add_hours(shared, a, 0, "09:00-12:00")
    await helpers.add_hours(shared, b, 1, "09:00-12:00")
    # The manager of A unticks A: B stays, A's hours go, B's hours stay.
    await service.update_therapist(
        manager_a, shared, TherapistInput(name="Shared", location_ids=frozenset())
    )
    row = await service.get_therapist(shared)
    assert row["location_ids"] == {b}
    hours = (
        await WorkingHours.select(WorkingHours.location)
        .where(WorkingHours.therapist == shared)
        .run()
    )
    assert [h["location"] for h in hours] == [b]
    # Now the therapist no longer works at A: the manager of A cannot see them.
    with pytest.raises(Forbidden):
        await service.get_therapist_for(manager_a, shared)


async def test_a_manager_cannot_deactivate_a_therapist_shared_with_another_location(
    db, locations, manager_a, owner_actor
):
    a, b = locations
    shared = await helpers.make_therapist(location_ids=[a, b])
    with pytest.raises(ValidationFailed) as caught:
        await service.set_active(manager_a, shared, False)
    assert "only an owner" in caught.value.errors["active"]
    assert await service.set_active(owner_actor, shared, False)
    assert not await service.set_active(owner_actor, shared, False)
    own = await helpers.make_therapist(location_ids=[a])
    assert await service.set_active(manager_a, own, False)
    actions = await AuditLog.select(AuditLog.action).where(AuditLog.entity == "therapist").run()
    assert [r["action"] for r in actions] == ["deactivate", "deactivate"]


async def test_the_sign_in_account_follows_the_profile_locations(db, locations, owner_actor):
    a, b = locations
    t = await helpers.make_therapist(name="Kim Lee", location_ids=[a])
    with pytest.raises(ValidationFailed) as caught:
        await service.create_account(owner_actor, t, email="kim@")
    assert "valid email" in caught.value.errors["account_email"]
    assert await User.count().where(User.email == "kim@").run() == 0
    user_id = await service.create_account(owner_actor, t, email="kim@example.com")
    user = await User.select(User.role).where(User.id == user_id).first().run()
    assert user["role"] == THERAPIST
    invitation = await OutboxMessage.select().where(OutboxMessage.to_address == "kim@example.com")
    assert [m["kind"] for m in invitation] == ["staff_invitation"]
    assert "/password/reset/" in invitation[0]["body_text"]
    assert await location_ids_of(user_id) == {a}
    await service.update_therapist(
        owner_actor, t, TherapistInput(name="Kim Lee", location_ids=frozenset({a, b}))
    )
    assert await location_ids_of(user_id) == {a, b}
    # Deactivating with the account signs them out of everything.
    await service.set_active(owner_actor, t, False, include_account=True)
    assert (await User.select(User.active).where(User.id == user_id).first().run())[
        "active"
    ] is False
    # Linking: only therapist accounts, one profile each.
    other = await helpers.make_therapist(location_ids=[a])
    with pytest.raises(ValidationFailed) as caught:
        await service.link_account(owner_actor, other, user_id)
    assert "another therapist profile" in caught.value.errors["account_user"]
    client = await factories.make_user("client")
    with pytest.raises(ValidationFailed):
        await service.link_account(owner_actor, other, client.id)


async def test_list_search_filter_and_keyset_pages(db, locations, manager_a, owner_actor):
    a, b = locations
    for n in range(55):
        await helpers.make_therapist(name=f"Alpha {n:02d}", location_ids=[a])
    await helpers.make_therapist(name="Beta Only", location_ids=[b])
    await helpers.make_therapist(name="Alpha Retired", location_ids=[a], active=False)
    first = await service.list_therapists(owner_actor, location_id=a)
    assert len(first.rows) == 50 and first.next_cursor
    second = await service.list_therapists(owner_actor, location_id=a, after=first.next_cursor)
    assert [r["name"] for r in second.rows] == [f"Alpha {n:02d}" for n in range(50, 55)]
    assert second.next_cursor is None
    assert second.rows[0]["locations"] == ["Alpha Clinic"]
    # The manager of A never sees B's therapists, even when filtering for B.
    assert await service.list_therapists(manager_a, location_id=b, search="Beta") == service.Page(
        rows=[], next_cursor=None
    )
    found = await service.list_therapists(manager_a, search="retired", status="all")
    assert [r["name"] for r in found.rows] == ["Alpha Retired"]
    assert [
        r["name"] for r in (await service.list_therapists(owner_actor, search="beta")).rows
    ] == ["Beta Only"]


async def test_compliance_buckets_per_location(db, locations, owner_actor, manager_a):
    a, b = locations
    now = utcnow()
    today_a = now.astimezone(ZoneInfo("America/New_York")).date()
    await helpers.make_therapist(
        name="Expired", location_ids=[a], licence_expires=today_a - timedelta(days=1)
    )
    await helpers.make_therapist(
        name="Soon", location_ids=[a], insurance_expires=today_a + timedelta(days=30)
    )
    await helpers.make_therapist(
        name="Later", location_ids=[a], licence_expires=today_a + timedelta(days=31)
    )
    await helpers.make_therapist(name="Fine", location_ids=[a])
    await helpers.make_therapist(name="Nothing", location_ids=[a], licence_expires=None)
    await helpers.make_therapist(
        name="Gone", location_ids=[a], licence_expires=today_a, active=False
    )
    await helpers.make_therapist(name="Elsewhere", location_ids=[b], licence_expires=today_a)
    report = await service.compliance(owner_actor, now=now)
    entry = next(e for e in report if e.location["id"] == a)
    assert [i.therapist_name for i in entry.expired] == ["Expired"]
    assert [(i.therapist_name, i.credential) for i in entry.within_30] == [
        ("Soon", "Liability insurance")
    ]
    assert [i.therapist_name for i in entry.within_60] == ["Later"]
    assert [i.therapist_name for i in entry.missing] == ["Nothing"]
    assert [e.location["id"] for e in await service.compliance(manager_a, now=now)] == [a]


def test_photos_are_recognised_by_their_bytes():
    assert service.sniff_image(b"\x89PNG\r\n\x1a\n....") == "image/png"
    assert service.sniff_image(b"\xff\xd8\xff\xe0....") == "image/jpeg"
    assert service.sniff_image(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert service.sniff_image(b"<svg onload=alert(1)>") is None


async def test_photo_upload_checks_type_and_size(db, locations, owner_actor):
    a, _ = locations
    t = await helpers.make_therapist(location_ids=[a])
    with pytest.raises(ValidationFailed) as caught:
        await service.set_photo(owner_actor, t, b"GIF89a....")
    assert "JPEG, PNG or WebP" in caught.value.errors["photo"]
    with pytest.raises(ValidationFailed) as caught:
        await service.set_photo(
            owner_actor, t, b"\x89PNG\r\n\x1a\n" + b"0" * service.MAX_PHOTO_BYTES
        )
    assert "limit is 2 MB" in caught.value.errors["photo"]
    assert not await service.has_photo(t)
    await service.set_photo(owner_actor, t, b"\x89PNG\r\n\x1a\nfirst")
    await service.set_photo(owner_actor, t, b"\xff\xd8\xffsecond")
    photo = await service.get_photo(t)
    assert photo is not None and photo["content_type"] == "image/jpeg"
    assert bytes(photo["data"]) == b"\xff\xd8\xffsecond"
    assert await service.remove_photo(owner_actor, t)
    assert not await service.has_photo(t)
