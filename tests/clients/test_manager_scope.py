"""Which clients a manager lists and may open, whichever form the scope query takes.

A client is a manager's when they have a paid purchase, an appointment they
booked or attended, or their preferred location at one of the manager's
locations; an open (unpaid) checkout ties nothing.
The list checks that per client (large locations) or reads the locations'
client set (small ones); both must give the same clients, on every page, with
the preferred-location filter too, and the single-client check must agree.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from portal.auth.service import CLIENT, MANAGER, OWNER, CurrentUser
from portal.auth.tables import User
from portal.bookings import service as bookings
from portal.clients import service as clients
from portal.clients.tables import ClientProfile
from portal.errors import Forbidden
from portal.sales.tables import Sale
from portal.staff import hours as h
from portal.timeutil import utcnow
from tests import factories
from tests.bookings.conftest import clinic, give_package  # noqa: F401  (fixture)

NY = ZoneInfo("America/New_York")


async def _client(name: str) -> int:
    account = await factories.make_user(CLIENT)
    await User.update({User.name: name}).where(User.id == account.id).run()
    return account.id


async def _prefers(client_id: int, location_id: int) -> None:
    await ClientProfile.insert(
        ClientProfile(
            user=client_id, preferred_location=location_id, created_at=utcnow(),
            updated_at=utcnow(),
        )
    ).run()  # fmt: skip


async def _checkout(client_id: int, location_id: int, service_id: int, status: str) -> None:
    """A sale that never got paid: an open checkout, or an abandoned (cancelled) one."""
    await Sale.insert(
        Sale(
            client=client_id, location=location_id, package_id=1, price_version_id=1,
            service_id=service_id, service_name="NMT 60", item_name="1 × 60", sessions_total=1,
            validity_days=180, currency="USD", price_cents=9000, net_cents=9000, tax_cents=0,
            total_cents=9000, terms=json.dumps({"session_values": [9000]}), status=status,
            channel="online", payment_method="card", created_at=utcnow(),
        )
    ).run()  # fmt: skip


async def _book(clinic, client_id: int, hour: int) -> None:  # noqa: F811
    day = (datetime.now(NY) + timedelta(days=10)).date()
    await bookings.book(
        CurrentUser(client_id, "", "", CLIENT, frozenset()),
        client_id=client_id, location_id=clinic.location_id, service_id=clinic.service_id,
        start_at=h.wall_to_utc(day, hour * 60, NY), notify_client=False,
    )  # fmt: skip


async def _names(actor: CurrentUser, **filters) -> list[str]:
    """Every page of the list, two rows a page, in order."""
    names: list[str] = []
    after = None
    while True:
        page = await clients.list_clients(actor, after=after, limit=2, **filters)
        names += [row["name"] for row in page.rows]
        if page.next_cursor is None:
            return names
        after = page.next_cursor


@pytest.fixture(params=["per client", "location set"])
def scope_form(request, monkeypatch):
    """Force the list's scope query into one form (they are chosen by the locations' size)."""
    monkeypatch.setattr(clients, "SCOPE_SET_ROWS", 0 if request.param == "per client" else 10**9)
    return request.param


async def test_managers_list_and_open_exactly_the_clients_of_their_locations(
    clinic,  # noqa: F811
    scope_form,
):
    a, b = clinic.location_id, clinic.other_location_id
    # clinic.client bought a package at A: "Sale at A".
    await User.update({User.name: "Sale at A"}).where(User.id == clinic.client.id).run()
    open_checkout = await _client("Open checkout at A")
    await _checkout(open_checkout, a, clinic.service_id, "pending")
    abandoned = await _client("Abandoned checkout at A")
    await _checkout(abandoned, a, clinic.service_id, "cancelled")
    booked = await _client("Booked at A, bought and prefers B")  # a package is usable anywhere
    await give_package(booked, b, clinic.service_id, 2)
    await _book(clinic, booked, 10)
    await _prefers(booked, b)
    prefers_a = await _client("Prefers A")
    await _prefers(prefers_a, a)
    every_tie = await _client("Every tie to A")
    await give_package(every_tie, a, clinic.service_id, 2)
    await _book(clinic, every_tie, 12)
    await _prefers(every_tie, a)
    of_b = await _client("Of B only")
    await give_package(of_b, b, clinic.service_id, 2)
    await _prefers(of_b, b)
    nobody = await _client("No ties")
    manager_a = clinic.as_manager()
    manager_b = CurrentUser(0, "", "", MANAGER, frozenset({b}))
    manager_both = CurrentUser(0, "", "", MANAGER, frozenset({a, b}))

    theirs_a = [
        "Booked at A, bought and prefers B", "Every tie to A", "Prefers A", "Sale at A",
    ]  # fmt: skip
    assert await _names(manager_a) == theirs_a  # by name, each once, across pages
    assert await _names(manager_b) == ["Booked at A, bought and prefers B", "Of B only"]
    assert await _names(manager_both) == sorted([*theirs_a, "Of B only"])
    assert await _names(manager_a, search="at a") == [
        "Booked at A, bought and prefers B",
        "Sale at A",
    ]
    # Preferred location: one of theirs (every client preferring it is theirs) …
    assert await _names(manager_a, location_id=a) == ["Every tie to A", "Prefers A"]
    # … or another one: only those of its clients who are also theirs.
    assert await _names(manager_a, location_id=b) == ["Booked at A, bought and prefers B"]
    assert await _names(manager_b, location_id=a) == []
    assert await _names(manager_b, location_id=b) == [
        "Booked at A, bought and prefers B",
        "Of B only",
    ]
    owner = CurrentUser(0, "", "", OWNER, frozenset())
    assert "No ties" in await _names(owner)
    assert await _names(owner, location_id=b) == ["Booked at A, bought and prefers B", "Of B only"]

    # The single-client check agrees with the list.
    for client_id in (clinic.client.id, booked, prefers_a, every_tie):
        await clients.ensure_can_read_client(manager_a, client_id)
    for client_id in (open_checkout, abandoned, of_b, nobody):
        with pytest.raises(Forbidden):
            await clients.ensure_can_read_client(manager_a, client_id)
    await clients.ensure_can_read_client(manager_b, of_b)
    await clients.ensure_can_read_client(manager_b, booked)
    for client_id in (clinic.client.id, prefers_a, nobody):
        with pytest.raises(Forbidden):
            await clients.ensure_can_read_client(manager_b, client_id)
    with pytest.raises(Forbidden):
        await clients.ensure_can_read_client(
            CurrentUser(0, "", "", MANAGER, frozenset()), clinic.client.id
        )


async def test_a_manager_without_locations_lists_no_clients(clinic, scope_form):  # noqa: F811
    assert await _names(CurrentUser(0, "", "", MANAGER, frozenset())) == []
    assert (
        await _names(CurrentUser(0, "", "", MANAGER, frozenset()), location_id=clinic.location_id)
        == []
    )
