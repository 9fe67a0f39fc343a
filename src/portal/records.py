"""Records that are deactivated, never deleted: their list query (scope, status
filter, search, keyset page), their creation and edits with their audit lines
(a unique index refusing one is the form's error), and the one compare-and-set
that turns a row off or on with its audit line.

No HTTP here: the admin pages (``web/admin.py``) and the services call it; each
service keeps its own rule for who may do it.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict, Unpack

from portal import db
from portal.access import list_scope
from portal.audit import service as audit
from portal.errors import Invalid, NotFound
from portal.identity import CurrentUser
from portal.pagination import Page, keyset_page
from portal.timeutil import utcnow

# The status filter every admin list offers, in the order shown.
STATUSES = (("active", "Active"), ("inactive", "Inactive"), ("all", "All"))


def status_filter(query: Any, column: Any, status: str) -> Any:
    """Rows of one status; anything but "active" or "inactive" means all of them."""
    if status == "active":
        return query.where(column == True)  # noqa: E712
    if status == "inactive":
        return query.where(column == False)  # noqa: E712
    return query


class ListQuery(TypedDict, total=False):
    """What an admin list is asked for (the keywords ``AdminResource.list_rows``
    passes): a search, a location, a status, the page after a cursor."""

    search: str
    location_id: int | None
    status: str
    after: str | None
    limit: int


async def list_page(
    query: Any,
    table: Any,
    searched: Sequence[Any],
    user: CurrentUser | None = None,
    within: Callable[[list[int]], Any] | None = None,
    **filters: Unpack[ListQuery],
) -> Page:
    """One keyset page of an admin list of ``table`` (by name, then id).

    With ``within`` (the condition "at one of these locations"), only rows at the
    locations the list shows ``user`` (``access.list_scope``: the one filtered on,
    if they may see it, else all they may see); then those of one status
    (active by default), and with the search in any of the ``searched``
    columns (case ignored).
    """
    if within is not None:
        assert user is not None
        scope = list_scope(user, filters.get("location_id"))
        if scope == []:
            return Page(rows=[], next_cursor=None)
        if scope is not None:
            query = query.where(within(scope))
    query = status_filter(query, table.active, filters.get("status", "active"))
    if search := filters.get("search"):
        pattern = f"%{search}%"
        query = query.where(functools.reduce(operator.or_, (c.ilike(pattern) for c in searched)))
    after, limit = filters.get("after"), filters.get("limit", 50)
    return await keyset_page(query, table.name, table.id, after=after, limit=limit)


async def set_active(
    actor: CurrentUser | None,
    table: Any,
    entity: str,
    row_id: int,
    active: bool,
    *,
    address: str = "",
    also: Callable[[], Awaitable[None]] | None = None,
) -> bool:
    """Deactivate (or reactivate) one row: ``UPDATE … WHERE active = expected``.

    Returns False when the row already was in that state (nothing written), so
    two owners pressing the button at once write one change and one audit line.
    ``also`` runs in the same transaction once the row has changed (a
    therapist's sign-in, a user's sessions), before the audit line.
    """
    values: dict[Any, Any] = {table.active: active}
    updated_at = getattr(table, "updated_at", None)
    if updated_at is not None:
        values[updated_at] = utcnow()
    async with db.transaction():
        if not await db.update_where(
            table, values, (table.id == row_id) & (table.active == (not active))
        ):
            return False
        if also is not None:
            await also()
        await audit.record(
            actor,
            "reactivate" if active else "deactivate",
            entity,
            row_id,
            before={"active": not active},
            after={"active": active},
            address=address,
        )
    return True


async def cancel(
    actor: CurrentUser,
    table: Any,
    row_id: int,
    owner: Any,
    owner_id: int,
    *,
    entity: str,
    action: str,
    before: dict[str, Any],
    after: dict[str, Any],
    address: str = "",
) -> bool:
    """Cancel a dated row of ``owner_id`` (time off, an out-of-service window):
    ``UPDATE … SET cancelled_at WHERE cancelled_at IS NULL``. The row stays, so
    history is whole; the audit line is the owner's (``entity``). Returns False
    when it was already cancelled (nothing written), so two presses write one."""
    async with db.transaction():
        cancelled = await db.update_where(
            table,
            {table.cancelled_at: utcnow()},
            (table.id == row_id) & (owner == owner_id) & table.cancelled_at.is_null(),
        )
        if cancelled:
            await audit.record(
                actor, action, entity, owner_id, before=before, after=after, address=address
            )
    return cancelled


async def first(query: Any, missing: str) -> dict[str, Any]:
    """The first row ``query`` (a select) finds; ``NotFound(missing)`` when it finds none."""
    row: dict[str, Any] | None = await query.first().run()
    if row is None:
        raise NotFound(missing)
    return row


async def get(table: Any, row_id: int, missing: str) -> dict[str, Any]:
    """The row of ``table`` with this id, every column; ``NotFound(missing)`` when there is none."""
    return await first(table.select().where(table.id == row_id), missing)


async def get_child(
    table: Any, row_id: int, owner: Any, owner_id: int, missing: str
) -> dict[str, Any]:
    """A row that belongs to ``owner_id`` (a therapist's time off, a room's
    out-of-service window); ``NotFound(missing)`` when there is none, or it
    belongs to another, so an id from one page cannot reach another's rows."""
    return await first(table.select().where((table.id == row_id) & (owner == owner_id)), missing)


async def insert(table: Any, **values: Any) -> int:
    """Insert one row of ``table`` from its column values; its id (``db.insert_row``)."""
    return await db.insert_row(table(**values))


@asynccontextmanager
async def unique_or_invalid(errors: Mapping[str, str]) -> AsyncIterator[None]:
    """The database's unique index refusing a value (a race that passed the
    service's own check, or a check left to the index) as the form's ``errors``."""
    try:
        yield
    except Exception as exc:
        if db.is_unique_violation(exc):
            raise Invalid(dict(errors)) from exc
        raise


@dataclass(frozen=True)
class Kind:
    """A table whose rows are records: its audit entity and the form's error when
    its unique index refuses a row (``taken``), declared once by its service."""

    table: Any
    entity: str
    taken: Mapping[str, str]


async def create(
    actor: CurrentUser,
    kind: Kind,
    values: Mapping[str, Any],
    *,
    shown: Mapping[str, Any],
    address: str = "",
    then: Callable[[int, datetime], Awaitable[Mapping[str, Any]]] | None = None,
) -> int:
    """Insert one active row of ``kind`` (created and updated now) with the audit
    record of its creation (``shown``: what the record says it holds); its id.
    ``then(id, now)`` writes what comes with the row in the same transaction
    (a first price) and returns what the record adds of it. A unique index
    refusing the row is the form's error ``kind.taken``."""
    now = utcnow()
    async with unique_or_invalid(kind.taken), db.transaction():
        row_id = await insert(kind.table, **values, active=True, created_at=now, updated_at=now)
        extra = await then(row_id, now) if then is not None else {}
        after = {"id": row_id, **shown, "active": True, **extra}
        await audit.record(actor, "create", kind.entity, row_id, after=after, address=address)
    return row_id


async def update(
    actor: CurrentUser,
    kind: Kind,
    row_id: int,
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    *,
    address: str = "",
) -> bool:
    """Write the edited columns ``after`` (updated now) with the audit record of
    the change from ``before``; nothing when they are the same (False). A unique
    index refusing it is the form's error ``kind.taken``."""
    old, new, table = dict(before), dict(after), kind.table
    if old == new:
        return False
    async with unique_or_invalid(kind.taken), db.transaction():
        await table.update({**new, "updated_at": utcnow()}).where(table.id == row_id).run()
        await audit.record(
            actor, "update", kind.entity, row_id, before=old, after=new, address=address
        )
    return True
