"""Schedules: the location day and week views with appointments (DST days included),
out-of-service windows that collide with bookings, and staff moving an appointment."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from portal.audit.tables import AuditLog
from portal.bookings import service as bookings
from portal.bookings.dayview import build_day_view
from portal.bookings.tables import Appointment
from portal.bookings.weekview import build_week_view
from portal.email.tables import OutboxMessage
from portal.rooms import service as rooms
from portal.rooms.tables import RoomOutage
from portal.sales import service as sales
from portal.sales.tables import Sale
from portal.staff import hours as h
from portal.timeutil import utcnow
from tests import factories
from tests.bookings.conftest import add_therapist, give_package

NY = ZoneInfo("America/New_York")
# Future clock changes in New York (the tests must book in the future).
SPRING_FORWARD = date(2027, 3, 14)  # 23 hours: 02:00 → 03:00
FALL_BACK = date(2027, 11, 7)  # 25 hours: 02:00 → 01:00


def ny(day: date, hour: int, minute: int = 0) -> datetime:
    return h.wall_to_utc(day, hour * 60 + minute, NY)


def future_day(days: int = 10) -> date:
    return (datetime.now(NY) + timedelta(days=days)).date()


async def _book(clinic, start: datetime, *, therapist_id: int | None = None) -> int:
    # The clinic's package lasts 180 days; these dates lie up to a year ahead.
    await (
        Sale.update({Sale.valid_until: datetime(2028, 6, 1, tzinfo=UTC)})
        .where(Sale.id == clinic.sale_id)
        .run()
    )
    return await bookings.book(
        clinic.as_client(), client_id=clinic.client.id, location_id=clinic.location_id,
        service_id=clinic.service_id, start_at=start, therapist_id=therapist_id,
        notify_client=False,
    )  # fmt: skip


def _row_label(view, index: int) -> str:
    return next(r.label for r in view.rows if r.index == index)


async def test_day_view_shows_appointments_in_room_and_therapist_columns(clinic):
    day = future_day()
    appointment_id = await _book(clinic, ny(day, 10))
    view = await build_day_view(clinic.as_manager(), clinic.location_id, day)
    assert view.appointments == 1
    room_blocks = [
        b for c in view.columns if c.kind == "room" for b in c.blocks if b.kind == "appointment"
    ]
    therapist = next(c for c in view.columns if c.kind == "therapist")
    blocks = [b for b in therapist.blocks if b.kind == "appointment"]
    assert len(room_blocks) == 1 and len(blocks) == 1
    block = blocks[0]
    assert block.href == f"/appointments/{appointment_id}" and block.rowspan == 4
    assert _row_label(view, block.first_row) == "10:00"
    assert block.detail.startswith("10:00–11:00 NMT 60")
    # The working hours are cut around the session: 09:00–10:00 and 11:00–17:00.
    working = sorted((b.start, b.end) for b in therapist.blocks if b.kind == "working")
    assert working == [(ny(day, 9), ny(day, 10)), (ny(day, 11), ny(day, 17))]
    assert all(
        b.href == f"/appointments/new?location={clinic.location_id}"
        f"&therapist={clinic.therapist_id}&day={day.isoformat()}"
        for b in therapist.blocks
        if b.kind == "working"
    )


async def test_day_view_page_links_appointments_and_booking(app, clinic):
    day = future_day()
    appointment_id = await _book(clinic, ny(day, 14))
    async with factories.make_client(app) as http:
        await factories.login(http, clinic.manager)
        page = await http.get(f"/locations/{clinic.location_id}/day?date={day}")
    assert page.status_code == 200
    assert f'href="/appointments/{appointment_id}" class="dv-appt-link"' in page.text
    assert "1 appointment on this day" in page.text
    assert f'href="/appointments/new?location={clinic.location_id}&amp;day={day}"' in page.text
    assert f'href="/locations/{clinic.location_id}/week?date={day}"' in page.text
    # Booking for a client from a therapist's working hours in the day view.
    book = (
        f"/appointments/new?location={clinic.location_id}&therapist={clinic.therapist_id}"
        f"&day={day.isoformat()}"
    )
    assert f'href="{book.replace("&", "&amp;")}" class="dv-book-link"' in page.text
    async with factories.make_client(app) as http:
        await factories.login(http, clinic.manager)
        slots = await http.get(
            f"{book}&service={clinic.service_id}&client_email={clinic.client.email}"
        )
        assert slots.status_code == 200
        assert "Booking for" in slots.text and "4 sessions of NMT 60 left" in slots.text
        assert f'name="client_email" value="{clinic.client.email}"' in slots.text
        assert ny(day, 9).isoformat() in slots.text and ny(day, 14).isoformat() not in slots.text
        response = await factories.post_form(
            http, "/appointments",
            {"location": clinic.location_id, "service": clinic.service_id,
             "therapist": clinic.therapist_id, "booked_therapist": clinic.therapist_id,
             "start": ny(day, 9).isoformat(), "client_email": clinic.client.email},
        )  # fmt: skip
        assert response.status_code == 303
    view = await build_day_view(clinic.as_manager(), clinic.location_id, day)
    assert view.appointments == 2


async def test_dst_days_place_appointments_on_the_local_clock(app, clinic):
    # Spring forward: 23 rows-hours; 10:00 EDT is the 9th real hour after midnight EST.
    spring = await _book(clinic, ny(SPRING_FORWARD, 10))
    assert ny(SPRING_FORWARD, 10) == datetime(2027, 3, 14, 14, tzinfo=UTC)
    view = await build_day_view(clinic.as_manager(), clinic.location_id, SPRING_FORWARD)
    assert view.hours_in_day == 23 and "forward" in view.note
    block = next(
        b for c in view.columns if c.kind == "room" for b in c.blocks if b.kind == "appointment"
    )
    assert block.first_row == 9 * 4 and block.rowspan == 4
    assert _row_label(view, block.first_row).startswith("10:00")
    # Fall back: 25 hours; 10:00 EST is the 11th real hour after midnight EDT.
    back = await _book(clinic, ny(FALL_BACK, 10))
    assert ny(FALL_BACK, 10) == datetime(2027, 11, 7, 15, tzinfo=UTC)
    view = await build_day_view(clinic.as_manager(), clinic.location_id, FALL_BACK)
    assert view.hours_in_day == 25 and "back" in view.note
    therapist = next(c for c in view.columns if c.kind == "therapist")
    block = next(b for b in therapist.blocks if b.kind == "appointment")
    assert block.first_row == 11 * 4 and block.rowspan == 4
    assert _row_label(view, block.first_row).startswith("10:00")
    assert block.detail.startswith("10:00–11:00")
    # The page shows it at 10:00 too, beside the note about the long day.
    async with factories.make_client(app) as http:
        await factories.login(http, clinic.manager)
        page = await http.get(f"/locations/{clinic.location_id}/day?date={FALL_BACK}")
        assert "The clocks go back on this day: it has 25 hours." in page.text
        cell = re.search(rf'data-appointment="{back}" data-row="(\d+)" data-rows="4"', page.text)
        assert cell and int(cell.group(1)) == 44
        assert "10:00–11:00 NMT 60" in page.text
        week = await http.get(f"/locations/{clinic.location_id}/week?date={SPRING_FORWARD}")
        assert week.status_code == 200
        assert "Clocks go forward: 23-hour day" in week.text
        assert f'data-appointment="{spring}"' in week.text


async def test_week_view_lists_each_days_appointments_in_local_time(clinic):
    # The week of the autumn change: Saturday 6 Nov (EDT) and Monday 8 Nov (EST), 10:00 both.
    saturday = await _book(clinic, ny(FALL_BACK - timedelta(days=1), 10))
    monday = await _book(clinic, ny(FALL_BACK + timedelta(days=1), 10))
    view = await build_week_view(clinic.as_manager(), clinic.location_id, FALL_BACK)
    assert view.first_day == date(2027, 11, 1) and [d.day for d in view.days][-1] == FALL_BACK
    assert view.booked == 1  # Monday the 8th is in the next week
    sunday = view.days[-1]
    assert sunday.hours == 25 and "back" in sunday.note
    row = view.rows[0]
    assert row.title == "Theresa"
    items = {c.day: [i for i in c.items if i.kind == "appointment"] for c in row.cells}
    assert [i.time for i in items[FALL_BACK - timedelta(days=1)]] == ["10:00–11:00"]
    assert items[FALL_BACK - timedelta(days=1)][0].href == f"/appointments/{saturday}"
    assert row.cells[0].hours == "09:00–17:00"
    assert row.cells[0].book_href.endswith(f"&therapist={clinic.therapist_id}&day=2027-11-01")
    following = await build_week_view(
        clinic.as_manager(), clinic.location_id, FALL_BACK + timedelta(days=1)
    )
    cell = following.rows[0].cells[0]
    assert [i.time for i in cell.items] == ["10:00–11:00"]
    assert cell.items[0].href == f"/appointments/{monday}"
    # Rooms × days: the same appointment, under its room, with an out-of-service window.
    appointment = await bookings.get_appointment(monday)
    await RoomOutage.insert(
        RoomOutage(room=clinic.rooms[1] if appointment["room"] == clinic.rooms[0] else clinic.rooms[0],
                   starts_at=ny(FALL_BACK + timedelta(days=2), 8),
                   ends_at=ny(FALL_BACK + timedelta(days=2), 12), reason="Painting",
                   created_at=utcnow())
    ).run()  # fmt: skip
    by_rooms = await build_week_view(
        clinic.as_manager(), clinic.location_id, FALL_BACK + timedelta(days=1), by="rooms"
    )
    assert [r.title for r in by_rooms.rows] == ["Room A", "Room B"]
    shown = [(r.title, i.kind, i.time) for r in by_rooms.rows for c in r.cells for i in c.items]
    assert ("Room A" if appointment["room"] == clinic.rooms[0] else "Room B", "appointment",
            "10:00–11:00") in shown  # fmt: skip
    assert any(kind == "outage" and time == "08:00–12:00" for _, kind, time in shown)


async def test_week_view_page_and_other_managers(app, clinic):
    day = future_day()
    appointment_id = await _book(clinic, ny(day, 9))
    other = await factories.make_user("manager", location_ids=[clinic.other_location_id])
    async with factories.make_client(app) as http:
        await factories.login(http, clinic.manager)
        page = await http.get(f"/locations/{clinic.location_id}/week?date={day}")
        assert page.status_code == 200
        assert f'href="/appointments/{appointment_id}"' in page.text
        assert "Therapists × days" in page.text and "09:00–10:00" in page.text
        rooms_page = await http.get(f"/locations/{clinic.location_id}/week?date={day}&by=rooms")
        assert rooms_page.status_code == 200 and "Room A" in rooms_page.text
        assert (
            await http.get(f"/locations/{clinic.location_id}/week?date=junk")
        ).status_code == 200
    async with factories.make_client(app) as http:
        await factories.login(http, other)
        response = await http.get(f"/locations/{clinic.location_id}/week")
        assert response.status_code == 403


async def test_an_out_of_service_window_lists_the_bookings_it_hits(app, clinic):
    day = future_day()
    appointment_id = await _book(clinic, ny(day, 10))
    room_id = int((await bookings.get_appointment(appointment_id))["room"])
    # Cancelled appointments and other rooms are not affected.
    cancelled = await _book(clinic, ny(day, 14))
    await bookings.cancel(clinic.as_client(), cancelled, notify_client=False)
    affected = await rooms.appointments_affected(room_id, ny(day, 9), ny(day, 16))
    assert [a.appointment_id for a in affected] == [appointment_id]
    assert affected[0].therapist_name == "Theresa" and affected[0].starts_at == ny(day, 10)
    assert await rooms.appointments_affected(room_id, ny(day, 11), ny(day, 12)) == []
    result = await rooms.add_outage(
        clinic.as_manager(),
        room_id,
        rooms.OutageInput(start_date=day, start_minute=9 * 60 + 30, end_date=day,
                          end_minute=12 * 60, reason="Leak"),
    )  # fmt: skip
    assert [a.appointment_id for a in result.affected] == [appointment_id]
    # The day view flags it for moving; the window shows around it.
    view = await build_day_view(clinic.as_manager(), clinic.location_id, day)
    column = next(c for c in view.columns if c.kind == "room" and c.href == f"/rooms/{room_id}")
    block = next(b for b in column.blocks if b.kind == "appointment")
    assert "out of service" in block.warning
    outage = sorted((b.start, b.end) for b in column.blocks if b.kind == "outage")
    assert outage == [(ny(day, 9, 30), ny(day, 10)), (ny(day, 11), ny(day, 12))]
    # Through the room page: the flash message counts it.
    async with factories.make_client(app) as http:
        await factories.login(http, clinic.manager)
        response = await factories.post_form(
            http, f"/rooms/{room_id}/out-of-service",
            {"start_date": day.isoformat(), "start_time": "13:00", "end_date": day.isoformat(),
             "end_time": "13:30", "reason": "Inspection"},
        )  # fmt: skip
        assert response.status_code == 303
        page = await http.get(response.headers["location"])
        assert "No booked appointments are affected." in page.text
        again = await factories.post_form(
            http, f"/rooms/{room_id}/out-of-service",
            {"start_date": day.isoformat(), "start_time": "08:00", "end_date": day.isoformat(),
             "end_time": "09:30", "reason": "Inspection"},
        )  # fmt: skip
        assert again.status_code == 303  # 08:00–09:30 does not touch 10:00
        hit = await factories.post_form(
            http, f"/rooms/{room_id}/out-of-service",
            {"start_date": day.isoformat(), "start_time": "12:00", "end_date": day.isoformat(),
             "end_time": "12:30", "reason": "Inspection"},
        )  # fmt: skip
        assert hit.status_code == 303
    moved_into = await _book(clinic, ny(day, 15))
    await Appointment.update({Appointment.room: room_id}).where(Appointment.id == moved_into).run()
    async with factories.make_client(app) as http:
        await factories.login(http, clinic.manager)
        response = await factories.post_form(
            http, f"/rooms/{room_id}/out-of-service",
            {"start_date": day.isoformat(), "start_time": "15:30", "end_date": day.isoformat(),
             "end_time": "16:00", "reason": "Fire drill"},
        )  # fmt: skip
        page = await http.get(response.headers["location"])
        assert "It affects 1 booked appointment(s)" in page.text
        # ...and lists it, in the location's time, so the manager can move it.
        assert "15:00 " in page.text and f"(appointment {moved_into})" in page.text
        # The room's page links each affected appointment beside its window.
        assert f'<a href="/appointments/{moved_into}">' in page.text
        # A window already over is refused, with what was typed kept.
        past = await factories.post_form(
            http, f"/rooms/{room_id}/out-of-service",
            {"start_date": "2020-01-06", "start_time": "09:00", "end_date": "2020-01-06",
             "end_time": "10:00", "reason": "Old"},
        )  # fmt: skip
        assert past.status_code == 422
        assert "already over" in (factories.field_error(past.text, "end_date") or "")
        assert factories.input_value(past.text, "reason") == "Old"


async def test_staff_move_an_appointment_with_the_booking_rules(app, clinic):
    day = future_day()
    appointment_id = await _book(clinic, ny(day, 10))
    other_client = await factories.make_user("client")
    await give_package(other_client.id, clinic.location_id, clinic.service_id, 1)
    from portal.auth.service import CLIENT, CurrentUser

    blocker = await bookings.book(
        CurrentUser(other_client.id, other_client.email, "", CLIENT, frozenset()),
        client_id=other_client.id, location_id=clinic.location_id, service_id=clinic.service_id,
        start_at=ny(day, 14), notify_client=False,
    )  # fmt: skip
    url = f"/appointments/{appointment_id}/move"
    async with factories.make_client(app) as http:
        await factories.login(http, clinic.manager)
        form = await http.get(url)
        assert form.status_code == 200
        assert factories.input_value(form.text, "day") == day.isoformat()
        assert factories.input_value(form.text, "time") == "10:00"
        # The free times exclude the blocker but include the appointment's own time.
        assert ny(day, 10).isoformat() in form.text and ny(day, 14).isoformat() not in form.text
        cases = [
            ({"day": (day - timedelta(days=30)).isoformat(), "time": "10:00"}, 422,
             "time", "Choose a time in the future."),
            ({"day": day.isoformat(), "time": "19:00"}, 422, "time", "outside Theresa"),
            ({"day": day.isoformat(), "time": "13:30"}, 409, "start", "just been taken"),
            ({"day": day.isoformat(), "time": "25:00"}, 422, "time", "Enter a time"),
            ({"day": "someday", "time": "10:00"}, 422, "day", "Enter the new date."),
        ]  # fmt: skip
        for data, status, field, message in cases:
            response = await factories.post_form(
                http, url, {**data, "therapist": str(clinic.therapist_id)}
            )
            assert response.status_code == status, (data, response.status_code)
            shown = factories.field_error(response.text, field) or ""
            if field == "start":
                shown = response.text
            assert message in shown, (data, shown)
            assert factories.input_value(response.text, "day") == data["day"]
        unchanged = await bookings.get_appointment(appointment_id)
        assert unchanged["start_at"] == ny(day, 10)
        # A therapist who does not give the service.
        stranger = await add_therapist("Sam", clinic.location_id, clinic.service_id)
        from portal.staff.tables import TherapistService

        await TherapistService.delete().where(TherapistService.therapist == stranger).run()
        refused = await factories.post_form(
            http, url, {"day": day.isoformat(), "time": "11:30", "therapist": str(stranger)}
        )
        assert refused.status_code == 422
        assert "not permitted to perform NMT 60" in (
            factories.field_error(refused.text, "therapist") or ""
        )
        # Now a good move, to 11:30 local.
        moved = await factories.post_form(
            http, url, {"day": day.isoformat(), "time": "11:30", "therapist": ""}
        )
        assert moved.status_code == 303, moved.text[:300]
        detail = await http.get(moved.headers["location"])
        assert "Moved to" in detail.text and "11:30" in detail.text
        # Picking a free time from the list works too.
        pick = await factories.post_form(
            http, url, {"start": ny(day + timedelta(days=1), 9).isoformat(),
                        "therapist": str(clinic.therapist_id)},
        )  # fmt: skip
        assert pick.status_code == 303
    after = await bookings.get_appointment(appointment_id)
    assert after["start_at"] == ny(day + timedelta(days=1), 9)
    assert after["end_at"] == ny(day + timedelta(days=1), 10)
    assert (await sales.session_counts(clinic.sale_id)).held == 1  # the same credit
    assert await AuditLog.count().where(AuditLog.action == "move").run() == 2
    confirmations = (
        await OutboxMessage.select().where(OutboxMessage.kind == "booking_confirmation").run()
    )
    assert len(confirmations) == 2 and all(
        m["to_address"] == clinic.client.email for m in confirmations
    )
    assert (await bookings.get_appointment(blocker))["start_at"] == ny(day, 14)


async def test_a_move_never_lands_in_an_out_of_service_room_or_after_expiry(clinic):
    day = future_day()
    appointment_id = await _book(clinic, ny(day, 10))
    for room in clinic.rooms:
        await RoomOutage.insert(
            RoomOutage(room=room, starts_at=ny(day, 12), ends_at=ny(day, 17), reason="Closed",
                       created_at=utcnow())
        ).run()  # fmt: skip
    with pytest.raises(bookings.Invalid) as closed:
        await bookings.move(clinic.as_manager(), appointment_id, start_at=ny(day, 13))
    assert closed.value.errors["start"] == "No treatment room is free at that time."
    await (
        Sale.update({Sale.valid_until: ny(day + timedelta(days=2), 12)})
        .where(Sale.id == clinic.sale_id)
        .run()
    )
    with pytest.raises(bookings.Invalid) as expired:
        await bookings.move(
            clinic.as_manager(), appointment_id, start_at=ny(day + timedelta(days=3), 10)
        )
    assert "valid until" in expired.value.errors["start"]
    assert (await bookings.get_appointment(appointment_id))["start_at"] == ny(day, 10)


async def test_the_manager_chooses_the_room_of_a_move(app, clinic):
    day = future_day()
    appointment_id = await _book(clinic, ny(day, 10))
    own = (await Appointment.select(Appointment.room).where(Appointment.id == appointment_id)
           .first().run())["room"]  # fmt: skip
    other = clinic.rooms[1] if own == clinic.rooms[0] else clinic.rooms[0]
    await RoomOutage.insert(
        RoomOutage(room=other, starts_at=ny(day, 13), ends_at=ny(day, 15), reason="Paint",
                   created_at=utcnow(), created_by="m@example.test")
    ).run()  # fmt: skip
    async with factories.make_client(app) as http:
        await factories.login(http, clinic.manager)
        form = await http.get(f"/appointments/{appointment_id}/move")
        assert 'id="room"' in form.text and "(current)" in form.text
        refused = await factories.post_form(
            http, f"/appointments/{appointment_id}/move",
            {"day": day.isoformat(), "time": "14:00", "therapist": str(clinic.therapist_id),
             "room": str(other)},
        )  # fmt: skip
        assert refused.status_code == 422
        assert "out of service" in (factories.field_error(refused.text, "room") or "")
        moved = await factories.post_form(
            http, f"/appointments/{appointment_id}/move",
            {"day": day.isoformat(), "time": "11:00", "therapist": str(clinic.therapist_id),
             "room": str(other)},
        )  # fmt: skip
        assert moved.status_code == 303, moved.text[:500]
    row = (
        await Appointment.select(Appointment.room, Appointment.start_at)
        .where(Appointment.id == appointment_id)
        .first()
        .run()
    )
    assert row["room"] == other and row["start_at"] == ny(day, 11)


async def test_a_time_held_for_a_payment_shows_on_the_schedules_until_its_hold_ends(clinic):
    day = future_day()
    live = await bookings.book(
        clinic.as_client(), client_id=clinic.client.id, location_id=clinic.location_id,
        service_id=clinic.service_id, start_at=ny(day, 9), therapist_id=clinic.therapist_id,
        hold_until=utcnow() + timedelta(minutes=35),
    )  # fmt: skip
    lapsed = await bookings.book(
        clinic.as_client(), client_id=clinic.client.id, location_id=clinic.location_id,
        service_id=clinic.service_id, start_at=ny(day, 13), therapist_id=clinic.therapist_id,
        hold_until=utcnow() + timedelta(minutes=35),
    )  # fmt: skip
    await (
        Appointment.update({Appointment.hold_until: utcnow() - timedelta(minutes=1)})
        .where(Appointment.id == lapsed)
        .run()
    )
    view = await build_week_view(clinic.as_manager(), clinic.location_id, day)
    shown = {
        i.href: i.status_label
        for r in view.rows
        for c in r.cells
        for i in c.items
        if i.kind == "appointment"
    }
    assert shown == {f"/appointments/{live}": "Held for payment"}
    rooms_day = await build_day_view(clinic.as_manager(), clinic.location_id, day)
    hrefs = {b.href for c in rooms_day.columns for b in c.blocks if b.kind == "appointment"}
    assert hrefs == {f"/appointments/{live}"}
