"""One admin grammar: a resource declared once, its pages built from the declaration.

Django's ``ModelAdmin`` is the model. An :class:`AdminResource` names an
entity's list (columns, filters; the status filter comes with it), how a row
is loaded with its location-scope check, which locations a row belongs to,
and which of detail / confirm / deactivate / reactivate / history it has.
:func:`admin_controller` turns it into a Litestar ``Controller`` whose
handlers render one set of templates (``admin/list.html``,
``admin/confirm.html``, ``admin/history.html``); the entity keeps its forms
and the pieces only it has (a therapist's hours, a room's out-of-service
windows) in its own controller and templates, which extend the generic ones.

Every generated handler has its ``requires_role`` guard from the declaration,
every link is built from a route name, and rows are always loaded through
the entity's own ``load`` (which calls ``ensure_location_access``).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, QueryParameter
from litestar.response import Template

from portal.access import can_read, can_write
from portal.audit import service as audit
from portal.identity import OWNER, CurrentUser
from portal.records import STATUSES
from portal.web.forms import ValidationFailed, read_form
from portal.web.guards import current_user, requires_role
from portal.web.pagination import Page
from portal.web.responses import client_address, redirect

Row = dict[str, Any]
Choices = Callable[[CurrentUser], Awaitable[Sequence[tuple[Any, str]]]]


@dataclass(frozen=True)
class Column:
    """One column of a list.

    ``field`` is shown as text (``link``: to the row's detail page, ``sub``: a
    muted second line, ``suffix``: a unit); ``cell`` names a macro instead:
    ``status`` and ``tags`` are built in, anything else is a macro of the
    resource's ``cells`` template, called with the row.
    """

    label: str
    field: str = ""
    cell: str = ""
    link: bool = False
    sub: str = ""
    suffix: str = ""
    numeric: bool = False


async def _statuses(_: CurrentUser) -> Sequence[tuple[Any, str]]:
    return STATUSES


@dataclass(frozen=True)
class Filter:
    """A query parameter of a list: a search box, or a select of ``choices``."""

    name: str
    label: str
    placeholder: str = ""
    choices: Choices | None = None
    any_label: str = ""  # the first option, meaning "no filter" ("All locations")
    default: str = ""


STATUS_FILTER = Filter("status", "Status", choices=_statuses, default="active")


def search(placeholder: str) -> Filter:
    return Filter("q", "Search", placeholder=placeholder)


@dataclass(frozen=True)
class Roles:
    """Who may use each page (the guards); history is for owners."""

    list: tuple[str, ...]
    detail: tuple[str, ...]
    create: tuple[str, ...]
    edit: tuple[str, ...]
    deactivate: tuple[str, ...]
    history: tuple[str, ...] = (OWNER,)


@dataclass(frozen=True)
class Messages:
    """Flash messages after deactivate/reactivate (``{label}`` is the resource's label)."""

    # A message may depend on the submitted form (a therapist's sign-in too, or not).
    deactivated: str | Callable[[dict[str, str]], str] = "{Label} deactivated."
    already_inactive: str = "The {label} was already inactive."
    reactivated: str = "{Label} reactivated."
    already_active: str = "The {label} was already active."


# ``set_active(user, row_id, active, form, address) -> changed``
SetActive = Callable[[CurrentUser, int, bool, dict[str, str], str], Awaitable[bool]]


@dataclass(frozen=True)
class AdminResource:
    name: str  # the audit log's entity name: "location", "room", …
    label: str  # "location"; the confirm page says "Deactivate location"
    plural: str  # "Locations", the list's heading
    path: str  # "/locations"
    id_param: str  # "location_id", the path parameter
    routes: str  # route name prefix: "location" → location_detail, location_history …
    list_route: str  # "locations"
    roles: Roles
    load: Callable[
        [CurrentUser, int, bool], Awaitable[Row]
    ]  # (user, id, write) → row, scope-checked
    list_rows: Callable[[CurrentUser, dict[str, str], str | None], Awaitable[Page]]
    columns: tuple[Column, ...]
    filters: tuple[Filter, ...] = ()
    status_filter: bool = True
    # Which locations a row belongs to (None: chain-wide); decides what the
    # pages offer a manager, as ``ensure_location_access`` decides what they may do.
    scope: Callable[[Row], frozenset[int] | None] | None = None
    deactivate_needs_every_location: bool = False
    title: Callable[[Row], str] = lambda row: str(row["name"])
    set_active: SetActive | None = None
    history: bool = True
    detail_route: str = ""  # default "<routes>_detail"
    detail_template: str = ""  # set → a generic detail handler renders it
    detail_context: (
        Callable[[Request[Any, Any, Any], CurrentUser, Row], Awaitable[dict[str, Any]]] | None
    ) = None
    detail_query: tuple[str, ...] = ()  # query parameters the detail page reads
    list_template: str = "admin/list.html"
    list_context: Callable[[CurrentUser], Awaitable[dict[str, Any]]] | None = None
    cells: str = "admin/_cells.html"
    new_label: str = ""  # "New location"
    empty: str = ""  # "No locations match."
    filter_class: str = ""
    confirm_template: str = "admin/confirm.html"
    confirm_text: str = ""
    confirm_context: Callable[[CurrentUser, Row], dict[str, Any]] | None = None
    messages: Messages = field(default_factory=Messages)

    def route(self, action: str) -> str:
        if action == "list":
            return self.list_route
        if action == "detail":
            return self.detail_route or f"{self.routes}_detail"
        if action == "confirm":
            return f"{self.routes}_deactivate_confirm"
        return f"{self.routes}_{action}"

    def message(self, text: str | Callable[[dict[str, str]], str], form: dict[str, str]) -> str:
        if callable(text):
            return text(form)
        return text.format(label=self.label, Label=self.label.capitalize())

    def may(self, user: CurrentUser, action: str, row: Row | None = None) -> bool:
        """What the pages offer: the action's roles, then the row's locations."""
        roles = getattr(self.roles, "deactivate" if action in ("confirm", "reactivate") else action)
        if user.role not in roles:
            return False
        locations = self.scope(row) if row is not None and self.scope is not None else None
        if locations is None or user.role == OWNER:
            return True
        write = action not in ("list", "detail", "history")
        allowed = [(can_write if write else can_read)(user, loc) for loc in locations]
        if action in ("deactivate", "reactivate") and self.deactivate_needs_every_location:
            return bool(allowed) and all(allowed)
        return any(allowed)


class AdminView:
    """What the generic templates see: the resource, bound to this request."""

    def __init__(self, resource: AdminResource, request: Request[Any, Any, Any]) -> None:
        self.resource = resource
        self.request = request
        self.user = current_user(request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.resource, name)

    def url(self, action: str, row: Row | int | None = None, **params: Any) -> str:
        """The URL of one of the resource's pages, by route name."""
        if row is not None:
            params[self.resource.id_param] = row if isinstance(row, int) else row["id"]
        return reverse(self.request, self.resource.route(action), **params)

    def can(self, action: str, row: Row | None = None) -> bool:
        return self.resource.may(self.user, action, row)


def reverse(request: Request[Any, Any, Any], name: str, **params: Any) -> str:
    """A path from a route name (Django's ``reverse``), for redirects."""
    return request.app.route_reverse(name, **params)


def _query(name: str, default: str | None) -> tuple[Any, Any]:
    if default is None:
        return Annotated[str | None, QueryParameter(name=name)], None
    return Annotated[str, QueryParameter(name=name)], default


def _signed(fn: Callable[..., Any], params: list[tuple[str, Any, Any]], returns: Any) -> Any:
    """Give ``fn(self, request, **kw)`` the explicit signature Litestar reads
    (path and query parameters declared, so OpenAPI and the security sweep see them)."""
    kind = inspect.Parameter.KEYWORD_ONLY
    parameters = [
        inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        inspect.Parameter("request", kind, annotation=Request[Any, Any, Any]),
    ]
    annotations: dict[str, Any] = {"request": Request[Any, Any, Any], "return": returns}
    for name, annotation, default in params:
        parameters.append(inspect.Parameter(name, kind, annotation=annotation, default=default))
        annotations[name] = annotation
    fn.__signature__ = inspect.Signature(parameters, return_annotation=returns)  # type: ignore[attr-defined]
    fn.__annotations__ = annotations
    return fn


_NO_DEFAULT = inspect.Parameter.empty


def admin_controller(resource: AdminResource) -> type[Controller]:
    """A ``Controller`` with the resource's list, detail, confirm, deactivate,
    reactivate and history handlers (those it declares)."""
    res = resource
    item = f"/{{{res.id_param}:int}}"
    path_param = (res.id_param, FromPath[int], _NO_DEFAULT)
    handlers: dict[str, Any] = {"path": res.path}

    def guard(action: str) -> list[Any]:
        return [requires_role(*getattr(res.roles, action))]

    list_filters = [*res.filters, *([STATUS_FILTER] if res.status_filter else [])]

    async def index(self: Any, request: Request[Any, Any, Any], **query: Any) -> Template:
        user = current_user(request)
        values = {f.name: (query.get(f"f_{f.name}") or "") for f in list_filters}
        page = await res.list_rows(user, values, query.get("after"))
        shown = []
        for f in list_filters:
            choices = await f.choices(user) if f.choices is not None else None
            shown.append({"filter": f, "value": values[f.name], "choices": choices})
        extra = await res.list_context(user) if res.list_context else {}
        return Template(
            res.list_template,
            context={
                "admin": AdminView(res, request),
                "page": page,
                "filters": shown,
                **values,
                **extra,
            },
        )

    index_params = [(f"f_{f.name}", *_query(f.name, f.default)) for f in list_filters]
    index_params.append(("after", *_query("after", None)))
    handlers["index"] = get("/", guards=guard("list"), name=res.list_route)(
        _signed(index, index_params, Template)
    )

    if res.detail_template:

        async def detail(self: Any, request: Request[Any, Any, Any], **kw: Any) -> Template:
            user = current_user(request)
            row = await res.load(user, kw[res.id_param], False)
            extra = await res.detail_context(request, user, row) if res.detail_context else {}
            return Template(
                res.detail_template,
                context={"admin": AdminView(res, request), res.name: row, **extra},
            )

        detail_params = [path_param, *[(f"q_{n}", *_query(n, "")) for n in res.detail_query]]
        handlers["detail"] = get(item, guards=guard("detail"), name=res.route("detail"))(
            _signed(detail, detail_params, Template)
        )

    if res.set_active is not None:
        set_active = res.set_active

        async def confirm(self: Any, request: Request[Any, Any, Any], **kw: Any) -> Template:
            user = current_user(request)
            row = await res.load(user, kw[res.id_param], True)
            extra = res.confirm_context(user, row) if res.confirm_context else {}
            return Template(
                res.confirm_template,
                context={"admin": AdminView(res, request), "row": row, res.name: row, **extra},
            )

        handlers["confirm_deactivate"] = get(
            f"{item}/deactivate", guards=guard("deactivate"), name=res.route("confirm")
        )(_signed(confirm, [path_param], Template))

        def change(active: bool) -> Callable[..., Awaitable[Response[Any]]]:
            async def handler(
                self: Any, request: Request[Any, Any, Any], **kw: Any
            ) -> Response[Any]:
                row_id = kw[res.id_param]
                back = reverse(request, res.route("detail"), **{res.id_param: row_id})
                values, _ = await read_form(request)
                try:
                    changed = await set_active(
                        current_user(request), row_id, active, values, client_address(request)
                    )
                except ValidationFailed as exc:
                    return redirect(request, back, next(iter(exc.errors.values())), "error")
                m = res.messages
                if active:
                    again = m.reactivated if changed else m.already_active
                    return redirect(request, back, res.message(again, values))
                off = m.deactivated if changed else m.already_inactive
                return redirect(request, back, res.message(off, values), "info")

            return handler

        for action, active in (("deactivate", False), ("reactivate", True)):
            handlers[action] = post(
                f"{item}/{action}", guards=guard("deactivate"), name=res.route(action)
            )(_signed(change(active), [path_param], Response[Any]))

    if res.history:

        async def history(self: Any, request: Request[Any, Any, Any], **kw: Any) -> Template:
            row_id = kw[res.id_param]
            row = await res.load(current_user(request), row_id, False)
            return Template(
                "admin/history.html",
                context={
                    "rows": await audit.history(res.name, row_id),
                    "title": f"History of {res.title(row)}",
                    "back_url": reverse(request, res.route("detail"), **{res.id_param: row_id}),
                },
            )

        handlers["history"] = get(
            f"{item}/history", guards=guard("history"), name=res.route("history")
        )(_signed(history, [path_param], Template))

    name = "".join(part.capitalize() for part in res.name.split("_")) + "AdminController"
    return type(name, (Controller,), handlers)
