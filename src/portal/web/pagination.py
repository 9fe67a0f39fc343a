"""Keyset pagination: page 10,000 costs what page 1 costs.

A cursor is the (sort value, id) of the last row shown, opaque to the user.
Lists never run a full COUNT.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from piccolo.columns import Column
from piccolo.query.methods.select import Select


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
    if not isinstance(row_id, int):
        return None
    return value, row_id


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
