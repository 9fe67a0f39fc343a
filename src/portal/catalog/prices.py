"""Writing prices: every change is a new version row (the table refuses UPDATE
and DELETE), audited. A service's list price and a package's base price are
the owners'; a location's override of a package's price is its managers' too,
in the location's currency, and ending it is a version that clears it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from portal import db, records
from portal.access import ensure_write
from portal.audit import service as audit
from portal.auth.service import OWNER, CurrentUser
from portal.catalog.inputs import PriceInput, resolve_effective
from portal.catalog.listing import get_package, get_service
from portal.catalog.pricing import PriceVersion, package_versions
from portal.catalog.tables import PackagePrice, ServicePrice
from portal.errors import Forbidden, Invalid
from portal.locations.service import get_location
from portal.timeutil import utcnow


def require_owner(actor: CurrentUser) -> None:
    if actor.role != OWNER:
        raise Forbidden("Only owners change services, packages and base prices.")


def version_record(
    kind: str, version_id: int, price: PriceInput, effective: datetime
) -> dict[str, Any]:
    """A price version as flat audit fields (``kind``: list_price, base_price, override)."""
    return {
        f"{kind}_cents": price.amount_cents,
        f"{kind}_currency": price.currency,
        f"{kind}_effective_from": effective.isoformat(),
        f"{kind}_version_id": version_id,
        f"{kind}_note": price.note,
    }


async def insert_version(
    table: Any,  # ServicePrice or PackagePrice
    actor: CurrentUser,
    price: PriceInput,
    effective: datetime,
    **owner: Any,
) -> int:
    """One version row of ``table`` (``owner``: its service, or package and location)."""
    return await records.insert(
        table,
        **owner,
        amount_cents=price.amount_cents,
        currency=price.currency,
        effective_from=effective,
        created_at=utcnow(),
        created_by=actor.id,
        note=price.note,
    )


async def add_version(
    actor: CurrentUser,
    entity: str,
    row_id: int,
    action: str,
    insert: Callable[[], Any],
    after: Callable[[int], dict[str, Any]],
    address: str,
) -> int:
    """A new price version (``insert``) and its audit record, in one transaction."""
    async with db.transaction():
        version: int = await insert()
        await audit.record(actor, action, entity, row_id, after=after(version), address=address)
    return version


# A chain-wide price: its entity's loader, its version table, its audit name.
_BASE_PRICES: dict[str, tuple[Callable[[int], Any], Any, str]] = {
    "service": (get_service, ServicePrice, "list_price"),
    "package": (get_package, PackagePrice, "base_price"),
}


async def _add_base_price(
    entity: str, actor: CurrentUser, row_id: int, price: PriceInput, address: str
) -> int:
    get, table, kind = _BASE_PRICES[entity]
    require_owner(actor)
    await get(row_id)
    effective = resolve_effective(price.effective_from, utcnow())
    return await add_version(
        actor,
        entity,
        row_id,
        "price",
        lambda: insert_version(table, actor, price, effective, **{entity: row_id}),
        lambda version: version_record(kind, version, price, effective),
        address,
    )


async def add_service_price(
    actor: CurrentUser, service_id: int, price: PriceInput, *, address: str = ""
) -> int:
    """A new version of the service's single-session list price (owners)."""
    return await _add_base_price("service", actor, service_id, price, address)


async def add_package_price(
    actor: CurrentUser, package_id: int, price: PriceInput, *, address: str = ""
) -> int:
    """A new version of the package's base price (owners)."""
    return await _add_base_price("package", actor, package_id, price, address)


async def _override_location(
    actor: CurrentUser, package_id: int, location_id: int
) -> dict[str, Any]:
    location = await get_location(location_id)
    ensure_write(actor, location_id)
    await get_package(package_id)
    return location


async def set_override(
    actor: CurrentUser,
    package_id: int,
    location_id: int,
    price: PriceInput,
    *,
    address: str = "",
) -> int:
    """A new override version for one location (owners; managers of that location)."""
    location = await _override_location(actor, package_id, location_id)
    if price.currency != location["currency"]:
        raise Invalid(
            {
                "currency": f"Prices at {location['name']} are in {location['currency']}; "
                f"enter the override in {location['currency']}."
            }
        )
    effective = resolve_effective(price.effective_from, utcnow())
    return await add_version(
        actor,
        "package",
        package_id,
        "override",
        lambda: insert_version(
            PackagePrice, actor, price, effective, package=package_id, location=location_id
        ),
        lambda version: {
            "location_id": location_id,
            "location": location["name"],
            **version_record("override", version, price, effective),
        },
        address,
    )


async def end_override(
    actor: CurrentUser,
    package_id: int,
    location_id: int,
    effective_from: datetime | None,
    *,
    note: str = "",
    address: str = "",
) -> int:
    """From ``effective_from`` (None: now) the location uses the base price again."""
    location = await _override_location(actor, package_id, location_id)
    has_override = (
        await PackagePrice.exists()
        .where(
            (PackagePrice.package == package_id)
            & (PackagePrice.location == location_id)
            & (PackagePrice.clears_override == False)  # noqa: E712
        )
        .run()
    )
    if not has_override:
        raise Invalid({"form": "This location has no override to end."})
    effective = resolve_effective(effective_from, utcnow())
    marker = PriceInput(amount_cents=0, currency=location["currency"], note=note)
    return await add_version(
        actor,
        "package",
        package_id,
        "end_override",
        lambda: insert_version(
            PackagePrice,
            actor,
            marker,
            effective,
            package=package_id,
            location=location_id,
            clears_override=True,
        ),
        lambda version: {
            "location_id": location_id,
            "location": location["name"],
            "override_ends_from": effective.isoformat(),
            "override_ends_version_id": version,
            "override_ends_note": note,
        },
        address,
    )


async def override_history(package_id: int, location_id: int) -> list[PriceVersion]:
    versions = await package_versions([package_id], [location_id])
    return [v for v in versions[package_id] if v.location_id == location_id]
