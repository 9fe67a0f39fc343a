"""Therapists request time off themselves; a manager approves or declines it
(audited, the therapist emailed); only approved time off blocks booking."""

from __future__ import annotations

from datetime import UTC, datetime

from portal.audit.tables import AuditLog
from portal.email.tables import OutboxMessage
from portal.errors import Conflict
from portal.staff import service, timeoff
from portal.staff.tables import TimeOff
from tests import factories
from tests.staff import helpers

SUNDAY = 6
REQUEST = {"location_id": "", "start_date": "2027-01-03", "end_date": "", "reason": "Course"}


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


async def _bookable(therapist: int, location: int) -> bool:
    return await service.is_bookable(
        therapist, location, utc("2027-01-03T15:00"), utc("2027-01-03T16:00")
    )


async def _requested(app, locations, manager_client, email: str):
    a, _ = locations
    account = await factories.make_user("therapist", email=email, location_ids=[a])
    t = await helpers.make_therapist(name="Kim Lee", location_ids=[a], account=account.id)
    await helpers.add_hours(t, a, SUNDAY, "09:00-17:00")
    async with factories.make_client(app) as browser:
        await factories.login(browser, account)
        page = await browser.get(f"/therapists/{t}/time-off/request")
        assert page.status_code == 200 and "Request time off" in page.text
        bad = await factories.post_form(
            browser, f"/therapists/{t}/time-off/request", {**REQUEST, "location_id": str(a),
                                                           "reason": ""}
        )  # fmt: skip
        assert bad.status_code == 422 and factories.field_error(bad.text, "reason")
        assert factories.input_value(bad.text, "start_date") == "2027-01-03"
        sent = await factories.post_form(
            browser, f"/therapists/{t}/time-off/request", {**REQUEST, "location_id": str(a)}
        )
        assert sent.status_code == 303
    [row] = await TimeOff.select().where(TimeOff.therapist == t).run()
    assert row["status"] == "pending"
    assert await _bookable(t, a), "pending time off does not block booking"
    page = await manager_client.get(f"/therapists/{t}")
    assert "Requested, awaiting a manager" in page.text
    assert f"/therapists/{t}/time-off/{row['id']}/approve" in page.text
    return t, int(row["id"])


async def test_approved_time_off_blocks_booking_and_the_therapist_is_told(
    app, db, locations, manager_client
):
    a, _ = locations
    t, off = await _requested(app, locations, manager_client, "kim@example.test")
    approved = await factories.post_form(manager_client, f"/therapists/{t}/time-off/{off}/approve")
    assert approved.status_code == 303
    again = await factories.post_form(manager_client, f"/therapists/{t}/time-off/{off}/decline")
    assert again.status_code == 303
    row = await TimeOff.select().where(TimeOff.id == off).first().run()
    assert row["status"] == "approved", "a decided request is not decided again"
    assert not await _bookable(t, a)
    actions = await AuditLog.select(AuditLog.action).where(AuditLog.entity == "therapist").run()
    assert [r["action"] for r in actions] == ["request_time_off", "approve_time_off"]
    mail = await OutboxMessage.select().where(OutboxMessage.to_address == "kim@example.test").run()
    assert [m["kind"] for m in mail] == ["time_off_decision"]
    assert "is approved" in mail[0]["subject"] and "2027-01-03" in mail[0]["subject"]


async def test_declined_time_off_does_not_block_booking(app, db, locations, manager_client):
    a, _ = locations
    t, off = await _requested(app, locations, manager_client, "lee@example.test")
    declined = await factories.post_form(manager_client, f"/therapists/{t}/time-off/{off}/decline")
    assert declined.status_code == 303
    assert (await TimeOff.select().where(TimeOff.id == off).first().run())["status"] == "declined"
    assert await _bookable(t, a)
    mail = await OutboxMessage.select().where(OutboxMessage.to_address == "lee@example.test").run()
    assert "was declined" in mail[0]["subject"]
    # Declined time off leaves the days free for another request or a manager's entry.
    data = timeoff.parse_time_off_form({**REQUEST, "location_id": str(a)})
    manager = await factories.make_user("manager", location_ids=[a])
    await timeoff.add_time_off(helpers.actor(manager, [a]), t, data)
    assert not await _bookable(t, a)


async def test_only_the_therapist_requests_and_only_managers_decide(
    app, db, locations, manager_client
):
    a, _ = locations
    t, off = await _requested(app, locations, manager_client, "ana@example.test")
    assert (await manager_client.get(f"/therapists/{t}/time-off/request")).status_code == 403
    colleague = await factories.make_user("therapist", location_ids=[a])
    await helpers.make_therapist(location_ids=[a], account=colleague.id)
    async with factories.make_client(app) as browser:
        await factories.login(browser, colleague)
        assert (await browser.get(f"/therapists/{t}/time-off/request")).status_code == 403
        refused = await factories.post_form(browser, f"/therapists/{t}/time-off/{off}/approve")
        assert refused.status_code == 403
    assert (await TimeOff.select().where(TimeOff.id == off).first().run())["status"] == "pending"


async def test_approving_time_off_over_bookings_lists_them_and_asks_to_confirm(
    app, db, locations, manager_client
):
    a, _ = locations
    t, off = await _requested(app, locations, manager_client, "mo@example.test")
    client = await factories.make_user("client", email="sam.client@example.test")
    inside = utc("2027-01-03T15:00")
    end = utc("2027-01-03T16:00")
    appointment = await db_insert_appointment(client.id, t, a, inside, end)
    first = await factories.post_form(manager_client, f"/therapists/{t}/time-off/{off}/approve")
    # Not approved yet: the booking is listed with a link to move or cancel it.
    assert first.status_code == 200
    assert "1 booking of Kim Lee falls in this time off" in first.text
    assert f'href="/appointments/{appointment}"' in first.text
    assert 'name="confirmed" value="yes"' in first.text and "Approve anyway" in first.text
    assert (await TimeOff.select().where(TimeOff.id == off).first().run())["status"] == "pending"
    # The service refuses too, unless confirmed.
    manager = await factories.make_user("manager", location_ids=[a])
    try:
        await timeoff.decide_time_off(helpers.actor(manager, [a]), t, off, approve=True)
    except Conflict as exc:
        assert "1 booking(s) fall in this time off" in str(exc)
    else:
        raise AssertionError("approved without confirmation")
    confirmed = await factories.post_form(
        manager_client, f"/therapists/{t}/time-off/{off}/approve", {"confirmed": "yes"}
    )
    assert confirmed.status_code == 303
    assert (await TimeOff.select().where(TimeOff.id == off).first().run())["status"] == "approved"
    # Pressed again: already decided, nothing asked.
    again = await factories.post_form(manager_client, f"/therapists/{t}/time-off/{off}/approve")
    assert again.status_code == 303


async def db_insert_appointment(client: int, therapist: int, location: int, start, end) -> int:
    from portal import db as portal_db
    from portal.bookings.tables import Appointment

    room = await helpers.make_room(location)
    service_id = await helpers.make_service()
    return await portal_db.insert_row(
        Appointment(
            client=client, therapist=therapist, room=room, location=location, service=service_id,
            start_at=start, end_at=end, busy_until=end, status="booked", created_at=start,
            updated_at=start,
        )
    )  # fmt: skip
