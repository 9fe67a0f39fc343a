"""SQL injection and hostile values in every query parameter of every list
page, report and API: no server error, no rows beyond the user's scope, and
the tables intact afterwards.

The parameters are discovered, not listed: those each GET route declares in
the OpenAPI schema plus the fields of the filter forms on its own page.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import httpx

from portal.auth.service import MANAGER, OWNER
from portal.auth.tables import User
from portal.locations.tables import Location
from portal.piccolo_app import TABLES
from tests.security.harness import (
    OTHER_MARKERS,
    PAYLOAD,
    SecurityWorld,
    clients_by_role,
    is_html,
    query_surface,
    unescaped,
)

CLASSIC = "' OR 1=1 --"
DROP = '"; DROP TABLE app_user; --'
WILDCARDS = "%_\\"
UNICODE = "Zoë 日本 🙂 \u202e \x00 end"
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
    _cursor([None, 1]),
]
# Free-text parameters: searches reach SQL as patterns.
TEXT_PARAMS = {"q", "client", "actor", "client_email", "action"}


def payloads_for(name: str) -> list[str]:
    if name == "after":
        return [CLASSIC, *CURSORS]
    if name in TEXT_PARAMS:
        return [CLASSIC, DROP, WILDCARDS, UNICODE, HUGE, OVERFLOW, PAYLOAD]
    return [CLASSIC, UNICODE, OVERFLOW, SUPERSCRIPT, PAYLOAD]


def _row_links(html: str) -> set[str]:
    """Links to single records (``/rooms/12``), minus the page's own chrome."""
    return set(re.findall(r'href="(/[a-z\-]+(?:/[a-z\-]+)?/\d+)"', html))


async def _table_counts() -> dict[str, int]:
    return {t._meta.tablename: await t.count().run() for t in TABLES}


def _problems(what: str, response: httpx.Response) -> list[str]:
    out = []
    if response.status_code >= 500:
        out.append(f"{what}: HTTP {response.status_code}")
    if is_html(response):
        out.extend(f"{what}: {p}" for p in unescaped(response.text))
    return out


async def test_hostile_query_parameters_never_error_or_leak(sw: SecurityWorld) -> None:
    failures: list[str] = []
    async with clients_by_role(sw) as clients:
        surface = await query_surface(sw, clients)
        assert len(surface) > 30
        counts_before = await _table_counts()
        requests = 0
        for path, url, role, names in surface:
            client = clients[role]
            baseline_links: set[str] | None = None
            for name in names:
                if name in TEXT_PARAMS and baseline_links is None:
                    nothing = await client.get(url, params={name: "zzq-no-such-thing-qzz"})
                    baseline_links = _row_links(nothing.text) if nothing.status_code == 200 else set()
                for value in payloads_for(name):
                    response = await client.get(url, params={name: value})
                    requests += 1
                    what = f"GET {path}?{name}={value[:30]!r} as {role}"
                    failures.extend(_problems(what, response))
                    # A search for an injection finds nothing: no row appears
                    # that a search for nonsense does not show too.
                    if (
                        name in TEXT_PARAMS
                        and value in (CLASSIC, DROP)
                        and response.status_code == 200
                        and baseline_links is not None
                    ):
                        extra = _row_links(response.text) - baseline_links
                        if extra:
                            failures.append(f"{what}: rows leaked {sorted(extra)[:5]}")
        counts_after = await _table_counts()
        print(f"\n{len(surface)} routes, {requests} hostile requests")
    assert not failures, "\n".join(failures)
    # Nothing was dropped or written by a GET.
    assert await User.count().run() == counts_before["app_user"]
    changed = {
        t: (counts_before[t], counts_after[t])
        for t in counts_before
        if counts_before[t] != counts_after[t] and t not in ("audit_log", "note_access_log")
    }
    assert not changed, changed


async def test_manager_stays_in_scope_under_injection(sw: SecurityWorld) -> None:
    """A manager of the own clinic, fuzzing every filter, never sees the other
    clinic's things, and naming the other clinic is refused."""
    other = sw.world.other_location
    failures: list[str] = []
    async with clients_by_role(sw, roles=(MANAGER,)) as clients:
        client = clients[MANAGER]
        surface = [
            (path, url, names)
            for path, url, role, names in await query_surface(sw, clients, prefer=(MANAGER,))
            if role == MANAGER
        ]
        assert len(surface) > 10
        for path, url, names in surface:
            for name in names:
                values = [CLASSIC, "%", f"{other}", f"{other} OR 1=1", f"-1 OR location={other}"]
                if name == "after":
                    values = [CLASSIC, *CURSORS]
                for value in values:
                    response = await client.get(url, params={name: value})
                    what = f"GET {path}?{name}={value!r} as manager"
                    failures.extend(_problems(what, response))
                    if response.status_code == 200:
                        leaked = [m for m in OTHER_MARKERS if m in response.text]
                        if leaked:
                            failures.append(f"{what}: shows {leaked}")
                    if name == "location" and value == f"{other}" and response.status_code < 400:
                        failures.append(f"{what}: another clinic's id was accepted")
    assert not failures, "\n".join(failures)
    names = {r["name"] for r in await Location.select(Location.name).run()}
    assert {"Own Clinic", "Other Clinic"} <= names
    assert OWNER  # the owner's view is covered by the test above
