"""Working hours, overlaps and bookability, on SQLite and PostgreSQL, across DST changes.

Location A is in America/New_York (clocks forward on Sunday 2026-03-08,
back on Sunday 2026-11-01); location B is in Europe/London, whose changes
come on other dates (2026-03-29, 2026-10-25; 2027-03-28).
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from portal.audit.tables import AuditLog
from portal.auth.service import MANAGER, OWNER, THERAPIST
from portal.errors import Forbidden
from portal.staff import service
from portal.staff.service import HoursInterval
from portal.web.forms import ValidationFailed
from tests import factories
from tests.staff import helpers

SUNDAY, MONDAY, TUESDAY = 6, 0, 1


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def iv(weekday: int, span: str) -> HoursInterval:
    start, end = span.split("-")
    return HoursInterval(weekday, service.h.parse_hhmm(start) or 0, service.h.parse_hhmm(end) or 0)


@pytest.fixture
async def owner_actor(owner):
    return helpers.actor(owner)


async def _bookable(therapist, location, start, end, **kw):
    return await service.is_bookable(therapist, location, utc(start), utc(end), **kw)


# -- bookability across DST -------------------------------------------------------


async def test_spring_forward_day_uses_the_summer_offset(db, locations):
    a, _ = locations
    t = await helpers.make_therapist(location_ids=[a])
    await helpers.add_hours(t, a, SUNDAY, "09:00-17:00")
    # 2026-03-08 in New York: EDT (UTC-4) from 02:00; 09:00 local is 13:00 UTC.
    assert await _bookable(t, a, "2026-03-08T13:00", "2026-03-08T14:00")
    assert await _bookable(t, a, "2026-03-08T20:00", "2026-03-08T21:00")  # 16:00-17:00
    late = await _bookable(t, a, "2026-03-08T21:00", "2026-03-08T22:00")  # 17:00-18:00 EDT
    assert not late
    assert any("outside" in r and "working hours" in r for r in late.reasons)
    # A fixed winter offset would have taken 21:30Z for 16:30: it is 17:30 EDT.
    assert not await _bookable(t, a, "2026-03-08T21:30", "2026-03-08T21:45")
    # The Sunday before is still on EST (UTC-5): 09:00 local is 14:00 UTC.
    assert await _bookable(t, a, "2026-03-01T14:00", "2026-03-01T15:00")
    assert not await _bookable(t, a, "2026-03-01T13:00", "2026-03-01T14:00")


async def test_fall_back_day_uses_the_winter_offset(db, locations):
    a, _ = locations
    t = await helpers.make_therapist(location_ids=[a])
    await helpers.add_hours(t, a, SUNDAY, "09:00-17:00")
    # 2026-11-01 in New York: EST (UTC-5) from 02:00; 09:00 local is 14:00 UTC.
    assert not await _bookable(t, a, "2026-11-01T13:00", "2026-11-01T14:00")  # 08:00 EST
    assert await _bookable(t, a, "2026-11-01T14:00", "2026-11-01T15:00")
    assert await _bookable(t, a, "2026-11-01T21:00", "2026-11-01T22:00")  # 16:00-17:00 EST
    assert not await _bookable(t, a, "2026-11-01T22:00", "2026-11-01T22:30")


async def test_hours_spanning_the_change_last_as_long_as_the_wall_clock_says(db, locations):
    a, _ = locations
    t = await helpers.make_therapist(location_ids=[a])
    await helpers.add_hours(t, a, SUNDAY, "00:00-04:00")
    # Clocks go back: 00:00 EDT (04:00Z) to 04:00 EST (09:00Z) is five real hours.
    assert await _bookable(t, a, "2026-11-01T04:00", "2026-11-01T09:00")
    # Clocks go forward: 00:00 EST (05:00Z) to 04:00 EDT (08:00Z) is three.
    assert await _bookable(t, a, "2026-03-08T05:00", "2026-03-08T08:00")
    assert not await _bookable(t, a, "2026-03-08T08:00", "2026-03-08T09:00")


async def test_several_intervals_a_day_and_adjacent_ones_join(db, locations):
    a, _ = locations
    t = await helpers.make_therapist(location_ids=[a])
    await helpers.add_hours(t, a, MONDAY, "09:00-12:00", "13:00-18:00")
    # 2026-12-07 is a Monday, New York on EST.
    assert await _bookable(t, a, "2026-12-07T14:00", "2026-12-07T17:00")  # 09-12
    lunch = await _bookable(t, a, "2026-12-07T16:30", "2026-12-07T17:30")  # 11:30-12:30
    assert not lunch
    await helpers.add_hours(t, a, MONDAY, "12:00-13:00")
    assert await _bookable(t, a, "2026-12-07T16:30", "2026-12-07T17:30")


async def test_licence_is_checked_on_the_local_date(db, locations):
    a, _ = locations
    t = await helpers.make_therapist(location_ids=[a], licence_expires=date(2026, 6, 30))
    await helpers.add_hours(t, a, TUESDAY, "20:00-24:00")
    await helpers.add_hours(t, a, 2, "00:00-02:00")  # Wednesday
    # 02:00Z on 1 July is still 22:00 on 30 June in New York: licence valid.
    assert await _bookable(t, a, "2026-07-01T02:00", "2026-07-01T03:00")
    # 04:00Z on 1 July is 00:00 on 1 July in New York: expired.
    expired = await _bookable(t, a, "2026-07-01T04:00", "2026-07-01T05:00")
    assert not expired
    assert expired.reasons == (f"{await _name(t)}'s licence expired on 2026-06-30.",)


async def _name(therapist_id: int) -> str:
    return str((await service.get_therapist(therapist_id))["name"])


async def test_every_failing_rule_is_reported(db, locations):
    a, b = locations
    massage = await helpers.make_service("Neuromuscular massage, 60 min")
    cupping = await helpers.make_service("Cupping, 30 min")
    t = await helpers.make_therapist(
        location_ids=[a],
        insurance_expires=None,
        service_ids=[massage],
    )
    await helpers.add_hours(t, a, MONDAY, "09:00-17:00")
    start, end = "2026-12-07T15:00", "2026-12-07T16:00"  # Monday 10:00-11:00 EST
    assert not await _bookable(t, a, start, end)  # no insurance on file
    assert (await _bookable(t, a, start, end)).reasons == (
        f"No liability insurance expiry date is on file for {await _name(t)}.",
    )
    t2 = await helpers.make_therapist(location_ids=[a], service_ids=[massage])
    await helpers.add_hours(t2, a, MONDAY, "09:00-17:00")
    assert await _bookable(t2, a, start, end, service_id=massage)
    refused = await _bookable(t2, a, start, end, service_id=cupping)
    assert not refused and "not permitted to perform Cupping, 30 min" in refused.reasons[0]
    away = await _bookable(t2, b, start, end)
    assert not away and "does not work at" in away.reasons[0]
    await helpers.add_time_off(t2, utc("2026-12-07T00:00"), utc("2026-12-08T00:00"), "Course")
    off = await _bookable(t2, a, start, end)
    assert not off and "time off: Course" in off.reasons[0]
    assert (await _bookable(t2, a, "2026-12-14T15:00", "2026-12-14T16:00")).bookable
    backwards = await _bookable(t2, a, end, start)
    assert backwards.reasons == ("The end must be after the start.",)


async def test_inactive_therapist_is_not_bookable(db, locations):
    a, _ = locations
    t = await helpers.make_therapist(location_ids=[a], active=False)
    await helpers.add_hours(t, a, MONDAY, "09:00-17:00")
    result = await _bookable(t, a, "2026-12-07T15:00", "2026-12-07T16:00")
    assert not result and result.reasons[0].endswith("is inactive.")


# -- setting hours: validation and overlaps --------------------------------------


async def test_set_hours_replaces_the_week_and_is_audited(db, locations, owner_actor):
    a, _ = locations
    t = await helpers.make_therapist(location_ids=[a])
    await service.set_hours(
        owner_actor, t, a, [iv(MONDAY, "09:00-12:00"), iv(MONDAY, "13:00-18:00")]
    )
    rows = await service.hours_of(t, a)
    assert [(r["start_minute"], r["end_minute"]) for r in rows] == [(540, 720), (780, 1080)]
    await service.set_hours(owner_actor, t, a, [iv(TUESDAY, "10:00-16:00")])
    assert [r["weekday"] for r in await service.hours_of(t, a)] == [TUESDAY]
    actions = await AuditLog.select(AuditLog.action).where(AuditLog.entity == "therapist").run()
    assert [r["action"] for r in actions] == ["set_hours", "set_hours"]


@pytest.mark.parametrize(
    ("intervals", "field", "words"),
    [
        ([iv(MONDAY, "12:00-09:00")], "d0_0_end", "before the start"),
        ([iv(MONDAY, "09:00-09:00")], "d0_0_end", "empty"),
        (
            [iv(MONDAY, "09:00-12:00"), iv(MONDAY, "11:00-14:00")],
            "d0_1_start",
            "Overlaps 09:00–12:00",
        ),
    ],
)
async def test_bad_intervals_are_refused_and_nothing_is_saved(
    db, locations, owner_actor, intervals, field, words
):
    a, _ = locations
    t = await helpers.make_therapist(location_ids=[a])
    await helpers.add_hours(t, a, SUNDAY, "10:00-14:00")
    with pytest.raises(ValidationFailed) as caught:
        await service.set_hours(owner_actor, t, a, intervals)
    assert words in caught.value.errors[field]
    rows = await service.hours_of(t, a)
    assert [(r["weekday"], r["start_minute"]) for r in rows] == [(SUNDAY, 600)]


async def test_overlap_with_another_location_in_the_same_zone_is_refused(db, owner_actor):
    a = await factories.make_location(name="Midtown", timezone="America/New_York")
    c = await factories.make_location(name="Harlem", timezone="America/New_York")
    t = await helpers.make_therapist(location_ids=[a, c])
    await service.set_hours(owner_actor, t, c, [iv(MONDAY, "09:00-12:00")])
    with pytest.raises(ValidationFailed) as caught:
        await service.set_hours(owner_actor, t, a, [iv(MONDAY, "11:00-14:00")])
    assert "Overlaps Monday 09:00–12:00 at Harlem" in caught.value.errors["d0_0_start"]
    # Back to back is fine, and so is the same time on another day.
    await service.set_hours(
        owner_actor, t, a, [iv(MONDAY, "12:00-15:00"), iv(TUESDAY, "09:00-12:00")]
    )


async def test_overlap_across_zones_is_found_on_the_weeks_their_dst_differs(
    db, locations, owner_actor
):
    a, b = locations  # New York, London
    t = await helpers.make_therapist(location_ids=[a, b])
    await service.set_hours(owner_actor, t, b, [iv(MONDAY, "14:00-15:00")])
    # 10:00 in New York is 15:00 in London most of the year (touching, no
    # overlap), but 14:00 between the US and UK spring changes (2027-03-14 to
    # 2027-03-28): a fixed offset would miss that.
    with pytest.raises(ValidationFailed) as caught:
        await service.set_hours(
            owner_actor, t, a, [iv(MONDAY, "10:00-11:00")], today=date(2026, 11, 27)
        )
    message = caught.value.errors["d0_0_start"]
    assert "Overlaps Monday 14:00–15:00 (Europe/London) at Beta Clinic" in message
    assert "2027-03-15" in message
    assert await service.hours_of(t, a) == []
    # 09:00 in New York is 13:00 or 14:00 in London: never inside 14:00-15:00 there.
    await service.set_hours(
        owner_actor, t, a, [iv(MONDAY, "08:00-09:00")], today=date(2026, 11, 27)
    )


async def test_hours_only_at_locations_the_therapist_works_at(db, locations, owner_actor):
    a, b = locations
    t = await helpers.make_therapist(location_ids=[a])
    with pytest.raises(ValidationFailed) as caught:
        await service.set_hours(owner_actor, t, b, [iv(MONDAY, "09:00-12:00")])
    assert "add it to the profile first" in caught.value.errors["form"]


async def test_a_manager_edits_hours_only_at_their_own_location(db, locations):
    a, b = locations
    manager = await factories.make_user(MANAGER, location_ids=[a])
    actor = helpers.actor(manager, [a])
    shared = await helpers.make_therapist(location_ids=[a, b])
    await service.set_hours(actor, shared, a, [iv(MONDAY, "09:00-12:00")])
    with pytest.raises(Forbidden):
        await service.set_hours(actor, shared, b, [iv(TUESDAY, "09:00-12:00")])
    only_b = await helpers.make_therapist(location_ids=[b])
    with pytest.raises(Forbidden):
        await service.set_hours(actor, only_b, b, [iv(TUESDAY, "09:00-12:00")])


def test_parse_hours_form_reads_rows_and_reports_half_filled_ones():
    intervals = service.parse_hours_form(
        {
            "d0_0_start": "09:00",
            "d0_0_end": "12:00",
            "d0_1_start": "",
            "d0_1_end": "",
            "d4_0_start": "18:00",
            "d4_0_end": "00:00",
        }
    )
    assert [(i.weekday, i.start_minute, i.end_minute, i.key) for i in intervals] == [
        (0, 540, 720, "d0_0"),
        (4, 1080, 1440, "d4_0"),  # 00:00 as an end is midnight
    ]
    with pytest.raises(ValidationFailed) as caught:
        service.parse_hours_form(
            {"d2_0_start": "09:00", "d2_0_end": "", "d3_0_start": "9am", "d3_0_end": "10:00"}
        )
    assert set(caught.value.errors) == {"d2_0_end", "d3_0_start"}


# -- time off ----------------------------------------------------------------------


async def test_whole_day_time_off_follows_the_zone_and_blocks_bookings(db, locations, owner_actor):
    a, _ = locations
    t = await helpers.make_therapist(location_ids=[a])
    await helpers.add_hours(t, a, SUNDAY, "09:00-17:00")
    data = service.parse_time_off_form(
        {"location_id": str(a), "start_date": "2026-11-01", "end_date": "", "reason": "Family"}
    )
    await service.add_time_off(owner_actor, t, data)
    [row] = await service.list_time_off(t)
    # A whole local day of 25 hours (clocks go back).
    assert row["starts_at"] == utc("2026-11-01T04:00") and row["ends_at"] == utc("2026-11-02T05:00")
    assert row["description"] == "2026-11-01 (whole day, America/New_York)"
    assert not await _bookable(t, a, "2026-11-01T15:00", "2026-11-01T16:00")
    with pytest.raises(ValidationFailed) as caught:
        await service.add_time_off(owner_actor, t, data)
    assert "Overlaps time off already recorded" in caught.value.errors["start_date"]
    assert await service.remove_time_off(owner_actor, t, row["id"])
    assert not await service.remove_time_off(owner_actor, t, row["id"])
    assert await _bookable(t, a, "2026-11-01T15:00", "2026-11-01T16:00")


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"start_date": "2026-12-10", "end_date": "2026-12-09"}, "end_date"),
        ({"start_date": "2026-12-10", "start_time": "13:00", "end_time": "09:00"}, "end_time"),
        ({"start_date": "2026-12-10", "start_time": "13:00", "end_time": "13:00"}, "end_time"),
        ({"start_date": "2026-03-08", "start_time": "02:30", "end_time": "05:00"}, "start_time"),
        ({"start_date": "2026-12-10", "start_time": "13:00"}, "end_time"),
        ({"start_date": "", "reason": "x"}, "start_date"),
    ],
)
async def test_bad_time_off_is_refused(db, locations, owner_actor, form, field):
    a, _ = locations
    t = await helpers.make_therapist(location_ids=[a])
    values = {"location_id": str(a), "reason": "Training", **form}
    with pytest.raises(ValidationFailed) as caught:
        await service.add_time_off(owner_actor, t, service.parse_time_off_form(values))
    assert field in caught.value.errors
    assert await service.list_time_off(t) == []


# -- who may read ---------------------------------------------------------------


async def test_a_therapist_reads_only_their_own_profile(db, locations):
    a, _ = locations
    account = await factories.make_user(THERAPIST, location_ids=[a])
    mine = await helpers.make_therapist(location_ids=[a], account=account.id)
    colleague = await helpers.make_therapist(location_ids=[a])
    actor = helpers.actor(account, [a])
    assert (await service.get_therapist_for(actor, mine))["id"] == mine
    with pytest.raises(Forbidden):
        await service.get_therapist_for(actor, colleague)
    with pytest.raises(Forbidden):
        await service.get_therapist_for(actor, mine, write=True)
    owner = await factories.make_user(OWNER)
    assert await service.get_therapist_for(helpers.actor(owner), colleague, write=True)
