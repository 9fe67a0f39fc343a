"""A manager's access to a client comes from the client's own ties to the location,
never from a staff action alone.

A paid sale there, an appointment there that the client booked or attended, or
the preferred location the client chose: yes. A pending front-desk sale (or an
appointment staff booked that has not happened) at the manager's location for
another location's client: no — selling is allowed, access is not given by it.
Staff cannot set the preferred location either, and the booking page's lookup
by email shows only clients the manager may see.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from portal.auth.service import CLIENT, MANAGER, CurrentUser
from portal.auth.tables import User
from portal.bookings import service as bookings
from portal.bookings.tables import Appointment
from portal.clients import service as clients
from portal.clients.tables import ClientProfile
from portal.errors import Forbidden
from portal.sales import service as sales
from portal.sales.tables import Sale
from portal.staff import hours as h
from portal.timeutil import utcnow
from tests import factories
from tests.bookings.conftest import clinic, give_package  # noqa: F401  (fixture)

NY = ZoneInfo("America/New_York")
VICTIM = "Vera Victim"


async def _pending_front_desk_sale(
    client_id: int, location_id: int, seller: int, service: int
) -> int:
    rows = await Sale.insert(
        Sale(
            client=client_id, location=location_id, package_id=1, price_version_id=1,
            service_id=service, service_name="NMT 60", item_name="1 × 60", sessions_total=1,
            validity_days=180, currency="USD", price_cents=9000, net_cents=9000, tax_cents=0,
            total_cents=9000,
            terms=json.dumps({"session_values": [9000], "session_totals": [9000]}),
            status=sales.PENDING, channel="front_desk", payment_method="card",
            sold_by=seller, created_at=utcnow(),
        )
    ).returning(Sale.id).run()  # fmt: skip
    return int(rows[0]["id"])


async def test_a_pending_sale_at_the_managers_location_gives_no_access(app, clinic):  # noqa: F811
    # The victim is a client of A (a paid package there); the manager works at B.
    victim = clinic.client
    await User.update({User.name: VICTIM}).where(User.id == victim.id).run()
    manager_b = await factories.make_user(MANAGER, location_ids=[clinic.other_location_id])
    sale_id = await _pending_front_desk_sale(
        victim.id, clinic.other_location_id, manager_b.id, clinic.service_id
    )
    async with factories.make_client(app) as http:
        await factories.login(http, manager_b)
        for path in (f"/clients/{victim.id}", f"/clients/{victim.id}/intake",
                     f"/clients/{victim.id}/edit"):  # fmt: skip
            assert (await http.get(path)).status_code == 403, path
        listing = await http.get("/clients")
        assert VICTIM not in listing.text
        response = await factories.post_form(
            http, f"/clients/{victim.id}/edit",
            {"name": VICTIM, "phone": "+1 555 0100",
             "preferred_location_id": str(clinic.other_location_id)},
        )  # fmt: skip
        assert response.status_code == 403
        profile = await ClientProfile.select().where(ClientProfile.user == victim.id).first().run()
        assert profile is None or profile["preferred_location"] != clinic.other_location_id

        # Once the client pays for it, the sale ties them to B.
        await sales.activate(sale_id, occurred_at=utcnow())
        assert (await http.get(f"/clients/{victim.id}")).status_code == 200


async def test_staff_cannot_choose_the_preferred_location(app, clinic, owner):  # noqa: F811
    manager_a = clinic.as_manager()
    # A client of A (paid there) whom the manager may edit: moving their preferred
    # location is not the manager's to do (it would tie them to that location).
    client_id = clinic.client.id
    await ClientProfile.insert(
        ClientProfile(user=client_id, created_at=utcnow(), updated_at=utcnow())
    ).run()
    form = {"name": "Casey", "phone": "+1 503 555 0199",
            "preferred_location_id": str(clinic.location_id)}  # fmt: skip
    for account in (clinic.manager, owner):
        async with factories.make_client(app) as http:
            await factories.login(http, account)
            response = await factories.post_form(http, f"/clients/{client_id}/edit", form)
            assert response.status_code == 422
            assert factories.field_error(response.text, "preferred_location_id") == (
                clients.PREFERENCE_IS_THE_CLIENTS
            )
            page = await http.get(f"/clients/{client_id}/edit")
            assert 'name="preferred_location_id"' in page.text
            assert '<select id="preferred_location_id"' not in page.text
            # Other details save as before (the preference unchanged).
            ok = await factories.post_form(
                http, f"/clients/{client_id}/edit", {**form, "preferred_location_id": ""}
            )
            assert ok.status_code == 303
    row = await ClientProfile.select().where(ClientProfile.user == client_id).first().run()
    assert row["preferred_location"] is None
    with pytest.raises(Exception, match="preferred location"):
        data = await clients.parse_profile_form({**form})
        await clients.save_profile(manager_a, client_id, data)


async def test_appointments_tie_when_the_client_booked_or_attended(clinic):  # noqa: F811
    a = clinic.location_id
    manager_a = clinic.as_manager()
    of_b = await factories.make_user(CLIENT)
    await give_package(of_b.id, clinic.other_location_id, clinic.service_id, 3)
    day = (datetime.now(NY) + timedelta(days=10)).date()
    # Staff book a session at A for B's client: no access from that alone.
    appointment_id = await bookings.book(
        manager_a, client_id=of_b.id, location_id=a, service_id=clinic.service_id,
        start_at=h.wall_to_utc(day, 10 * 60, NY), notify_client=False,
    )  # fmt: skip
    with pytest.raises(Forbidden):
        await clients.ensure_can_read_client(manager_a, of_b.id)
    assert [r["id"] for r in (await clients.list_clients(manager_a)).rows].count(of_b.id) == 0
    # Once the client attended it, they are a client of A.
    await (
        Appointment.update({Appointment.status: "completed"})
        .where(Appointment.id == appointment_id)
        .run()
    )
    await clients.ensure_can_read_client(manager_a, of_b.id)
    # A session the client booked themselves ties them too.
    self_booker = await factories.make_user(CLIENT)
    await give_package(self_booker.id, clinic.other_location_id, clinic.service_id, 3)
    await bookings.book(
        CurrentUser(self_booker.id, self_booker.email, "", CLIENT, frozenset()),
        client_id=self_booker.id, location_id=a, service_id=clinic.service_id,
        start_at=h.wall_to_utc(day, 12 * 60, NY), notify_client=False,
    )  # fmt: skip
    await clients.ensure_can_read_client(manager_a, self_booker.id)


async def test_the_booking_page_shows_only_clients_the_manager_may_see(app, clinic):  # noqa: F811
    victim = clinic.client  # a client of A only
    await User.update({User.name: VICTIM}).where(User.id == victim.id).run()
    manager_b = await factories.make_user(MANAGER, location_ids=[clinic.other_location_id])

    def query(location_id: int) -> str:
        return (
            f"/appointments/new?location={location_id}&service={clinic.service_id}"
            f"&client_email={victim.email}"
        )

    unknown = query(clinic.other_location_id).replace(victim.email, "nobody-here%40example.test")
    async with factories.make_client(app) as http:
        await factories.login(http, manager_b)
        page = await http.get(query(clinic.other_location_id))
        assert page.status_code == 200
        assert VICTIM not in page.text and "left" not in page.text.split("booking-for")[-1][:200]
        # The same answer as for an email nobody has.
        assert "No client account with this email." in page.text
        nobody = await http.get(unknown)
        assert nobody.text.replace("nobody-here@example.test", victim.email).count(
            "No client account with this email."
        ) == page.text.count("No client account with this email.")
        response = await factories.post_form(
            http, "/appointments/",
            {"client_email": victim.email, "location": str(clinic.other_location_id),
             "service": str(clinic.service_id), "start": utcnow().isoformat()},
        )  # fmt: skip
        assert response.status_code == 422
        assert factories.field_error(response.text, "client_email") == (
            "No client account with this email."
        )
    async with factories.make_client(app) as http:
        await factories.login(http, clinic.manager)  # A's manager: their client
        page = await http.get(query(clinic.location_id))
        assert VICTIM in page.text
