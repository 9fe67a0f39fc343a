"""Changing services: created with their first list price, edited, deactivated
(their packages stop selling) or reactivated. Owners only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from portal import records
from portal.auth.service import CurrentUser
from portal.catalog.entities import name_taken, require_owner, update_entity
from portal.catalog.inputs import PriceInput, ServiceInput
from portal.catalog.listing import get_service
from portal.catalog.prices import insert_version, version_record
from portal.catalog.tables import Service, ServicePrice
from portal.errors import Invalid

DUPLICATE = {"name": "Another service already has this name."}


async def create_service(
    actor: CurrentUser, data: ServiceInput, price: PriceInput, *, address: str = ""
) -> int:
    require_owner(actor)
    if await name_taken(Service, data.name, None):
        raise Invalid(DUPLICATE)

    async def first_price(service_id: int, now: datetime) -> dict[str, Any]:
        version = await insert_version(ServicePrice, actor, price, now, service=service_id)
        return version_record("list_price", version, price, now)

    values = data.as_dict()
    return await records.create(
        actor, Service, "service", values, shown=values, taken=DUPLICATE, then=first_price,
        address=address,
    )  # fmt: skip


async def update_service(
    actor: CurrentUser, service_id: int, data: ServiceInput, *, address: str = ""
) -> None:
    require_owner(actor)
    before = await get_service(service_id)
    await update_entity(
        actor, Service, "service", before, data.as_dict(), duplicate=DUPLICATE, address=address
    )


async def set_service_active(
    actor: CurrentUser, service_id: int, active: bool, *, address: str = ""
) -> bool:
    """Deactivate (or reactivate) a service; its packages stop (or resume) selling."""
    await get_service(service_id)
    require_owner(actor)
    return await records.set_active(actor, Service, "service", service_id, active, address=address)
