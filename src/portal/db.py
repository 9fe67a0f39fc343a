"""Database engine: SQLite (embedded default) or PostgreSQL, chosen by URL."""

from __future__ import annotations

import asyncio
import inspect
import json
import sqlite3
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import date
from operator import itemgetter
from typing import Any

from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine, TransactionType
from piccolo.table import Table

# Engines are built in portal.engines (piccolo_conf builds its own there too).
from portal.engines import (  # noqa: F401
    SQLITE_BUSY_TIMEOUT,
    ReusingSQLiteEngine,
    make_engine,
    sqlite_path,
)


def is_sqlite(engine: Engine) -> bool:
    return engine.engine_type == "sqlite"


async def concurrently(*calls: Awaitable[Any]) -> list[Any]:
    """Independent queries: together on PostgreSQL's pool (as long as the slowest
    rather than their sum), in turn on SQLite and inside a transaction (one
    connection runs one query at a time)."""
    engine = current_engine()
    if is_sqlite(engine) or engine.transaction_exists():
        results: list[Any] = []
        try:
            for call in calls:
                results.append(await call)
        except BaseException:
            for call in calls[len(results) + 1 :]:  # never started: closed, not left behind
                if inspect.iscoroutine(call):
                    call.close()
            raise
        return results
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        # One failed (or the request was cancelled): the others are stopped and
        # awaited, so none runs on unobserved or leaves its error unread.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def current_engine() -> Engine:
    from portal import piccolo_conf

    return piccolo_conf.DB


def bind_engine(engine: Engine) -> None:
    """Point Piccolo (tables, migrations) at ``engine``."""
    from piccolo.apps.migrations.tables import Migration

    from portal import piccolo_conf
    from portal.piccolo_app import APP_CONFIG

    piccolo_conf.DB = engine
    tables: list[type[Table]] = [*APP_CONFIG.table_classes, Migration]
    for table in tables:
        table._meta.db = engine


async def prepare(engine: Engine) -> None:
    """Per-database settings that persist in the file (WAL for SQLite)."""
    if is_sqlite(engine):
        await engine.run_ddl("PRAGMA journal_mode=WAL")


async def _keep_session(_connection: Any) -> None:
    """A connection going back to the pool: asyncpg has rolled back any transaction
    left open; nothing else is reset, as the portal keeps no state in a session (its
    settings are ``SET LOCAL``, its advisory locks end with their transaction, it
    neither listens nor holds cursors). asyncpg's default reset (advisory unlock,
    ``CLOSE ALL``, ``UNLISTEN *``, ``RESET ALL``) was one more round trip per query."""


async def start_pool(engine: Engine, *, min_size: int = 1, max_size: int = 10) -> None:
    if isinstance(engine, PostgresEngine):
        await engine.start_connection_pool(
            min_size=min_size, max_size=max_size, reset=_keep_session
        )


async def close_pool(engine: Engine) -> None:
    if isinstance(engine, PostgresEngine):
        await engine.close_connection_pool()
    elif isinstance(engine, ReusingSQLiteEngine):
        await engine.close_idle()


def pool_usage() -> tuple[int, int, int] | None:
    """The bound engine's pool as (in use, idle, maximum) connections; None without one
    (SQLite, or PostgreSQL before the pool starts)."""
    engine = current_engine()
    pool = getattr(engine, "pool", None) if isinstance(engine, PostgresEngine) else None
    if pool is None:
        return None
    size, idle = pool.get_size(), pool.get_idle_size()
    return size - idle, idle, pool.get_max_size()


# Work the outermost ``transaction`` runs last, inside it, just before it commits.
_BEFORE_COMMIT: ContextVar[list[Callable[[], Awaitable[None]]] | None] = ContextVar(
    "before_commit", default=None
)


@asynccontextmanager
async def transaction() -> AsyncIterator[Any]:
    """One write transaction.

    On SQLite the transaction takes the write lock at BEGIN (IMMEDIATE), so two
    writers queue on the busy timeout instead of failing when a read lock
    would have to be upgraded. A nested call reuses the outer transaction.
    The outermost one runs the work registered with :func:`before_commit`
    after its body and before it commits (nothing of it when the body raises).
    """
    engine = current_engine()
    if engine.transaction_exists():
        async with engine.transaction() as tx:
            yield tx
        return
    pending: list[Callable[[], Awaitable[None]]] = []
    token = _BEFORE_COMMIT.set(pending)
    try:
        if isinstance(engine, SQLiteEngine):
            async with engine.transaction(transaction_type=TransactionType.immediate) as tx:
                yield tx
                await _run(pending)
        else:
            async with engine.transaction() as tx:
                yield tx
                await _run(pending)
    finally:
        _BEFORE_COMMIT.reset(token)


async def _run(pending: list[Callable[[], Awaitable[None]]]) -> None:
    while pending:
        await pending.pop(0)()


def commit_scope() -> object | None:
    """The open outermost :func:`transaction`'s identity (None outside one): work
    registered for it is kept with it, never carried into the next transaction."""
    pending = _BEFORE_COMMIT.get()
    if pending is None or not current_engine().transaction_exists():
        return None
    return pending


def before_commit(work: Callable[[], Awaitable[None]]) -> bool:
    """Run ``work`` at the end of the surrounding :func:`transaction`, inside it.

    The daily totals use it to take their row locks last and in one order in
    every transaction (no deadlock between two writers of the same day), and
    for as short a time as possible. False when no such transaction is open:
    the caller then does the work at once.
    """
    pending = _BEFORE_COMMIT.get()
    if pending is None or not current_engine().transaction_exists():
        return False
    pending.append(work)
    return True


async def insert_row(row: Table) -> int:
    """Insert one row and return its new id, read back with RETURNING (both engines)."""
    table = type(row)
    rows = await table.insert(row).returning(table._meta.primary_key).run()
    return int(rows[0]["id"])


PARAMETERS_PER_STATEMENT = 9000  # inside SQLite's and asyncpg's limits


def one_of(expression: str, values: Sequence[Any], sql_type: str = "text") -> tuple[str, Any]:
    """SQL saying ``expression`` is one of ``values``, for a raw query: the text (with one
    ``{}`` placeholder) and its single argument, however many the values. PostgreSQL: an
    array of ``sql_type`` read as a set (one parameter, one statement whatever the length;
    a set joins by hash or index, where ``= ANY`` of a parameter would compare every row
    of a table scan with every value); SQLite: the values as JSON text read by
    ``json_each`` (dates as ISO text, as SQLite keeps them)."""
    if isinstance(current_engine(), PostgresEngine):
        return f"{expression} IN (SELECT unnest({{}}::{sql_type}[]))", list(values)
    plain = [v.isoformat() if isinstance(v, date) else v for v in values]
    return f"{expression} IN (SELECT value FROM json_each({{}}))", json.dumps(plain)


async def value_where(column: Any, condition: Any) -> Any:
    """``column`` of the first row of its table meeting ``condition``; None when none does."""
    row = await column._meta.table.select(column).where(condition).first().run()
    return None if row is None else row[column._meta.name]


async def update_where(table: type[Table], values: dict[Any, Any], condition: Any) -> bool:
    """``UPDATE table SET values WHERE condition``: whether a row matched. With the state
    the change expects in ``condition`` (a column still null, a status, a flag), it is a
    compare-and-set: of two callers racing, one gets True and the other changes nothing."""
    key = table._meta.primary_key
    return bool(await table.update(values).where(condition).returning(key).run())


async def insert_rows(
    table: type[Table], rows: list[dict[str, Any]], *, returning: bool = False
) -> list[int]:
    """Insert many rows (column name → value, the same columns in each); their new ids,
    ascending in the order given, when ``returning``.

    For bulk writes (imports), without one Piccolo object per row (whose query
    building costs more than the database's work). PostgreSQL: one binary ``COPY``
    on the transaction's own connection, the ids drawn from the table's sequence
    first (``COPY`` returns nothing). SQLite: multi-row ``INSERT … VALUES`` of up
    to :data:`PARAMETERS_PER_STATEMENT` values each.
    """
    if not rows:
        return []
    columns = list(rows[0])
    async with transaction():
        engine = current_engine()
        if isinstance(engine, PostgresEngine):
            return await _copy_rows(engine, table, columns, rows, returning)
        names = ", ".join(f'"{column}"' for column in columns)
        width = len(columns)
        per_statement = max(1, PARAMETERS_PER_STATEMENT // width)
        ids: list[int] = []
        for start in range(0, len(rows), per_statement):
            part = rows[start : start + per_statement]
            args = [row[column] for row in part for column in columns]
            values = ", ".join("(" + ", ".join(["{}"] * width) + ")" for _ in part)
            sql = f'INSERT INTO "{table._meta.tablename}" ({names}) VALUES {values}' + (
                " RETURNING id" if returning else ""
            )
            result = await table.raw(sql, *args).run()
            if returning:
                ids.extend(int(r["id"]) for r in result)
        return ids


_SEQUENCES: dict[str, str] = {}  # table → the sequence its ids come from


async def _copy_rows(
    engine: PostgresEngine,
    table: type[Table],
    columns: list[str],
    rows: list[dict[str, Any]],
    returning: bool,
) -> list[int]:
    connection = engine.current_transaction.get().connection  # type: ignore[union-attr]
    name = table._meta.tablename
    ids: list[int] = []
    if returning:
        if name not in _SEQUENCES:
            sequence = await connection.fetchval("SELECT pg_get_serial_sequence($1, 'id')", name)
            _SEQUENCES[name] = str(sequence).replace("'", "''")
        # The sequence named in the text: resolved once, not for every id drawn.
        drawn = await connection.fetch(
            f"SELECT nextval('{_SEQUENCES[name]}'::regclass) AS id "
            "FROM generate_series(1, $1::int)",
            len(rows),
        )
        ids = sorted(int(r["id"]) for r in drawn)
    values = itemgetter(*columns) if len(columns) > 1 else lambda row: (row[columns[0]],)
    records = (
        [(i, *values(row)) for i, row in zip(ids, rows, strict=True)]
        if returning
        else [values(row) for row in rows]
    )
    await connection.copy_records_to_table(
        name, records=records, columns=["id", *columns] if returning else columns
    )
    return ids


async def plan_with_values(on: bool = True) -> None:
    """Plan each statement with its parameters' values (PostgreSQL's ``plan_cache_mode``)
    until the surrounding transaction ends or ``plan_with_values(False)``, never with a
    generic plan kept from earlier: a bulk load's lookups pass a whole chunk's values
    in one array, and a generic plan made while the tables were small compares every
    row with every value once they are not. Off again before bulk writes: their
    foreign-key checks would be planned again for every row. Outside a transaction,
    and on SQLite: nothing."""
    engine = current_engine()
    if isinstance(engine, PostgresEngine) and engine.transaction_exists():
        mode = "force_custom_plan" if on else "auto"
        await engine.run_ddl(f"SET LOCAL plan_cache_mode = {mode}")


@asynccontextmanager
async def planned_with_values() -> AsyncIterator[None]:
    """Reads planned with their parameters' values, never with a generic plan kept from
    earlier runs (a pattern's: ``ILIKE '%…%'`` finds a few rows or thousands as the
    pattern goes, and a plan for any pattern reads every row): on PostgreSQL, a read
    transaction of their own under :func:`plan_with_values`. Inside a transaction, or
    on SQLite (whose write lock a transaction would take), just the reads."""
    engine = current_engine()
    if not isinstance(engine, PostgresEngine) or engine.transaction_exists():
        yield
        return
    async with engine.transaction():
        await plan_with_values()
        yield


async def analyze(*tables: type[Table]) -> None:
    """Refresh PostgreSQL's statistics of ``tables`` (a bulk load makes them stale: the
    planner would scan a table it thinks small instead of using its index). SQLite: nothing."""
    engine = current_engine()
    if isinstance(engine, PostgresEngine):
        names = ", ".join(f'"{table._meta.tablename}"' for table in tables)
        await engine.run_ddl(f"ANALYZE {names}")


async def lock_row(table: type[Table], row_id: int) -> None:
    """Take ``row_id``'s row lock until the surrounding transaction ends.

    PostgreSQL: ``SELECT … FOR UPDATE``, so a second transaction locking the
    same row waits for the first to commit, then reads what it wrote. SQLite
    has no row locks: the surrounding :func:`transaction` already holds the
    database's write lock from its ``BEGIN IMMEDIATE``, which serialises
    writers the same way. Call it inside :func:`transaction`.
    """
    engine = table._meta.db
    if isinstance(engine, PostgresEngine):
        name = table._meta.tablename
        await table.raw(f"SELECT id FROM {name} WHERE id = {{}} FOR UPDATE", row_id).run()


async def lock_keys(*keys: tuple[int, int]) -> None:
    """Take transaction-level locks on (kind, id) keys, in the order given, until
    the surrounding transaction ends.

    PostgreSQL: ``pg_advisory_xact_lock(kind, id)``, so transactions after the
    same key run one after the other and the next one sees what the first
    committed (callers take keys in one fixed order, so two never wait for each
    other). SQLite: the surrounding :func:`transaction`'s ``BEGIN IMMEDIATE``
    already serialises every writer. Call it inside :func:`transaction`.
    """
    engine = current_engine()
    if isinstance(engine, PostgresEngine):
        for kind, key in keys:
            await engine.run_ddl(f"SELECT pg_advisory_xact_lock({int(kind)}, {int(key)})")


def is_unique_violation(exc: BaseException) -> bool:
    """Unique violations differ per driver; callers ask here."""
    if isinstance(exc, sqlite3.IntegrityError):
        return "UNIQUE" in str(exc)
    asyncpg = sys.modules.get("asyncpg")
    return bool(asyncpg is not None and isinstance(exc, asyncpg.exceptions.UniqueViolationError))


def is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot be reached at all, not that a query was wrong.

    PostgreSQL: the connection was refused or lost (asyncpg's connection errors, an
    ``OSError`` raised inside asyncpg while connecting), the server is shutting
    down or starting up, or it has no connection slot left. SQLite: the file
    cannot be opened. Anything else (bugs, constraint violations, a full disk, a
    locked database) is not an outage. The exception's causes are looked at too,
    since a failed rollback on a dead connection hides the first error.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 8:
        seen.add(id(current))
        if _is_unreachable_error(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _is_unreachable_error(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.OperationalError):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None:
            return code & 0xFF == sqlite3.SQLITE_CANTOPEN
        return str(exc) == "unable to open database file"
    asyncpg = sys.modules.get("asyncpg")
    if asyncpg is None:
        return False
    errors = asyncpg.exceptions
    if isinstance(
        exc,
        (
            errors.PostgresConnectionError,  # 08xxx: refused, lost, does not exist
            errors.AdminShutdownError,  # 57P01: the server is stopping
            errors.CrashShutdownError,  # 57P02
            errors.CannotConnectNowError,  # 57P03: the server is starting up
            errors.TooManyConnectionsError,  # 53300: no connection slot left
        ),
    ):
        return True
    # Refused, reset, timed out or unresolvable while asyncpg was connecting.
    return isinstance(exc, OSError) and _raised_in(exc, "asyncpg")


def _raised_in(exc: BaseException, package: str) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "")
        if module == package or module.startswith(package + "."):
            return True
        tb = tb.tb_next
    return False


async def ping() -> bool:
    """Whether the database answers a trivial query (health checks)."""
    try:
        await current_engine().run_ddl("SELECT 1")
    except Exception:
        return False
    return True
