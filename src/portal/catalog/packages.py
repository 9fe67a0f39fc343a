"""Changing packages: created for an active service with their first base
price, edited (name, description, validity, online sale; the service and the
number of sessions stay fixed), deactivated or reactivated. Owners only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from portal import records
from portal.auth.service import CurrentUser
from portal.catalog.entities import name_taken, require_owner, update_entity
from portal.catalog.inputs import PackageInput, PriceInput
from portal.catalog.listing import get_package
from portal.catalog.prices import insert_version, version_record
from portal.catalog.tables import Package, PackagePrice, Service
from portal.errors import Invalid

DUPLICATE = {"name": "Another package already has this name."}


async def _check_new(data: PackageInput) -> None:
    errors: dict[str, str] = {}
    service = await Service.select().where(Service.id == data.service_id).first().run()
    if service is None:
        errors["service_id"] = "Choose a service from the list."
    elif not service["active"]:
        errors["service_id"] = "This service is inactive; choose an active one."
    if await name_taken(Package, data.name, None):
        errors.update(DUPLICATE)
    if errors:
        raise Invalid(errors)


async def create_package(
    actor: CurrentUser, data: PackageInput, price: PriceInput, *, address: str = ""
) -> int:
    require_owner(actor)
    await _check_new(data)

    async def first_price(package_id: int, now: datetime) -> dict[str, Any]:
        version = await insert_version(PackagePrice, actor, price, now, package=package_id)
        return version_record("base_price", version, price, now)

    values = {**data.as_dict(), "service": data.service_id, "sessions": data.sessions}
    shown = {**data.as_dict(), "service_id": data.service_id, "sessions": data.sessions}
    return await records.create(
        actor, Package, "package", values, shown=shown, taken=DUPLICATE, then=first_price,
        address=address,
    )  # fmt: skip


async def update_package(
    actor: CurrentUser, package_id: int, data: PackageInput, *, address: str = ""
) -> None:
    """Name, description, validity and online sale; sessions and service stay fixed."""
    require_owner(actor)
    before = await get_package(package_id)
    await update_entity(
        actor, Package, "package", before, data.as_dict(), duplicate=DUPLICATE, address=address
    )


async def set_package_active(
    actor: CurrentUser, package_id: int, active: bool, *, address: str = ""
) -> bool:
    await get_package(package_id)
    require_owner(actor)
    return await records.set_active(actor, Package, "package", package_id, active, address=address)
