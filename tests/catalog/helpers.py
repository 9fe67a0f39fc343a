"""Catalog test data: services, packages and price versions at chosen times."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

from portal.auth.service import OWNER, CurrentUser
from portal.catalog.tables import Package, PackagePrice, Service, ServicePrice
from portal.timeutil import utcnow

_seq = itertools.count(1)
LONG_AGO = datetime(2020, 1, 1, tzinfo=utcnow().tzinfo)


def actor(
    account_id: int = 1, role: str = OWNER, location_ids: tuple[int, ...] = ()
) -> CurrentUser:
    return CurrentUser(
        id=account_id,
        email=f"{role}{account_id}@example.test",
        name="",
        role=role,
        location_ids=frozenset(location_ids),
    )


async def make_service(
    name: str | None = None,
    *,
    price: int | None = 12000,
    currency: str = "USD",
    since: datetime = LONG_AGO,
) -> int:
    now = utcnow()
    rows = (
        await Service.insert(
            Service(
                name=name or f"Service {next(_seq)}, 60 min",
                duration_minutes=60,
                active=True,
                created_at=now,
                updated_at=now,
            )
        )
        .returning(Service.id)
        .run()
    )
    service_id = int(rows[0]["id"])
    if price is not None:
        await add_service_price(service_id, price, since, currency=currency)
    return service_id


async def add_service_price(
    service_id: int, amount: int, since: datetime, *, currency: str = "USD"
) -> int:
    rows = (
        await ServicePrice.insert(
            ServicePrice(
                service=service_id,
                amount_cents=amount,
                currency=currency,
                effective_from=since,
                created_at=utcnow(),
            )
        )
        .returning(ServicePrice.id)
        .run()
    )
    return int(rows[0]["id"])


async def make_package(
    service_id: int,
    *,
    name: str | None = None,
    sessions: int = 5,
    validity_days: int = 180,
    price: int | None = 54000,
    currency: str = "USD",
    since: datetime = LONG_AGO,
    online: bool = True,
    active: bool = True,
) -> int:
    now = utcnow()
    rows = (
        await Package.insert(
            Package(
                name=name or f"Package {next(_seq)}",
                service=service_id,
                sessions=sessions,
                validity_days=validity_days,
                sellable_online=online,
                active=active,
                created_at=now,
                updated_at=now,
            )
        )
        .returning(Package.id)
        .run()
    )
    package_id = int(rows[0]["id"])
    if price is not None:
        await add_price(package_id, price, since, currency=currency)
    return package_id


async def add_price(
    package_id: int,
    amount: int,
    since: datetime,
    *,
    location: int | None = None,
    currency: str = "USD",
    clears: bool = False,
) -> int:
    """A version row written directly, so tests may place it in the past."""
    rows = (
        await PackagePrice.insert(
            PackagePrice(
                package=package_id,
                location=location,
                amount_cents=amount,
                currency=currency,
                effective_from=since,
                clears_override=clears,
                created_at=utcnow(),
            )
        )
        .returning(PackagePrice.id)
        .run()
    )
    return int(rows[0]["id"])


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)
