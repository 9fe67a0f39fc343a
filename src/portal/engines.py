"""An engine from a DATABASE_URL: SQLite (embedded default) or PostgreSQL.

Below both :mod:`portal.db` and :mod:`portal.piccolo_conf`, which build their
engines here, so neither imports the other to make one.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine

# Seconds a SQLite connection waits for a lock before giving up.
SQLITE_BUSY_TIMEOUT = 30


def sqlite_path(url: str) -> Path:
    """``sqlite:///relative.db`` or ``sqlite:////abs/path.db`` → a path."""
    rest = url.split(":", 1)[1]
    if rest.startswith("///"):
        rest = rest[3:]
        # sqlite:////abs → '/abs'; sqlite:///rel → 'rel'
    return Path(rest)


def make_engine(url: str, *, log_queries: bool = False) -> Engine:
    if url.startswith("sqlite"):
        path = sqlite_path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        return SQLiteEngine(path=str(path), timeout=SQLITE_BUSY_TIMEOUT, log_queries=log_queries)
    parsed = urlparse(url)
    if parsed.scheme not in {"postgres", "postgresql"}:
        raise ValueError(f"Unsupported DATABASE_URL scheme {parsed.scheme!r}")
    return PostgresEngine(config={"dsn": url}, log_queries=log_queries)
