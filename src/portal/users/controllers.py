from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath
from litestar.response import Template

from portal.auth import twostep
from portal.auth.service import OWNER, ROLE_LABELS, ROLES, CurrentUser
from portal.locations.service import all_locations
from portal.users import service
from portal.users.audit_log import AuditLogController
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
from portal.web.deps import Address, AppSettings, SignedIn
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
    create=service.create_user,
    update=service.update_user,
    as_form=lambda row: {**row, "location_ids": [str(i) for i in row["location_ids"]]},
    context=_form_context,
    created="Account created.",
    saved="Account saved.",
    new_title="New account",
    create_button="Create account",
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
    new_label="New account",
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
    async def two_step_reset(
        self,
        request: Request[Any, Any, Any],
        user: SignedIn,
        client_address: Address,
        settings: AppSettings,
        user_id: FromPath[int],
    ) -> Response[Any]:
        await twostep.reset(settings, user, user_id, address=client_address)
        return redirect(
            request,
            reverse(request, "user_edit", user_id=user_id),
            "Two-step sign-in reset; the member was emailed and signed out.",
        )


ROUTES = [UserController, AuditLogController]
