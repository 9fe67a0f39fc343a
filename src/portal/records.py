"""Records that are deactivated, never deleted: the status filter of their lists
and the one compare-and-set that turns a row off or on with its audit line.

No HTTP here: the admin pages (``web/admin.py``) and the services call it; each
service keeps its own rule for who may do it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from portal import db
from portal.audit import service as audit
from portal.identity import CurrentUser
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
        changed = (
            await table.update(values)
            .where((table.id == row_id) & (table.active == (not active)))
            .returning(table.id)
            .run()
        )
        if not changed:
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
