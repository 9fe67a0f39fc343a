"""The owners' audit log: every recorded change across the chain, searchable by who,
what, location and dates, newest first in keyset pages."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from litestar import Controller, Request, get
from litestar.params import QueryParameter
from litestar.response import Template

from portal.audit import service as audit
from portal.auth.tables import User
from portal.fields import parse_id
from portal.locations.service import all_locations
from portal.web.deps import ViewerZone
from portal.web.guards import requires_owner

FILTERS = ("who", "what", "action", "location", "from", "to")


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        return None


def _midnight(day: date, zone: str) -> datetime:
    return datetime.combine(day, time(), ZoneInfo(zone)).astimezone(UTC)


async def _people(who: str) -> tuple[int, ...]:
    """The accounts whose name matches: changes recorded before names were kept."""
    if not who:
        return ()
    rows = await User.select(User.id).where(User.name.ilike(f"%{who}%")).limit(200).run()
    return tuple(int(r["id"]) for r in rows)


async def _names(rows: list[dict[str, Any]]) -> None:
    """Each row's actor by name (their account's, for rows recorded without one)."""
    missing = {r["actor_id"] for r in rows if not r.get("actor_name") and r["actor_id"]}
    names: dict[int, str] = {}
    if missing:
        query = User.select(User.id, User.name).where(User.id.is_in(list(missing)))
        names = {int(r["id"]): str(r["name"] or "") for r in await query.run()}
    for row in rows:
        row["actor_name"] = row.get("actor_name") or names.get(row["actor_id"] or 0, "")


class AuditLogController(Controller):
    path = "/audit"
    guards = [requires_owner]

    @get("/", name="audit_log")
    async def index(
        self,
        request: Request[Any, Any, Any],
        viewer_zone: ViewerZone,
        after: Annotated[str | None, QueryParameter(name="after")] = None,
    ) -> Template:
        """Filtered by the query's ``who``, ``what``, ``action``, ``location``, ``from``
        and ``to`` (the reader's local days)."""
        f = {key: request.query_params.get(key, "").strip()[:120] for key in FILTERS}
        first, last = _day(f["from"]), _day(f["to"])
        filters = audit.Search(
            who=f["who"],
            actor_ids=await _people(f["who"]),
            entity=f["what"][:40],
            action=f["action"][:40],
            location_id=parse_id(f["location"]),
            since=_midnight(first, viewer_zone) if first else None,
            until=_midnight(last + timedelta(days=1), viewer_zone) if last else None,
        )
        page = await audit.search(filters, after=after)
        await _names(page.rows)
        entities, actions = await audit.kinds()
        locations = await all_locations(False)
        return Template(
            "users/audit_log.html",
            context={
                "page": page,
                "f": f,
                "entities": [(e, audit.entity_label(e)) for e in entities],
                "actions": [(a, audit.action_label(a)) for a in actions],
                "locations": [(loc["id"], loc["name"]) for loc in locations],
                "location_names": {loc["id"]: loc["name"] for loc in locations},
                "tz": viewer_zone,
            },
        )  # fmt: skip
