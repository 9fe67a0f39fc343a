"""Each staff role's home fits its day: a therapist's agenda with health flags and the
notes still to write, a manager's bookings today and credentials running out; neither
shows a bare count of locations or a link the role may not open."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from portal.bookings import service as bookings
from portal.clients import service as clients
from portal.staff.tables import Therapist, WorkingHours
from tests import factories
from tests.notes.conftest import NY, given_session


async def test_a_therapist_and_a_manager_each_get_a_home_for_their_day(app, clinic, monkeypatch):
    async def flags(ids):
        return {clinic.client.id: ["Blood thinners (anticoagulants)"]}

    monkeypatch.setattr(clients, "health_flags_of", flags)
    waiting = await given_session(clinic, 3)  # given, no note yet
    # A session later today in the clinic's zone (the therapist works round the clock here).
    await (
        WorkingHours.update({WorkingHours.start_minute: 0, WorkingHours.end_minute: 1440})
        .where(WorkingHours.therapist == clinic.therapist_id)
        .run()
    )
    now = datetime.now(NY)
    start = now.replace(second=0, microsecond=0) + timedelta(minutes=2)
    today = start.date() == now.date() and start.time() < time(22, 45)  # ends before midnight
    if today:
        await bookings.book(
            clinic.as_client(), client_id=clinic.client.id, location_id=clinic.location_id,
            service_id=clinic.service_id, start_at=start.astimezone(UTC),
        )  # fmt: skip
    soon = now.date() + timedelta(days=10)
    await (
        Therapist.update({Therapist.insurance_expires: soon})
        .where(Therapist.id == clinic.therapist_id)
        .run()
    )

    async with factories.make_client(app) as http:
        await factories.login(http, clinic.therapist_account)
        home = (await http.get("/")).text
        assert "Notes still to write or sign" in home
        assert f'href="/notes/appointment/{waiting}"' in home
        assert "View locations" not in home and "Locations</header>" not in home
        assert ("Blood thinners (anticoagulants)" in home) == today
    async with factories.make_client(app) as http:
        await factories.login(http, clinic.manager)
        home = (await http.get("/")).text
        assert "Today at" in home
        assert ("Blood thinners (anticoagulants)" in home) == today
        assert f"Theresa · Liability insurance: expires {soon.isoformat()}" in home
        assert "View locations" not in home and "Locations</header>" not in home


async def test_the_owner_sees_the_chain_at_a_glance_from_the_report_totals(app, clinic):
    from portal.auth.service import OWNER

    owner = await factories.make_user(OWNER)
    await given_session(clinic, 1)  # one of the five sessions given: $90 recognised
    async with factories.make_client(app) as http:
        await factories.login(http, owner)
        home = (await http.get("/")).text
    glance = home[home.index('id="glance-heading"') :]
    # The package sold to the clinic's client: five sessions of $90, one given.
    assert "Package liability</dt><dd>$360.00</dd>" in glance
    assert "4 sessions not yet given" in glance
    assert 'id="home-revenue-USD-title"' in glance and "<svg" in glance


async def _appointment(clinic, therapist: int, room: int, start: datetime, minutes: int = 60,
                       status: str = "booked") -> int:  # fmt: skip
    from portal.bookings.tables import Appointment
    from portal.timeutil import utcnow

    end = start + timedelta(minutes=minutes)
    return (
        await Appointment.insert(
            Appointment(
                client=clinic.client.id, therapist=therapist, room=room,
                location=clinic.location_id, service=clinic.service_id, start_at=start,
                end_at=end, busy_until=end, status=status, created_at=utcnow(),
                updated_at=utcnow(),
            )
        ).returning(Appointment.id).run()
    )[0]["id"]  # fmt: skip


async def test_the_manager_home_shows_todays_gaps_and_conflicts(app, clinic):
    from portal.rooms.tables import RoomOutage
    from portal.staff import hours as h
    from portal.staff.tables import TimeOff
    from portal.timeutil import utcnow
    from tests.bookings.conftest import add_therapist

    await (
        WorkingHours.update({WorkingHours.start_minute: 0, WorkingHours.end_minute: 1440})
        .where(WorkingHours.therapist == clinic.therapist_id)
        .run()
    )
    today = datetime.now(NY).date()

    def at(hour: int, minute: int = 0) -> datetime:
        return h.wall_to_utc(today, hour * 60 + minute, NY)

    room_a, room_b = clinic.rooms
    in_outage = await _appointment(clinic, clinic.therapist_id, room_a, at(0, 30))
    await RoomOutage.insert(
        RoomOutage(room=room_a, starts_at=at(0), ends_at=at(2), reason="Leak",
                   created_at=utcnow())
    ).run()  # fmt: skip
    in_time_off = await _appointment(clinic, clinic.therapist_id, room_b, at(3))
    await TimeOff.insert(
        TimeOff(therapist=clinic.therapist_id, starts_at=at(2, 30), ends_at=at(4, 30),
                reason="Dentist", created_at=utcnow())
    ).run()  # fmt: skip
    lapsed = await add_therapist("Lapsed", clinic.location_id, clinic.service_id)
    await (
        Therapist.update({Therapist.licence_expires: today - timedelta(days=1)})
        .where(Therapist.id == lapsed)
        .run()
    )
    with_lapsed = await _appointment(clinic, lapsed, room_b, at(5))
    fine = await _appointment(clinic, clinic.therapist_id, room_a, at(10))

    async with factories.make_client(app) as http:
        await factories.login(http, clinic.manager)
        home = (await http.get("/")).text
    conflicts = home[home.index('id="conflicts-') : home.index('id="gaps-')]
    gaps = home[home.index('id="gaps-') :]
    gaps = gaps[: gaps.index("</ul>")]

    def reason_of(appointment_id: int) -> str:
        start = conflicts.index(f'href="/appointments/{appointment_id}"')
        return conflicts[start : conflicts.index("</li>", start)]

    assert "Room out of service (Leak)" in reason_of(in_outage)
    assert "During time off" in reason_of(in_time_off)
    assert "Lapsed: licence expired" in reason_of(with_lapsed)
    assert f'href="/appointments/{fine}"' not in conflicts
    # Theresa works round the clock: her free time runs to midnight.
    assert "<li>Theresa: " in gaps and "–00:00</li>" in gaps


async def test_the_owner_sees_this_months_utilisation(app, clinic):
    import calendar

    from portal.auth.service import OWNER
    from portal.staff import hours as h
    from portal.staff.tables import TimeOff
    from portal.timeutil import utcnow

    owner = await factories.make_user(OWNER)
    today = datetime.now(NY).date()
    days = calendar.monthrange(today.year, today.month)[1]
    first = today.replace(day=1)

    def at(day: int, hour: int) -> datetime:
        return h.wall_to_utc(first.replace(day=day), hour * 60, NY)

    # Theresa works 09:00–17:00 every day; the 11th she is away all day.
    await TimeOff.insert(
        TimeOff(therapist=clinic.therapist_id, starts_at=at(11, 0), ends_at=at(12, 0),
                reason="Course", created_at=utcnow())
    ).run()  # fmt: skip
    room = clinic.rooms[0]
    for day in range(1, 11):  # ten whole working days booked (booked or given)
        status = "completed" if day % 2 else "booked"
        await _appointment(clinic, clinic.therapist_id, room, at(day, 9), 480, status)
    await _appointment(clinic, clinic.therapist_id, room, at(12, 9), 480, "cancelled")
    before = first - timedelta(days=1)
    await _appointment(clinic, clinic.therapist_id, room,
                       h.wall_to_utc(before, 9 * 60, NY), 480)  # fmt: skip
    booked, offered = 10 * 8, (days - 1) * 8
    async with factories.make_client(app) as http:
        await factories.login(http, owner)
        home = (await http.get("/")).text
    glance = home[home.index('id="glance-heading"') :]
    percent = round(100 * booked / offered)
    assert f"Utilisation this month</dt><dd>{percent}%</dd>" in glance
    assert f"{booked:.1f} of {offered:.1f} offered hours booked" in glance


async def test_the_owner_counts_todays_bookings_by_each_clinics_own_day(app, clinic):
    """ "Bookings today" across the chain: each location's own calendar day, and only
    bookings that hold their therapist (booked, given, no-show), never a cancelled one."""
    from zoneinfo import ZoneInfo

    from portal.bookings.tables import Appointment
    from portal.dashboard import service as dashboard
    from portal.locations.service import all_locations

    sf = ZoneInfo("America/Los_Angeles")
    # 01:30 on the 10th in New York, still 22:30 on the 9th in San Francisco.
    now = datetime(2027, 3, 10, 6, 30, tzinfo=UTC)

    def ny(day: int, hour: int, minute: int = 0) -> datetime:
        return datetime(2027, 3, day, hour, minute, tzinfo=NY).astimezone(UTC)

    def in_sf(day: int, hour: int, minute: int = 0) -> datetime:
        return datetime(2027, 3, day, hour, minute, tzinfo=sf).astimezone(UTC)

    room = clinic.rooms[0]
    for start, status in [
        (ny(10, 0, 30), "booked"),  # today in New York
        (ny(10, 23), "completed"),  # today, late
        (ny(10, 12), "cancelled"),  # today, but cancelled
        (ny(9, 23, 30), "booked"),  # yesterday there
        (ny(11, 0), "booked"),  # tomorrow there
    ]:
        await _appointment(clinic, clinic.therapist_id, room, start, 60, status)
    for start, status in [(in_sf(9, 23), "no_show"), (in_sf(10, 0, 30), "booked")]:
        appointment_id = await _appointment(clinic, clinic.therapist_id, room, start, 60, status)
        await (
            Appointment.update({Appointment.location: clinic.other_location_id})
            .where(Appointment.id == appointment_id)
            .run()
        )
    locations = await all_locations(active_only=False)
    # New York's 00:30 and 23:00 of the 10th; San Francisco's 23:00 of the 9th.
    assert await dashboard.bookings_today(locations, now=now) == 3
    assert await dashboard.bookings_today([], now=now) == 0
