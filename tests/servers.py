r"""The portal as real servers in tests: processes, signed-in browsers, forms, signed webhooks.

Built on the process helpers of ``bench/load.py`` (the ones
``tests/faults/test_load_short.py`` and ``tests/faults/test_worker_kill.py``
use):

* :func:`running_servers` starts ``uvicorn portal.asgi:app`` processes on free
  loopback ports with production settings, all on one ``DATABASE_URL`` (a
  PostgreSQL database, or one SQLite file in WAL mode), payments to the
  suite's Stripe stand-in, whose webhooks reach every process (one endpoint
  per process, so every event is also a cross-process duplicate). The
  processes are stopped and the endpoints unregistered whatever happens.
* :func:`portal_view` gives one test a :class:`Portal` on running servers:
  every HTTP exchange made through it (so the test can say "no 5xx was
  seen"), the stand-in's deliveries to the servers since the test began,
  :meth:`Portal.post_webhook` to deliver an event signed with the servers'
  webhook secret as Stripe would, and :class:`Browser`\ s — one person's
  cookies (a session works on every process), each request sent to the
  process the caller names (or the next one in turn), forms read with their
  hidden fields (CSRF token, one-time key).
* :func:`stripe_client` — the stripe SDK pointed at the stand-in, to look at
  what the portal asked "Stripe" for.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import html
import re
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import stripe

from bench import load
from stripe_standin import API_VERSION, STANDIN_API_KEY
from tests.factories import Account
from tests.stripe_standin import StandIn

REQUEST_TIMEOUT = 30.0
# What the servers check webhook signatures with (``load.app_env`` sets it).
WEBHOOK_SECRET = load.WEBHOOK_SECRET


def signature_header(payload: bytes, secret: str = WEBHOOK_SECRET) -> str:
    """``Stripe-Signature`` for ``payload``: ``t=<now>,v1=<HMAC-SHA256 of "t.payload">``."""
    t = int(time.time())
    digest = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


@contextlib.asynccontextmanager
async def stripe_client(standin: StandIn) -> AsyncIterator[stripe.StripeClient]:
    """The stripe SDK against the stand-in (async calls: ``…_async``), closed afterwards."""
    http = stripe.HTTPXClient(timeout=10)
    try:
        yield stripe.StripeClient(
            STANDIN_API_KEY,
            stripe_version=API_VERSION,
            base_addresses={"api": standin.base_url},
            max_network_retries=0,
            http_client=http,
        )
    finally:
        await http.close_async()


@dataclass(frozen=True)
class Exchange:
    """One request a test made to a server process, and the status it got."""

    who: str
    method: str
    url: str
    status: int


_TAGS = re.compile(r"<[^>]+>")
_MESSAGES = (
    re.compile(r'<div class="error-summary"[^>]*>(.*?)</div>', re.S),
    re.compile(r'<small class="field-error"[^>]*>(.*?)</small>', re.S),
    re.compile(r'<article class="error-page">(.*?)</article>', re.S),
)


def refusal_message(page: str) -> str:
    """The message a refused form shows (error summary, field errors or error page)."""
    found = []
    for pattern in _MESSAGES:
        for chunk in pattern.findall(page):
            text = " ".join(html.unescape(_TAGS.sub(" ", chunk)).split())
            text = text.replace("Please correct the following:", "").strip()
            if text:
                found.append(text)
    return " | ".join(found)


@dataclass
class Servers:
    """Portal processes running on one database, each with its stand-in webhook endpoint."""

    cluster: load.Cluster
    database_url: str
    standin: StandIn

    @property
    def urls(self) -> list[str]:
        return self.cluster.urls

    def assert_alive(self) -> None:
        for app in self.cluster.apps:
            assert app.process is not None and app.process.poll() is None, (
                f"the portal on port {app.port} has exited: " + app.log_path.read_text()[-2000:]
            )

    def attach_webhooks(self) -> None:
        """(Re-)register one stand-in endpoint per process (as ``load.cluster`` does)."""
        for app, endpoint in zip(self.cluster.apps, self.cluster.endpoints, strict=True):
            load.register_webhook(self.standin.base_url, endpoint, f"{app.url}/stripe/webhook")

    def detach_webhooks(self) -> None:
        """Stop the stand-in delivering to the processes (a test delivers events itself)."""
        for endpoint in self.cluster.endpoints:
            load.unregister_webhook(self.standin.base_url, endpoint)


@dataclass
class Portal:
    """One test's view of the running servers: its browsers and everything they were answered."""

    servers: Servers
    # The location the test's data lives at, for checks scoped to it (None: everything).
    location_id: int | None = None
    started_at: float = field(default_factory=time.time)
    exchanges: list[Exchange] = field(default_factory=list)
    browsers: list[Browser] = field(default_factory=list)
    _webhooks: httpx.AsyncClient = field(
        default_factory=lambda: httpx.AsyncClient(timeout=REQUEST_TIMEOUT)
    )

    @property
    def urls(self) -> list[str]:
        return self.servers.urls

    @property
    def standin(self) -> StandIn:
        return self.servers.standin

    @property
    def database_url(self) -> str:
        return self.servers.database_url

    def browser(self, name: str) -> Browser:
        browser = Browser(self, name)
        self.browsers.append(browser)
        return browser

    async def signed_in(self, account: Account, name: str | None = None) -> Browser:
        browser = self.browser(name or account.email)
        await browser.sign_in(account)
        return browser

    def record(self, who: str, response: httpx.Response) -> None:
        self.exchanges.append(
            Exchange(who, response.request.method, str(response.request.url), response.status_code)
        )

    def server_errors(self) -> list[Exchange]:
        return [e for e in self.exchanges if e.status >= 500]

    def detach_webhooks(self) -> None:
        self.servers.detach_webhooks()

    async def deliveries(self) -> list[dict[str, Any]]:
        """The stand-in's delivery attempts to the servers since this test began."""
        await self.standin.drain(timeout=30)
        endpoints = self.servers.cluster.endpoints
        return [
            d
            for d in await self.standin.deliveries()
            if d["endpoint_id"] in endpoints and d["at"] >= self.started_at
        ]

    async def post_webhook(self, process: int, body: bytes) -> httpx.Response:
        """Deliver one event (its raw JSON) to one process, signed as Stripe signs it."""
        response = await self._webhooks.post(
            f"{self.urls[process % len(self.urls)]}/stripe/webhook",
            content=body,
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "Stripe-Signature": signature_header(body),
            },
        )
        self.record("stripe", response)
        return response

    async def aclose(self) -> None:
        for browser in self.browsers:
            await browser.http.aclose()
        await self._webhooks.aclose()


class Browser:
    """One person at one browser: cookies shared by every process, requests to a chosen one."""

    def __init__(self, portal: Portal, name: str) -> None:
        self.portal = portal
        self.name = name
        self.turn = 0
        self.http = httpx.AsyncClient(timeout=REQUEST_TIMEOUT, follow_redirects=False)

    def url(self, path: str, process: int | None = None) -> str:
        if process is None:
            process = self.turn
            self.turn += 1
        urls = self.portal.urls
        return urls[process % len(urls)] + path

    async def request(
        self, method: str, path: str, *, process: int | None = None, **kwargs: Any
    ) -> httpx.Response:
        response = await self.http.request(method, self.url(path, process), **kwargs)
        self.portal.record(self.name, response)
        return response

    async def get(self, path: str, *, process: int | None = None) -> httpx.Response:
        return await self.request("GET", path, process=process)

    async def post(
        self, path: str, data: Mapping[str, str], *, process: int | None = None
    ) -> httpx.Response:
        return await self.request("POST", path, process=process, data=dict(data))

    async def sign_in(self, account: Account) -> None:
        fields = await self.form("/login", "/login")
        fields.update(email=account.email, password=account.password)
        response = await self.post("/login", fields)
        assert response.status_code == 303, f"{account.email} cannot sign in: {response.text[:300]}"

    async def form(self, page: str, action: str, *, process: int | None = None) -> dict[str, str]:
        """The hidden fields of the POST form ``action`` on ``page`` (CSRF token, one-time key)."""
        response = await self.get(page, process=process)
        assert response.status_code == 200, f"GET {page}: {response.status_code}"
        fields = load.form_fields(response.text, action)
        assert fields is not None, f"no form posting to {action} on {page}"
        return fields


# A test server's PostgreSQL pool: enough for the simultaneous requests of a race
# (each process holds up to four transactions at once), and small enough that two
# suites on one machine stay within PostgreSQL's 100 connections (production's ten a
# process, kept idle for minutes by a session's servers, did not).
SERVER_POOL = {"DB_POOL_MIN": "1", "DB_POOL_MAX": "4"}


@contextlib.asynccontextmanager
async def running_servers(
    database_url: str, standin: StandIn, log_dir: Path, *, processes: int = 2
) -> AsyncIterator[Servers]:
    """``processes`` portal servers on ``database_url``; stopped whatever happens.

    Starting blocks on the processes' health checks, so it runs in a thread:
    the test's event loop keeps serving (a webhook receiver, say) meanwhile.
    """
    stack = contextlib.ExitStack()
    cluster = await asyncio.to_thread(
        stack.enter_context,
        load.cluster(
            database_url, log_dir, apps=processes, standin_url=standin.base_url, env=SERVER_POOL
        ),
    )
    servers = Servers(cluster=cluster, database_url=database_url, standin=standin)
    # The stand-in is the worker's, shared with the tests after these: the servers
    # take deliveries only while a test of theirs runs (:func:`portal_view`). Left
    # registered, every later test's events went to them too, and a slow or refused
    # delivery there held up that test's drain and its retried deliveries.
    await asyncio.to_thread(servers.detach_webhooks)
    try:
        yield servers
    finally:
        await asyncio.to_thread(stack.close)


@contextlib.asynccontextmanager
async def portal_view(servers: Servers) -> AsyncIterator[Portal]:
    """A test's :class:`Portal` on running servers, which take the stand-in's deliveries
    until it ends (unless the test detaches them to deliver events itself)."""
    servers.assert_alive()
    await servers.standin.drain(timeout=30)  # nothing of an earlier test still on its way
    await asyncio.to_thread(servers.attach_webhooks)
    portal = Portal(servers)
    try:
        yield portal
    finally:
        try:
            await portal.aclose()
        finally:
            await asyncio.to_thread(servers.detach_webhooks)
