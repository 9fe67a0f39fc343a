"""SQL injection and hostile values in every query parameter of every list
page, report and API: no server error, no rows beyond the user's scope, the
tables intact afterwards, markup escaped.

The parameters are discovered, not listed: those each GET route declares in
the OpenAPI schema plus the fields of the filter forms on its own page.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any

import httpx

from portal.auth.service import MANAGER
from portal.auth.tables import User
from portal.locations.tables import Location
from portal.piccolo_app import TABLES
from tests.security.harness import (
    PAYLOAD,
    SecurityWorld,
    clients_by_role,
    gather_limited,
    header_problems,
    is_html,
    query_surface,
    roles_of,
    unescaped,
)

CLASSIC = "' OR 1=1 --"
# The other classics, markup and non-ASCII text in one value.
DROP = '"; DROP TABLE app_user; -- ' + PAYLOAD + " Zoë 日本 🙂 \u202e"
WILDCARDS = "%_\\"
NUL = "a\x00b"
OVERFLOW = "9" * 25
SUPERSCRIPT = "²"  # a "digit" to str.isdigit(), not to int()
HUGE = "x" * 5000


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


CURSORS = [
    "!!!not-a-cursor",
    _cursor([CLASSIC, 1]),
    _cursor([{"a": 1}, 1]),
    _cursor([2**70, 2**70]),
]
# Free-text parameters: searches reach SQL as patterns.
TEXT_PARAMS = {"q", "client", "actor", "client_email"}
# Parameters that name a row by its id.
ID_PARAMS = {"location", "service", "package", "therapist", "note", "version", "sessions"}
DATE_PARAMS = {"start", "end", "day", "date", "from", "to", "at"}
# What could widen a manager's view: ids, searches, cursors.
SCOPE_PARAMS = ID_PARAMS | TEXT_PARAMS | {"after", "status"}


def payloads_for(name: str) -> list[str]:
    if name == "after":
        return CURSORS
    if name in TEXT_PARAMS:
        return [CLASSIC, DROP, WILDCARDS, OVERFLOW, HUGE]
    if name in ID_PARAMS:
        return [DROP, OVERFLOW, SUPERSCRIPT]
    if name in DATE_PARAMS:
        return [DROP, OVERFLOW]
    return [DROP]


def _admits(sw: SecurityWorld, url: str, role: str) -> bool:
    route = sw.route_of("GET", url)
    roles = roles_of(route[1]) if route else None
    return roles is not None and role in roles


def _row_links(html: str) -> set[str]:
    """Links to single records (``/rooms/12``), minus the page's own chrome."""
    return set(re.findall(r'href="(/[a-z\-]+(?:/[a-z\-]+)?/\d+)"', html))


async def _table_counts() -> dict[str, int]:
    return {t._meta.tablename: await t.count().run() for t in TABLES}


def _problems(what: str, response: httpx.Response) -> list[str]:
    out = [f"{what}: {p}" for p in header_problems(response)]
    if response.status_code >= 500:
        out.append(f"{what}: HTTP {response.status_code}")
    if is_html(response):
        out.extend(f"{what}: {p}" for p in unescaped(response.text))
    return out


@dataclass(frozen=True)
class Probe:
    role: str | None
    path: str
    url: str
    name: str
    value: str

    @property
    def what(self) -> str:
        shown = self.value if len(self.value) < 40 else self.value[:37] + "..."
        return f"GET {self.path}?{self.name}={shown!r} as {self.role}"


async def test_hostile_query_parameters_never_error_leak_or_write(sw: SecurityWorld) -> None:
    """As the first role each route admits (the owner where it may), then as a
    manager of the own clinic, every query parameter gets the payloads."""
    other = sw.world.other_location
    failures: list[str] = []
    async with clients_by_role(sw) as clients:
        surface = await query_surface(sw, clients)
        assert len(surface) > 30
        counts_before = await _table_counts()

        async def fetch(probe: Probe) -> httpx.Response:
            params = dict.fromkeys(probe.name.split(","), probe.value)
            return await clients[probe.role].get(probe.url, params=params)

        # NUL is refused for the whole query string at once (middleware).
        nul = [Probe(role, path, url, ",".join(names), NUL) for path, url, role, names in surface]
        # A search for nonsense: the rows a search for an injection may show.
        baselines = [
            Probe(role, path, url, name, "zzq-no-such-thing-qzz")
            for path, url, role, names in surface
            for name in names
            if name in TEXT_PARAMS
        ]
        owner = [
            Probe(role, path, url, name, value)
            for path, url, role, names in surface
            for name in names
            for value in payloads_for(name)
        ]
        # A manager names the other clinic, or widens a filter: never its rows.
        scoped = [
            Probe(MANAGER, path, url, name, value)
            for path, url, role, names in surface
            if _admits(sw, url, MANAGER)
            for name in names
            if name in SCOPE_PARAMS
            for value in ([CURSORS[1]] if name == "after" else [f"{other}", "%"])
        ]
        probes = [*nul, *baselines, *owner, *scoped]
        responses = dict(zip(probes, await gather_limited(map(fetch, probes)), strict=True))
        counts_after = await _table_counts()

    for probe, response in responses.items():
        failures.extend(_problems(probe.what, response))
        if probe.value == NUL and response.status_code != 400:
            failures.append(f"{probe.what}: {response.status_code}, expected 400")
        if probe.role == MANAGER and response.status_code == 200:
            leaked = [m for m in sw.other_markers if m in response.text]
            if leaked:
                failures.append(f"{probe.what}: shows the other clinic's {leaked}")
        # A search for an injection finds nothing a search for nonsense does not.
        if probe.name in TEXT_PARAMS and probe.value == CLASSIC and response.status_code == 200:
            nothing = responses[
                Probe(probe.role, probe.path, probe.url, probe.name, "zzq-no-such-thing-qzz")
            ]
            extra = _row_links(response.text) - _row_links(nothing.text)
            if extra:
                failures.append(f"{probe.what}: rows leaked {sorted(extra)[:5]}")
    assert not failures, "\n".join(failures)
    # Nothing was dropped, and a GET wrote nothing but its audit trail.
    assert await User.count().run() == counts_before["app_user"]
    changed = {
        t: (counts_before[t], counts_after[t])
        for t in counts_before
        if counts_before[t] != counts_after[t] and t not in ("audit_log", "note_access_log")
    }
    assert not changed, changed
    assert len(sw.other_markers) >= 3
    names = {r["name"] for r in await Location.select(Location.name).run()}
    assert {"Own Clinic", "Other Clinic"} <= names
