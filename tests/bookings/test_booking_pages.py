from __future__ import annotations

import html
import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from portal.bookings import availability
from portal.bookings import service as bookings
from portal.bookings.tables import Appointment
from portal.sales import service as sales
from tests import factories

NY = ZoneInfo("America/New_York")


def future_day(days: int = 9) -> date:
    return (datetime.now(NY) + timedelta(days=days)).date()


def ny(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=NY).astimezone(UTC)


async def test_client_books_from_the_slot_list_and_cancels(app, clinic):
    day = future_day()
    async with factories.make_client(app) as client:
        await factories.login(client, clinic.client)
        page = await client.get(
            f"/appointments/new?location={clinic.location_id}&service={clinic.service_id}&day={day}"
        )
        assert page.status_code == 200
        assert "You have 5 sessions of this service left" in page.text
        assert ny(day, 9).isoformat() in page.text
        response = await factories.post_form(
            client,
            "/appointments",
            {
                "location": clinic.location_id,
                "service": clinic.service_id,
                "start": ny(day, 9).isoformat(),
            },
        )
        assert response.status_code == 303
        detail = await client.get(response.headers["location"])
        assert "Booked. See you then!" in detail.text and "Theresa" in detail.text
        mine = await client.get("/appointments")
        assert "Details or cancel" in mine.text
        appointment_id = int(response.headers["location"].rsplit("/", 1)[1])
        cancelled = await factories.post_form(
            client, f"/appointments/{appointment_id}/cancel", {"reason": "Trip"}
        )
        assert cancelled.status_code == 303
    assert (await sales.session_counts(clinic.sale_id)).available == 5


async def test_no_credit_offers_packages_and_bad_time_is_kept(app, clinic):
    stranger = await factories.make_user("client")
    day = future_day()
    async with factories.make_client(app) as client:
        await factories.login(client, stranger)
        response = await factories.post_form(
            client,
            "/appointments",
            {
                "location": clinic.location_id,
                "service": clinic.service_id,
                "start": ny(day, 9).isoformat(),
            },
        )
        assert response.status_code == 409
        assert "Buy a package for it first." in response.text
        bad = await factories.post_form(
            client,
            "/appointments",
            {"location": clinic.location_id, "service": clinic.service_id, "start": "soon"},
        )
        assert bad.status_code == 422 and "Choose one of the free times." in bad.text
    assert await Appointment.count().run() == 0


async def test_staff_books_for_a_client_and_other_manager_is_refused(app, clinic):
    day = future_day()
    other_manager = await factories.make_user("manager", location_ids=[clinic.other_location_id])
    async with factories.make_client(app) as staff:
        await factories.login(staff, clinic.manager)
        response = await factories.post_form(
            staff,
            "/appointments",
            {
                "location": clinic.location_id, "service": clinic.service_id,
                "start": ny(day, 11).isoformat(), "client_email": clinic.client.email,
            },
        )  # fmt: skip
        assert response.status_code == 303
        appointment_id = int(response.headers["location"].rsplit("/", 1)[1])
        schedule = await staff.get(f"/appointments?location={clinic.location_id}&day={day}")
        assert clinic.client.email in schedule.text or "Client Person" in schedule.text
    async with factories.make_client(app) as other:
        await factories.login(other, other_manager)
        assert (await other.get(f"/appointments/{appointment_id}")).status_code == 403
        response = await factories.post_form(other, f"/appointments/{appointment_id}/cancel")
        assert response.status_code == 403
        refused = await factories.post_form(
            other,
            "/appointments",
            {
                "location": clinic.location_id, "service": clinic.service_id,
                "start": ny(day, 13).isoformat(), "client_email": clinic.client.email,
            },
        )  # fmt: skip
        # A's client is not B's manager's to see (nor A's schedule to book): refused
        # as for an email nobody has.
        assert refused.status_code == 422
        assert factories.field_error(refused.text, "client_email") == (
            "No client account with this email."
        )
    assert await Appointment.count().run() == 1


async def test_series_booking_reports_dates_that_failed(app, clinic):
    first = future_day(7)
    async with factories.make_client(app) as client:
        await factories.login(client, clinic.client)
        response = await factories.post_form(
            client,
            "/appointments/series",
            {
                "location": clinic.location_id, "service": clinic.service_id,
                "first_date": first.isoformat(), "time": "18:00", "cadence": "1", "count": "2",
            },
        )  # fmt: skip
        assert response.status_code == 200
        assert "0 of 2 sessions booked" in response.text
        assert "outside Theresa" in response.text
        response = await factories.post_form(
            client,
            "/appointments/series",
            {
                "location": clinic.location_id, "service": clinic.service_id,
                "first_date": first.isoformat(), "time": "10:00", "cadence": "1", "count": "6",
            },
        )  # fmt: skip
        # Five credits: five weekly sessions booked, the sixth is refused and says why.
        assert "5 of 6 sessions booked" in response.text
        assert "No unused session left" in response.text
        invalid = await factories.post_form(
            client,
            "/appointments/series",
            {"location": clinic.location_id, "time": "25:00", "count": "0"},
        )
        assert invalid.status_code == 422
        assert factories.field_error(invalid.text, "time") and factories.field_error(
            invalid.text, "count"
        )
    assert await Appointment.count().run() == 5


async def test_a_client_without_sessions_is_told_before_choosing_a_time(app, clinic):
    stranger = await factories.make_user("client")
    url = f"/appointments/new?location={clinic.location_id}&service={clinic.service_id}&day={future_day()}"
    async with factories.make_client(app) as client:
        await factories.login(client, stranger)
        page = await client.get(url)
        assert page.status_code == 200
        assert "You have no unused session of this service." in page.text
        # Each free time leads to paying for a session first, none books directly.
        assert 'action="/appointments/checkout"' in page.text and "Book and pay" in page.text
        assert 'action="/appointments"' not in page.text
    async with factories.make_client(app) as client:
        await factories.login(client, clinic.client)
        page = await client.get(url)
        assert 'action="/appointments"' in page.text


WEEK_DAY_RE = re.compile(
    r'<li><a href="([^"]*)"( aria-current="date")? class="(has-free|no-free)">'
    r"<span>(\w+)</span> <strong>(\d+)</strong> <small>([^<]+)</small></a></li>"
)


async def test_the_booking_page_counts_each_days_free_times_of_its_week(app, clinic):
    """One search for the chosen day's week: each day links to its free times and says how
    many there are; a booking takes its starts out of its own day's count only."""
    monday = future_day(2)
    monday += timedelta(days=(7 - monday.weekday()) % 7)
    wednesday = monday + timedelta(days=2)
    await bookings.book(
        clinic.as_manager(),
        client_id=clinic.client.id,
        location_id=clinic.location_id,
        service_id=clinic.service_id,
        start_at=ny(wednesday, 9),
        notify_client=False,
    )
    base = f"/appointments/new?location={clinic.location_id}&service={clinic.service_id}"
    async with factories.make_client(app) as client:
        await factories.login(client, clinic.client)
        page = await client.get(f"{base}&day={wednesday + timedelta(days=1)}")
        assert page.status_code == 200
        days = WEEK_DAY_RE.findall(page.text)
    assert [(d[3], int(d[4])) for d in days] == [
        ((monday + timedelta(days=i)).strftime("%a"), (monday + timedelta(days=i)).day)
        for i in range(7)
    ]
    # 9:00 to 17:00, an hour and a 15-minute buffer: 29 starts; the 9:00 booking holds
    # the therapist until 10:15, so 9:00 to 10:00 are gone (5 starts) on Wednesday only.
    assert [d[5] for d in days] == ["29 free"] * 2 + ["24 free"] + ["29 free"] * 4
    assert [bool(d[1]) for d in days] == [False] * 3 + [True] + [False] * 3
    assert html.unescape(days[0][0]).endswith(f"&day={monday}")


async def test_a_week_search_equals_the_search_of_each_day(app, clinic):
    """free_slots_by_day gives each day what free_slots gives for it alone, across a
    clock change and with a booking in the week."""
    tz = ZoneInfo("America/New_York")
    first = date(2027, 3, 10)  # the clocks go forward on Sunday the 14th
    await bookings.book(
        clinic.as_manager(),
        client_id=clinic.client.id,
        location_id=clinic.location_id,
        service_id=clinic.service_id,
        start_at=datetime(2027, 3, 12, 11, 30, tzinfo=tz).astimezone(UTC),
        notify_client=False,
    )
    now = datetime(2027, 3, 9, tzinfo=UTC)
    week = await availability.free_slots_by_day(
        clinic.location_id, clinic.service_id, first, days=7, now=now
    )
    assert list(week) == [first + timedelta(days=i) for i in range(7)]
    for day, slots in week.items():
        alone = await availability.free_slots(clinic.location_id, clinic.service_id, day, now=now)
        assert slots == alone and slots, day
    # 11:30 holds the therapist until 12:45: the starts 10:30 to 12:30 (9) are gone.
    assert len(week[date(2027, 3, 12)]) == 29 - 9
