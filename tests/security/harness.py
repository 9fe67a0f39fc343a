"""Shared plumbing of the security suite: a world of every role, signed-in
clients, the route table, an HTML form parser and the escaping check.

The world and the path parameters come from the access matrix's providers
(``tests.matrix``), so every route the matrix reaches, the security suite
reaches too, and a new route with a new parameter needs one provider only.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncIterator, Awaitable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

import httpx

from portal.auth.service import ACCOUNTANT, CLIENT, MANAGER, OWNER, THERAPIST, open_session
from portal.settings import Settings
from portal.timeutil import utcnow
from portal.web.guards import route_roles
from tests import factories
from tests.integration.test_access_matrix import PARAM_RE, portal_routes
from tests.matrix import Param, World, provide_all

ROLES = (OWNER, MANAGER, ACCOUNTANT, THERAPIST, CLIENT)

# One string that is markup, an attribute break-out, a script URL and a
# template expression at once: if any of them survives unescaped, the page is
# vulnerable. "xss49zz" would be the template expression evaluated.
PAYLOAD = (
    "javascript:alert(1)//'\"><img src=x onerror=alert(1)><script>alert(1)</script>xss{{7*7}}zz"
)
TEMPLATE_MARKER = "xss{{7*7}}zz"
EVALUATED_MARKER = "xss49zz"
SCRIPT_URL_ATTRS = {"href", "src", "action", "formaction", "xlink:href", "poster", "data"}

_addresses = itertools.count(10)


@dataclass
class SecurityWorld:
    world: World
    params: dict[str, Param]
    settings: Settings
    app: Any
    routes: list[tuple[str, str, Any]] = field(default_factory=list)
    # Pages of objects made for the security suite (see ``_extras``).
    extra_pages: list[str] = field(default_factory=list)
    # What a manager of the own location must never see (see ``_other_markers``).
    other_markers: list[str] = field(default_factory=list)
    openapi: dict[str, Any] | None = None

    def account(self, role: str) -> factories.Account:
        return self.world.accounts[role]

    def url(self, path: str, variant: str = "own") -> str:
        return PARAM_RE.sub(lambda m: str(getattr(self.params[m.group(1)], variant)), path)

    def get_routes(self) -> list[tuple[str, Any]]:
        return [(path, handler) for path, method, handler in self.routes if method == "GET"]

    def route_of(self, method: str, url: str) -> tuple[str, Any] | None:
        """The route template and handler that serve ``method url``."""
        path = urlsplit(url).path.rstrip("/") or "/"
        for template, route_method, handler in self.routes:
            if route_method == method and re.fullmatch(_template_regex(template), path):
                return template, handler
        return None


_TYPED_PARAM = re.compile(r"\{\w+(?::(\w+))?\}")


def _template_regex(template: str) -> str:
    out, last = [], 0
    for m in _TYPED_PARAM.finditer(template):
        out.append(re.escape(template[last : m.start()]))
        out.append(r"\d+" if m.group(1) == "int" else r"[^/]+")
        last = m.end()
    out.append(re.escape(template[last:]))
    return "".join(out)


async def build_world(settings: Settings, app: Any) -> SecurityWorld:
    """Two locations, one account per role (manager and therapist at the own
    location) and every object the matrix providers create."""
    a = await factories.make_location(name="Own Clinic", slug="own-clinic")
    b = await factories.make_location(name="Other Clinic", slug="other-clinic")
    accounts = {
        OWNER: await factories.make_user(OWNER),
        MANAGER: await factories.make_user(MANAGER, location_ids=[a]),
        ACCOUNTANT: await factories.make_user(ACCOUNTANT),
        THERAPIST: await factories.make_user(THERAPIST, location_ids=[a]),
        CLIENT: await factories.make_user(CLIENT),
    }
    world = World(own_location=a, other_location=b, accounts=accounts)
    params = await provide_all(world)
    sw = SecurityWorld(
        world=world, params=params, settings=settings, app=app, routes=portal_routes(app)
    )
    sw.extra_pages = await _extras(sw)
    sw.other_markers = await _other_markers(sw)
    return sw


async def _other_markers(sw: SecurityWorld) -> list[str]:
    """What belongs to the other location only: its room and the emails of the
    clients who booked, bought or were treated there (tests/matrix/). Location
    and therapist names are not here: the public catalog and the booking page
    show them to anyone."""
    from portal.auth.tables import User
    from portal.sales.tables import Sale

    sale = await Sale.select(Sale.client).where(Sale.id == sw.params["sale_id"].other).first().run()
    assert sale is not None
    ids = {sw.params["client_id"].other, sw.params["progress_client_id"].other, sale["client"]}
    rows = await User.select(User.email).where(User.id.is_in(list(ids))).run()
    return ["Other Room", *(str(r["email"]) for r in rows)]


async def _extras(sw: SecurityWorld) -> list[str]:
    """Objects in the states that show the remaining forms: a future booking
    (cancel, with a reason), a signed note (amend) and a paid package with
    unused sessions (refund). Returns their pages."""
    from portal.auth.service import CurrentUser
    from portal.bookings.tables import Appointment
    from portal.notes.tables import TreatmentNote
    from portal.payments import service as payments

    own = sw.world.own_location
    client = sw.account(CLIENT).id
    therapist = sw.params["therapist_id"].own
    room = sw.params["room_id"].own
    service = sw.params["service_id"].own
    now = utcnow()

    async def appointment(start: Any, status: str) -> int:
        rows = await Appointment.insert(
            Appointment(
                client=client, therapist=therapist, room=room, location=own, service=service,
                start_at=start, end_at=start + timedelta(hours=1),
                busy_until=start + timedelta(hours=1), status=status,
                completed_at=start if status == "completed" else None,
                created_at=now, updated_at=now,
            )
        ).returning(Appointment.id).run()  # fmt: skip
        return int(rows[0]["id"])

    future = await appointment(now + timedelta(days=6), "booked")
    given = await appointment(now - timedelta(days=8), "completed")
    note = await TreatmentNote.insert(
        TreatmentNote(
            appointment=given, client=client, therapist=therapist, location=own,
            author=sw.account(THERAPIST).id, status="signed", subjective="Neck tension",
            pain_before=6, pain_after=3, regions='["upper_trapezius"]',
            techniques='["trigger_point_pressure"]', assessment="Better", created_at=now,
            updated_at=now, signed_at=now,
        )
    ).returning(TreatmentNote.id).run()  # fmt: skip
    manager = sw.account(MANAGER)
    actor = CurrentUser(
        id=manager.id, email=manager.email, name="", role=MANAGER, location_ids=frozenset({own})
    )
    sale = await payments.record_in_clinic_sale(
        actor, client_id=client, package_id=sw.params["package_id"].own, location_id=own,
        method="cash",
    )  # fmt: skip
    return [f"/appointments/{future}", f"/notes/{note[0]['id']}", f"/sales/{sale}"]


def make_client(app: Any, base_url: str = "http://testserver") -> httpx.AsyncClient:
    """An in-process client with an address of its own (throttling counts per address)."""
    n = next(_addresses)
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(f"198.51.{n // 250}.{n % 250 + 1}", 50000)),
        base_url=base_url,
        follow_redirects=False,
        timeout=30,
    )


@asynccontextmanager
async def clients_by_role(
    sw: SecurityWorld, roles: Iterable[str | None] = (None, *ROLES)
) -> AsyncIterator[dict[str | None, httpx.AsyncClient]]:
    """A client per role, signed in (None: anonymous), each holding a CSRF cookie."""
    out: dict[str | None, httpx.AsyncClient] = {}
    try:
        for role in roles:
            client = make_client(sw.app)
            if role is not None:
                token = await open_session(sw.settings, sw.account(role).id)
                client.cookies.set("portal_session", token)
            out[role] = client
        yield out
    finally:
        for client in out.values():
            await client.aclose()


T = TypeVar("T")


async def gather_limited(awaitables: Iterable[Awaitable[T]], limit: int = 10) -> list[T]:
    """Run requests a few at a time: the in-process app waits on the database
    (SQLite's thread, PostgreSQL's socket), so overlapping them saves time."""
    semaphore = asyncio.Semaphore(limit)

    async def one(awaitable: Awaitable[T]) -> T:
        async with semaphore:
            return await awaitable

    return await asyncio.gather(*(one(a) for a in awaitables))


async def csrf(client: httpx.AsyncClient) -> str:
    token = client.cookies.get("portal_csrf")
    if not token:
        await client.get("/login")
        token = client.cookies.get("portal_csrf")
    assert token
    return token


def page_role(roles: frozenset[str] | None, prefer: Iterable[str] = ROLES) -> str | None:
    """The role to request a route as: the first of ``prefer`` it admits (None: public)."""
    if roles is None:
        return None
    return next((r for r in prefer if r in roles), next(iter(sorted(roles))))


def roles_of(handler: Any) -> frozenset[str] | None:
    return route_roles(handler)


def is_html(response: httpx.Response) -> bool:
    return response.headers.get("content-type", "").startswith("text/html")


# -- forms ----------------------------------------------------------------------


@dataclass
class Field:
    name: str
    kind: str  # input type, "textarea" or "select"
    value: str = ""
    options: list[str] = field(default_factory=list)
    checked: bool = False
    attrs: dict[str, str] = field(default_factory=dict)

    @property
    def is_text(self) -> bool:
        return self.kind in {"text", "search", "email", "tel", "url", "textarea", "password"}


@dataclass
class Form:
    action: str
    method: str
    enctype: str
    fields: list[Field] = field(default_factory=list)
    submit: tuple[str, str] | None = None

    @property
    def text_fields(self) -> list[Field]:
        return [f for f in self.fields if f.is_text and f.kind != "password"]


class _FormParser(HTMLParser):
    def __init__(self, page_url: str) -> None:
        super().__init__(convert_charrefs=True)
        self.page_url = page_url
        self.forms: list[Form] = []
        self._form: Form | None = None
        self._textarea: Field | None = None
        self._select: Field | None = None
        self._option: tuple[str | None, bool] | None = None
        self._option_text = ""

    def handle_starttag(self, tag: str, attrs_list: list[tuple[str, str | None]]) -> None:
        attrs = {k: v or "" for k, v in attrs_list}
        if tag == "form":
            action = attrs.get("action") or urlsplit(self.page_url).path
            self._form = Form(
                action=action,
                method=(attrs.get("method") or "get").lower(),
                enctype=attrs.get("enctype", ""),
            )
            self.forms.append(self._form)
            return
        form = self._form
        if form is None:
            return
        name = attrs.get("name", "")
        if tag == "input" and name:
            kind = (attrs.get("type") or "text").lower()
            if kind in {"submit", "image"}:
                if form.submit is None:
                    form.submit = (name, attrs.get("value", ""))
                return
            if kind in {"button", "reset"}:
                return
            form.fields.append(
                Field(name, kind, attrs.get("value", ""), checked="checked" in attrs, attrs=attrs)
            )
        elif tag == "button" and name and (attrs.get("type") or "submit") == "submit":
            if form.submit is None:
                form.submit = (name, attrs.get("value", ""))
        elif tag == "textarea" and name:
            self._textarea = Field(name, "textarea", attrs=attrs)
            form.fields.append(self._textarea)
        elif tag == "select" and name:
            self._select = Field(name, "select", attrs=attrs)
            form.fields.append(self._select)
        elif tag == "option" and self._select is not None:
            self._option = (attrs.get("value"), "selected" in attrs)
            self._option_text = ""

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._textarea.value += data
        if self._option is not None:
            self._option_text += data

    def _close_option(self) -> None:
        if self._option is not None and self._select is not None:
            value, selected = self._option
            value = self._option_text.strip() if value is None else value
            self._select.options.append(value)
            if selected:
                self._select.value = value
                self._select.checked = True
        self._option = None

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        elif tag == "textarea":
            if self._textarea is not None and self._textarea.value.startswith("\n"):
                self._textarea.value = self._textarea.value[1:]
            self._textarea = None
        elif tag == "option":
            self._close_option()
        elif tag == "select":
            self._close_option()
            if self._select is not None and not self._select.checked:
                self._select.value = self._select.options[0] if self._select.options else ""
            self._select = None


def parse_forms(html: str, page_url: str) -> list[Form]:
    parser = _FormParser(page_url)
    parser.feed(html)
    parser.close()
    return parser.forms


# -- values that pass validation ----------------------------------------------------

_seq = itertools.count(1)
STRONG_PASSWORD = "Sessions-Trigger-Point-2031"

# Text fields whose payload is refused get, in turn, these values until the form
# is accepted (the original value of the field comes first when it has one).
_NAMED_FALLBACKS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("email", ("{email}",)),
    ("slug", ("sec-{n}",)),
    ("currency", ("USD",)),
    ("timezone", ("America/New_York",)),
    ("zone", ("America/New_York",)),
    ("phone", ("+1 555 010{d}",)),
    ("price", ("100.00",)),
    ("amount", ("100.00",)),
    ("licen", ("LMT-{n}",)),
    ("date", ("{future_date}",)),
    ("time", ("10:00",)),
)
_GENERIC_FALLBACKS = ("Security check {n}", "100", "{future_date}")


def fallbacks(field: Field, known_email: str = "") -> list[str]:
    n = next(_seq)
    context = {
        "n": str(n),
        "d": str(n % 10),
        "email": f"sec{n}@example.test",
        "future_date": (utcnow() + timedelta(days=10)).date().isoformat(),
    }
    values: list[str] = []
    if field.value:
        values.append(field.value)
    if "email" in field.name and known_email:
        values.append(known_email)
    if field.kind == "email":
        values.append(context["email"])
    for key, options in _NAMED_FALLBACKS:
        if key in field.name:
            values.extend(o.format(**context) for o in options)
    values.extend(o.format(**context) for o in _GENERIC_FALLBACKS)
    return values


def valid_values(fields: list[Field]) -> list[Any]:
    """Values for a field that is not under attack (``fields``: the inputs of
    one name, several for a group of checkboxes), most likely first; a form
    that refuses one gets the next. None leaves the field out."""
    field = fields[0]
    kind = field.kind
    now = utcnow()
    if kind == "password":
        return [factories.PASSWORD if "current" in field.name else STRONG_PASSWORD]
    if kind in {"checkbox", "radio"}:
        checked = [f.value or "on" for f in fields if f.checked]
        first = [fields[0].value or "on"]
        if kind == "radio":
            checked = checked[:1]
        return [checked, first] if checked else [None, first]
    if kind == "select":
        first = field.value or next((o for o in field.options if o), "")
        return [first, *(o for o in field.options if o and o != first)][:4]
    if kind == "file":
        return [None]
    values: list[Any] = [field.value] if field.value else []
    if kind == "number":
        values += [field.attrs.get("min") or "1", "2", "5"]
    elif kind == "date":
        values += [(now + timedelta(days=days)).date().isoformat() for days in (10, 40, -3650)]
    elif kind == "time":
        values += ["10:00", "11:30", "16:00"]
    elif kind == "datetime-local":
        values += [(now + timedelta(days=10)).strftime("%Y-%m-%dT10:00")]
    return values or [""]


# -- the escaping check -------------------------------------------------------------


class _DangerFinder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name.lower() for name, _ in attrs}
        if tag == "script" and "src" not in names:
            self.problems.append("inline <script> element")
        if tag == "img" and ("src", "x") in attrs:
            self.problems.append("injected <img src=x> element")
        for name, value in attrs:
            name = name.lower()
            if name.startswith("on"):
                self.problems.append(f"event handler attribute {name}= on <{tag}>")
            if name in SCRIPT_URL_ATTRS and (value or "").strip().lower().startswith("javascript:"):
                self.problems.append(f"javascript: URL in {name}= of <{tag}>")

    handle_startendtag = handle_starttag


def unescaped(html: str) -> list[str]:
    """What in a page shows that input reached it unescaped (empty: nothing)."""
    finder = _DangerFinder()
    finder.feed(html)
    finder.close()
    problems = finder.problems
    if "<script>alert(1)</script>" in html:
        problems.append("raw <script>alert(1)</script>")
    if EVALUATED_MARKER in html:
        problems.append("template expression {{7*7}} was evaluated")
    return problems


# -- query parameters ----------------------------------------------------------------


def declared_query_params(sw: SecurityWorld, path: str) -> list[str]:
    """Query parameters a GET route declares in the OpenAPI schema."""
    if sw.openapi is None:
        sw.openapi = sw.app.openapi_schema.to_schema()
    item = sw.openapi["paths"].get(re.sub(r":\w+\}", "}", path), {}).get("get", {})
    return [p["name"] for p in item.get("parameters", []) if p.get("in") == "query"]


def get_form_params(sw: SecurityWorld, url: str, html: str) -> list[str]:
    """Names of the fields of the page's GET forms that submit to the page itself
    (filters, search, date pickers)."""
    names: list[str] = []
    route = sw.route_of("GET", url)
    for form in parse_forms(html, url):
        if form.method != "get":
            continue
        target = sw.route_of("GET", urljoin(url, form.action))
        if route is not None and target is not None and target[0] == route[0]:
            names.extend(f.name for f in form.fields if f.kind != "file")
    return names


async def query_surface(
    sw: SecurityWorld, clients: dict[str | None, httpx.AsyncClient], prefer: Iterable[str] = ROLES
) -> list[tuple[str, str, str | None, list[str]]]:
    """(route, url, role, query parameter names) of every GET route that takes
    query parameters, declared or read from its own filter forms."""
    prefer = tuple(prefer)
    candidates = []
    for path, handler in sw.get_routes():
        role = page_role(roles_of(handler), prefer)
        if role in clients:
            candidates.append((path, sw.url(path), role))

    async def names_of(path: str, url: str, role: str | None) -> list[str]:
        names = declared_query_params(sw, path)
        if not path.startswith("/api/") and not path.endswith((".csv", ".xlsx")):
            response = await clients[role].get(url)
            if response.status_code == 200 and is_html(response):
                names += get_form_params(sw, url, response.text)
        return [n for n in dict.fromkeys(names) if n != "_csrf_token"]

    found = await gather_limited(names_of(*c) for c in candidates)
    return [(*c, names) for c, names in zip(candidates, found, strict=True) if names]


# -- redirects ---------------------------------------------------------------------

BASE = "http://testserver"  # the in-process clients' origin
# Each is off-site (or script) for a browser: WHATWG URL parsing drops tabs and
# newlines and reads a backslash as a slash.
HOSTILE = [
    "//evil.example",
    "https://evil.example",
    "http:evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r/evil.example",
    " //evil.example",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "https:/evil.example",
]


def browser_target(location: str) -> str:
    """Where a browser goes with this Location header (the parts that matter)."""
    cleaned = "".join(c for c in location if c not in "\t\n\r").strip()
    cleaned = cleaned.replace("\\", "/")
    return urljoin(BASE + "/", cleaned)


def leaves_site(location: str) -> bool:
    """Whether a browser sent to this Location leaves the portal (or runs script)."""
    # A scheme in a relative redirect is never ours ("http:evil.example" is
    # evil.example from an https page).
    if re.match(r"^\s*[a-zA-Z][a-zA-Z0-9+.-]*:", location) and not location.startswith(BASE):
        return True
    target = urlsplit(browser_target(location))
    return target.scheme not in ("http", "https") or target.netloc != urlsplit(BASE).netloc


def off_site(response: httpx.Response) -> str | None:
    """The Location of a redirect that leaves the portal, if it does."""
    if not 300 <= response.status_code < 400:
        return None
    location = response.headers.get("location", "")
    return location if leaves_site(location) else None


# -- headers and cookies ---------------------------------------------------------------


def header_problems(response: httpx.Response) -> list[str]:
    """What is missing from the security headers every response carries."""
    headers = response.headers
    problems = []
    csp = headers.get("content-security-policy", "")
    # An email's HTML is shown in a frame of the outbox page, sandboxed, with
    # no script at all; every other response gets the portal's policy.
    sandboxed = "sandbox" in csp and "default-src 'none'" in csp and "script-src" not in csp
    if not sandboxed and (
        "script-src 'self'" not in csp
        or "unsafe-inline" in csp
        or "frame-ancestors 'none'" not in csp
    ):
        problems.append(f"content-security-policy {csp!r}")
    expected = {
        "x-frame-options": "SAMEORIGIN" if sandboxed else "DENY",
        "x-content-type-options": "nosniff",
        "referrer-policy": "same-origin",
        "cross-origin-opener-policy": "same-origin",
    }
    for name, value in expected.items():
        if headers.get(name) != value:
            problems.append(f"{name} {headers.get(name)!r}")
    return problems


def cookie_problems(response: httpx.Response, *, secure: bool) -> list[str]:
    """Every cookie the portal sets is HttpOnly and SameSite=Lax (and Secure over https)."""
    problems = []
    for cookie in response.headers.get_list("set-cookie"):
        name = cookie.split("=", 1)[0]
        attributes = {part.strip().split("=", 1)[0].lower(): part for part in cookie.split(";")[1:]}
        if "httponly" not in attributes:
            problems.append(f"{name} without HttpOnly")
        if attributes.get("samesite", "").strip().lower() != "samesite=lax":
            problems.append(f"{name} without SameSite=Lax")
        if secure and "secure" not in attributes:
            problems.append(f"{name} without Secure")
    return problems
