"""The database goes away during requests, then comes back.

PostgreSQL is reached through a small TCP proxy owned by the test: stopping
the proxy drops every pooled connection and refuses new ones, as a database
restart or a network cut would; starting it again on the same port is the
database coming back, and the app must recover without help. For SQLite the
same outage is an engine whose file cannot be opened.

While it is down: an error page (no stack trace, no driver message), nothing
half-written. When it is back: the very next requests work.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from portal import db as portal_db
from portal.audit import service as audit
from portal.audit.tables import AuditLog
from portal.locations import service as locations
from portal.locations.tables import Location
from tests import factories
from tests.conftest import TEST_DATABASE_URL

POOL = 2
DRIVER_WORDS = ("Traceback", "asyncpg", "sqlite3", "Connect call failed", "OSError", "Errno")


class TcpProxy:
    """127.0.0.1:<port> → PostgreSQL, that can be cut and restored.

    It runs on an event loop of its own, in a thread: Piccolo asks the server
    for its version synchronously when an engine is made, which would wait
    for ever on a proxy that needs the test's own loop to answer.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._transports: list[asyncio.BaseTransport] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    async def start(self) -> None:
        await asyncio.to_thread(self._run, self._start())

    async def stop(self) -> None:
        """The database is gone: no new connections, and the open ones die."""
        await asyncio.to_thread(self._run, self._stop())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._run(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for transport in self._transports:
            transport.abort()  # type: ignore[attr-defined]
        self._transports.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._transports += [writer.transport, up_writer.transport]
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        sink.transport.abort()


@asynccontextmanager
async def outage_switch(db: Any, tmp_path: Any) -> AsyncIterator[tuple[Any, Any]]:
    """Bind an engine the test can take down and bring back; yields (down, up)."""
    if db.kind == "sqlite":
        broken = portal_db.make_engine(f"sqlite:///{tmp_path}")  # a directory: cannot open

        async def down() -> None:
            portal_db.bind_engine(broken)

        async def up() -> None:
            portal_db.bind_engine(db.engine)

        try:
            yield down, up
        finally:
            portal_db.bind_engine(db.engine)
        return
    match = re.match(r"^postgres(?:ql)?://([^@/]*@)?([^:/]+)(?::(\d+))?/(.+)$", TEST_DATABASE_URL)
    assert match, TEST_DATABASE_URL
    user, host, port, name = match.groups()
    proxy = TcpProxy(host, int(port or 5432))
    await proxy.start()
    url = f"postgresql://{user or ''}127.0.0.1:{proxy.port}/{name}"
    async with small_pool(db, url):
        try:
            yield proxy.stop, proxy.start
        finally:
            proxy.close()


@asynccontextmanager
async def small_pool(db: Any, url: str = TEST_DATABASE_URL) -> AsyncIterator[None]:
    """PostgreSQL through a pool of two connections of its own (SQLite: as is)."""
    if db.kind == "sqlite":
        yield
        return
    engine = portal_db.make_engine(url)
    await portal_db.start_pool(engine, min_size=1, max_size=POOL)
    portal_db.bind_engine(engine)
    try:
        yield
    finally:
        portal_db.bind_engine(db.engine)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(portal_db.close_pool(engine), 5)


async def in_own_task(request: Any) -> httpx.Response:
    """Send a request the way a server runs it: in a task (and context) of its own."""
    response: httpx.Response = await asyncio.create_task(request)
    return response


def _is_error_page(response: httpx.Response) -> bool:
    return (
        response.status_code in (500, 503)
        and not any(word in response.text for word in DRIVER_WORDS)
        and response.headers.get("x-frame-options") == "DENY"
    )


NEW_LOCATION = {
    "name": "Outage Clinic", "slug": "outage-clinic", "timezone": "Europe/Paris",
    "currency": "EUR", "tax_rate_bp": "0", "cancellation_window_hours": "24",
}  # fmt: skip


async def test_database_unreachable_then_back(app: Any, db: Any, tmp_path: Any) -> None:
    async with outage_switch(db, tmp_path) as (down, up):
        owner = await factories.make_user("owner")
        async with factories.make_client(app) as client:
            await factories.login(client, owner)
            assert (await client.get("/locations")).status_code == 200
            token = await factories.csrf_token(client)

            await down()
            page = await client.get("/locations")
            api = await client.get("/api/v1/locations")
            write = await client.post("/locations", data={**NEW_LOCATION, "_csrf_token": token})
            async with factories.make_client(app) as probe:  # a load balancer: no cookie
                health = await probe.get("/healthz")
            for response in (page, write):
                assert _is_error_page(response), (response.status_code, response.text[:300])
                assert "Something went wrong" in response.text or "unavailable" in response.text
            assert api.status_code in (500, 503) and api.json()["status_code"] == api.status_code
            assert health.status_code == 503

            await up()
            # Back by itself: the next requests work, the session survived.
            assert (await client.get("/locations")).status_code == 200
            assert (await client.get("/healthz")).status_code == 200
            # Nothing of the refused write exists; it can be made now.
            assert not await Location.exists().where(Location.slug == "outage-clinic").run()
            created = await client.post("/locations", data={**NEW_LOCATION, "_csrf_token": token})
            assert created.status_code == 303
            assert await Location.exists().where(Location.slug == "outage-clinic").run()


async def test_connection_lost_inside_a_transaction_writes_nothing(
    app: Any, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The location row is inserted, then the connection dies before the audit
    row: the transaction is gone with it. More such deaths than the pool has
    connections, and the pool still serves the next request."""
    record = audit.record

    async def connection_dies(*args: Any, **kwargs: Any) -> Any:
        if db.kind == "sqlite":
            raise sqlite3.OperationalError("disk I/O error")
        # The server ends this very connection, mid-transaction.
        await Location.raw("SELECT pg_terminate_backend(pg_backend_pid())").run()
        return await record(*args, **kwargs)

    async with small_pool(db):
        owner = await factories.make_user("owner")
        async with factories.make_client(app) as client:
            await factories.login(client, owner)
            audit_rows = await AuditLog.count().run()
            monkeypatch.setattr(locations.audit, "record", connection_dies)
            for _ in range(POOL + 1):
                failed = await in_own_task(factories.post_form(client, "/locations", NEW_LOCATION))
                assert _is_error_page(failed), (failed.status_code, failed.text[:300])
            monkeypatch.setattr(locations.audit, "record", record)

            assert not await Location.exists().where(Location.slug == "outage-clinic").run()
            assert await AuditLog.count().run() == audit_rows
            # No connection was lost for good: the next requests are served.
            page = await asyncio.wait_for(in_own_task(client.get("/locations")), 10)
            assert page.status_code == 200
            created = await in_own_task(factories.post_form(client, "/locations", NEW_LOCATION))
            assert created.status_code == 303, created.text[:300]
            assert await AuditLog.count().run() == audit_rows + 1
