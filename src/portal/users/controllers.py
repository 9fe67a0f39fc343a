from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, QueryParameter
from litestar.response import Template

from portal.audit import service as audit
from portal.auth.service import ROLE_LABELS, ROLES
from portal.locations.service import all_locations
from portal.users import service
from portal.web.forms import ValidationFailed, read_form
from portal.web.guards import current_user, requires_owner
from portal.web.responses import redirect


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


class UserController(Controller):
    path = "/users"
    guards = [requires_owner]

    @get("/", name="users")
    async def index(
        self,
        q: Annotated[str, QueryParameter(name="q")] = "",
        role: Annotated[str, QueryParameter(name="role")] = "",
        after: Annotated[str | None, QueryParameter(name="after")] = None,
    ) -> Template:
        page = await service.list_users(search=q.strip(), role=role, after=after)
        return Template(
            "users/list.html",
            context={"page": page, "q": q, "role": role, "roles": ROLES},
        )

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
        return redirect(request, f"/users/{user_id}", "Account created.")

    @get("/{user_id:int}", name="user_edit")
    async def edit(self, user_id: FromPath[int]) -> Template:
        user = await service.get_user(user_id)
        form = {**user, "location_ids": [str(i) for i in user["location_ids"]]}
        return Template("users/form.html", context=await _form_context(form, {}, user=user))

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
                context=await _form_context(_form_values(values, multi), exc.errors, user=user),
                status_code=422,
            )
        return redirect(request, f"/users/{user_id}", "Account saved.")

    @get("/{user_id:int}/deactivate", name="user_deactivate_confirm")
    async def confirm_deactivate(self, user_id: FromPath[int]) -> Template:
        return Template("users/deactivate.html", context={"user": await service.get_user(user_id)})

    @post("/{user_id:int}/deactivate", name="user_deactivate")
    async def deactivate(
        self, request: Request[Any, Any, Any], user_id: FromPath[int]
    ) -> Response[Any]:
        try:
            changed = await service.set_active(current_user(request), user_id, False)
        except ValidationFailed as exc:
            return redirect(request, f"/users/{user_id}", exc.errors["active"], "error")
        message = (
            "Account deactivated; its sessions were ended." if changed else "Already inactive."
        )
        return redirect(request, f"/users/{user_id}", message, "info")

    @post("/{user_id:int}/reactivate", name="user_reactivate")
    async def reactivate(
        self, request: Request[Any, Any, Any], user_id: FromPath[int]
    ) -> Response[Any]:
        changed = await service.set_active(current_user(request), user_id, True)
        return redirect(
            request, f"/users/{user_id}", "Account reactivated." if changed else "Already active."
        )

    @get("/{user_id:int}/history", name="user_history")
    async def history(self, user_id: FromPath[int]) -> Template:
        user = await service.get_user(user_id)
        return Template(
            "audit/history.html",
            context={
                "rows": await audit.history("user", user_id),
                "title": f"History of {user['email']}",
                "back_url": f"/users/{user_id}",
            },
        )


ROUTES = [UserController]
