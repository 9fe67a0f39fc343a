"""Changing services: created with their first list price, edited, deactivated
(their packages stop selling) or reactivated. Owners only."""

from __future__ import annotations

from portal.auth.service import CurrentUser
from portal.catalog.entities import Entity, name_taken, require_owner
from portal.catalog.inputs import PriceInput, ServiceInput
from portal.catalog.listing import get_service
from portal.catalog.tables import Service, ServicePrice
from portal.errors import Invalid

DUPLICATE = {"name": "Another service already has this name."}
SERVICE = Entity(Service, "service", ServicePrice, "list_price", get_service, DUPLICATE)


async def create_service(
    actor: CurrentUser, data: ServiceInput, price: PriceInput, *, address: str = ""
) -> int:
    require_owner(actor)
    if await name_taken(Service, data.name, None):
        raise Invalid(DUPLICATE)
    values = data.as_dict()
    return await SERVICE.create(actor, values, price, shown=values, address=address)


update_service = SERVICE.update
# Deactivating a service stops (reactivating resumes) the sale of its packages.
set_service_active = SERVICE.set_active
