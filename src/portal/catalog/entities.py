"""What creating and editing a service or a package have in common.

Owners only; names unique regardless of case (the database's ``lower(name)``
index has the last word: a race that passes the first check is refused by
it, with the same message); a row created with its first price version and
one audit record; an edit that changes nothing writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from piccolo.query.functions.string import Lower

from portal import records
from portal.auth.service import OWNER, CurrentUser
from portal.errors import Forbidden, Invalid

# A service or package table: the helpers below work on either.
Named = Any


def require_owner(actor: CurrentUser) -> None:
    if actor.role != OWNER:
        raise Forbidden("Only owners change services, packages and base prices.")


async def name_taken(table: Named, name: str, exclude_id: int | None) -> bool:
    """Names are unique regardless of case (as the database's lower(name) index says)."""
    query = table.exists().where(Lower(table.name) == name.lower())
    if exclude_id is not None:
        query = query.where(table.id != exclude_id)
    return bool(await query.run())


async def update_entity(
    actor: CurrentUser,
    table: Named,
    entity: str,
    before: dict[str, Any],
    data: dict[str, Any],
    *,
    duplicate: Mapping[str, str],
    address: str,
) -> None:
    """Change the editable fields (``data``'s keys) of a row, audited before and after."""
    row_id = int(before["id"])
    if await name_taken(table, str(data["name"]), row_id):
        raise Invalid(dict(duplicate))
    old = {f: before[f] for f in data}
    if old == data:
        return
    await records.update(actor, table, entity, row_id, old, data, taken=duplicate, address=address)
