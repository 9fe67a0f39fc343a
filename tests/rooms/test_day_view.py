"""The location day view: rooms × hours, correct on 23- and 25-hour days."""

from __future__ import annotations

from datetime import UTC, date, datetime

from portal.auth.service import MANAGER
from portal.bookings.dayview import build_day_view
from tests import factories
from tests.staff import helpers


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


async def test_fall_back_day_has_25_hours_and_blocks_span_real_time(db, locations, owner):
    a, _ = locations  # America/New_York
    room = await helpers.make_room(a, "Alder")
    # 00:30 EDT to 03:30 EST: four real hours, sixteen quarter-hour rows.
    await helpers.add_outage(room, utc("2026-11-01T04:30"), utc("2026-11-01T08:30"))
    t = await helpers.make_therapist(name="Rosa Diaz", location_ids=[a])
    await helpers.add_hours(t, a, 6, "09:00-12:00", "13:00-17:00")
    await helpers.add_time_off(t, utc("2026-11-01T19:00"), utc("2026-11-01T20:00"), "Dentist")
    view = await build_day_view(helpers.actor(owner), a, date(2026, 11, 1))
    assert view.hours_in_day == 25 and "25 hours" in view.note
    room_col, therapist_col = view.columns
    [block] = room_col.blocks
    assert block.kind == "outage" and block.rowspan == 16
    assert block.detail == "00:30–03:30 Deep cleaning"
    labels = [r.label for r in view.rows if r.label]
    assert labels[:3] == ["00:00 EDT", "01:00", "01:00 EST"]
    assert [(b.kind, b.rowspan) for b in therapist_col.blocks] == [
        ("working", 12),  # 09:00-12:00
        ("working", 4),  # 13:00-14:00
        ("time-off", 4),  # 14:00-15:00 EST is 19:00-20:00 UTC
        ("working", 8),  # 15:00-17:00
    ]
    # Row of 09:00 EST is ten real hours after local midnight (one repeated hour).
    assert therapist_col.blocks[0].first_row == 40


async def test_spring_forward_day_has_23_hours(db, locations, owner):
    a, _ = locations
    room = await helpers.make_room(a, "Fir")
    # 01:00 EST to 04:00 EDT: two real hours.
    await helpers.add_outage(room, utc("2026-03-08T06:00"), utc("2026-03-08T08:00"))
    view = await build_day_view(helpers.actor(owner), a, date(2026, 3, 8))
    assert view.hours_in_day == 23 and "23 hours" in view.note
    [block] = view.columns[0].blocks
    assert block.rowspan == 8
    labels = [r.label for r in view.rows if r.label]
    # The view starts at the first block; the skipped hour has no row.
    assert "02:00" not in labels and labels[:3] == ["01:00 EST", "03:00 EDT", "04:00"]


async def test_day_view_page(db, locations, client):
    a, b = locations
    manager = await factories.make_user(MANAGER, location_ids=[a])
    await factories.login(client, manager)
    room = await helpers.make_room(a, "Cedar", "hydraulic table")
    await helpers.add_outage(room, utc("2026-11-01T15:00"), utc("2026-11-01T16:00"))
    response = await client.get(f"/locations/{a}/day?date=2026-11-01")
    assert response.status_code == 200
    html = response.text
    assert "The clocks go back on this day: it has 25 hours." in html
    assert f'href="/locations/{a}/day?date=2026-10-31"' in html
    assert f'href="/locations/{a}/day?date=2026-11-02"' in html
    assert 'rowspan="4" class="dv-block dv-outage' in html
    assert "style=" not in html
    assert (await client.get(f"/locations/{b}/day")).status_code == 403
    assert (await client.get(f"/locations/{a}/day?date=garbage")).status_code == 200


async def test_therapists_who_cannot_be_booked_are_flagged(db, locations, owner):
    a, _ = locations
    t = await helpers.make_therapist(
        name="Lapsed", location_ids=[a], licence_expires=date(2026, 10, 31)
    )
    await helpers.add_hours(t, a, 6, "09:00-17:00")
    ok = await helpers.make_therapist(name="Fine", location_ids=[a])
    await helpers.add_hours(ok, a, 6, "09:00-17:00")
    view = await build_day_view(helpers.actor(owner), a, date(2026, 11, 1))
    warnings = {c.title: c.warning for c in view.columns}
    assert warnings == {"Fine": "", "Lapsed": "Not bookable: licence expired"}
