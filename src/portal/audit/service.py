"""The audit trail: every staff change, who made it, the row before and after."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from portal.audit.tables import AuditLog
from portal.identity import CurrentUser
from portal.pagination import Page, keyset_page
from portal.timeutil import utcnow

# Never copied into the audit trail.
_REDACTED = {"password_hash", "token_hash"}


def _default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)


def snapshot(row: dict[str, Any] | None) -> str:
    if row is None:
        return ""
    clean = {k: ("[redacted]" if k in _REDACTED else v) for k, v in row.items()}
    return json.dumps(clean, default=_default, sort_keys=True)


async def record(
    actor: CurrentUser | None,
    action: str,
    entity: str,
    entity_id: int | str,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    address: str = "",
    location_id: int | None = None,
) -> None:
    """Append one audit row. Call inside the transaction that makes the change.

    The row's clinic is ``location_id``, else the one the change names (a
    location itself, or a ``location`` / ``location_id`` in the row after or before).
    """
    if location_id is None:
        location_id = location_of(entity, entity_id, after, before)
    await AuditLog.insert(
        AuditLog(
            at=utcnow(),
            actor_id=actor.id if actor else None,
            actor_email=actor.email if actor else "system",
            actor_name=(actor.name or "")[:120] if actor else "",
            action=action,
            entity=entity,
            entity_id=str(entity_id),
            before=snapshot(before),
            after=snapshot(after),
            address=address[:64],
            location_id=location_id,
        )
    ).run()


def location_of(entity: str, entity_id: int | str, *rows: dict[str, Any] | None) -> int | None:
    """The clinic a change belongs to, when the change says so."""
    if entity == "location":
        return int(entity_id) if str(entity_id).isdigit() else None
    for row in rows:
        for key in ("location", "location_id"):
            value = (row or {}).get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
    return None


# How actions and records read on the pages ("add_time_off" → "Added time off").
ACTION_LABELS = {
    "create": "Created",
    "update": "Changed",
    "deactivate": "Deactivated",
    "reactivate": "Reactivated",
    "export": "Exported",
    "set_password": "Set a password",
    "revoke": "Revoked",
    "run_now": "Ran now",
    "remove_passkey": "Removed a passkey",
    "rename_passkey": "Renamed a passkey",
    "edit_staff_notes": "Changed the notes for staff",
    "remove_totp": "Removed the authenticator app",
    "recovery_codes": "Made new recovery codes",
    "reset_two_step": "Reset two-step sign-in",
    "use_recovery_code": "Used a recovery code",
    "add_out_of_service": "Took out of service",
    "remove_out_of_service": "Ended out of service",
    "close_period": "Closed a period",
    "set_hours": "Set hours",
    "add_time_off": "Added time off",
    "remove_time_off": "Removed time off",
    "photo": "Changed the photo",
    "remove_photo": "Removed the photo",
    "link_account": "Linked a sign-in account",
    "cancel": "Cancelled",
    "complete": "Completed",
    "no_show": "Recorded a no-show",
    "refund": "Refunded",
    "membership_cancel": "Cancelled a membership",
    "membership_freeze": "Froze a membership",
    "append": "Added",
}
ENTITY_LABELS = {
    "api_token": "API token",
    "closed_period": "Closed period",
    "membership_plan": "Membership plan",
    "treatment_note": "Treatment note",
    "report": "Report",
}


def _words(code: str) -> str:
    text = code.replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def action_label(action: str) -> str:
    return ACTION_LABELS.get(action) or _words(action)


def entity_label(entity: str) -> str:
    return ENTITY_LABELS.get(entity) or _words(entity)


@dataclass(frozen=True)
class Search:
    """The audit log's filters; ``actor_ids`` are the people whose name matched."""

    who: str = ""  # part of an email (names are matched by the caller into actor_ids)
    actor_ids: tuple[int, ...] = ()
    entity: str = ""
    action: str = ""
    location_id: int | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive


async def search(filters: Search, *, after: str | None = None, limit: int = 50) -> Page:
    """The audit log, newest first (by time, then id) in keyset pages, with readable labels."""
    query = AuditLog.select()
    if filters.who:
        pattern = f"%{filters.who}%"
        matched = AuditLog.actor_email.ilike(pattern) | AuditLog.actor_name.ilike(pattern)
        if filters.actor_ids:
            matched = matched | AuditLog.actor_id.is_in(list(filters.actor_ids))
        query = query.where(matched)
    if filters.entity:
        query = query.where(AuditLog.entity == filters.entity)
    if filters.action:
        query = query.where(AuditLog.action == filters.action)
    if filters.location_id is not None:
        query = query.where(AuditLog.location_id == filters.location_id)
    if filters.since is not None:
        query = query.where(AuditLog.at >= filters.since)
    if filters.until is not None:
        query = query.where(AuditLog.at < filters.until)
    page = await keyset_page(query, AuditLog.at, AuditLog.id, after=after, limit=limit,
                             descending=True)  # fmt: skip
    for row in page.rows:
        row["changes"] = changed_fields(row["before"], row["after"])
        row["action_label"] = action_label(row["action"])
        row["entity_label"] = entity_label(row["entity"])
    return page


async def kinds() -> tuple[list[str], list[str]]:
    """The entities and actions the log holds, for its filters."""
    entities = await AuditLog.select(AuditLog.entity).distinct().run()
    actions = await AuditLog.select(AuditLog.action).distinct().run()
    return sorted(r["entity"] for r in entities), sorted(r["action"] for r in actions)


def changed_fields(before: str, after: str) -> list[tuple[str, Any, Any]]:
    """(field, old, new) for every field that differs between two snapshots."""
    old = json.loads(before) if before else {}
    new = json.loads(after) if after else {}
    keys = sorted(set(old) | set(new))
    return [(k, old.get(k), new.get(k)) for k in keys if old.get(k) != new.get(k)]


async def history(entity: str, entity_id: int | str, limit: int = 200) -> list[dict[str, Any]]:
    rows = (
        await AuditLog.select()
        .where((AuditLog.entity == entity) & (AuditLog.entity_id == str(entity_id)))
        .order_by(AuditLog.id, ascending=False)
        .limit(limit)
        .run()
    )
    for row in rows:
        row["changes"] = changed_fields(row["before"], row["after"])
        row["action_label"] = action_label(row["action"])
    return rows
