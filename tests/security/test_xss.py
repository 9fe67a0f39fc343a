"""Script and markup payloads in every text field of every form, as every role
allowed to post it; the output is always escaped.

The forms are not listed by hand: every GET page of the route table is
fetched as every role it admits, its POST forms are parsed, and each form is
submitted with the payload in all of its text fields — first in every field
at once (the re-rendered form must escape what it echoes), then with valid
values in the other fields until the form is accepted and the payload is
stored. Finally every page is fetched again as every role: wherever the
stored payload is shown, it is escaped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import httpx

from portal.auth.service import ACCOUNTANT, CLIENT
from tests import factories
from tests.security.harness import (
    PAYLOAD,
    TEMPLATE_MARKER,
    Field,
    Form,
    SecurityWorld,
    clients_by_role,
    cookie_problems,
    csrf,
    fallbacks,
    gather_limited,
    header_problems,
    is_html,
    off_site,
    page_role,
    parse_forms,
    roles_of,
    unescaped,
    valid_values,
)

REDIRECT_PARAMS = (
    "next", "return", "return_to", "redirect", "redirect_uri", "url", "back", "success_url",
    "cancel_url",
)  # fmt: skip
# Not pages: downloads, JSON, the schema.
NOT_PAGES = (".csv", ".xlsx", "/api/", "/healthz")
# Posting these would end the session under test, or is not a form.
SKIP_ACTIONS = ("/logout", "/stripe/webhook")
# Actions that change what later forms can do go last.
LATE = ("deactivate", "remove", "/cancel", "no-show", "/sign", "/refunds", "/password", "/complete")
# Forms whose payload must be stored and shown again (the suite fails if one of
# them is no longer accepted: the check would silently lose its reach).
MUST_STORE = {
    "/account/intake/edit",
    "/account/profile",
    "/appointments/{appointment_id:int}/cancel",
    "/catalog/packages",
    "/catalog/packages/{package_id:int}/edit",
    "/catalog/packages/{package_id:int}/locations/{location_id:int}",
    "/catalog/packages/{package_id:int}/locations/{location_id:int}/end",
    "/catalog/packages/{package_id:int}/price",
    "/catalog/services",
    "/catalog/services/{service_id:int}/edit",
    "/catalog/services/{service_id:int}/price",
    "/clients/{client_id:int}/edit",
    "/locations",
    "/locations/{location_id:int}/edit",
    "/notes/appointment/{appointment_id:int}",
    "/notes/{note_id:int}/amend",
    "/notes/{note_id:int}/edit",
    "/password/forgot",
    "/rooms",
    "/rooms/{room_id:int}/edit",
    "/rooms/{room_id:int}/out-of-service",
    "/sales",
    "/sales/{sale_id:int}/refunds",
    "/signup",
    "/therapists",
    "/therapists/{therapist_id:int}/account",
    "/therapists/{therapist_id:int}/edit",
    "/therapists/{therapist_id:int}/time-off",
    "/users",
    "/users/{user_id:int}",
}


@dataclass
class Crawl:
    failures: list[str] = field(default_factory=list)
    forms: dict[tuple[str | None, str], tuple[str, Form]] = field(default_factory=dict)
    queue: list[tuple[str | None, str]] = field(default_factory=list)
    stored: set[str] = field(default_factory=set)
    shown: set[str] = field(default_factory=set)
    requests: int = 0

    def check(self, what: str, response: httpx.Response) -> None:
        self.requests += 1
        if response.status_code >= 500:
            self.failures.append(f"{what}: HTTP {response.status_code}")
        # Every route, every role: the security headers and the cookie flags.
        for problem in header_problems(response) + cookie_problems(response, secure=False):
            self.failures.append(f"{what}: {problem}")
        if is_html(response):
            problems = unescaped(response.text)
            if problems:
                self.failures.append(f"{what}: {sorted(set(problems))}")
            if TEMPLATE_MARKER in response.text:
                self.shown.add(what)


def _pages(sw: SecurityWorld) -> list[tuple[str, frozenset[str] | None]]:
    out = []
    for path, handler in sw.get_routes():
        if not any(part in path for part in NOT_PAGES):
            out.append((sw.url(path), roles_of(handler)))
    for url in sw.extra_pages:
        route = sw.route_of("GET", url)
        assert route is not None, url
        out.append((url, roles_of(route[1])))
    return out


def _collect(sw: SecurityWorld, crawl: Crawl, role: str | None, url: str, html: str) -> None:
    """Queue the page's POST forms that have text fields (one per role and route)."""
    for form in parse_forms(html, url):
        if form.method != "post":
            continue
        action = urljoin(url, form.action)
        route = sw.route_of("POST", action)
        if route is None or action.startswith(SKIP_ACTIONS) or not form.text_fields:
            continue
        if (role, route[0]) not in crawl.forms:
            crawl.forms[(role, route[0])] = (action, form)
            crawl.queue.append((role, route[0]))


async def _crawl(
    sw: SecurityWorld, clients: dict[str | None, httpx.AsyncClient], crawl: Crawl, collect: bool
) -> None:
    visits = [
        (url, role)
        for url, roles in _pages(sw)
        for role in ([None] if roles is None else sorted(roles))
        # An accountant posts no form with text in it: nothing to collect.
        if not (collect and role == ACCOUNTANT)
    ]
    if not collect:
        # Downloads and JSON too (headers, redirects), once each.
        visits += [
            (sw.url(path), page_role(roles_of(handler)))
            for path, handler in sw.get_routes()
            if any(part in path for part in NOT_PAGES)
        ]
    # The final round also carries the usual names of redirect parameters:
    # no page may follow one off-site.
    params = {} if collect else dict.fromkeys(REDIRECT_PARAMS, "https://evil.example/")
    responses = await gather_limited(clients[role].get(url, params=params) for url, role in visits)
    for (url, role), response in zip(visits, responses, strict=True):
        crawl.check(f"GET {url} as {role or 'anonymous'}", response)
        if off_site(response):
            crawl.failures.append(f"GET {url} as {role}: to {response.headers['location']}")
        if collect and response.status_code == 200 and is_html(response):
            _collect(sw, crawl, role, url, response.text)


def _late(item: tuple[str | None, str]) -> tuple[bool, str]:
    _, template = item
    return any(word in template for word in LATE), template


def _confirm_step(response: httpx.Response, action: str) -> dict[str, str] | None:
    """The hidden fields of a confirm step (a form back to ``action`` with ``confirmed``)
    that answered a POST, or None."""
    if response.status_code != 200 or not is_html(response):
        return None
    for form in parse_forms(response.text, action):
        names = {f.name for f in form.fields}
        if (
            form.method == "post"
            and urljoin(action, form.action) == action
            and "confirmed" in names
        ):
            return {f.name: f.value for f in form.fields if f.name != "_csrf_token"}
    return None


async def _submit(
    sw: SecurityWorld,
    client: httpx.AsyncClient,
    crawl: Crawl,
    role: str | None,
    action: str,
    data: dict[str, Any],
) -> httpx.Response:
    who = role or "anonymous"
    data = {**data, "_csrf_token": await csrf(client)}
    response = await client.post(action, data=data)
    crawl.check(
        f"POST {action} as {who} ({sorted(k for k in data if k != '_csrf_token')})", response
    )
    confirm = _confirm_step(response, action)
    if confirm is not None:
        # A form that asks first (a refund): its confirm step sends the same values
        # again, confirmed; what that stores is what the form stores.
        response = await client.post(action, data={**confirm, "_csrf_token": await csrf(client)})
        crawl.check(f"POST {action} as {who} (confirmed)", response)
    location = response.headers.get("location", "")
    if response.status_code in (301, 302, 303) and location.startswith("/"):
        followed = await client.get(location)
        crawl.check(f"GET {location} after POST {action} as {who}", followed)
        if followed.status_code == 200 and is_html(followed):
            # The page of what was just made may hold further forms.
            _collect(sw, crawl, role, location, followed.text)
    return response


async def _attack_form(
    sw: SecurityWorld,
    client: httpx.AsyncClient,
    crawl: Crawl,
    role: str | None,
    template: str,
    action: str,
    form: Form,
    known_email: str,
) -> None:
    extra = dict([form.submit]) if form.submit else {}
    # 1. The payload in every field at once: a refusal re-renders it, escaped.
    everything = {f.name: PAYLOAD for f in form.fields if f.kind != "file"}
    response = await _submit(sw, client, crawl, role, action, {**everything, **extra})
    if response.status_code in (301, 302, 303):
        crawl.stored.add(template)
        return
    # 2. The payload in the text fields only, valid values elsewhere. A field
    #    the form refuses gets its next value (plainer text for a text field)
    #    until the form is accepted and the payload stored.
    groups: dict[str, list[Field]] = {}
    for f in form.fields:
        groups.setdefault(f.name, []).append(f)
    ladders: dict[str, list[Any]] = {}
    for name, fields in groups.items():
        if fields[0] in form.text_fields:
            ladders[name] = [PAYLOAD, *fallbacks(fields[0], known_email)]
        else:
            ladders[name] = valid_values(fields)
    step = dict.fromkeys(ladders, 0)
    for _ in range(6):
        data = {name: ladder[step[name]] for name, ladder in ladders.items()}
        data = {name: value for name, value in data.items() if value is not None}
        response = await _submit(sw, client, crawl, role, action, {**data, **extra})
        if response.status_code in (301, 302, 303):
            crawl.stored.add(template)
            return
        if response.status_code != 422:
            return
        refused = [name for name in ladders if factories.field_error(response.text, name)]
        # A time refused may need another day (a window that overlaps another).
        refused += [n.replace("_time", "_date") for n in refused if n.endswith("_time")]
        advanced = False
        for name in dict.fromkeys(refused):
            if name in ladders and step[name] + 1 < len(ladders[name]):
                step[name] += 1
                advanced = True
        if not advanced:
            return


async def test_every_form_escapes_stored_and_echoed_payloads(
    sw: SecurityWorld, cheap_hashing: None
) -> None:
    crawl = Crawl()
    client_email = sw.account(CLIENT).email
    async with clients_by_role(sw) as clients:
        await _crawl(sw, clients, crawl, collect=True)
        assert len(crawl.forms) > 30, sorted(crawl.forms)
        while crawl.queue:
            crawl.queue.sort(key=_late)
            role, template = crawl.queue.pop(0)
            action, form = crawl.forms[(role, template)]
            await _attack_form(sw, clients[role], crawl, role, template, action, form, client_email)
        await _crawl(sw, clients, crawl, collect=False)
    assert not crawl.failures, "\n".join(crawl.failures)
    assert crawl.stored >= MUST_STORE, MUST_STORE - crawl.stored
    # The stored payload was shown back, escaped, on many pages of many roles.
    assert len(crawl.shown) > 100, len(crawl.shown)


def test_the_oracle_tells_escaped_from_raw() -> None:
    """The check above is only as good as ``unescaped``: escaped output of the
    payload passes, each way of letting it through is caught."""
    from jinja2 import Environment

    env = Environment(autoescape=True)
    page = env.from_string('<a href="/x" title="{{ v }}">{{ v }}</a><input value="{{ v }}">')
    assert unescaped(page.render(v=PAYLOAD)) == []
    raw = Environment(autoescape=False)
    assert unescaped(raw.from_string("<p>{{ v }}</p>").render(v=PAYLOAD))
    assert unescaped(raw.from_string('<input value="{{ v }}">').render(v=PAYLOAD))
    # Escaping does not make a link safe: user text must never become a URL.
    assert unescaped(env.from_string('<a href="{{ v }}">x</a>').render(v=PAYLOAD))
    assert unescaped(env.from_string("<p>{{ v }}</p>").render(v=EVALUATED))


EVALUATED = "xss49zz"
