"""What creating, editing and (de)activating a service or a package have in common.

Owners only; names unique regardless of case (the database's ``lower(name)``
index has the last word: a race that passes the first check is refused by
it, with the same message); a row created with its first price version and
one audit record; an edit that changes nothing writes nothing. Each is one
:class:`Entity` declaration (``services.SERVICE``, ``packages.PACKAGE``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from piccolo.query.functions.string import Lower

from portal import records
from portal.auth.service import CurrentUser
from portal.catalog.inputs import PriceInput
from portal.catalog.prices import insert_version, require_owner, version_record
from portal.errors import Invalid

# A service or package table: the helpers below work on either.
Named = Any

__all__ = ["Entity", "name_taken", "require_owner"]


async def name_taken(table: Named, name: str, exclude_id: int | None) -> bool:
    """Names are unique regardless of case (as the database's lower(name) index says)."""
    query = table.exists().where(Lower(table.name) == name.lower())
    if exclude_id is not None:
        query = query.where(table.id != exclude_id)
    return bool(await query.run())


@dataclass(frozen=True)
class Entity:
    """A service or a package: its table, audit name, price versions and loader."""

    table: Named
    name: str  # the audit record's entity, and the price version's owner column
    price_table: Any  # ServicePrice or PackagePrice
    price_kind: str  # the audit fields of the first price: "list_price", "base_price"
    get: Callable[[int], Awaitable[dict[str, Any]]]
    duplicate: Mapping[str, str]  # the name's error when another row has it

    @property
    def record(self) -> records.Kind:
        return records.Kind(self.table, self.name, taken=self.duplicate)

    async def create(
        self,
        actor: CurrentUser,
        values: Mapping[str, Any],
        price: PriceInput,
        *,
        shown: Mapping[str, Any],
        address: str,
    ) -> int:
        """Insert the row (``values``; ``shown`` in its audit record) with its first price."""

        async def first_price(row_id: int, now: datetime) -> dict[str, Any]:
            version = await insert_version(
                self.price_table, actor, price, now, **{self.name: row_id}
            )
            return version_record(self.price_kind, version, price, now)

        return await records.create(
            actor, self.record, values, shown=shown, then=first_price, address=address
        )

    async def update(
        self, actor: CurrentUser, row_id: int, data: Any, *, address: str = ""
    ) -> None:
        """Change the editable fields (``data.as_dict()``), audited before and after."""
        require_owner(actor)
        before = await self.get(row_id)
        after = data.as_dict()
        if await name_taken(self.table, str(after["name"]), row_id):
            raise Invalid(dict(self.duplicate))
        old = {f: before[f] for f in after}
        await records.update(actor, self.record, row_id, old, after, address=address)

    async def set_active(
        self, actor: CurrentUser, row_id: int, active: bool, *, address: str = ""
    ) -> bool:
        """Deactivate (or reactivate) the row (404 first when there is none)."""
        await self.get(row_id)
        require_owner(actor)
        return await records.set_active(
            actor, self.table, self.name, row_id, active, address=address
        )
