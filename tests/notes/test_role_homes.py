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
