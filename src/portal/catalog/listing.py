"""Reading the catalog: services and packages, their lists with the price in
effect, a package's offers at the locations one may see, the public catalog."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Unpack

from portal import money, records
from portal.access import visible_locations
from portal.auth.service import CurrentUser
from portal.catalog.pricing import (
    NotAvailable,
    Offer,
    PackageTerms,
    build_offer,
    package_versions,
    service_versions,
    terms_from_offer,
    version_in_effect,
)
from portal.catalog.tables import Package, Service
from portal.locations.service import active_by_slug, get_location
from portal.locations.tables import Location
from portal.pagination import Page
from portal.timeutil import utcnow

# -- queries -------------------------------------------------------------------


def _package_columns() -> list[Any]:
    return [
        *Package.all_columns(),
        Package.service.name.as_alias("service_name"),
        Package.service.duration_minutes.as_alias("service_duration"),
        Package.service.active.as_alias("service_active"),
    ]


async def get_service(service_id: int) -> dict[str, Any]:
    return await records.get(Service, service_id, "No such service.")


async def get_package(package_id: int) -> dict[str, Any]:
    return await records.first(
        Package.select(*_package_columns()).where(Package.id == package_id), "No such package."
    )


async def all_services(active_only: bool = False) -> list[dict[str, Any]]:
    query = Service.select(Service.id, Service.name, Service.active, Service.duration_minutes)
    if active_only:
        query = query.where(Service.active == True)  # noqa: E712
    return await query.order_by(Service.name).run()


async def list_services(**filters: Unpack[records.ListQuery]) -> Page:
    page = await records.list_page(
        Service.select(), Service, (Service.name, Service.treatment_type), **filters
    )
    now = utcnow()
    versions = await service_versions(r["id"] for r in page.rows)
    for row in page.rows:
        row["price"] = version_in_effect(versions[row["id"]], now)
    return page


async def list_packages(
    *, online: str = "all", service_id: int | None = None, **filters: Unpack[records.ListQuery]
) -> Page:
    query = Package.select(*_package_columns())
    if online == "yes":
        query = query.where(Package.sellable_online == True)  # noqa: E712
    elif online == "no":
        query = query.where(Package.sellable_online == False)  # noqa: E712
    if service_id:
        query = query.where(Package.service == service_id)
    page = await records.list_page(query, Package, (Package.name, Package.service.name), **filters)
    now = utcnow()
    versions = await package_versions((r["id"] for r in page.rows), [])
    units = await service_versions(r["service"] for r in page.rows)
    for row in page.rows:
        price = version_in_effect(versions[row["id"]], now)
        unit = version_in_effect(units[row["service"]], now)
        row["price"] = price
        row["per_session_cents"] = (
            money.per_session(price.amount_cents, row["sessions"]) if price else None
        )
        row["saving"] = (
            money.saving(unit.amount_cents, row["sessions"], price.amount_cents)
            if price and unit and unit.currency == price.currency
            else None
        )
    return page


async def package_offers(
    user: CurrentUser, package_id: int, at: datetime
) -> tuple[dict[str, Any], list[Offer]]:
    """The package and its terms at every location the user may see."""
    package = await get_package(package_id)
    query = Location.select().order_by(Location.name)
    visible = visible_locations(user)
    if visible is not None:
        query = query.where(Location.id.is_in(list(visible) or [-1]))
    locations = await query.run()
    versions = await package_versions([package_id], [loc["id"] for loc in locations])
    units = await service_versions([package["service"]])
    offers = [
        build_offer(package, loc, versions[package_id], units[package["service"]], at)
        for loc in locations
    ]
    return package, offers


async def location_offers(
    location: dict[str, Any], at: datetime, *, online_only: bool = False
) -> list[Offer]:
    """Every active package's terms at one location (``online_only``: what is sold online)."""
    query = (
        Package.select(*_package_columns())
        .where(Package.active == True)  # noqa: E712
        .where(Package.service.active == True)  # noqa: E712
    )
    if online_only:
        query = query.where(Package.sellable_online == True)  # noqa: E712
    packages = await query.run()
    versions = await package_versions((p["id"] for p in packages), [location["id"]])
    units = await service_versions(p["service"] for p in packages)
    offers = [
        build_offer(p, location, versions[p["id"]], units[p["service"]], at) for p in packages
    ]
    offers.sort(
        key=lambda o: (
            o.package["service_name"],
            o.package["sessions"],
            o.package["name"],
        )
    )
    if online_only:
        offers = [o for o in offers if o.online]
    return offers


async def public_catalog(slug: str, at: datetime) -> tuple[dict[str, Any], list[Offer]] | None:
    """What a location sells online, or None for an unknown or inactive location."""
    location = await active_by_slug(slug)
    if location is None:
        return None
    return location, await location_offers(location, at, online_only=True)


async def base_price_zones() -> list[str]:
    """Zones offered for typing a base price's effective time: the locations' zones, then UTC.

    The first is the default: the zone of the first active location by name.
    """
    rows = (
        await Location.select(Location.timezone)
        .where(Location.active == True)  # noqa: E712
        .order_by(Location.name)
        .run()
    )
    zones: list[str] = []
    for row in rows:
        if row["timezone"] not in zones:
            zones.append(row["timezone"])
    if "UTC" not in zones:
        zones.append("UTC")
    return zones


async def quote_package(
    package_id: int, location_id: int, at: datetime, *, online: bool = False
) -> PackageTerms:
    """The terms of ``package_id`` sold at ``location_id`` at ``at``: the sale's snapshot.

    Raises ``NotFound`` for an unknown package or location and
    ``NotAvailable`` when it cannot be sold there then (inactive, no price in
    the location's currency, or — with ``online`` — not sellable online).
    """
    package = await get_package(package_id)
    location = await get_location(location_id)
    versions = await package_versions([package_id], [location_id])
    units = await service_versions([package["service"]])
    offer = build_offer(package, location, versions[package_id], units[package["service"]], at)
    if online and offer.available and not offer.online:
        raise NotAvailable("The package is not sold online.")
    return terms_from_offer(offer)
