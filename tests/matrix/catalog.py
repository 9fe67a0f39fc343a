from __future__ import annotations

from portal.catalog.tables import Package, PackagePrice, Service, ServicePrice
from portal.locations.tables import Location
from portal.timeutil import utcnow
from tests.matrix import Param, World


async def provide(world: World) -> dict[str, Param]:
    # Services and packages are chain-wide; the public catalog is keyed by slug
    # and open to everyone, so neither is scoped to a location.
    now = utcnow()
    service = (
        await Service.insert(
            Service(name="Matrix massage, 60 min", duration_minutes=60, created_at=now)
        )
        .returning(Service.id)
        .run()
    )[0]["id"]
    await ServicePrice.insert(
        ServicePrice(service=service, amount_cents=10000, currency="USD", effective_from=now)
    ).run()
    package = (
        await Package.insert(
            Package(
                name="Matrix series — 5 × 60 min",
                service=service,
                sessions=5,
                validity_days=180,
                sellable_online=True,
                created_at=now,
            )
        )
        .returning(Package.id)
        .run()
    )[0]["id"]
    await PackagePrice.insert(
        PackagePrice(package=package, amount_cents=45000, currency="USD", effective_from=now)
    ).run()
    slugs = {
        row["id"]: row["slug"] for row in await Location.select(Location.id, Location.slug).run()
    }
    return {
        "service_id": Param(own=service, other=service, scoped=False),
        "package_id": Param(own=package, other=package, scoped=False),
        "location_slug": Param(
            own=slugs[world.own_location], other=slugs[world.other_location], scoped=False
        ),
    }
