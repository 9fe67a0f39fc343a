"""Demo catalog: the services and packages a neuromuscular clinic sells, priced in USD.

Each price has a short history (last year's price, then today's), and Brooklyn
charges a little more for two packages through per-location overrides.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from portal import records
from portal.catalog.tables import Package, PackagePrice, Service, ServicePrice
from portal.demo import DemoIds
from portal.timeutil import utcnow

# name, type, minutes, buffer, equipment, description, list price (cents) last year, now
SERVICES: list[tuple[str, str, int, int, str, str, int, int]] = [
    (
        "Neuromuscular massage, 60 min",
        "Neuromuscular",
        60,
        15,
        "",
        "Slow, sustained pressure on trigger points to ease chronic neck, shoulder and back pain.",
        11000,
        12000,
    ),
    (
        "Neuromuscular massage, 90 min",
        "Neuromuscular",
        90,
        15,
        "",
        "A longer session for several regions at once, or for more stubborn patterns.",
        16000,
        17000,
    ),
    (
        "Sports recovery massage, 60 min",
        "Sports",
        60,
        15,
        "hydraulic table",
        "For training load and overuse: flushes tired muscles and restores range of motion.",
        10500,
        11500,
    ),
    (
        "Trigger point therapy, 30 min",
        "Trigger point",
        30,
        10,
        "",
        "Focused work on one region — standalone or added to another session.",
        6000,
        6500,
    ),
]

# name, service, sessions, validity days, price (cents), description
PACKAGES: list[tuple[str, str, int, int, int, str]] = [
    (
        "Neuromuscular series — 3 × 60 min",
        "Neuromuscular massage, 60 min",
        3,
        90,
        34200,
        "A short series to start: three sessions, a week or two apart.",
    ),
    (
        "Neuromuscular series — 5 × 60 min",
        "Neuromuscular massage, 60 min",
        5,
        180,
        54000,
        "Our most chosen series for chronic neck, shoulder and low-back pain.",
    ),
    (
        "Neuromuscular series — 10 × 60 min",
        "Neuromuscular massage, 60 min",
        10,
        365,
        102000,
        "For lasting change: ten sessions over up to a year.",
    ),
    (
        "Neuromuscular series — 5 × 90 min",
        "Neuromuscular massage, 90 min",
        5,
        240,
        76500,
        "Five long sessions for several regions or stubborn patterns.",
    ),
]

# Brooklyn's rent is higher: two packages cost a little more there.
OVERRIDES: list[tuple[str, str, int]] = [
    ("Neuromuscular series — 5 × 60 min", "brooklyn-park-slope", 56500),
    ("Neuromuscular series — 10 × 60 min", "brooklyn-park-slope", 107000),
]


async def load_demo(ids: DemoIds) -> None:
    if await Service.count().run() > 0:
        return
    now = utcnow()
    last_year = now - timedelta(days=365)
    this_year = now - timedelta(days=30)
    owner = ids.users.get("owner@demo.clinic")
    services: dict[str, int] = {}
    for name, kind, minutes, buffer, equipment, text, old_price, price in SERVICES:
        services[name] = await records.insert(
            Service,
            name=name,
            treatment_type=kind,
            duration_minutes=minutes,
            buffer_after_minutes=buffer,
            required_equipment=equipment,
            description=text,
            active=True,
            created_at=last_year,
            updated_at=last_year,
        )
        service = services[name]
        await ServicePrice.insert(
            _price(ServicePrice, old_price, last_year, owner, "Opening prices", service=service),
            _price(ServicePrice, price, this_year, owner, service=service),
        ).run()
    packages: dict[str, int] = {}
    for name, service_name, sessions, validity, price, text in PACKAGES:
        packages[name] = await records.insert(
            Package,
            name=name,
            service=services[service_name],
            sessions=sessions,
            validity_days=validity,
            description=text,
            sellable_online=True,
            active=True,
            created_at=last_year,
            updated_at=last_year,
        )
        # Last year's price list was 5 % lower (whole dollars).
        opening = price * 95 // 10000 * 100
        package = packages[name]
        await PackagePrice.insert(
            _price(PackagePrice, opening, last_year, owner, "Opening prices", package=package),
            _price(PackagePrice, price, this_year, owner, package=package),
        ).run()
    for name, slug, price in OVERRIDES:
        location = ids.locations.get(slug)
        if location is not None:
            await PackagePrice.insert(
                _price(
                    PackagePrice,
                    price,
                    last_year,
                    owner,
                    "Brooklyn prices",
                    package=packages[name],
                    location=location,
                )
            ).run()


def _price(
    table: Any,
    amount: int,
    since: Any,
    owner: int | None,
    note: str = "New price list",
    **of: Any,
) -> Any:
    """A version of a service's or a package's price (``of``: whose, and for a
    package's override, the location), in US cents from ``since``."""
    return table(
        amount_cents=amount,
        currency="USD",
        effective_from=since,
        created_at=since,
        created_by=owner,
        note=note,
        **of,
    )
