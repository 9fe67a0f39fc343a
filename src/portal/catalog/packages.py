"""Changing packages: created for an active service with their first base
price, edited (name, description, validity, online sale; the service and the
number of sessions stay fixed), deactivated or reactivated. Owners only."""

from __future__ import annotations

from portal.auth.service import CurrentUser
from portal.catalog.entities import Entity, name_taken, require_owner
from portal.catalog.inputs import INTRO_IS_ONE_SESSION, PackageInput, PriceInput
from portal.catalog.listing import get_package
from portal.catalog.tables import Package, PackagePrice, Service
from portal.errors import Invalid

DUPLICATE = {"name": "Another package already has this name."}
PACKAGE = Entity(Package, "package", PackagePrice, "base_price", get_package, DUPLICATE)


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
    values = {**data.as_dict(), "service": data.service_id, "sessions": data.sessions}
    shown = {**data.as_dict(), "service_id": data.service_id, "sessions": data.sessions}
    return await PACKAGE.create(actor, values, price, shown=shown, address=address)


async def update_package(
    actor: CurrentUser, package_id: int, data: PackageInput, *, address: str = ""
) -> None:
    """Name, description, validity, where redeemable, online sale and whether it is an
    introductory offer; sessions and service stay fixed (so only a one-session package
    can become introductory)."""
    if data.introductory and (await get_package(package_id))["sessions"] != 1:
        raise Invalid({"introductory": INTRO_IS_ONE_SESSION})
    await PACKAGE.update(actor, package_id, data, address=address)


set_package_active = PACKAGE.set_active
