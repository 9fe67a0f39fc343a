"""Managers see the clients of their locations: with an appointment or a purchase
there, or who prefer one of them. Owners see every client."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from portal.auth.service import CLIENT, MANAGER, OWNER, CurrentUser
from portal.auth.tables import User
from portal.bookings import service as bookings
from portal.clients import service as clients
from portal.clients.tables import ClientProfile
from portal.errors import Forbidden
from portal.staff import hours as h
from tests import factories
from tests.bookings.conftest import give_package

NY = ZoneInfo("America/New_York")


def ny(day: date, hour: int) -> datetime:
    return h.wall_to_utc(day, hour * 60, NY)


async def _named(name: str) -> factories.Account:
    account = await factories.make_user(CLIENT)
    await User.update({User.name: name}).where(User.id == account.id).run()
    return account


async def test_managers_see_their_locations_clients_only(app, clinic):
    a, b = clinic.location_id, clinic.other_location_id
    # Bought a package at B (packages are usable everywhere) and booked a session at A.
    traveller = await _named("Booked at A")
    await give_package(traveller.id, b, clinic.service_id, 3)
    day = (datetime.now(NY) + timedelta(days=10)).date()
    await bookings.book(
        CurrentUser(traveller.id, traveller.email, "", CLIENT, frozenset()),
        client_id=traveller.id, location_id=a, service_id=clinic.service_id,
        start_at=ny(day, 10), notify_client=False,
    )  # fmt: skip
    await User.update({User.name: "Bought at A"}).where(User.id == clinic.client.id).run()
    bought_at_b = await _named("Bought at B")
    await give_package(bought_at_b.id, b, clinic.service_id, 3)
    prefers_a = await _named("Prefers A")
    await ClientProfile.insert(ClientProfile(user=prefers_a.id, preferred_location=a)).run()
    nobody = await _named("No ties")
    manager_b = await factories.make_user(MANAGER, location_ids=[b])
    booked = traveller

    async with factories.make_client(app) as http:
        await factories.login(http, clinic.manager)  # manager of A
        listing = await http.get("/clients")
        assert listing.status_code == 200
        for name in ("Booked at A", "Bought at A", "Prefers A"):
            assert name in listing.text
        for name in ("Bought at B", "No ties"):
            assert name not in listing.text
        for account in (booked, prefers_a, clinic.client):
            assert (await http.get(f"/clients/{account.id}")).status_code == 200
            assert (await http.get(f"/clients/{account.id}/intake")).status_code == 200
        for account in (bought_at_b, nobody):
            assert (await http.get(f"/clients/{account.id}")).status_code == 403
            assert (await http.get(f"/clients/{account.id}/edit")).status_code == 403
            response = await factories.post_form(
                http, f"/clients/{account.id}/edit", {"name": "Hijacked", "phone": "+1 555 0100"}
            )
            assert response.status_code == 403
    async with factories.make_client(app) as http:
        await factories.login(http, manager_b)
        listing = await http.get("/clients")
        for name in ("Bought at B", "Booked at A"):  # the traveller bought at B
            assert name in listing.text
        for name in ("Bought at A", "Prefers A", "No ties"):
            assert name not in listing.text
        assert (await http.get(f"/clients/{bought_at_b.id}")).status_code == 200
        assert (await http.get(f"/clients/{clinic.client.id}")).status_code == 403
    owner = await factories.make_user(OWNER)
    async with factories.make_client(app) as http:
        await factories.login(http, owner)
        listing = await http.get("/clients")
        for name in ("Booked at A", "Bought at A", "Bought at B", "Prefers A", "No ties"):
            assert name in listing.text
    assert (await User.select(User.name).where(User.id == nobody.id).first().run())["name"] == (
        "No ties"
    )


async def test_scope_functions(clinic):
    manager = clinic.as_manager()
    assert clients.client_scope(manager) == frozenset({clinic.location_id})
    owner = CurrentUser(1, "o@example.test", "", OWNER, frozenset())
    assert clients.client_scope(owner) is None
    with pytest.raises(Forbidden):
        clients.client_scope(clinic.as_therapist())
    await clients.ensure_can_read_client(manager, clinic.client.id)  # bought at A
    await clients.ensure_can_read_client(clinic.as_client(), clinic.client.id)
    stranger = await factories.make_user(CLIENT)
    with pytest.raises(Forbidden):
        await clients.ensure_can_read_client(manager, stranger.id)
    with pytest.raises(Forbidden):
        await clients.ensure_can_read_client(clinic.as_therapist(), clinic.client.id)
    # An abandoned checkout at A does not make a client of A.
    from portal.sales.tables import Sale

    await Sale.update({Sale.status: "cancelled"}).where(Sale.id == clinic.sale_id).run()
    with pytest.raises(Forbidden):
        await clients.ensure_can_read_client(manager, clinic.client.id)
