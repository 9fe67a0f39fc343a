"""Room pages over HTTP."""

from __future__ import annotations

from portal.rooms.tables import Room, RoomOutage
from tests import factories
from tests.staff import helpers


async def test_duplicate_room_name_is_shown_beside_the_field(db, locations, manager_client):
    a, _ = locations
    await helpers.make_room(a, "Cedar")
    response = await factories.post_form(
        manager_client,
        "/rooms",
        {"location_id": a, "name": "cedar", "equipment": ["hot stones"], "notes": "Back room"},
    )
    assert response.status_code == 422
    assert factories.field_error(response.text, "name") == (
        "Another room at this location already has this name."
    )
    assert factories.input_value(response.text, "name") == "cedar"
    assert 'value="hot stones" checked' in response.text
    assert await Room.count().run() == 1


async def test_manager_adds_room_and_window(db, locations, manager_client):
    a, b = locations
    created = await factories.post_form(
        manager_client,
        "/rooms",
        {
            "location_id": a,
            "name": "Alder",
            "equipment": ["hydraulic table"],
            "equipment_other": "heated table",
        },
    )
    assert created.status_code == 303
    room_url = created.headers["location"]
    page = await manager_client.get(room_url)
    assert "hydraulic table" in page.text and "heated table" in page.text
    bad = await factories.post_form(
        manager_client,
        f"{room_url}/out-of-service",
        {
            "start_date": "2026-12-07",
            "start_time": "14:00",
            "end_time": "12:00",
            "reason": "Repair",
        },
    )
    assert bad.status_code == 422
    assert factories.field_error(bad.text, "end_time") == "The end is before the start."
    assert factories.input_value(bad.text, "reason") == "Repair"
    assert await RoomOutage.count().run() == 0
    good = await factories.post_form(
        manager_client,
        f"{room_url}/out-of-service",
        {
            "start_date": "2099-12-07",
            "start_time": "12:00",
            "end_time": "14:00",
            "reason": "Repair",
        },
    )
    assert good.status_code == 303
    page = await manager_client.get(room_url)
    assert "No booked appointments are affected." in page.text
    assert "2099-12-07 12:00" in page.text and "Repair" in page.text
    # Another location's rooms are out of reach, also by guessed ids.
    theirs = await helpers.make_room(b, "Pecan")
    assert (await manager_client.get(f"/rooms/{theirs}")).status_code == 403
    response = await factories.post_form(
        manager_client, "/rooms", {"location_id": b, "name": "Sneaky"}
    )
    assert response.status_code == 403
    listing = await manager_client.get("/rooms?status=all")
    assert "Alder" in listing.text and "Pecan" not in listing.text
