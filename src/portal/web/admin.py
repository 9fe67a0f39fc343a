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
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, QueryParameter
from litestar.response import Template
from markupsafe import Markup, escape

from portal import db, htmlrows
from portal.access import can_read, can_write
from portal.audit import service as audit
from portal.fields import parse_id
from portal.htmlrows import active_badge, cell, link
from portal.identity import OWNER, CurrentUser
from portal.records import STATUSES
from portal.web.deps import Address, SignedIn, ViewerZone
from portal.web.forms import Flash, Lists, ValidationFailed, Values, read_form, submit
from portal.web.guards import requires_role
from portal.web.pagination import Page
from portal.web.responses import redirect

Row = dict[str, Any]
Choices = Callable[[CurrentUser], Awaitable[Sequence[tuple[Any, str]]]]


@dataclass(frozen=True)
class Column:
    """One column of a list.

    ``field`` is shown as text (``link``: to the row's detail page, ``sub``: a
    muted second line, ``suffix``: a unit); ``html`` writes the cell in Python
    instead, or ``cell`` names one: ``status`` and ``tags`` are built in,
    anything else is a macro of the resource's ``cells`` template, called with
    the row. ``list_body`` writes the rows.
    """

    label: str
    field: str = ""
    cell: str = ""
    link: bool = False
    sub: str = ""
    suffix: str = ""
    numeric: bool = False
    # The cell written in Python (escaped), from the row and the list's context.
    html: Callable[[Row, Mapping[str, Any]], str] | None = None

    def write(
        self,
        row: Row,
        href: Callable[[int], str],
        context: Mapping[str, Any],
        macros: Callable[[str], Callable[[Row], str]],
    ) -> str:
        """The cell's HTML; ``macros`` gives a macro of the resource's ``cells`` by name."""
        if self.html is not None:
            return self.html(row, context)
        if self.cell == "status":
            return active_badge(row["active"])
        if self.cell == "tags":
            tags = "".join(f'<span class="tag">{escape(tag)}</span> ' for tag in row["tags"])
            return tags or '<span class="muted">—</span>'
        if self.cell:
            return str(macros(self.cell)(row))
        value = escape(row[self.field])
        out = link(href(row["id"]), value) if self.link else f"{value}{escape(self.suffix)}"
        if self.sub and row[self.sub]:
            out += f'<br><small class="muted">{escape(row[self.sub])}</small>'
        return out


async def _statuses(_: CurrentUser) -> Sequence[tuple[Any, str]]:
    return STATUSES


@dataclass(frozen=True)
class Filter:
    """A query parameter of a list: a search box, or a select of ``choices``.

    The list's query (``AdminResource.list_rows``) gets it as the keyword
    ``param`` (default: its name), read by ``parse`` (default: as typed).
    """

    name: str
    label: str
    placeholder: str = ""
    choices: Choices | None = None
    any_label: str = ""  # the first option, meaning "no filter" ("All locations")
    default: str = ""
    param: str = ""
    parse: Callable[[str], Any] | None = None

    def value(self, raw: str) -> Any:
        return self.parse(raw) if self.parse is not None else raw


STATUS_FILTER = Filter("status", "Status", choices=_statuses, default="active")


def search(placeholder: str) -> Filter:
    return Filter("q", "Search", placeholder=placeholder, param="search", parse=str.strip)


def location_filter(choices: Choices) -> Filter:
    """A list's location select: the service's ``location_id``."""
    return Filter(
        "location",
        "Location",
        choices=choices,
        any_label="All locations",
        param="location_id",
        parse=parse_id,
    )


@dataclass(frozen=True)
class Roles:
    """Who may use each page (the guards); history is for owners."""

    list: tuple[str, ...]
    detail: tuple[str, ...]
    create: tuple[str, ...]
    edit: tuple[str, ...]
    deactivate: tuple[str, ...]
    history: tuple[str, ...] = (OWNER,)

    @classmethod
    def every(cls, *roles: str, **exceptions: tuple[str, ...]) -> Roles:
        """The same roles for every page but history, save the ``exceptions``
        (``detail=(OWNER, MANAGER, THERAPIST)``): most resources differ in one place."""
        pages = ("list", "detail", "create", "edit", "deactivate")
        return cls(**{**{page: roles for page in pages}, **exceptions})


@dataclass(frozen=True)
class Messages:
    """Flash messages after deactivate/reactivate (``{label}`` is the resource's label)."""

    # A message may depend on the submitted form (a therapist's sign-in too, or not).
    deactivated: str | Callable[[dict[str, str]], str] = "{Label} deactivated."
    already_inactive: str = "The {label} was already inactive."
    reactivated: str = "{Label} reactivated."
    already_active: str = "The {label} was already active."


# The service's own ``set_active(user, row_id, active, *, address, **options) -> changed``;
# ``options`` come from the confirm page's form (``AdminResource.set_active_options``).
SetActive = Callable[..., Awaitable[bool]]


# A flash message after a save: fixed text, or built from the parsed data
# (a name, a warning), optionally with its level (``(text, "warning")``).
Message = Flash | Callable[[Any], Flash]


@dataclass(frozen=True)
class AdminForm:
    """An entity's create and edit form, declared once.

    The generated ``new``/``create``/``edit``/``update`` handlers read the
    form, ``parse`` it (the service's parser, raising ``Invalid``), call
    ``create`` or ``update`` and redirect to the detail page with the
    message; on ``Invalid`` they render the same template again with status
    422, the errors beside their fields and what was typed kept. The
    template extends ``admin/form.html`` and fills in its fields; the page's
    heading, action, back link and button come from here.
    """

    template: str
    labels: Mapping[str, str]  # field → label, for the error summary
    # A new form's values; also the fields a re-shown form keeps from the submission.
    defaults: Mapping[str, Any]
    # (values, lists, row or None when creating) → what create/update take
    parse: Callable[[dict[str, str], dict[str, list[str]], Row | None], Any]
    # The service's own functions: ``create(user, data, *, address) → id`` and
    # ``update(user, id, data, *, address)``.
    create: Callable[..., Awaitable[int]]
    update: Callable[..., Awaitable[object]]
    as_form: Callable[[Row], dict[str, Any]]  # a saved row as form values
    # Unless declared, named after the resource's label (:meth:`named`):
    created: Message | None = None  # "Location “Harbour” created." (the data's ``name``)
    saved: Message = ""  # "Location saved."
    new_title: str = ""  # "New location"
    create_button: str = ""  # "Create location"
    edit_title: Callable[[Row], str] = lambda row: f"Edit {row['name']}"
    save_button: str = "Save changes"
    lists: tuple[str, ...] = ()  # checkbox groups: every checked value
    checkboxes: tuple[str, ...] = ()  # single checkboxes: absent means off
    # A new form's values from the signed-in user and the query (``new_query``).
    initial: Callable[[CurrentUser, Mapping[str, str]], Awaitable[dict[str, Any]]] | None = None
    new_query: tuple[str, ...] = ()
    # What the template needs besides the form: choices, the row's extras.
    context: (
        Callable[[CurrentUser, dict[str, Any], Row | None], Awaitable[dict[str, Any]]] | None
    ) = None
    edit_path: str = "/edit"  # below the row's path; "" when the form is the detail page

    def named(self, label: str) -> AdminForm:
        """The form with the texts it does not declare named after the resource's ``label``."""
        title = label.capitalize()

        def created(data: Any) -> Flash:
            return f"{title} “{data.name}” created."

        return replace(
            self,
            created=self.created or created,
            saved=self.saved or f"{title} saved.",
            new_title=self.new_title or f"New {label}",
            create_button=self.create_button or f"Create {label}",
        )

    def submitted(
        self, values: dict[str, str], lists: dict[str, list[str]], row: Row | None
    ) -> dict[str, Any]:
        """The form as typed, over the row's (or the new form's) values."""
        form = self.as_form(row) if row is not None else dict(self.defaults)
        form.update({k: values[k] for k in self.defaults if k in values})
        form.update({k: lists.get(k, []) for k in self.lists})
        form.update({k: values.get(k, "") for k in self.checkboxes})
        return form


@dataclass(frozen=True)
class AdminResource:
    name: str  # the audit log's entity name: "location", "room", …
    plural: str  # "Locations", the list's heading
    roles: Roles
    # The service's ``get_…_for(user, id, *, write) → row``, scope-checked
    # (:func:`unscoped` for chain-wide rows).
    load: Callable[..., Awaitable[Row]]
    # The service's list query: ``(user, *, after, **filters) → Page`` (the
    # filters by their ``param``); :func:`chainwide` for lists with no location.
    list_rows: Callable[..., Awaitable[Page]]
    columns: tuple[Column, ...]
    filters: tuple[Filter, ...] = ()
    status_filter: bool = True
    # Which locations a row belongs to (None: chain-wide); decides what the
    # pages offer a manager, as ``ensure_location_access`` decides what they may do.
    scope: Callable[[Row], frozenset[int] | None] | None = None
    deactivate_needs_every_location: bool = False
    title: Callable[[Row], str] = lambda row: str(row["name"])
    set_active: SetActive | None = None
    set_active_options: Callable[[dict[str, str]], dict[str, Any]] | None = None
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
    new_label: str = ""  # "New location" (with a form: its new_title)
    empty: str = ""  # "No locations match."
    filter_class: str = ""
    confirm_template: str = "admin/confirm.html"
    confirm_text: str = ""
    confirm_context: Callable[[CurrentUser, Row], dict[str, Any]] | None = None
    messages: Messages = field(default_factory=Messages)
    form: AdminForm | None = None
    # Named after ``name`` and ``plural`` unless declared ("room", "Rooms" →
    # label "room", path "/rooms", path parameter "room_id", route names
    # "room_…" and list route "rooms"): one spelling of the entity, not five.
    label: str = ""  # the confirm page says "Deactivate <label>"
    path: str = ""
    id_param: str = ""
    routes: str = ""  # route name prefix: "room" → room_detail, room_history …
    list_route: str = ""

    def __post_init__(self) -> None:
        derived = {
            "label": self.name,
            "path": f"/{self.plural.lower()}",
            "id_param": f"{self.name}_id",
            "routes": self.name,
            "list_route": self.plural.lower(),
        }
        for attr, value in derived.items():
            if not getattr(self, attr):
                object.__setattr__(self, attr, value)
        if self.form is not None:
            object.__setattr__(self, "form", self.form.named(self.label))
            object.__setattr__(self, "new_label", self.new_label or self.form.new_title)

    def route(self, action: str) -> str:
        if action == "list":
            return self.list_route
        if action == "detail":
            return self.detail_route or f"{self.routes}_detail"
        if action == "confirm":
            return f"{self.routes}_deactivate_confirm"
        return f"{self.routes}_{action}"

    def url(self, request: Request[Any, Any, Any], action: str, row_id: int) -> str:
        """The path of one of a row's pages (``"detail"``, ``"price_add"``), for redirects."""
        return reverse(request, self.route(action), **{self.id_param: row_id})

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


def chainwide(rows: Callable[..., Awaitable[Page]]) -> Callable[..., Awaitable[Page]]:
    """A list query for rows with no location (the catalog's, the accounts'):
    every user of the list sees them all, so the query does not take the user."""

    async def query(_user: CurrentUser, **kw: Any) -> Page:
        return await rows(**kw)

    return query


def unscoped(get: Callable[[int], Awaitable[Row]]) -> Callable[..., Awaitable[Row]]:
    """A loader for rows every user of the pages may see and (by role) change:
    the catalog's, the accounts'. The guards decide; no location to check."""

    async def load(_user: CurrentUser, row_id: int, *, write: bool = False) -> Row:
        return await get(row_id)

    return load


class AdminView:
    """What the generic templates see: the resource, bound to this request."""

    def __init__(
        self, resource: AdminResource, request: Request[Any, Any, Any], user: CurrentUser
    ) -> None:
        self.resource = resource
        self.request = request
        self.user = user

    def __getattr__(self, name: str) -> Any:
        return getattr(self.resource, name)

    def url(self, action: str, row: Row | int | None = None, **params: Any) -> str:
        """The URL of one of the resource's pages, by route name."""
        if row is not None:
            params[self.resource.id_param] = row if isinstance(row, int) else row["id"]
        return reverse(self.request, self.resource.route(action), **params)

    def can(self, action: str, row: Row | None = None) -> bool:
        return self.resource.may(self.user, action, row)

    @property
    def headers(self) -> list[tuple[str, str]]:
        """The list's column headings, with the class of the numeric ones."""
        return [(c.label, "num" if c.numeric else "") for c in self.resource.columns]


def reverse(request: Request[Any, Any, Any], name: str, **params: Any) -> str:
    """A path from a route name (Django's ``reverse``), for redirects."""
    return request.app.route_reverse(name, **params)


_ANY_ID = 987_654_321_012_345


def reverser(request: Request[Any, Any, Any], name: str, param: str) -> Callable[[int], str]:
    """``reverse`` of a route whose one path parameter is an id, as a function of the
    id: the route is reversed once (a list's fifty rows each link to their row)."""
    head, tail = reverse(request, name, **{param: _ANY_ID}).split(str(_ANY_ID))
    return lambda row_id: f"{head}{int(row_id)}{tail}"


def query_param(name: str, default: str | None) -> tuple[Any, Any]:
    """A query parameter's annotation and default, for :func:`signed`."""
    if default is None:
        return Annotated[str | None, QueryParameter(name=name)], None
    return Annotated[str, QueryParameter(name=name)], default


NO_DEFAULT = inspect.Parameter.empty
# What the generated handlers ask Litestar's dependency injection for (web/deps.py).
_INJECTED: dict[str, Any] = {
    "user": SignedIn,
    "client_address": Address,
    "viewer_zone": ViewerZone,
}

# What a generated page does: (request, user, client address or "", the path and
# query parameters by name) → the response.
Act = Callable[[Request[Any, Any, Any], CurrentUser, str, dict[str, Any]], Awaitable[Any]]
# The same once the resource's row of the path is loaded: (request, user, address, row, parameters).
RowAct = Callable[[Request[Any, Any, Any], CurrentUser, str, Row, dict[str, Any]], Awaitable[Any]]


def on_row(res: AdminResource, act: RowAct, *, write: bool) -> Act:
    """``act`` on the row of the path, loaded through the resource's ``load``
    (scope-checked; for changing it when ``write``)."""

    async def loaded(
        request: Request[Any, Any, Any], user: CurrentUser, address: str, kw: dict[str, Any]
    ) -> Any:
        row = await res.load(user, kw[res.id_param], write=write)
        return await act(request, user, address, row, kw)

    loaded.__name__ = act.__name__
    return loaded


def signed(
    act: Act,
    params: list[tuple[str, Any, Any]],
    returns: Any,
    inject: tuple[str, ...] = ("user",),
) -> Any:
    """A handler method running ``act``, with the explicit signature Litestar
    reads (path and query parameters declared, so OpenAPI and the security
    sweep see them; ``inject`` names what web/deps.py provides)."""

    async def handler(
        self: Any, request: Request[Any, Any, Any], user: CurrentUser, **kw: Any
    ) -> Any:
        return await act(request, user, kw.pop("client_address", ""), kw)

    kind = inspect.Parameter.KEYWORD_ONLY
    parameters = [
        inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        inspect.Parameter("request", kind, annotation=Request[Any, Any, Any]),
    ]
    annotations: dict[str, Any] = {"request": Request[Any, Any, Any], "return": returns}
    injected = [(name, _INJECTED[name], NO_DEFAULT) for name in inject]
    for name, annotation, default in [*injected, *params]:
        parameters.append(inspect.Parameter(name, kind, annotation=annotation, default=default))
        annotations[name] = annotation
    handler.__signature__ = inspect.Signature(parameters, return_annotation=returns)  # type: ignore[attr-defined]
    handler.__annotations__ = annotations
    # OpenAPI names each operation after its path and function: the act's name keeps
    # the page and the action of one path apart.
    handler.__name__ = getattr(act, "__name__", "handler")
    return handler


async def render_form(
    res: AdminResource,
    request: Request[Any, Any, Any],
    user: CurrentUser,
    form: dict[str, Any],
    errors: dict[str, str],
    row: Row | None = None,
    *,
    status_code: int = 200,
    **extra: Any,
) -> Template:
    """The resource's form page: new when ``row`` is None, else the row's edit page."""
    spec = res.form
    assert spec is not None, f"{res.name} declares no form"
    view = AdminView(res, request, user)
    own = await spec.context(user, form, row) if spec.context else {}
    page: dict[str, Any]
    if row is None:
        page = {
            "heading": spec.new_title,
            "button": spec.create_button,
            "action": view.url("create"),
            "back_url": view.url("list"),
        }
    else:
        page = {
            "heading": spec.edit_title(row),
            "button": spec.save_button,
            "action": view.url("update", row),
            "back_url": view.url("detail", row),
            res.name: row,
        }
    return Template(
        spec.template,
        context={
            "admin": view,
            "form": form,
            "errors": errors,
            "labels": spec.labels,
            "editing": row is not None,
            **page,
            **own,
            **extra,
        },
        status_code=status_code,
    )


async def save_form(
    res: AdminResource,
    request: Request[Any, Any, Any],
    user: CurrentUser,
    address: str,
    row: Row | None,
) -> Response[Any]:
    """Create (``row`` None) or update from the submitted form; 422 with the form again."""
    spec = res.form
    assert spec is not None, f"{res.name} declares no form"

    async def save(values: Values, lists: Lists) -> tuple[str, Flash]:
        data = spec.parse(values, lists, row)
        if row is None:
            row_id = await spec.create(user, data, address=address)
        else:
            row_id = int(row["id"])
            await spec.update(user, row_id, data, address=address)
        message = (spec.created if row is None else spec.saved) or ""
        url = res.url(request, "detail", row_id)
        return url, message(data) if callable(message) else message

    async def refused(values: Values, lists: Lists, errors: dict[str, str]) -> Template:
        form = spec.submitted(values, lists, row)
        return await render_form(res, request, user, form, errors, row, status_code=422)

    return await submit(request, save, refused)


WRITE = ("user", "client_address")


def _form_handlers(res: AdminResource, spec: AdminForm) -> dict[str, Any]:
    item, path_param = item_route(res)
    create_guard, edit_guard = role_guard(res, "create"), role_guard(res, "edit")

    async def new(request: Request[Any, Any, Any], user: CurrentUser, _: str, kw: Row) -> Template:
        if spec.initial is None:
            form = dict(spec.defaults)
        else:
            form = await spec.initial(user, {n: kw[f"q_{n}"] for n in spec.new_query})
        return await render_form(res, request, user, form, {})

    async def create(
        request: Request[Any, Any, Any], user: CurrentUser, address: str, _: Row
    ) -> Any:
        return await save_form(res, request, user, address, None)

    def edit(request: Request[Any, Any, Any], user: CurrentUser, _: str, row: Row, _kw: Row) -> Any:
        return render_form(res, request, user, spec.as_form(row), {}, row)

    def update(
        request: Request[Any, Any, Any], user: CurrentUser, address: str, row: Row, _: Row
    ) -> Any:
        return save_form(res, request, user, address, row)

    new_params = [(f"q_{n}", *query_param(n, "")) for n in spec.new_query]
    return {
        "new": get("/new", guards=create_guard, name=res.route("new"))(
            signed(new, new_params, Template)
        ),
        "create": post("/", guards=create_guard, name=res.route("create"))(
            signed(create, [], Response[Any], WRITE)
        ),
        "edit": get(item + spec.edit_path, guards=edit_guard, name=res.route("edit"))(
            signed(on_row(res, edit, write=True), [path_param], Template)
        ),
        "update": post(item + spec.edit_path, guards=edit_guard, name=res.route("update"))(
            signed(on_row(res, update, write=True), [path_param], Response[Any], WRITE)
        ),
    }


def list_body(
    res: AdminResource,
    request: Request[Any, Any, Any],
    rows: Sequence[Row],
    context: Mapping[str, Any],
) -> Markup:
    """The list's rows written in Python (``portal.htmlrows``: a long list's fifty rows
    of template calls cost more than the rest of its page); a column that names a
    macro of the resource's ``cells`` template gets it called, with the page's context."""
    linked = any(c.link for c in res.columns)
    href = reverser(request, res.route("detail"), res.id_param) if linked else str
    module: Any = None

    def macros(name: str) -> Callable[[Row], str]:
        nonlocal module
        if module is None:
            env = request.app.template_engine.engine  # type: ignore[union-attr]
            module = env.get_template(res.cells).make_module(vars=dict(context))
        return getattr(module, name)

    def cells(row: Row) -> list[str]:
        return [
            cell(c.write(row, href, context, macros), "num" if c.numeric else "")
            for c in res.columns
        ]

    return htmlrows.rows(rows, cells)


def item_route(res: AdminResource) -> tuple[str, tuple[str, Any, Any]]:
    """The row's path below the resource's, and its path parameter."""
    return f"/{{{res.id_param}:int}}", (res.id_param, FromPath[int], NO_DEFAULT)


def role_guard(res: AdminResource, action: str) -> list[Any]:
    return [requires_role(*getattr(res.roles, action))]


async def _nothing() -> dict[str, Any]:
    return {}


def _list_handler(res: AdminResource) -> Any:
    list_filters = [*res.filters, *([STATUS_FILTER] if res.status_filter else [])]

    async def index(
        request: Request[Any, Any, Any], user: CurrentUser, _: str, query: Row
    ) -> Template:
        values = {f.name: (query.get(f"f_{f.name}") or "") for f in list_filters}
        wanted = {f.param or f.name: f.value(values[f.name]) for f in list_filters}
        choosing = [f for f in list_filters if f.choices is not None]
        # The page, the filters' choices and the list's context: read together.
        page, extra, *choices = await db.concurrently(
            res.list_rows(user, after=query.get("after"), **wanted),
            res.list_context(user) if res.list_context else _nothing(),
            *[f.choices(user) for f in choosing if f.choices is not None],
        )
        chosen = dict(zip([f.name for f in choosing], choices, strict=True))
        shown = [
            {"filter": f, "value": values[f.name], "choices": chosen.get(f.name)}
            for f in list_filters
        ]
        context = {
            "admin": AdminView(res, request, user),
            "page": page,
            "filters": shown,
            "rows": list_body(res, request, page.rows, extra),
        }
        return Template(res.list_template, context={**context, **values, **extra})

    params = [(f"f_{f.name}", *query_param(f.name, f.default)) for f in list_filters]
    params.append(("after", *query_param("after", None)))
    return get("/", guards=role_guard(res, "list"), name=res.list_route)(
        signed(index, params, Template)
    )


def _detail_handler(res: AdminResource) -> Any:
    item, path_param = item_route(res)

    async def detail(
        request: Request[Any, Any, Any], user: CurrentUser, _: str, row: Row, _kw: Row
    ) -> Template:
        extra = await res.detail_context(request, user, row) if res.detail_context else {}
        context = {"admin": AdminView(res, request, user), res.name: row, **extra}
        return Template(res.detail_template, context=context)

    params = [path_param, *[(f"q_{n}", *query_param(n, "")) for n in res.detail_query]]
    return get(item, guards=role_guard(res, "detail"), name=res.route("detail"))(
        signed(on_row(res, detail, write=False), params, Template)
    )


def _active_handlers(res: AdminResource, set_active: SetActive) -> dict[str, Any]:
    """The confirm page, and deactivate / reactivate (compare-and-set in the service)."""
    item, path_param = item_route(res)

    async def confirm(
        request: Request[Any, Any, Any], user: CurrentUser, _: str, row: Row, _kw: Row
    ) -> Template:
        extra = res.confirm_context(user, row) if res.confirm_context else {}
        context = {"admin": AdminView(res, request, user), "row": row, res.name: row}
        return Template(res.confirm_template, context={**context, **extra})

    def change(active: bool) -> Act:
        async def handler(
            request: Request[Any, Any, Any], user: CurrentUser, client_address: str, kw: Row
        ) -> Response[Any]:
            row_id = kw[res.id_param]
            back = res.url(request, "detail", row_id)
            values, _ = await read_form(request)
            options = res.set_active_options(values) if res.set_active_options else {}
            try:
                changed = await set_active(user, row_id, active, address=client_address, **options)
            except ValidationFailed as exc:
                return redirect(request, back, next(iter(exc.errors.values())), "error")
            m = res.messages
            if active:
                again = m.reactivated if changed else m.already_active
                return redirect(request, back, res.message(again, values))
            off = m.deactivated if changed else m.already_inactive
            return redirect(request, back, res.message(off, values), "info")

        handler.__name__ = "reactivate" if active else "deactivate"
        return handler

    guard = role_guard(res, "deactivate")
    handlers = {
        "confirm_deactivate": get(f"{item}/deactivate", guards=guard, name=res.route("confirm"))(
            signed(on_row(res, confirm, write=True), [path_param], Template)
        )
    }
    for action, active in (("deactivate", False), ("reactivate", True)):
        handlers[action] = post(f"{item}/{action}", guards=guard, name=res.route(action))(
            signed(change(active), [path_param], Response[Any], WRITE)
        )
    return handlers


# A form page below a row: (request, row, form, errors) → the template (422 with errors).
RowPage = Callable[
    [Request[Any, Any, Any], Row, dict[str, str], dict[str, str]], Awaitable[Template]
]


@dataclass(frozen=True)
class Records:
    """Dated records kept below a row (a room's out-of-service windows, a
    therapist's time off), declared once: an add form, and removal after a
    confirm page. Their handlers (:func:`records_handlers`) load the row
    through the resource's ``load`` for writing and go back to its detail page.
    """

    path: str  # below the row's path: "out-of-service"
    name: str  # the confirm page's name for the record: "outage"
    initial: Callable[[CurrentUser, Row], dict[str, str]]  # a new form's values
    page: RowPage  # the add form's page
    # Parse the form and add the record: (user, row, values, address) → the flash.
    add: Callable[[CurrentUser, Row, Values, str], Awaitable[Flash]]
    # The service's ``get_…_for(user, row_id, record_id, *, write) → record``.
    load: Callable[..., Awaitable[Row]]
    # The service's ``remove_…(user, row_id, record_id, *, address) → removed``.
    remove: Callable[..., Awaitable[bool]]
    removed: str
    already_removed: str
    confirm_template: str
    routes: str = ""  # route name prefix (default ``name``): room_outage → room_outage_new …
    id_param: str = ""  # the record's path parameter (default ``<name>_id``)

    def __post_init__(self) -> None:
        object.__setattr__(self, "routes", self.routes or self.name)
        object.__setattr__(self, "id_param", self.id_param or f"{self.name}_id")


def adding_handlers(
    res: AdminResource,
    path: str,
    form_path: str,
    routes: tuple[str, str],
    initial: Callable[[CurrentUser, Row], dict[str, str]],
    page: RowPage,
    add: Callable[[CurrentUser, Row, Values, str], Awaitable[Flash]],
) -> dict[str, Any]:
    """A form that adds something to a row (a record, a price version): its
    page at ``path + form_path`` and its POST at ``path`` (route names
    ``routes``), the row loaded for writing, back to its detail page with
    ``add``'s message; the page again (422) on bad input."""
    path_param = item_route(res)[1]
    guard = role_guard(res, "edit")

    def show(request: Request[Any, Any, Any], user: CurrentUser, _: str, row: Row, _kw: Row) -> Any:
        return page(request, row, initial(user, row), {})

    async def save(
        request: Request[Any, Any, Any], user: CurrentUser, address: str, row: Row, _: Row
    ) -> Response[Any]:
        back = res.url(request, "detail", int(row["id"]))

        async def added(values: Values, _: Lists) -> tuple[str, Flash]:
            return back, await add(user, row, values, address)

        async def refused(values: Values, _: Lists, errors: dict[str, str]) -> Template:
            return await page(request, row, values, errors)

        return await submit(request, added, refused)

    return {
        routes[0]: get(path + form_path, guards=guard, name=routes[0])(
            signed(on_row(res, show, write=True), [path_param], Template)
        ),
        routes[1]: post(path, guards=guard, name=routes[1])(
            signed(on_row(res, save, write=True), [path_param], Response[Any], WRITE)
        ),
    }


def records_handlers(res: AdminResource, spec: Records) -> dict[str, Any]:
    """The new/create/confirm-remove/remove handlers of ``spec``, for :func:`admin_controller`'s
    ``extra``; guarded like the row's edit page."""
    item, path_param = item_route(res)
    base = f"{item}/{spec.path}"
    remove_path = f"{base}/{{{spec.id_param}:int}}/remove"
    record_param = (spec.id_param, FromPath[int], NO_DEFAULT)
    guard = role_guard(res, "edit")

    async def confirm(
        request: Request[Any, Any, Any], user: CurrentUser, _: str, row: Row, kw: Row
    ) -> Template:
        record = await spec.load(user, kw[res.id_param], kw[spec.id_param], write=True)
        context = {
            res.name: row,
            spec.name: record,
            "row": record,
            "tz": _zone(row, kw["viewer_zone"]),
        }
        return Template(spec.confirm_template, context=context)

    async def remove(
        request: Request[Any, Any, Any], user: CurrentUser, client_address: str, kw: Row
    ) -> Response[Any]:
        row_id, record_id = kw[res.id_param], kw[spec.id_param]
        removed = await spec.remove(user, row_id, record_id, address=client_address)
        message = spec.removed if removed else spec.already_removed
        return redirect(request, res.url(request, "detail", row_id), message, "info")

    one = [path_param, record_param]
    routes = (f"{spec.routes}_new", f"{spec.routes}_create")
    return {
        **adding_handlers(res, base, "/new", routes, spec.initial, spec.page, spec.add),
        f"confirm_remove_{spec.name}": get(
            remove_path, guards=guard, name=f"{spec.routes}_remove_confirm"
        )(signed(on_row(res, confirm, write=True), one, Template, ("user", "viewer_zone"))),
        f"remove_{spec.name}": post(remove_path, guards=guard, name=f"{spec.routes}_remove")(
            signed(remove, one, Response[Any], WRITE)
        ),
    }


def _zone(row: Any, viewer_zone: str) -> str:
    """The zone a row's times are shown in: its own clinic's, else the reader's."""
    zone = row.get("timezone") if isinstance(row, dict) else getattr(row, "timezone", None)
    return str(zone) if zone else viewer_zone


async def history_page(
    entity: str, entity_id: int, *, title: str, back_url: str, tz: str
) -> Template:
    """A record's history from the audit log, newest first: an admin resource's, and
    those of the records with pages of their own (a client, a treatment note)."""
    rows = await audit.history(entity, entity_id)
    context = {"rows": rows, "title": title, "back_url": back_url, "tz": tz}
    return Template("admin/history.html", context=context)


def _history_handler(res: AdminResource) -> Any:
    item, path_param = item_route(res)

    async def history(
        request: Request[Any, Any, Any], user: CurrentUser, _: str, row: Row, kw: Row
    ) -> Template:
        row_id = int(row["id"])
        return await history_page(
            res.name, row_id, title=f"History of {res.title(row)}",
            back_url=res.url(request, "detail", row_id), tz=_zone(row, kw["viewer_zone"]),
        )  # fmt: skip

    return get(f"{item}/history", guards=role_guard(res, "history"), name=res.route("history"))(
        signed(on_row(res, history, write=False), [path_param], Template, ("user", "viewer_zone"))
    )


def admin_controller(
    resource: AdminResource, extra: Mapping[str, Any] | None = None
) -> type[Controller]:
    """A ``Controller`` with the resource's list, detail, confirm, deactivate,
    reactivate and history handlers (those it declares), its form's, and
    ``extra`` handlers built from another declaration (a price form)."""
    res = resource
    handlers: dict[str, Any] = {"path": res.path, "index": _list_handler(res)}
    if res.detail_template:
        handlers["detail"] = _detail_handler(res)
    if res.set_active is not None:
        handlers.update(_active_handlers(res, res.set_active))
    if res.history:
        handlers["history"] = _history_handler(res)
    if res.form is not None:
        handlers.update(_form_handlers(res, res.form))
    handlers.update(extra or {})
    name = "".join(part.capitalize() for part in res.name.split("_")) + "AdminController"
    return type(name, (Controller,), handlers)
