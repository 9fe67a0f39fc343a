"""A client reschedules their own appointment within the cancellation policy: before
the window they pick another free time of the same service (the booking rules, the
same credit, audited, a new confirmation); inside it the policy's words refuse."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from portal.audit.tables import AuditLog
from portal.bookings import service as bookings
from portal.email.tables import OutboxMessage
from portal.errors import Forbidden, Invalid
from portal.locations.tables import Location
from portal.sales import service as sales
from portal.staff import hours as h
from tests import factories

NY = ZoneInfo("America/New_York")


def ny(day: date, hour: int, minute: int = 0) -> datetime:
    return h.wall_to_utc(day, hour * 60 + minute, NY)


def future_day(days: int = 10) -> date:
    return (datetime.now(NY) + timedelta(days=days)).date()


async def _booked(clinic, start: datetime) -> int:
    return await bookings.book(
        clinic.as_client(), client_id=clinic.client.id, location_id=clinic.location_id,
        service_id=clinic.service_id, start_at=start,
    )  # fmt: skip


async def test_a_client_reschedules_before_the_window_keeping_the_session(app, clinic):
    day = future_day()
    appointment_id = await _booked(clinic, ny(day, 10))
    credit = (await bookings.get_appointment(appointment_id))["sale_session"]
    url = f"/appointments/{appointment_id}/move"
    async with factories.make_client(app) as http:
        await factories.login(http, clinic.client)
        detail = await http.get(f"/appointments/{appointment_id}")
        assert f'href="{url}"' in detail.text and "Reschedule" in detail.text
        page = await http.get(url)
        assert page.status_code == 200
        assert "Reschedule the appointment" in page.text
        assert 'id="room"' not in page.text  # the clinic chooses the room
        assert ny(day, 11, 30).isoformat() in page.text  # a free time of the same service
        # The booking rules hold: a time outside the therapist's hours is refused.
        refused = await factories.post_form(
            http, url, {"day": day.isoformat(), "time": "19:00", "therapist": ""}
        )
        assert refused.status_code == 422
        assert "Theresa" in (factories.field_error(refused.text, "time") or "")
        moved = await factories.post_form(
            http, url, {"start": ny(day, 11, 30).isoformat(),
                        "therapist": str(clinic.therapist_id)},
        )  # fmt: skip
        assert moved.status_code == 303, moved.text[:300]
        shown = await http.get(moved.headers["location"])
        assert "Rescheduled to" in shown.text and "11:30" in shown.text
    after = await bookings.get_appointment(appointment_id)
    assert after["start_at"] == ny(day, 11, 30) and after["status"] == bookings.BOOKED
    assert after["sale_session"] == credit  # the session credit moved with it
    counts = await sales.session_counts(clinic.sale_id)
    assert counts.held == 1 and counts.available == 4
    audit = await AuditLog.select().where(AuditLog.action == "reschedule").run()
    assert [(a["entity_id"], a["actor_id"]) for a in audit] == [
        (str(appointment_id), clinic.client.id)
    ]
    confirmations = (
        await OutboxMessage.count()
        .where(
            (OutboxMessage.kind == "booking_confirmation")
            & (OutboxMessage.to_address == clinic.client.email)
        )
        .run()
    )
    assert confirmations == 2  # booked, then rescheduled


async def test_inside_the_window_the_policy_refuses_a_client_reschedule(app, clinic):
    day = future_day()
    appointment_id = await _booked(clinic, ny(day, 10))
    # The clinic's window now reaches past the appointment: it is inside it.
    await (
        Location.update({Location.cancellation_window_hours: 24 * 30})
        .where(Location.id == clinic.location_id)
        .run()
    )
    url = f"/appointments/{appointment_id}/move"
    policy = "720-hour cancellation window, so it can no longer be rescheduled online"
    async with factories.make_client(app) as http:
        await factories.login(http, clinic.client)
        detail = await http.get(f"/appointments/{appointment_id}")
        assert f'href="{url}"' not in detail.text
        page = await http.get(url)
        assert policy in page.text and 'name="time"' not in page.text
        refused = await factories.post_form(
            http, url, {"start": ny(day, 11, 30).isoformat(),
                        "therapist": str(clinic.therapist_id)},
        )  # fmt: skip
        assert refused.status_code == 422 and policy in refused.text
    assert (await bookings.get_appointment(appointment_id))["start_at"] == ny(day, 10)
    # Staff may still move it (the policy binds clients, not the clinic).
    await bookings.move(clinic.as_manager(), appointment_id, start_at=ny(day, 11, 30))
    assert (await bookings.get_appointment(appointment_id))["start_at"] == ny(day, 11, 30)


async def test_a_client_reschedules_only_their_own_appointment(app, clinic):
    day = future_day()
    appointment_id = await _booked(clinic, ny(day, 10))
    stranger = await factories.make_user("client")
    async with factories.make_client(app) as http:
        await factories.login(http, stranger)
        assert (await http.get(f"/appointments/{appointment_id}/move")).status_code == 403
        refused = await factories.post_form(
            http, f"/appointments/{appointment_id}/move",
            {"start": ny(day, 11, 30).isoformat(), "therapist": ""},
        )  # fmt: skip
        assert refused.status_code == 403
    with pytest.raises(Forbidden):
        await bookings.move(clinic.as_therapist(), appointment_id, start_at=ny(day, 11, 30))
    # A client's chosen room is not theirs to choose: the clinic picks one.
    await bookings.move(clinic.as_client(), appointment_id, start_at=ny(day, 12), room_id=-1)
    moved = await bookings.get_appointment(appointment_id)
    assert moved["start_at"] == ny(day, 12) and moved["room"] in clinic.rooms
    with pytest.raises(Invalid):
        await bookings.move(
            clinic.as_client(), appointment_id, start_at=datetime.now(UTC) - timedelta(hours=1)
        )


async def test_the_move_page_counts_each_days_free_times_of_its_week(app, clinic):
    """The week of the chosen day, each day with its number of free times for the
    appointment's therapist; the appointment being moved does not take its own."""
    import re

    day = future_day(9)
    appointment_id = await _booked(clinic, ny(day, 10))
    monday = day - timedelta(days=day.weekday())
    async with factories.make_client(app) as http:
        await factories.login(http, clinic.client)
        page = await http.get(f"/appointments/{appointment_id}/move")
    strip = page.text[page.text.index('aria-label="Free times this week"') :]
    strip = strip[: strip.index("</nav>")]
    days = re.findall(r"<strong>(\d+)</strong> <small>([^<]+)</small>", strip)
    expected = [(monday + timedelta(days=i)).day for i in range(7)]
    assert [int(d) for d, _free in days] == expected
    # 9:00 to 17:00, an hour and a 15-minute buffer: 29 starts a day, its own day too.
    assert [free for _d, free in days] == ["29 free"] * 7
    assert 'aria-current="date"' in strip
