"""Fixtures of the race suite (see ``tests/races/__init__.py``).

* ``race_database`` (session, sqlite/postgres): one database per engine for the
  whole suite — the run's PostgreSQL database name + ``_races``, or one SQLite
  file (WAL) — migrated once.
* ``servers`` (session, per engine): two portal processes on it, webhooks from
  the stand-in. Started once per engine: a server start costs seconds, a race
  a fraction of one.
* ``clinic`` (per test): a fresh location with its own packages, staff and
  client, so tests share the servers and the database but never their data;
  the invariants are checked for the test's location.
* ``portal`` (per test): the test's view of the servers (browsers, answers,
  deliveries); the webhook endpoints are attached again afterwards.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncIterator, Awaitable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
from piccolo.engine.base import Engine

from portal import db as portal_db
from portal.auth.service import CLIENT, MANAGER, THERAPIST, CurrentUser
from portal.bookings import service as bookings
from portal.catalog.tables import Package, PackagePrice, Service, ServicePrice
from portal.migrate import apply_migrations
from portal.payments import service as payments
from portal.rooms.tables import Room
from portal.sales.tables import Sale
from portal.staff.tables import Therapist, TherapistLocation, TherapistService, WorkingHours
from portal.timeutil import utcnow
from tests import factories
from tests.conftest import IN_CI, TEST_DATABASE_URL, _ensure_postgres_database, _loud
from tests.servers import Portal, Servers, portal_view, running_servers
from tests.stripe_standin import StandIn

T = TypeVar("T")

ZONE = "America/New_York"
# "Refund 3 sessions" on these is where money was created twice.
SMALL = (34200, 3)  # 342.00 for 3 sessions: 114.00 each
LARGE = (102000, 5)  # 1,020.00 for 5 sessions: 204.00 each
AT_ONCE_TIMEOUT = 60.0
_names = itertools.count(1)


@dataclass
class RaceDatabase:
    kind: str
    url: str
    engine: Engine


def _races_url() -> str:
    base, _, query = TEST_DATABASE_URL.partition("?")
    return f"{base}_races" + (f"?{query}" if query else "")


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
async def race_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RaceDatabase]:
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("races") / "portal.sqlite3"
        url = f"sqlite:///{path}"
        engine = portal_db.make_engine(url)
        portal_db.bind_engine(engine)
        await portal_db.prepare(engine)  # WAL, kept in the file
        await apply_migrations(quiet=True)
        yield RaceDatabase("sqlite", url, engine)
        return
    url = _races_url()
    problem = await _ensure_postgres_database(url)
    if problem:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI: {problem}")
        _loud(f"SKIPPING the PostgreSQL races: {problem}")
        pytest.skip(problem)
    engine = portal_db.make_engine(url)
    portal_db.bind_engine(engine)
    await engine.run_ddl("DROP SCHEMA public CASCADE")
    await engine.run_ddl("CREATE SCHEMA public")
    await apply_migrations(quiet=True)
    await portal_db.start_pool(engine, min_size=1, max_size=8)
    try:
        yield RaceDatabase("postgres", url, engine)
    finally:
        await portal_db.close_pool(engine)


@pytest.fixture(scope="session")
async def servers(
    race_database: RaceDatabase,
    stripe_standin: StandIn,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Servers]:
    log_dir = tmp_path_factory.mktemp(f"races-{race_database.kind}-servers")
    async with running_servers(race_database.url, stripe_standin, log_dir) as running:
        yield running


@pytest.fixture
def race_db(race_database: RaceDatabase) -> RaceDatabase:
    """The engine's database, bound as Piccolo's engine for this test."""
    portal_db.bind_engine(race_database.engine)
    return race_database


@dataclass
class Clinic:
    location_id: int
    slug: str
    small_package: int
    large_package: int
    service_id: int  # the large package's service: the one booked
    therapist_id: int
    therapist: factories.Account
    manager: factories.Account
    manager2: factories.Account
    client: factories.Account

    def as_manager(self) -> CurrentUser:
        return CurrentUser(
            self.manager.id, self.manager.email, "", MANAGER, frozenset({self.location_id})
        )


async def make_package(name: str, price: int, sessions: int) -> tuple[int, int]:
    """A service (60 min, list price 100.00) and a package of it: (package id, service id)."""
    now = utcnow()
    service = (
        await Service.insert(Service(name=f"NMT 60 {name}", duration_minutes=60, created_at=now))
        .returning(Service.id)
        .run()
    )[0]["id"]
    await ServicePrice.insert(
        ServicePrice(service=service, amount_cents=10000, currency="USD", effective_from=now)
    ).run()
    package = (
        await Package.insert(
            Package(
                name=f"{sessions} × 60 min {name}", service=service, sessions=sessions,
                validity_days=180, sellable_online=True, active=True, created_at=now,
            )
        ).returning(Package.id).run()
    )[0]["id"]  # fmt: skip
    await PackagePrice.insert(
        PackagePrice(package=package, amount_cents=price, currency="USD", effective_from=now)
    ).run()
    return int(package), int(service)


@pytest.fixture
async def clinic(race_db: RaceDatabase, request: pytest.FixtureRequest) -> Clinic:
    """A location of the test's own, with everything it sells and the people in it."""
    n = next(_names)
    slug = f"races-{n}-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    location = await factories.make_location(
        name=f"Race Clinic {n}", slug=slug, timezone=ZONE, cancellation_window_hours=24
    )
    small, small_service = await make_package(f"{slug} small", *SMALL)
    large, service = await make_package(f"{slug} large", *LARGE)
    now = utcnow()
    therapist_account = await factories.make_user(THERAPIST, location_ids=[location])
    expires = date.today() + timedelta(days=3 * 365)
    therapist = (
        await Therapist.insert(
            Therapist(
                name=f"Theo Race {n}", account=therapist_account.id, licence_expires=expires,
                insurance_expires=expires, active=True, created_at=now, updated_at=now,
            )
        ).returning(Therapist.id).run()
    )[0]["id"]  # fmt: skip
    await TherapistLocation.insert(TherapistLocation(therapist=therapist, location=location)).run()
    for service_id in (service, small_service):
        await TherapistService.insert(
            TherapistService(therapist=therapist, service=service_id)
        ).run()
    for weekday in range(7):
        await WorkingHours.insert(
            WorkingHours(
                therapist=therapist, location=location, weekday=weekday,
                start_minute=9 * 60, end_minute=17 * 60,
            )
        ).run()  # fmt: skip
    await Room.insert(
        Room(location=location, name="Room 1", active=True, created_at=now, updated_at=now)
    ).run()
    return Clinic(
        location_id=location,
        slug=slug,
        small_package=small,
        large_package=large,
        service_id=service,
        therapist_id=int(therapist),
        therapist=therapist_account,
        manager=await factories.make_user(MANAGER, location_ids=[location]),
        manager2=await factories.make_user(MANAGER, location_ids=[location]),
        client=await factories.make_user(CLIENT),
    )


@pytest.fixture
async def portal(servers: Servers, clinic: Clinic) -> AsyncIterator[Portal]:
    """This test's view of the servers (seeded first: the clinic is in the database)."""
    async with portal_view(servers) as view:
        view.location_id = clinic.location_id
        yield view


# -- seeding ---------------------------------------------------------------------------


async def sell_cash(clinic: Clinic, package_id: int) -> int:
    """A front-desk cash sale, recorded through the service (active at once)."""
    return await payments.record_in_clinic_sale(
        clinic.as_manager(),
        client_id=clinic.client.id,
        package_id=package_id,
        location_id=clinic.location_id,
        method="cash",
    )


async def start_online_purchase(portal: Portal, clinic: Clinic, package_id: int) -> str:
    """The client presses "Pay" on ``/buy``: returns the Checkout Session's id."""
    client = await portal.signed_in(clinic.client, "client")
    path = f"/buy/{package_id}"
    fields = await client.form(f"{path}?location={clinic.slug}", path)
    response = await client.post(path, fields)
    assert response.status_code == 303, response.text[:300]
    return response.headers["location"].rstrip("/").rsplit("/", 1)[-1]


async def buy_online(portal: Portal, clinic: Clinic, package_id: int) -> int:
    """A card sale paid in the stand-in; its webhooks reach the servers, which activate it."""
    session_id = await start_online_purchase(portal, clinic, package_id)
    paid = await portal.standin.complete_session(session_id)
    sale_id = int(paid["metadata"]["sale_id"])
    await portal.standin.drain(timeout=30)
    sale = await Sale.select(Sale.status).where(Sale.id == sale_id).first().run()
    assert sale is not None and sale["status"] == "active", f"sale {sale_id} not paid: {sale}"
    return sale_id


def local_ten_am(days_from_today: int) -> datetime:
    day = datetime.now(ZoneInfo(ZONE)).date() + timedelta(days=days_from_today)
    return datetime.combine(day, time(10, 0), ZoneInfo(ZONE)).astimezone(UTC)


async def book(clinic: Clinic, start_at: datetime) -> int:
    """A booking on a fresh cash sale of the large package, made as if two days earlier."""
    await sell_cash(clinic, clinic.large_package)
    return await bookings.book(
        clinic.as_manager(),
        client_id=clinic.client.id,
        location_id=clinic.location_id,
        service_id=clinic.service_id,
        start_at=start_at,
        therapist_id=clinic.therapist_id,
        now=start_at - timedelta(days=2),
        notify_client=False,
    )


# -- firing at once --------------------------------------------------------------------


async def at_once(requests: Iterable[Awaitable[T]]) -> list[T]:
    """All of ``requests`` in flight together; bounded."""
    return await asyncio.wait_for(asyncio.gather(*requests), AT_ONCE_TIMEOUT)


def describe(answers: Iterable[Any]) -> str:
    return "; ".join(
        f"{a.request.url.port} {a.status_code} {a.headers.get('location', '')}" for a in answers
    )
