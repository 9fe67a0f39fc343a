from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, QueryParameter
from litestar.response import Template

from portal.audit import service as audit
from portal.auth import twostep
from portal.auth.service import OWNER, ROLE_LABELS, ROLES, CurrentUser
from portal.auth.tables import User
from portal.fields import parse_id
from portal.locations.service import all_locations
from portal.users import invitations, service
from portal.web.admin import (
    AdminForm,
    AdminResource,
    Column,
    Filter,
    Messages,
    Roles,
    admin_controller,
    chainwide,
    reverse,
    search,
    unscoped,
)
from portal.web.deps import Actor, ViewerZone
from portal.web.guards import requires_owner
from portal.web.responses import redirect


async def _form_context(
    _user: CurrentUser, _form: dict[str, Any], row: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "roles": [(r, ROLE_LABELS[r]) for r in ROLES],
        "locations": await all_locations(active_only=False),
        **({"two_step": await twostep.factors_of(int(row["id"]))} if row else {}),
    }


def _parse(
    values: dict[str, str], lists: dict[str, list[str]], _row: dict[str, Any] | None
) -> service.UserInput:
    location_ids: set[int] = set()
    for raw in lists.get("location_ids", []):
        try:
            location_ids.add(int(raw))
        except ValueError:
            location_ids.add(-1)  # unknown → reported by validation
    return service.UserInput(
        email=values.get("email", ""),
        name=values.get("name", ""),
        role=values.get("role", ""),
        location_ids=frozenset(location_ids),
        password=values.get("password", ""),
    )


USER_FORM = AdminForm(
    template="users/form.html",
    labels={
        "email": "Email",
        "name": "Name",
        "role": "Role",
        "location_ids": "Locations",
        "password": "Password",
    },
    # The password is never shown again, not even after a refused submission.
    defaults={"email": "", "name": "", "role": "manager", "location_ids": []},
    lists=("location_ids",),
    parse=_parse,
    create=invitations.invite_staff,
    update=service.update_user,
    as_form=lambda row: {**row, "location_ids": [str(i) for i in row["location_ids"]]},
    context=_form_context,
    created="Account created. We emailed them an invitation to choose a password.",
    edit_title=lambda row: str(row["email"]),
    save_button="Save account",
    edit_path="",  # an account's page is its form
)


async def _role_choices(_: CurrentUser) -> list[tuple[Any, str]]:
    return [(r, ROLE_LABELS[r]) for r in ROLES]


USERS = AdminResource(
    name="user",
    label="account",
    plural="Users",
    detail_route="user_edit",  # an account's page is its form
    roles=Roles.every(OWNER),
    load=unscoped(service.get_user),
    list_rows=chainwide(service.list_users),
    columns=(
        Column("Email", "email", link=True),
        Column("Name", "name"),
        Column("Role", cell="role"),
        Column("Status", cell="status"),
    ),
    filters=(
        search("Email or name"),
        Filter("role", "Role", choices=_role_choices, any_label="All roles"),
    ),
    status_filter=False,
    title=lambda row: str(row["email"]),
    set_active=service.set_active,
    cells="users/_cells.html",
    empty="No accounts match.",
    confirm_text="The account can no longer sign in and its open sessions end now. Its "
    "history is kept; an owner can reactivate it.",
    messages=Messages(
        deactivated="Account deactivated; its sessions were ended.",
        already_inactive="Already inactive.",
        reactivated="Account reactivated.",
        already_active="Already active.",
    ),
    form=USER_FORM,
)


class UserController(admin_controller(USERS)):  # type: ignore[misc]
    """The admin grammar from ``USERS``, plus the account form (its detail page)."""

    guards = [requires_owner]

    @get("/{user_id:int}/two-step/reset", name="user_two_step_reset_confirm")
    async def two_step_reset_confirm(
        self, request: Request[Any, Any, Any], user_id: FromPath[int]
    ) -> Template:
        user = await service.get_user(user_id)
        return Template(
            "auth/two_step_confirm.html",
            context={
                "title": f"Reset two-step sign-in for {user['email']}?",
                "text": "Their passkeys, authenticator app and recovery codes are removed and "
                "their sessions end; they are emailed. They sign in with their password and, "
                "if their role requires it, set up a new second step at once.",
                "action": reverse(request, "user_two_step_reset", user_id=user_id),
                "button": "Reset two-step sign-in",
                "cancel_url": reverse(request, "user_edit", user_id=user_id),
            },
        )

    @post("/{user_id:int}/two-step/reset", name="user_two_step_reset")
    async def two_step_reset(self, acting: Actor, user_id: FromPath[int]) -> Response[Any]:
        await twostep.reset(acting.settings, acting.user, user_id, address=acting.address)
        return redirect(
            acting.request,
            reverse(acting.request, "user_edit", user_id=user_id),
            "Two-step sign-in reset; the member was emailed and signed out.",
        )


# -- the owners' audit log: every recorded change across the chain, searchable by who,
# what, location and dates, newest first in keyset pages --------------------------------

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


ROUTES = [UserController, AuditLogController]
