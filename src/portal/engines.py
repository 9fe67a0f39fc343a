"""An engine from a DATABASE_URL: SQLite (embedded default) or PostgreSQL.

Below both :mod:`portal.db` and :mod:`portal.piccolo_conf`, which build their
engines here, so neither imports the other to make one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import aiosqlite
from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine, dict_factory

# Seconds a SQLite connection waits for a lock before giving up.
SQLITE_BUSY_TIMEOUT = 30


def sqlite_path(url: str) -> Path:
    """``sqlite:///relative.db`` or ``sqlite:////abs/path.db`` → a path."""
    rest = url.split(":", 1)[1]
    if rest.startswith("///"):
        rest = rest[3:]
        # sqlite:////abs → '/abs'; sqlite:///rel → 'rel'
    return Path(rest)


class ReusingSQLiteEngine(SQLiteEngine):
    """Piccolo's SQLite engine, keeping its connections for the next statements and
    transactions.

    Piccolo opens a connection (a thread and the file) for every statement run
    outside a transaction and for every transaction, and closes it after:
    1.2 ms for a one-row read on two busy cores, 0.3 ms on a kept connection.
    At most ``IDLE_CONNECTIONS`` wait between uses; a connection whose
    statement failed or was cancelled, or that is still inside a transaction,
    is closed instead of kept.
    """

    IDLE_CONNECTIONS = 4

    def __init__(self, path: str, **kwargs: Any) -> None:
        super().__init__(path=path, **kwargs)
        self._idle: list[aiosqlite.Connection] = []

    async def _take(self) -> aiosqlite.Connection:
        if self._idle:
            return self._idle.pop()
        connection = aiosqlite.connect(**self.connection_kwargs)
        # A kept connection must not keep the process alive at exit: its thread
        # is a daemon (SQLite's WAL needs no goodbye from an idle connection).
        connection._thread.daemon = True
        await connection
        connection.row_factory = dict_factory  # type: ignore[assignment]
        await connection.execute("PRAGMA foreign_keys = 1")
        return connection

    async def _give_back(self, connection: aiosqlite.Connection) -> None:
        if connection.in_transaction or len(self._idle) >= self.IDLE_CONNECTIONS:
            await connection.close()
        else:
            self._idle.append(connection)

    async def get_connection(self) -> Any:
        """For a transaction (or a batch): a kept connection, given back when they close it."""
        return _Lent(self, await self._take())

    async def _run_in_new_connection(
        self,
        query: str,
        args: list[Any] | None = None,
        query_type: str = "generic",
        table: Any = None,
    ) -> Any:
        connection = await self._take()
        try:
            async with connection.execute(query, args or []) as cursor:
                await connection.commit()
                rows = await cursor.fetchall()
        except BaseException:
            connection.stop()
            raise
        await self._give_back(connection)
        return rows

    async def _run_in_existing_connection(
        self,
        connection: Any,
        query: str,
        args: list[Any] | None = None,
        query_type: str = "generic",
        table: Any = None,
    ) -> Any:
        # Piccolo's sets ``PRAGMA foreign_keys`` before every statement of a
        # transaction; a kept connection has had it since it was opened.
        async with connection.execute(query, args or []) as cursor:
            return await cursor.fetchall()

    async def close_idle(self) -> None:
        """Close the kept connections (at shutdown; before the file is removed)."""
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.close()


class _Lent:
    """A kept connection lent to a transaction: everything passes through, but
    closing gives it back to the engine."""

    def __init__(self, engine: ReusingSQLiteEngine, connection: aiosqlite.Connection) -> None:
        self._engine = engine
        self._connection = connection

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)

    async def close(self) -> None:
        await self._engine._give_back(self._connection)


def make_engine(url: str, *, log_queries: bool = False) -> Engine:
    if url.startswith("sqlite"):
        path = sqlite_path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        return ReusingSQLiteEngine(
            path=str(path), timeout=SQLITE_BUSY_TIMEOUT, log_queries=log_queries
        )
    parsed = urlparse(url)
    if parsed.scheme not in {"postgres", "postgresql"}:
        raise ValueError(f"Unsupported DATABASE_URL scheme {parsed.scheme!r}")
    return PostgresEngine(config={"dsn": url}, log_queries=log_queries)
