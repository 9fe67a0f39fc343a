"""Bad input over HTTP: each refusal is a clear message, the form keeps what was
chosen, and nothing changes (no appointment, no credit held, no audit row, no email)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from html import unescape
from typing import Any
from zoneinfo import ZoneInfo

from portal.audit.tables import AuditLog
from portal.auth.service import CLIENT, CurrentUser
from portal.bookings import service as bookings
from portal.bookings.tables import Appointment
from portal.catalog.tables import Service
from portal.email.tables import OutboxMessage
from portal.sales import service as sales
from portal.sales.tables import SaleSession
from portal.staff import hours as h
from portal.timeutil import utcnow
from tests import factories
from tests.bookings.conftest import add_therapist, give_package

NY = ZoneInfo("America/New_York")


def ny(day: date, hour: int, minute: int = 0) -> datetime:
    return h.wall_to_utc(day, hour * 60 + minute, NY)


def future_day(days: int = 10) -> date:
    return (datetime.now(NY) + timedelta(days=days)).date()


async def _state() -> tuple[int, int, int, int]:
    return (
        await Appointment.count().run(),
        await SaleSession.count().where(SaleSession.state == sales.HELD).run(),
        await AuditLog.count().run(),
        await OutboxMessage.count().run(),
    )


def _error(html: str, field: str) -> str:
    return unescape(factories.field_error(html, field) or "")


def _kept(html: str, clinic: Any, service_id: int | None = None) -> None:
    """The booking form still shows the chosen clinic and service."""
    assert f'<option value="{clinic.location_id}" selected>' in html
    assert f'<option value="{service_id or clinic.service_id}" selected>' in html


async def _post(http: Any, clinic: Any, start: datetime, **extra: Any) -> Any:
    data = {
        "location": clinic.location_id,
        "service": clinic.service_id,
        "day": start.astimezone(NY).date().isoformat(),
        "start": start.isoformat(),
        **extra,
    }
    return await factories.post_form(http, "/appointments", data)


async def test_a_slot_just_taken_is_refused_and_the_form_kept(app, clinic):
    day = future_day()
    rival = await factories.make_user(CLIENT)
    await give_package(rival.id, clinic.location_id, clinic.service_id, 1)
    await bookings.book(
        CurrentUser(rival.id, rival.email, "", CLIENT, frozenset()), client_id=rival.id,
        location_id=clinic.location_id, service_id=clinic.service_id, start_at=ny(day, 10),
        notify_client=False,
    )  # fmt: skip
    before = await _state()
    async with factories.make_client(app) as http:
        await factories.login(http, clinic.client)
        # The slot list was loaded before the rival booked; both variants of the form.
        for extra in (
            {"therapist": str(clinic.therapist_id), "booked_therapist": str(clinic.therapist_id)},
            {"therapist": ""},
        ):
            response = await _post(http, clinic, ny(day, 10), **extra)
            assert response.status_code == 409, extra
            assert _error(response.text, "start") == (
                "This time has just been taken; choose another."
            )
            _kept(response.text, clinic)
            assert ny(day, 10).isoformat() not in response.text  # no longer offered
            assert ny(day, 12).isoformat() in response.text  # the day's other free times are
    assert await _state() == before
    assert (await sales.session_counts(clinic.sale_id)).available == 5


async def test_outside_hours_and_past_times_are_refused(app, clinic):
    day = future_day()
    before = await _state()
    async with factories.make_client(app) as http:
        await factories.login(http, clinic.client)
        late = await _post(
            http, clinic, ny(day, 20), therapist=str(clinic.therapist_id),
            booked_therapist=str(clinic.therapist_id),
        )  # fmt: skip
        assert late.status_code == 422
        message = _error(late.text, "start")
        assert "20:00–21:00" in message and "outside Theresa's working hours" in message
        _kept(late.text, clinic)
        yesterday = utcnow() - timedelta(days=1)
        past = await _post(http, clinic, yesterday)
        assert past.status_code == 422
        assert _error(past.text, "start") == "Choose a time in the future."
        _kept(past.text, clinic)
    assert await _state() == before


async def test_a_service_the_therapist_does_not_perform(app, clinic):
    now = utcnow()
    sports = (
        await Service.insert(
            Service(name="Sports recovery 60", duration_minutes=60, active=True,
                    created_at=now, updated_at=now)
        ).returning(Service.id).run()
    )[0]["id"]  # fmt: skip
    await give_package(clinic.client.id, clinic.location_id, sports, 3)
    day = future_day()
    before = await _state()
    async with factories.make_client(app) as http:
        await factories.login(http, clinic.client)
        response = await _post(
            http, clinic, ny(day, 10), service=str(sports), therapist=str(clinic.therapist_id),
            booked_therapist=str(clinic.therapist_id),
        )  # fmt: skip
        assert response.status_code == 422
        assert _error(response.text, "therapist") == (
            "Theresa is not permitted to perform Sports recovery 60."
        )
        _kept(response.text, clinic, sports)
        assert f'<option value="{clinic.therapist_id}" selected>' in response.text
    assert await _state() == before


async def test_a_package_of_another_service_gives_no_credit(app, clinic):
    now = utcnow()
    sports = (
        await Service.insert(
            Service(name="Sports recovery 60", duration_minutes=60, active=True,
                    created_at=now, updated_at=now)
        ).returning(Service.id).run()
    )[0]["id"]  # fmt: skip
    await add_therapist("Jordan", clinic.location_id, sports)
    day = future_day()
    before = await _state()
    async with factories.make_client(app) as http:
        await factories.login(http, clinic.client)  # holds 5 sessions of NMT 60 only
        response = await _post(http, clinic, ny(day, 10), service=str(sports))
        assert response.status_code == 409
        assert (
            "No active package has an unused session of Sports recovery 60 "
            "(the sessions left are for NMT 60). Buy a package for it first."
        ) in response.text
        _kept(response.text, clinic, sports)
        # Staff booking on the client's behalf get the same refusal, worded for them.
    async with factories.make_client(app) as http:
        await factories.login(http, clinic.manager)
        response = await _post(
            http, clinic, ny(day, 10), service=str(sports), client_email=clinic.client.email
        )
        assert response.status_code == 409
        assert "The client needs a package for it first." in response.text
        assert factories.input_value(response.text, "client_email") == clinic.client.email
    assert await _state() == before


async def test_staff_must_name_an_existing_client(app, clinic):
    day = future_day()
    before = await _state()
    async with factories.make_client(app) as http:
        await factories.login(http, clinic.manager)
        missing = await _post(http, clinic, ny(day, 10))
        assert missing.status_code == 422
        assert _error(missing.text, "client_email") == ("Enter the client's email address.")
        unknown = await _post(http, clinic, ny(day, 10), client_email="nobody@example.test")
        assert unknown.status_code == 422
        assert _error(unknown.text, "client_email") == ("No client account with this email.")
        assert factories.input_value(unknown.text, "client_email") == "nobody@example.test"
    assert await _state() == before


async def test_a_cancelled_appointment_cannot_be_cancelled_again(app, clinic):
    day = future_day()
    async with factories.make_client(app) as http:
        await factories.login(http, clinic.client)
        booked = await _post(http, clinic, ny(day, 10))
        appointment_id = int(booked.headers["location"].rsplit("/", 1)[1])
        first = await factories.post_form(
            http, f"/appointments/{appointment_id}/cancel", {"reason": "Trip"}
        )
        assert first.status_code == 303
        before = await _state()
        counts = await sales.session_counts(clinic.sale_id)
        again = await factories.post_form(
            http, f"/appointments/{appointment_id}/cancel", {"reason": "Trip again"}
        )
        assert again.status_code == 422
        assert "This appointment is already cancelled." in again.text
        assert 'id="cancel"' not in again.text  # no cancel form on a cancelled appointment
    assert await _state() == before
    assert await sales.session_counts(clinic.sale_id) == counts
    row = await bookings.get_appointment(appointment_id)
    assert row["status"] == bookings.CANCELLED and row["cancel_reason"] == "Trip"
    async with factories.make_client(app) as http:
        await factories.login(http, clinic.manager)
        moved = await factories.post_form(
            http, f"/appointments/{appointment_id}/move", {"day": day.isoformat(), "time": "11:00"}
        )
        assert moved.status_code == 422
        assert "only a booked appointment can be moved" in moved.text
    assert await _state() == before


async def test_odd_values_in_urls_and_forms_never_break_a_page(app, clinic):
    huge = "9" * 25
    day = future_day()
    async with factories.make_client(app) as http:
        await factories.login(http, clinic.manager)
        for url in (
            f"/appointments/new?location={huge}&service={huge}&therapist={huge}&day=9999-12-31",
            f"/appointments/new?location={clinic.location_id}&service={clinic.service_id}"
            "&day=0001-01-01&therapist=²",
            f"/appointments?location={clinic.location_id}&day=9999-12-31",
            f"/locations/{clinic.location_id}/week?date=9999-12-31&by=<b>",
            f"/appointments/series/new?location={huge}&service=abc&count={huge}",
        ):
            response = await http.get(url)
            assert response.status_code in (200, 404), (url, response.status_code)
        booked = await _post(http, clinic, ny(day, 10), client_email=clinic.client.email)
        appointment_id = int(booked.headers["location"].rsplit("/", 1)[1])
        for data in (
            {"location": huge, "service": huge, "start": ny(day, 11).isoformat()},
            {"location": clinic.location_id, "service": clinic.service_id,
             "start": "9999-12-31T23:00:00-08:00", "client_email": clinic.client.email},
        ):  # fmt: skip
            response = await factories.post_form(http, "/appointments", data)
            assert response.status_code in (404, 409, 422), (data, response.status_code)
        for data in (
            {"day": "9999-12-31", "time": "23:30", "therapist": huge},
            {"start": "9999-12-31T23:00:00-08:00"},
            {"day": day.isoformat(), "time": "10:00", "therapist": "²"},
        ):
            response = await factories.post_form(http, f"/appointments/{appointment_id}/move", data)
            assert response.status_code == 422, (data, response.status_code)
        series = await factories.post_form(
            http,
            "/appointments/series",
            {"client_email": clinic.client.email, "location": huge, "service": huge,
             "first_date": "9999-12-31", "time": "10:00", "count": "3", "cadence": "1"},
        )  # fmt: skip
        assert series.status_code == 422
        assert _error(series.text, "first_date") == "Start the series within the next year."
    assert await Appointment.count().run() == 1
