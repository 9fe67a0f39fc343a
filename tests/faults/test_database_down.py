"""The database goes away during requests, then comes back.

PostgreSQL is reached through a small TCP proxy owned by the test: stopping
the proxy drops every pooled connection and refuses new ones, as a database
restart or a network cut would; starting it again on the same port is the
database coming back, and the app must recover without help. For SQLite the
same outage is an engine whose file cannot be opened.

While it is down: every page that needs the database answers 503 with
Retry-After and "try again in a moment" (JSON under /api/), no stack trace, no
driver message, nothing half-written. When it is back: the very next requests
work. Errors that are not an outage (a bad query, another server refusing a
connection) stay 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import sqlite3
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from portal import db as portal_db
from portal import records
from portal.audit import service as audit
from portal.audit.tables import AuditLog
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


def _is_error_page(response: httpx.Response, status: int) -> bool:
    """The portal's own error page: the status asked for, no internal detail, the usual headers."""
    return (
        response.status_code == status
        and not any(word in response.text for word in DRIVER_WORDS)
        and response.headers.get("x-frame-options") == "DENY"
    )


def assert_unavailable(response: httpx.Response, name: str = "") -> None:
    """503, Retry-After, "try again in a moment": HTML for pages, JSON under /api/."""
    assert _is_error_page(response, 503), (name, response.status_code, response.text[:300])
    assert int(response.headers["retry-after"]) > 0
    assert response.headers["cache-control"] == "no-store"
    if response.headers["content-type"].startswith("application/json"):
        body = response.json()
        assert body["status_code"] == 503 and body["error"] == "Temporarily unavailable"
        assert "try again in a moment" in body["detail"]
    else:
        assert response.headers["content-type"].startswith("text/html")
        assert "<h1>Temporarily unavailable</h1>" in response.text
        assert "try again in a moment" in response.text
        assert "Something went wrong" not in response.text


def assert_server_error(response: httpx.Response) -> None:
    """500: a bug, not an outage; no Retry-After."""
    assert _is_error_page(response, 500), (response.status_code, response.text[:300])
    assert "Something went wrong" in response.text
    assert "retry-after" not in response.headers


NEW_LOCATION = {
    "name": "Outage Clinic", "slug": "outage-clinic", "timezone": "Europe/Paris",
    "currency": "EUR", "tax_rate_bp": "0", "cancellation_window_hours": "24",
}  # fmt: skip


def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_database_unreachable_then_back(app: Any, db: Any, tmp_path: Any) -> None:
    async with outage_switch(db, tmp_path) as (down, up):
        owner = await factories.make_user("owner")
        await factories.make_location(name="Alpha Clinic", slug="alpha")
        async with factories.make_client(app) as client, factories.make_client(app) as visitor:
            await factories.login(client, owner)
            assert (await client.get("/locations")).status_code == 200
            token = await factories.csrf_token(client)
            visitor_token = await factories.csrf_token(visitor)
            audit_rows = await AuditLog.count().run()

            await down()
            signed_in = {
                "dashboard": await client.get("/"),
                "locations": await client.get("/locations?status=all"),
                "clients": await client.get("/clients"),
                "api": await client.get("/api/v1/locations"),
                "form": await client.post(
                    "/locations", data={**NEW_LOCATION, "_csrf_token": token}
                ),
            }
            sign_in = {"email": owner.email, "password": owner.password}
            anonymous = {
                "public catalog": await visitor.get("/book/alpha"),
                "sign-in": await visitor.post("/login", data={**sign_in, "_csrf_token": visitor_token}),
                "reset link": await visitor.get("/password/reset/" + "a" * 43),
            }  # fmt: skip
            for name, response in {**signed_in, **anonymous}.items():
                assert_unavailable(response, name)
            assert signed_in["api"].headers["content-type"].startswith("application/json")
            assert 'href="/locations?status=all"' in signed_in["locations"].text  # "Try again"
            # A page that needs no database still answers; the probe says why the rest do not.
            assert (await visitor.get("/login")).status_code == 200
            async with factories.make_client(app) as probe:  # a load balancer: no cookie
                health = await probe.get("/healthz")
            assert health.status_code == 503

            await up()
            # Back by itself: the next requests work, the session survived.
            assert (await client.get("/locations")).status_code == 200
            assert (await client.get("/clients")).status_code == 200
            assert (await client.get("/api/v1/locations")).status_code == 200
            assert (await visitor.get("/book/alpha")).status_code == 200
            assert (await client.get("/healthz")).status_code == 200
            # Nothing of the refused requests exists; they can be made now.
            assert not await Location.exists().where(Location.slug == "outage-clinic").run()
            assert await AuditLog.count().run() == audit_rows
            created = await client.post("/locations", data={**NEW_LOCATION, "_csrf_token": token})
            assert created.status_code == 303
            assert await Location.exists().where(Location.slug == "outage-clinic").run()
            signed = await visitor.post("/login", data={**sign_in, "_csrf_token": visitor_token})
            assert signed.status_code == 303, signed.text[:300]


async def test_errors_that_are_not_outages_stay_500(
    app: Any, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A query the database refuses, or a connection refused by something that is
    not the database, is a bug to look at: 500, not "try again"."""
    owner = await factories.make_user("owner")

    async def bad_query(*args: Any, **kwargs: Any) -> Any:
        return await Location.raw("SELECT * FROM no_such_table").run()

    async def other_server_refuses(*args: Any, **kwargs: Any) -> Any:
        await asyncio.open_connection("127.0.0.1", closed_port())

    async with factories.make_client(app) as client:
        await factories.login(client, owner)
        for failure in (bad_query, other_server_refuses):
            # The location list's query (the admin resource holds list_locations
            # itself; its page is read by records.list_page).
            monkeypatch.setattr(records, "keyset_page", failure)
            assert_server_error(await client.get("/locations"))
            api = await client.get("/api/v1/locations")
            assert api.status_code == 500 and "retry-after" not in api.headers
        monkeypatch.undo()
        assert (await client.get("/locations")).status_code == 200


async def test_which_errors_mean_the_database_is_unreachable(tmp_path: Any) -> None:
    """Real errors from both drivers, told apart."""
    import asyncpg

    with pytest.raises(OSError) as refused:
        await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{closed_port()}/x", timeout=5)
    assert portal_db.is_unreachable(refused.value)
    with pytest.raises(sqlite3.OperationalError) as cannot_open:
        sqlite3.connect(str(tmp_path))  # a directory
    assert portal_db.is_unreachable(cannot_open.value)

    with pytest.raises(ConnectionRefusedError) as other_server:
        await asyncio.open_connection("127.0.0.1", closed_port())
    assert not portal_db.is_unreachable(other_server.value)
    with pytest.raises(sqlite3.OperationalError) as no_table:
        sqlite3.connect(":memory:").execute("SELECT * FROM no_such_table")
    assert not portal_db.is_unreachable(no_table.value)
    connection = await asyncpg.connect(TEST_DATABASE_URL, timeout=5)
    try:
        with pytest.raises(asyncpg.exceptions.UndefinedTableError) as undefined:
            await connection.fetch("SELECT * FROM no_such_table")
        assert not portal_db.is_unreachable(undefined.value)
        # The server ends the connection: lost, which is an outage.
        with pytest.raises(asyncpg.exceptions.PostgresError) as terminated:
            await connection.fetch("SELECT pg_terminate_backend(pg_backend_pid())")
        assert portal_db.is_unreachable(terminated.value)
    finally:
        await connection.close()
    with pytest.raises(RuntimeError) as wrapped:
        try:
            raise terminated.value
        except asyncpg.exceptions.PostgresError as exc:
            raise RuntimeError("rollback failed") from exc
    assert portal_db.is_unreachable(wrapped.value)


async def test_connection_lost_inside_a_transaction_writes_nothing(
    app: Any, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The location row is inserted, then the connection dies before the audit
    row: the transaction is gone with it, and the person is asked to try again
    (PostgreSQL). SQLite's disk I/O error is a fault, not an outage: 500. More
    such deaths than the pool has connections, and the pool still serves the
    next request."""
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
            monkeypatch.setattr(audit, "record", connection_dies)
            for _ in range(POOL + 1):
                failed = await in_own_task(factories.post_form(client, "/locations", NEW_LOCATION))
                if db.kind == "sqlite":
                    assert_server_error(failed)
                else:
                    assert_unavailable(failed)
            monkeypatch.setattr(audit, "record", record)

            assert not await Location.exists().where(Location.slug == "outage-clinic").run()
            assert await AuditLog.count().run() == audit_rows
            # No connection was lost for good: the next requests are served.
            page = await asyncio.wait_for(in_own_task(client.get("/locations")), 10)
            assert page.status_code == 200
            created = await in_own_task(factories.post_form(client, "/locations", NEW_LOCATION))
            assert created.status_code == 303, created.text[:300]
            assert await AuditLog.count().run() == audit_rows + 1
