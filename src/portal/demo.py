"""Demo data: three clinics, an account for every role. Loaded by `portal demo`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from portal import contexts, db, records
from portal.auth import passwords
from portal.auth.tables import User, UserLocation
from portal.locations.tables import Location
from portal.timeutil import utcnow

DEMO_PASSWORD = "demo-clinic-2026"

DEMO_LOCATIONS: list[dict[str, Any]] = [
    {
        "name": "Portland Pearl District",
        "slug": "portland-pearl",
        "address": "1120 NW Couch St, Portland, OR 97209",
        "phone": "+1 503 555 0142",
        "timezone": "America/Los_Angeles",
        "currency": "USD",
        "tax_rate_bp": 0,
        "prices_include_tax": False,
        "cancellation_window_hours": 24,
    },
    {
        "name": "Austin South Congress",
        "slug": "austin-soco",
        "address": "1500 S Congress Ave, Austin, TX 78704",
        "phone": "+1 512 555 0188",
        "timezone": "America/Chicago",
        "currency": "USD",
        "tax_rate_bp": 825,
        "prices_include_tax": False,
        "cancellation_window_hours": 24,
        "refund_rule": "pro_rata",
    },
    {
        "name": "Brooklyn Park Slope",
        "slug": "brooklyn-park-slope",
        "address": "212 7th Ave, Brooklyn, NY 11215",
        "phone": "+1 718 555 0117",
        "timezone": "America/New_York",
        "currency": "USD",
        "tax_rate_bp": 0,
        "prices_include_tax": False,
        "cancellation_window_hours": 48,
    },
]

# email, role, name, location slugs
DEMO_ACCOUNTS = [
    ("owner@demo.clinic", "owner", "Olivia Owens", []),
    ("manager.portland@demo.clinic", "manager", "Marcus Patel", ["portland-pearl"]),
    ("manager.austin@demo.clinic", "manager", "Alma Reyes", ["austin-soco"]),
    ("accountant@demo.clinic", "accountant", "Arthur Chen", []),
    ("therapist@demo.clinic", "therapist", "Theresa Nguyen", ["portland-pearl"]),
    ("client@demo.clinic", "client", "Casey Morgan", []),
]


@dataclass
class DemoIds:
    """What the core demo created, for the contexts' own demo loaders."""

    locations: dict[str, int] = field(default_factory=dict)  # slug -> id
    users: dict[str, int] = field(default_factory=dict)  # email -> id


async def load_demo(*, if_empty: bool = True) -> bool:
    """Insert the demo data; with ``if_empty``, only into an empty database.

    The core (locations, accounts) comes first; then every context's
    ``demo.load_demo(ids)`` adds its part, each in its own transaction.
    """
    if if_empty and await Location.count().run() > 0:
        return False
    demo_ids = DemoIds()
    async with db.transaction():
        await _load_core(demo_ids)
    for loader in contexts.demo_loaders():
        async with db.transaction():
            await loader(demo_ids)
    return True


async def _load_core(demo_ids: DemoIds) -> None:
    now = utcnow()
    password_hash = passwords.hash_password(DEMO_PASSWORD)
    ids = demo_ids.locations
    for loc in DEMO_LOCATIONS:
        existing = (
            await Location.select(Location.id).where(Location.slug == loc["slug"]).first().run()
        )
        if existing:
            ids[str(loc["slug"])] = existing["id"]
            continue
        ids[str(loc["slug"])] = await records.insert(
            Location, **loc, active=True, created_at=now, updated_at=now
        )
    for email, role, name, slugs in DEMO_ACCOUNTS:
        if await User.exists().where(User.email == email).run():
            continue
        demo_ids.users[email] = await records.insert(
            User,
            email=email,
            name=name,
            role=role,
            password_hash=password_hash,
            active=True,
            created_at=now,
            password_changed_at=now,
        )
        for slug in slugs:
            await UserLocation.insert(
                UserLocation(user=demo_ids.users[email], location=ids[slug])
            ).run()
