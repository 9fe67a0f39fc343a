from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath
from litestar.response import Template

from portal.auth import twostep
from portal.auth.service import OWNER, ROLE_LABELS, ROLES, CurrentUser
from portal.locations.service import all_locations
from portal.users import service
from portal.web.admin import (
    AdminResource,
    AdminView,
    Column,
    Filter,
    Messages,
    Roles,
    admin_controller,
    reverse,
    search,
)
from portal.web.forms import ValidationFailed, read_form
from portal.web.guards import current_user, requires_owner
from portal.web.pagination import Page
from portal.web.responses import client_address, redirect


async def _form_context(
    form: dict[str, Any], errors: dict[str, str], **extra: Any
) -> dict[str, Any]:
    return {
        "form": form,
        "errors": errors,
        "roles": [(r, ROLE_LABELS[r]) for r in ROLES],
        "locations": await all_locations(active_only=False),
        **extra,
    }


def _input(values: dict[str, str], multi: dict[str, list[str]]) -> service.UserInput:
    location_ids: set[int] = set()
    for raw in multi.get("location_ids", []):
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


def _form_values(values: dict[str, str], multi: dict[str, list[str]]) -> dict[str, Any]:
    return {
        "email": values.get("email", ""),
        "name": values.get("name", ""),
        "role": values.get("role", ""),
        "location_ids": [v for v in multi.get("location_ids", [])],
    }


async def _list_rows(user: CurrentUser, filters: dict[str, str], after: str | None) -> Page:
    return await service.list_users(search=filters["q"].strip(), role=filters["role"], after=after)


async def _role_choices(_: CurrentUser) -> list[tuple[Any, str]]:
    return [(r, ROLE_LABELS[r]) for r in ROLES]


async def _load(_: CurrentUser, user_id: int, write: bool) -> dict[str, Any]:
    return await service.get_user(user_id)


async def _set_active(
    user: CurrentUser, user_id: int, active: bool, _: dict[str, str], address: str
) -> bool:
    return await service.set_active(user, user_id, active)


USERS = AdminResource(
    name="user",
    label="account",
    plural="Users",
    path="/users",
    id_param="user_id",
    routes="user",
    list_route="users",
    detail_route="user_edit",  # an account's page is its form
    roles=Roles(
        list=(OWNER,), detail=(OWNER,), create=(OWNER,), edit=(OWNER,), deactivate=(OWNER,)
    ),
    load=_load,
    list_rows=_list_rows,
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
    set_active=_set_active,
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
)


class UserController(admin_controller(USERS)):  # type: ignore[misc]
    """The admin grammar from ``USERS``, plus the account form (its detail page)."""

    guards = [requires_owner]

    @get("/new", name="user_new")
    async def new(self) -> Template:
        form = {"email": "", "name": "", "role": "manager", "location_ids": []}
        return Template("users/form.html", context=await _form_context(form, {}))

    @post("/", name="user_create")
    async def create(self, request: Request[Any, Any, Any]) -> Response[Any]:
        values, multi = await read_form(request)
        try:
            user_id = await service.create_user(current_user(request), _input(values, multi))
        except ValidationFailed as exc:
            return Template(
                "users/form.html",
                context=await _form_context(_form_values(values, multi), exc.errors),
                status_code=422,
            )
        return redirect(request, reverse(request, "user_edit", user_id=user_id), "Account created.")

    @get("/{user_id:int}", name="user_edit")
    async def edit(self, request: Request[Any, Any, Any], user_id: FromPath[int]) -> Template:
        user = await service.get_user(user_id)
        form = {**user, "location_ids": [str(i) for i in user["location_ids"]]}
        return Template(
            "users/form.html",
            context=await _form_context(
                form,
                {},
                user=user,
                admin=AdminView(USERS, request),
                two_step=await twostep.factors_of(user_id),
            ),
        )

    @post("/{user_id:int}", name="user_update")
    async def update(
        self, request: Request[Any, Any, Any], user_id: FromPath[int]
    ) -> Response[Any]:
        user = await service.get_user(user_id)
        values, multi = await read_form(request)
        try:
            await service.update_user(current_user(request), user_id, _input(values, multi))
        except ValidationFailed as exc:
            return Template(
                "users/form.html",
                context=await _form_context(
                    _form_values(values, multi),
                    exc.errors,
                    user=user,
                    admin=AdminView(USERS, request),
                ),
                status_code=422,
            )
        return redirect(request, reverse(request, "user_edit", user_id=user_id), "Account saved.")

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
        self, request: Request[Any, Any, Any], user_id: FromPath[int]
    ) -> Response[Any]:
        await twostep.reset(
            request.app.state.settings,
            current_user(request),
            user_id,
            address=client_address(request),
        )
        return redirect(
            request,
            reverse(request, "user_edit", user_id=user_id),
            "Two-step sign-in reset; the member was emailed and signed out.",
        )


ROUTES = [UserController]
