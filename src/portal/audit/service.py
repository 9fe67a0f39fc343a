"""The audit trail: every staff change, who made it, the row before and after."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from portal.audit.tables import AuditLog
from portal.identity import CurrentUser
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
) -> None:
    """Append one audit row. Call inside the transaction that makes the change."""
    await AuditLog.insert(
        AuditLog(
            at=utcnow(),
            actor_id=actor.id if actor else None,
            actor_email=actor.email if actor else "system",
            action=action,
            entity=entity,
            entity_id=str(entity_id),
            before=snapshot(before),
            after=snapshot(after),
            address=address[:64],
        )
    ).run()


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
    return rows
