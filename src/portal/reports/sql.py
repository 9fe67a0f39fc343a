"""The few SQL pieces that differ between PostgreSQL and SQLite.

Reports are raw aggregate queries (``Table.raw`` with ``{}`` placeholders);
these helpers keep the dialect differences in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from portal import db
from portal.ledger.tables import JournalLine
from portal.reports.periods import SECONDS_PER_DAY


def is_sqlite() -> bool:
    return db.is_sqlite(db.current_engine())


def epoch(column: str) -> str:
    """Seconds since 1970 of a timestamptz column, as an integer expression."""
    if is_sqlite():
        return f"CAST(strftime('%s', {column}) AS INTEGER)"
    return f"CAST(FLOOR(EXTRACT(EPOCH FROM {column})) AS BIGINT)"


def local_day(column: str, offset: str) -> str:
    """Local day number (days since 1970-01-01 local) of ``column`` at a fixed UTC offset."""
    # Integer division: the sums are positive for any instant after 1970.
    return f"(({epoch(column)} + {offset}) / {SECONDS_PER_DAY})"


def values_cte(
    name: str, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]]
) -> tuple[str, list[Any]]:
    """``name(col, …) AS (VALUES …)`` with typed parameters; (sql, args).

    ``columns`` are (name, type) with type "int" or "ts". An empty ``rows``
    gives a CTE with one row that matches nothing.
    """
    sqlite = is_sqlite()
    cast = {
        "int": "{}" if sqlite else "CAST({} AS BIGINT)",
        "ts": "{}" if sqlite else "CAST({} AS TIMESTAMPTZ)",
    }
    args: list[Any] = []
    tuples = []
    if not rows:
        rows = [[-1 if kind == "int" else datetime(1970, 1, 1, tzinfo=UTC) for _, kind in columns]]
    for row in rows:
        cells = []
        for (_, kind), value in zip(columns, row, strict=True):
            cells.append(cast[kind])
            args.append(value)
        tuples.append("(" + ", ".join(cells) + ")")
    names = ", ".join(col for col, _ in columns)
    return f"{name}({names}) AS (VALUES {', '.join(tuples)})", args


def in_list(values: Sequence[Any]) -> tuple[str, list[Any]]:
    """``({}, {}, …)`` for an IN clause; never empty."""
    items = list(values) or [None]
    return "(" + ", ".join("{}" for _ in items) + ")", items


async def fetch(sql: str, args: Sequence[Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = await JournalLine.raw(sql, *args).run()
    return rows


async def fetch_all(*queries: tuple[str, Sequence[Any]]) -> list[list[dict[str, Any]]]:
    """Several independent aggregates, each scanning its own table: side by side on
    PostgreSQL's pool (the report takes as long as its slowest query rather than
    their sum), in turn on SQLite and inside a transaction."""
    return await db.concurrently(*(fetch(q, args) for q, args in queries))


def as_datetime(value: Any) -> datetime | None:
    """Timestamps come back as datetimes, or as text from SQLite subqueries."""
    if value is None or isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def as_int(value: Any) -> int:
    return int(value) if value is not None else 0
