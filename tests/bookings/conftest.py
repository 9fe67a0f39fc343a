"""A small clinic for booking tests: a location, a service, a therapist with
hours, two rooms, and a client with an active 5-session package."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta

import pytest

from portal.auth.service import CLIENT, MANAGER, CurrentUser
from portal.catalog.tables import Service
from portal.rooms.tables import Room
from portal.sales import service as sales
from portal.sales.tables import Sale
from portal.staff.tables import Therapist, TherapistLocation, TherapistService, WorkingHours
from portal.timeutil import utcnow
from tests import factories
from tests.email.smtpd import smtp_server  # noqa: F401  (fixture)


@dataclass
class Clinic:
    location_id: int
    other_location_id: int
    service_id: int
    therapist_id: int
    therapist_account: factories.Account
    rooms: list[int]
    client: factories.Account
    manager: factories.Account
    sale_id: int

    def as_client(self) -> CurrentUser:
        return CurrentUser(self.client.id, self.client.email, "", CLIENT, frozenset())

    def as_manager(self) -> CurrentUser:
        return CurrentUser(
            self.manager.id, self.manager.email, "", MANAGER, frozenset({self.location_id})
        )

    def as_therapist(self) -> CurrentUser:
        return CurrentUser(
            self.therapist_account.id, self.therapist_account.email, "", "therapist",
            frozenset({self.location_id}),
        )  # fmt: skip


async def add_therapist(
    name: str, location_id: int, service_id: int, *, account_id: int | None = None
) -> int:
    now = utcnow()
    tid = (
        await Therapist.insert(
            Therapist(
                name=name, account=account_id, licence_expires=date(2030, 1, 1),
                insurance_expires=date(2030, 1, 1), active=True, created_at=now, updated_at=now,
            )
        ).returning(Therapist.id).run()
    )[0]["id"]  # fmt: skip
    await TherapistLocation.insert(TherapistLocation(therapist=tid, location=location_id)).run()
    await make_bookable(int(tid), location_id, service_id)
    return int(tid)


async def make_bookable(therapist_id: int, location_id: int, service_id: int) -> None:
    """A therapist working at the location: gives the service, credentials valid, 9 to 17
    every day."""
    tid = therapist_id
    await (
        Therapist.update(
            {
                Therapist.licence_expires: date(2030, 1, 1),
                Therapist.insurance_expires: date(2030, 1, 1),
            }
        )
        .where(Therapist.id == tid)
        .run()
    )
    await TherapistService.insert(TherapistService(therapist=tid, service=service_id)).run()
    for weekday in range(7):
        await WorkingHours.insert(
            WorkingHours(
                therapist=tid, location=location_id, weekday=weekday,
                start_minute=9 * 60, end_minute=17 * 60,
            )
        ).run()  # fmt: skip


async def give_package(client_id: int, location_id: int, service_id: int, sessions: int = 5) -> int:
    now = utcnow()
    values = [9000] * sessions
    sale_id = (
        await Sale.insert(
            Sale(
                client=client_id, location=location_id, package_id=1, price_version_id=1,
                service_id=service_id, service_name="NMT 60", item_name=f"{sessions} × 60",
                sessions_total=sessions, validity_days=180, currency="USD",
                price_cents=9000 * sessions, net_cents=9000 * sessions, tax_cents=0,
                total_cents=9000 * sessions,
                terms=json.dumps({"session_values": values, "session_totals": values}),
                status=sales.PENDING, channel="front_desk", payment_method="cash", created_at=now,
            )
        ).returning(Sale.id).run()
    )[0]["id"]  # fmt: skip
    await sales.activate(int(sale_id), occurred_at=now - timedelta(days=1))
    return int(sale_id)


@pytest.fixture
async def clinic(db) -> Clinic:
    location = await factories.make_location(
        slug="nyc", timezone="America/New_York", cancellation_window_hours=24
    )
    other = await factories.make_location(slug="sf", timezone="America/Los_Angeles")
    now = utcnow()
    service = (
        await Service.insert(
            Service(name="NMT 60", duration_minutes=60, buffer_after_minutes=15, active=True,
                    created_at=now, updated_at=now)
        ).returning(Service.id).run()
    )[0]["id"]  # fmt: skip
    account = await factories.make_user("therapist", location_ids=[location])
    therapist = await add_therapist("Theresa", location, service, account_id=account.id)
    rooms = []
    for name in ("Room A", "Room B"):
        rooms.append(
            (
                await Room.insert(
                    Room(location=location, name=name, active=True, created_at=now, updated_at=now)
                ).returning(Room.id).run()
            )[0]["id"]
        )  # fmt: skip
    client = await factories.make_user(CLIENT)
    manager = await factories.make_user(MANAGER, location_ids=[location])
    sale = await give_package(client.id, location, service)
    return Clinic(location, other, service, therapist, account, rooms, client, manager, sale)
