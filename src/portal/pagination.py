"""Keyset pagination: page 10,000 costs what page 1 costs.

A cursor is the (sort value, id) of the last row shown, opaque to the user.
Lists never run a full COUNT.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from piccolo.columns import Column
from piccolo.query.methods.select import Select

from portal.fields import MAX_ID

MAX_BIGINT = 2**63 - 1


@dataclass(frozen=True)
class Page:
    rows: list[dict[str, Any]]
    next_cursor: str | None


def encode_cursor(sort_value: Any, row_id: int) -> str:
    raw = json.dumps([sort_value, row_id], default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[Any, int] | None:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value, row_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError, binascii.Error):
        return None
    # A cursor is opaque but not trusted: ids are 32-bit, values are scalars
    # (or a list of them, for lists sorted on several columns).
    if not isinstance(row_id, int) or isinstance(row_id, bool) or abs(row_id) > MAX_ID:
        return None
    parts = value if isinstance(value, list) else [value]
    if not all(_is_scalar(part) for part in parts):
        return None
    return value, row_id


def _is_scalar(value: Any) -> bool:
    if isinstance(value, int) and not isinstance(value, bool):
        return abs(value) <= MAX_BIGINT
    return value is None or isinstance(value, (str, float))


def _as_instant(value: Any) -> datetime | None:
    """A timestamp cursor value (ISO 8601 text) as an aware datetime; None if it is not one."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        instant = datetime.fromisoformat(value)
        if instant.tzinfo is None:
            instant = instant.replace(tzinfo=UTC)
        return instant.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _fits(column: Column, value: Any) -> bool:
    """Whether a cursor's sort value has the type (and range) of its column."""
    if value is None:
        return True
    if column.value_type is int:
        limit = MAX_BIGINT if "Big" in type(column).__name__ else MAX_ID
        return isinstance(value, int) and abs(value) <= limit
    if column.value_type is str:
        return isinstance(value, str) and "\x00" not in value
    return not isinstance(value, list)


async def keyset_page(
    query: Select,
    sort_column: Column,
    id_column: Column,
    *,
    after: str | None,
    limit: int = 50,
    descending: bool = False,
) -> Page:
    """Rows ordered by (sort_column, id) after the cursor, plus the next cursor."""
    limit = max(1, min(limit, 200))
    position = decode_cursor(after)
    if position is not None and not _fits(sort_column, position[0]):
        position = None  # a forged cursor: start at the first page
    if position is not None and sort_column.value_type is datetime:
        # Timestamps travel as ISO 8601 text; compare them as instants.
        instant = _as_instant(position[0])
        position = None if instant is None else (instant, position[1])
    if position is not None:
        value, row_id = position
        if descending:
            # The redundant bound lets PostgreSQL start the index scan at the
            # cursor instead of filtering every row before it.
            query = query.where(
                (sort_column <= value)
                & ((sort_column < value) | ((sort_column == value) & (id_column < row_id)))
            )
        else:
            query = query.where(
                (sort_column >= value)
                & ((sort_column > value) | ((sort_column == value) & (id_column > row_id)))
            )
    columns = [id_column] if sort_column is id_column else [sort_column, id_column]
    query = query.order_by(*columns, ascending=not descending)
    rows = await query.limit(limit + 1).run()
    more = len(rows) > limit
    rows = rows[:limit]
    sort_key = sort_column._meta.name
    next_cursor = encode_cursor(rows[-1][sort_key], rows[-1]["id"]) if more and rows else None
    return Page(rows=rows, next_cursor=next_cursor)
