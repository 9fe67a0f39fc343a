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
    """Piccolo's SQLite engine, keeping the connections of statements run outside a
    transaction for the next ones.

    Piccolo opens a connection (a thread and the file) for every such statement
    and closes it after: 1.2 ms for a one-row read on two busy cores, 0.3 ms on
    a kept connection. At most ``IDLE_CONNECTIONS`` wait between statements; a
    statement that fails, or is cancelled, closes its connection instead of
    returning it. Transactions open their own, as Piccolo's do.
    """

    IDLE_CONNECTIONS = 4

    def __init__(self, path: str, **kwargs: Any) -> None:
        super().__init__(path=path, **kwargs)
        self._idle: list[aiosqlite.Connection] = []

    async def _open(self) -> aiosqlite.Connection:
        connection = aiosqlite.connect(**self.connection_kwargs)
        # An idle connection must not keep the process alive at exit: its
        # thread is a daemon (SQLite's WAL needs no goodbye from a reader).
        connection._thread.daemon = True
        await connection
        connection.row_factory = dict_factory  # type: ignore[assignment]
        await connection.execute("PRAGMA foreign_keys = 1")
        return connection

    async def _run_in_new_connection(
        self,
        query: str,
        args: list[Any] | None = None,
        query_type: str = "generic",
        table: Any = None,
    ) -> Any:
        connection = self._idle.pop() if self._idle else await self._open()
        try:
            async with connection.execute(query, args or []) as cursor:
                await connection.commit()
                rows = await cursor.fetchall()
        except BaseException:
            connection.stop()
            raise
        if len(self._idle) < self.IDLE_CONNECTIONS:
            self._idle.append(connection)
        else:
            await connection.close()
        return rows

    async def close_idle(self) -> None:
        """Close the kept connections (at shutdown; before the file is removed)."""
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.close()


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
