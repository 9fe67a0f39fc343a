"""Which locations an actor may see and change: the one rule every layer asks.

Owners see and change everything. Accountants see everything and change
nothing. Managers see and change their assigned locations. Therapists see
theirs. Clients are tied to locations by their own records (see
``portal.clients.service``), not by this rule.

Services call :func:`ensure_read` / :func:`ensure_write`; lists filter by
:func:`visible_locations`; pages ask :func:`can_write` (through the ``may``
template helper) before offering an action. Framework-free: the errors are
``portal.errors``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

from portal.errors import Forbidden
from portal.identity import MANAGER, OWNER, CurrentUser

__all__ = [
    "can_read",
    "can_write",
    "ensure",
    "ensure_own",
    "ensure_read",
    "ensure_write",
    "list_scope",
    "visible_locations",
    "writable_among",
]


def visible_locations(actor: CurrentUser) -> frozenset[int] | None:
    """Locations the actor may see; None means every location."""
    return None if actor.sees_all_locations else actor.location_ids


def can_read(actor: CurrentUser, location_id: int) -> bool:
    return actor.sees_all_locations or location_id in actor.location_ids


def can_write(actor: CurrentUser, location_id: int) -> bool:
    if actor.role == OWNER:
        return True
    return actor.role == MANAGER and location_id in actor.location_ids


def writable_among(actor: CurrentUser, location_ids: Iterable[int]) -> list[int]:
    """The given locations the actor may change, in the order given."""
    return [loc for loc in location_ids if can_write(actor, loc)]


def ensure_read(actor: CurrentUser, location_id: int) -> None:
    if not can_read(actor, location_id):
        raise Forbidden("You do not have access to this location.")


def ensure_write(actor: CurrentUser, location_id: int) -> None:
    if not can_write(actor, location_id):
        raise Forbidden("You do not have access to this location.")


def ensure(actor: CurrentUser, location_id: int, *, write: bool = False) -> None:
    """:func:`ensure_write` for a change, else :func:`ensure_read` (a record's ``_for`` getter)."""
    (ensure_write if write else ensure_read)(actor, location_id)


def ensure_own(
    actor: CurrentUser,
    row: Mapping[str, Any],
    owners: Mapping[str, str],
    refused: str,
    *,
    write: bool = False,
    read_only: Collection[str] = (),
) -> None:
    """A record someone has (a client's sale, membership or appointment, a therapist's
    appointment), for a ``_for`` getter: an actor whose role is in ``owners`` reaches it
    only when its column ``owners[role]`` holds the actor's id, and only to read it for
    a role in ``read_only``; else ``Forbidden(refused)``. Anyone else: :func:`ensure`
    on its ``location``."""
    column = owners.get(actor.role)
    if column is None:
        ensure(actor, int(row["location"]), write=write)
    elif row[column] != actor.id or (write and actor.role in read_only):
        raise Forbidden(refused)


def list_scope(actor: CurrentUser, location_id: int | None = None) -> list[int] | None:
    """The locations a list shows: the one chosen in its filter if the actor may
    see it, else every one they may see. None means every location; an empty
    list means none (the list is empty)."""
    visible = visible_locations(actor)
    if location_id is not None:
        return [location_id] if visible is None or location_id in visible else []
    return None if visible is None else sorted(visible)
