"""Importing therapists and upcoming appointments, on both engines: appointments are
booked through the bookings rules, so a clash is a rejected row, never a double booking."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from portal.bookings import service as bookings
from portal.bookings.tables import Appointment
from portal.errors import Conflict
from portal.imports import service as imports
from portal.imports.tables import ImportBatch
from portal.rooms.tables import Room
from portal.sales.tables import SaleSession
from portal.staff import hours as h
from portal.staff.tables import Therapist, TherapistLocation
from portal.timeutil import utcnow
from tests import factories
from tests.bookings.conftest import Clinic, add_therapist, clinic  # noqa: F401  (fixture)
from tests.imports.helpers import FILES, london, owner_actor, run

pytestmark = pytest.mark.usefixtures("liability_equals_the_credits_owed")


async def test_therapists_by_email_with_their_locations(db):
    loc = await london()
    beta = await factories.make_location(slug="beta")
    summary = await run("therapists", FILES / "therapists.csv", loc)
    assert (summary.created, summary.matched, summary.rejected) == (2, 1, 2)
    reasons = {r.line: r.reason for r in summary.failures}
    assert "not an email address" in reasons[5] and "no location 'atlantis'" in reasons[6]
    theo = await Therapist.select().where(Therapist.email == "theo@example.test").first().run()
    places = (
        await TherapistLocation.select(TherapistLocation.location)
        .where(TherapistLocation.therapist == theo["id"])
        .run()
    )
    assert sorted(p["location"] for p in places) == sorted([loc, beta])
    una = await Therapist.select().where(Therapist.email == "una@example.test").first().run()
    assert [
        p["location"]
        for p in await TherapistLocation.select()
        .where(TherapistLocation.therapist == una["id"])
        .run()
    ] == [loc]
    again = await run("therapists", FILES / "therapists.csv", loc)
    assert again.created == 0
    await imports.undo(owner_actor(), summary.batch_id)
    assert await Therapist.count().run() == 0


def appointments_file(tmp_path, *rows: tuple[str, str, str]):
    path = tmp_path / "appointments.csv"
    lines = ["Client Email;Staff Email;Start Time;Service"]
    lines += [f"{client};{therapist};{start};NMT 60" for client, therapist, start in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def test_appointments_booked_by_the_rules_and_clashes_rejected(db, clinic, tmp_path):  # noqa: F811
    await (
        Therapist.update({Therapist.email: "theresa@example.test"})
        .where(Therapist.id == clinic.therapist_id)
        .run()
    )
    no_credit = await factories.make_user("client", email="broke@example.test")
    day = (utcnow() + timedelta(days=10)).date()
    path = appointments_file(
        tmp_path,
        (clinic.client.email, "theresa@example.test", f"{day:%Y-%m-%d} 10:00"),
        (clinic.client.email, "theresa@example.test", f"{day:%Y-%m-%d} 10:30"),
        (no_credit.email, "theresa@example.test", f"{day:%Y-%m-%d} 14:00"),
        (clinic.client.email, "theresa@example.test", "2020-01-01 10:00"),
        (clinic.client.email, "nobody@example.test", f"{day:%Y-%m-%d} 12:00"),
        (clinic.client.email, "theresa@example.test", f"{day:%Y-%m-%d}"),
    )  # fmt: skip
    dry = await run("appointments", path, clinic.location_id, dry_run=True)
    assert dry.rejected == 5 and await Appointment.count().run() == 0
    assert {r.line: r.reason for r in dry.failures}[3] == (
        "clash: Theresa is already booked then by line 2 of the file"
    )
    summary = await run("appointments", path, clinic.location_id)
    assert (summary.created, summary.rejected) == (1, 5), summary.failures
    reasons = {r.line: r.reason for r in summary.failures}
    assert reasons[3].startswith("clash")
    assert "No active package" in reasons[4] or "session" in reasons[4]
    assert "not in the future" in reasons[5]
    assert "no therapist 'nobody@example.test'" in reasons[6]
    assert "no time of day" in reasons[7]
    (appointment,) = await Appointment.select().run()
    assert appointment["therapist"] == clinic.therapist_id and appointment["status"] == "booked"
    held = await SaleSession.count().where(SaleSession.state == "held").run()
    assert held == 1
    # Again: nothing new, and the clash is still only a rejected row.
    again = await run("appointments", path, clinic.location_id)
    assert again.created == 0 and again.matched == 1
    assert await Appointment.count().run() == 1
    with pytest.raises(Conflict, match="member of staff"):
        await imports.undo(None, summary.batch_id)
    await imports.undo(clinic.as_manager(), summary.batch_id)
    (appointment,) = await Appointment.select().run()
    assert appointment["status"] == "cancelled"
    assert await SaleSession.count().where(SaleSession.state == "held").run() == 0


async def two_therapists(clinic: Clinic) -> int:  # noqa: F811
    """Theresa and Tom at the clinic, with their emails; Tom's id."""
    tom = await add_therapist("Tom", clinic.location_id, clinic.service_id)
    for tid, email in ((clinic.therapist_id, "theresa"), (tom, "tom")):
        await (
            Therapist.update({Therapist.email: f"{email}@example.test"})
            .where(Therapist.id == tid)
            .run()
        )
    return tom


def rooms_file(tmp_path, client: str, *rows: tuple[str, str, str]):
    """Appointments of ``client``: (therapist, local start, room)."""
    path = tmp_path / "appointments_rooms.csv"
    lines = ["Client Email,Staff Email,Start Time,Service,Room"]
    lines += [f"{client},{t}@example.test,{start},NMT 60,{room}" for t, start, room in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def reasons_of(summary: imports.Summary) -> dict[int, str]:
    return {r.line: r.reason for r in summary.failures}


async def test_a_dry_run_reports_clashes_and_books_nothing(db, clinic, tmp_path):  # noqa: F811
    await two_therapists(clinic)
    day = (utcnow() + timedelta(days=10)).date()
    await bookings.book(
        clinic.as_manager(), client_id=clinic.client.id, location_id=clinic.location_id,
        service_id=clinic.service_id, therapist_id=clinic.therapist_id,
        start_at=h.wall_to_utc(day, 10 * 60, ZoneInfo("America/New_York")), notify_client=False,
    )  # fmt: skip
    file = rooms_file(
        tmp_path, clinic.client.email,
        ("theresa", f"{day} 10:30", ""),  # 2: Theresa is booked in the portal then
        ("tom", f"{day} 12:00", "Room A"),  # 3
        ("theresa", f"{day} 12:30", "Room A"),  # 4: the room line 3 takes
        ("tom", f"{day} 12:30", ""),  # 5: Tom, whom line 3 books
        ("theresa", f"{day} 12:00", ""),  # 6: Room B, the one left
        ("tom", f"{day} 16:00", ""),  # 7
        ("theresa", f"{day} 16:00", ""),  # 8: the client's last session
        ("tom", f"{day} 14:00", ""),  # 9: none left
    )  # fmt: skip
    dry = await run("appointments", file, clinic.location_id, dry_run=True)
    assert reasons_of(dry) == {
        2: "clash: Theresa is already booked then",
        4: "clash: Room A is taken or out of service then by line 3 of the file",
        5: "clash: Tom is already booked then by line 3 of the file",
        9: "the client holds no session of this service: import balances first",
    }
    assert (dry.created, dry.rejected) == (4, 4)
    assert await Appointment.count().run() == 1 and await ImportBatch.count().run() == 0
    assert await SaleSession.count().where(SaleSession.state == "held").run() == 1
    # The run itself books what the dry run said, and refuses the same rows.
    real = await run("appointments", file, clinic.location_id)
    assert (real.created, sorted(reasons_of(real))) == (4, [2, 4, 5, 9])
    assert reasons_of(real)[2].startswith("clash: Theresa is already booked then")
    assert reasons_of(real)[5].startswith("clash: Tom is already booked then")


async def test_the_room_a_row_names_is_the_room_booked(db, clinic, tmp_path):  # noqa: F811
    await two_therapists(clinic)
    day = (utcnow() + timedelta(days=10)).date()
    file = rooms_file(
        tmp_path, clinic.client.email,
        ("theresa", f"{day} 11:00", "Room B"),  # 2: Room B, though Room A is free too
        ("tom", f"{day} 11:00", "Room Z"),  # 3: no such room here
        ("tom", f"{day} 11:30", "room b"),  # 4: Room B is line 2's then
        ("tom", f"{day} 11:00", "Room A"),  # 5
        ("tom", f"{day} 20:00", ""),  # 6: after Tom's hours
    )  # fmt: skip
    for dry_run in (True, False):
        summary = await run("appointments", file, clinic.location_id, dry_run=dry_run)
        assert summary.created == 2
        assert reasons_of(summary)[3] == "no room 'Room Z' at nyc"
        assert reasons_of(summary)[4].startswith("clash: Room B is taken or out of service then")
        assert "working hours" in reasons_of(summary)[6], reasons_of(summary)
    rooms = {
        r["id"]: r["name"] for r in await Room.select().where(Room.location == clinic.location_id)
    }
    booked = await Appointment.select().order_by(Appointment.id).run()
    assert [(rooms[a["room"]], a["therapist"] == clinic.therapist_id) for a in booked] == [
        ("Room B", True),
        ("Room A", False),
    ]


async def test_a_run_stopped_after_booking_resumes_without_booking_twice(
    db,
    clinic,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    """Each appointment is booked in its own transaction: a run that stops after booking a
    chunk but before recording it leaves appointments no row names. Resumed, it takes them
    as its rows' instead of rejecting them as clashes with themselves."""
    await (
        Therapist.update({Therapist.email: "theresa@example.test"})
        .where(Therapist.id == clinic.therapist_id)
        .run()
    )
    day = (utcnow() + timedelta(days=10)).date()
    path = appointments_file(
        tmp_path,
        (clinic.client.email, "theresa@example.test", f"{day:%Y-%m-%d} 10:00"),
        (clinic.client.email, "theresa@example.test", f"{day:%Y-%m-%d} 12:00"),
    )  # fmt: skip
    record = imports._record

    async def lost(batch_id, kind, *args, **kwargs):
        raise RuntimeError("the worker was killed")

    monkeypatch.setattr(imports, "_record", lost)
    with pytest.raises(RuntimeError):
        await run("appointments", path, clinic.location_id)
    (batch,) = await ImportBatch.select().run()
    assert batch["status"] == imports.INCOMPLETE
    assert await Appointment.count().run() == 2  # booked, not recorded
    monkeypatch.setattr(imports, "_record", record)
    summary = await run("appointments", path, clinic.location_id)
    assert summary.batch_id == batch["id"]
    assert (summary.created, summary.rejected) == (2, 0), summary.failures
    assert await Appointment.count().run() == 2
    assert await SaleSession.count().where(SaleSession.state == "held").run() == 2
    # Undo cancels both: they are the batch's.
    await imports.undo(clinic.as_manager(), summary.batch_id)
    assert await SaleSession.count().where(SaleSession.state == "held").run() == 0
