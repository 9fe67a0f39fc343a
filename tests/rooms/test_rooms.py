"""Rooms and out-of-service windows (service level, both databases)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from portal import db as portal_db
from portal.audit.tables import AuditLog
from portal.auth.service import MANAGER
from portal.errors import Forbidden
from portal.rooms import service
from portal.rooms.service import RoomInput
from portal.rooms.tables import Room, RoomOutage
from portal.timeutil import utcnow
from portal.web.forms import ValidationFailed
from tests import factories
from tests.staff import helpers


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
async def manager_a(locations):
    account = await factories.make_user(MANAGER, location_ids=[locations[0]])
    return helpers.actor(account, [locations[0]])


def outage(start_date, start_time, end_time, end_date="", reason="Deep cleaning"):
    return service.parse_outage_form(
        {
            "start_date": start_date,
            "start_time": start_time,
            "end_date": end_date,
            "end_time": end_time,
            "reason": reason,
        }
    )


async def test_names_are_unique_per_location_ignoring_case(db, locations, manager_a, owner):
    a, b = locations
    data = service.parse_room_form(
        {"location_id": str(a), "name": "Cedar", "equipment_other": "Heated table, hot  stones"},
        {"equipment": ["hydraulic table", "hot stones"]},
    )
    assert data.equipment == ("hydraulic table", "hot stones", "heated table")
    room_id = await service.create_room(manager_a, data)
    with pytest.raises(ValidationFailed) as caught:
        await service.create_room(manager_a, RoomInput(location_id=a, name="cedar"))
    assert caught.value.errors["name"] == "Another room at this location already has this name."
    assert await Room.count().run() == 1
    # Another location may use the name (the owner creates it there).
    await service.create_room(helpers.actor(owner), RoomInput(location_id=b, name="Cedar"))
    # Renaming onto a taken name is refused too.
    other = await service.create_room(manager_a, RoomInput(location_id=a, name="Alder"))
    with pytest.raises(ValidationFailed):
        await service.update_room(manager_a, other, RoomInput(location_id=a, name="CEDAR"))
    assert (await service.get_room(room_id))["tags"] == [
        "hydraulic table",
        "hot stones",
        "heated table",
    ]


async def test_the_database_enforces_unique_names_per_location(db, locations):
    a, _ = locations
    await helpers.make_room(a, "Fir")
    with pytest.raises(Exception) as caught:
        await helpers.make_room(a, "FIR")
    assert portal_db.is_unique_violation(caught.value)


async def test_a_manager_only_touches_rooms_of_their_locations(db, locations, manager_a):
    a, b = locations
    with pytest.raises(Forbidden):
        await service.create_room(manager_a, RoomInput(location_id=b, name="Pecan"))
    theirs = await helpers.make_room(b)
    with pytest.raises(Forbidden):
        await service.get_room_for(manager_a, theirs)
    page = await service.list_rooms(manager_a, status="all")
    assert page.rows == []
    await helpers.make_room(a, "Mine")
    assert [r["name"] for r in (await service.list_rooms(manager_a)).rows] == ["Mine"]


async def test_bad_tags_are_refused():
    with pytest.raises(ValidationFailed) as caught:
        service.parse_room_form(
            {"location_id": "1", "name": "X", "equipment_other": "<script>"}, {}
        )
    assert "not a valid tag" in caught.value.errors["equipment_other"]


async def test_out_of_service_window_blocks_the_room_and_lists_no_appointments_yet(
    db, locations, manager_a
):
    a, _ = locations  # America/New_York
    room = await helpers.make_room(a, "Alder", "hydraulic table")
    result = await service.add_outage(manager_a, room, outage("2026-12-07", "12:00", "14:00"))
    assert result.affected == []  # bookings fill this in (issue 6)
    [row] = await service.list_outages(room)
    assert row["starts_at"] == utc("2026-12-07T17:00") and row["ends_at"] == utc("2026-12-07T19:00")
    busy = await service.room_availability(room, utc("2026-12-07T18:00"), utc("2026-12-07T19:00"))
    assert not busy and "out of service: Deep cleaning" in busy.reasons[0]
    assert await service.room_availability(room, utc("2026-12-07T19:00"), utc("2026-12-07T20:00"))
    lacking = await service.room_availability(
        room, utc("2026-12-07T19:00"), utc("2026-12-07T20:00"), equipment=["Hot stones"]
    )
    assert lacking.reasons == ("Alder lacks hot stones.",)
    with pytest.raises(ValidationFailed) as caught:
        await service.add_outage(manager_a, room, outage("2026-12-07", "13:30", "15:00"))
    assert "Overlaps another out-of-service window" in caught.value.errors["start_time"]
    assert await service.remove_outage(manager_a, room, row["id"])
    assert not await service.remove_outage(manager_a, room, row["id"])
    assert await service.room_availability(room, utc("2026-12-07T18:00"), utc("2026-12-07T19:00"))
    assert await RoomOutage.count().run() == 1  # cancelled, kept for the record
    actions = await AuditLog.select(AuditLog.action).where(AuditLog.entity == "room").run()
    assert [r["action"] for r in actions] == ["add_out_of_service", "remove_out_of_service"]


@pytest.mark.parametrize(
    ("form", "field"),
    [
        (("2026-12-07", "14:00", "12:00"), "end_time"),
        (("2026-12-07", "12:00", "12:00"), "end_time"),
        (("2027-03-14", "02:15", "04:00"), "start_time"),  # skipped by the clocks in New York
        (("2020-01-06", "09:00", "10:00"), "end_date"),  # already over
        (("2026-12-07", "12:00", "12:00", "2027-06-01"), "end_date"),  # longer than 92 days
    ],
)
async def test_bad_windows_are_refused(db, locations, manager_a, form, field):
    a, _ = locations
    room = await helpers.make_room(a)
    with pytest.raises(ValidationFailed) as caught:
        await service.add_outage(manager_a, room, outage(*form))
    assert field in caught.value.errors
    assert await RoomOutage.count().run() == 0


async def test_window_across_the_fall_back_night_lasts_real_hours(db, locations, manager_a):
    a, _ = locations
    room = await helpers.make_room(a)
    await service.add_outage(manager_a, room, outage("2027-11-06", "23:00", "03:00", "2027-11-07"))
    [row] = await service.list_outages(room)
    assert row["ends_at"] - row["starts_at"] == utc("2026-01-01T05:00") - utc("2026-01-01T00:00")


async def test_deactivate_and_reactivate(db, locations, manager_a):
    a, _ = locations
    room = await helpers.make_room(a)
    assert await service.set_active(manager_a, room, False)
    assert not await service.set_active(manager_a, room, False)
    assert not await service.room_availability(room, utcnow(), utcnow().replace(year=2100))
    assert await service.set_active(manager_a, room, True)
