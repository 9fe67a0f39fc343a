"""Path-parameter values for the access matrix, one module per context.

Each module here defines ``async def provide(world) -> dict[str, Param]``:
for every path parameter its routes use, the value that belongs to the
"own" location (A, where the manager and therapist under test work) and the
value that belongs to the "other" location (B). A route whose parameter no
module provides fails the matrix, so no new route escapes it.
"""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from portal.auth.service import open_session
from portal.web.middleware import CSRF_COOKIE, SESSION_COOKIE
from tests import factories
from tests.factories import Account


@dataclass(frozen=True)
class Param:
    own: Any
    other: Any
    # False for chain-wide things (a catalog service): both variants are the same.
    scoped: bool = True


@dataclass
class World:
    own_location: int
    other_location: int
    accounts: dict[str, Account]  # role -> account (manager/therapist work at own_location)
    extra: dict[str, Any] = field(default_factory=dict)


async def provide_all(world: World) -> dict[str, Param]:
    """Every provider's parameters; a module may set ``ORDER`` (default 0) to
    run after the ones whose objects it builds on."""
    modules = [
        importlib.import_module(f"{__name__}.{info.name}")
        for info in pkgutil.iter_modules(__path__)
    ]
    params: dict[str, Param] = {}
    for module in sorted(modules, key=lambda m: (getattr(m, "ORDER", 0), m.__name__)):
        provider = getattr(module, "provide", None)
        if provider is not None:
            params.update(await provider(world))
    return params


class Visitors:
    """Clients for the walks over the route table, as each role (or nobody).

    One CSRF token serves every client (it is not bound to a session), so a POST
    does not first need a GET of a form. A role's session is opened once for
    its GETs, which change nothing; every other request gets a fresh session,
    as it may end the one it came with (signing out, say).
    """

    def __init__(self, app: Any, settings: Any, accounts: dict[str, Account]) -> None:
        self.app, self.settings, self.accounts = app, settings, accounts
        self._csrf = ""
        self._get_sessions: dict[str, str] = {}

    async def _session(self, role: str, method: str) -> str:
        if method == "GET" and role in self._get_sessions:
            return self._get_sessions[role]
        token = await open_session(self.settings, self.accounts[role].id)
        if method == "GET":
            self._get_sessions[role] = token
        return token

    @contextlib.asynccontextmanager
    async def client(self, role: str | None, method: str) -> AsyncIterator[httpx.AsyncClient]:
        if not self._csrf:
            async with factories.make_client(self.app) as first:
                self._csrf = await factories.csrf_token(first)
        async with factories.make_client(self.app) as client:
            client.cookies.set(CSRF_COOKIE, self._csrf)
            if role is not None:
                client.cookies.set(SESSION_COOKIE, await self._session(role, method))
            yield client

    async def request(self, role: str | None, method: str, url: str) -> httpx.Response:
        """``method`` on ``url`` as ``role``: a GET, or a form posted with its CSRF token
        and nothing else."""
        async with self.client(role, method) as client:
            if method == "GET":
                return await client.get(url)
            return await factories.post_form(client, url, {})
