"""Importing therapists and upcoming appointments, on both engines: appointments are
booked through the bookings rules, so a clash is a rejected row, never a double booking."""

from __future__ import annotations

from datetime import timedelta

import pytest

from portal.bookings.tables import Appointment
from portal.errors import Conflict
from portal.imports import service as imports
from portal.sales.tables import SaleSession
from portal.staff.tables import Therapist, TherapistLocation
from portal.timeutil import utcnow
from tests import factories
from tests.bookings.conftest import clinic  # noqa: F401  (fixture)
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
    assert dry.rejected == 4 and await Appointment.count().run() == 0
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
