"""The payments report's rows one by one: payments, refunds and dispute movements
in keyset pages ordered by (time, kind, id)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from portal.pagination import decode_cursor, encode_cursor
from portal.reports import sql
from portal.reports.cash import (
    DISPUTE_FROM,
    DISPUTE_KINDS,
    DISPUTE_STATUSES,
    DISPUTE_TIME,
    KIND_ORDER,
    PAYMENT_FROM,
    PAYMENT_TAX,
    REFUND_FROM,
    REFUND_TAX,
    WITHDRAWN,
    _payment_extra,
    _status_clauses,
    _time_columns,
    row_alias,
)
from portal.reports.filters import Filters
from portal.reports.segments import LocalDays, _after, _period_clause

# The client of a listed row (``u``): by name, as every list shows a person, and the email.
CLIENT = "u.name AS client, u.email AS client_email"


@dataclass(slots=True)
class PaymentLine:
    """One row of the payments report: a payment, a refund of one, or a dispute's
    withdrawal or reinstatement (``disputed`` = +amount withdrawn, −amount put back)."""

    kind: str  # payment | refund | dispute_withdrawn | dispute_reinstated
    id: int
    at: datetime
    date: date
    location: str
    client: str  # the client's name, as every list shows a person
    client_email: str
    item: str
    payment_method: str
    gross: int
    tax: int
    refunded: int
    disputed: int
    fee: int
    currency: str
    stripe_payment_intent: str
    sale_id: int
    status: str
    product: str = "packages"  # memberships: the sale is a membership's period

    @property
    def net(self) -> int:
        return self.gross - self.refunded - self.disputed - self.fee


def _line(row: dict[str, Any], days: LocalDays) -> PaymentLine:
    at = sql.as_datetime(row["ts"])
    assert at is not None
    return PaymentLine(
        kind=str(row["kind"]),
        id=int(row["id"]),
        at=at,
        date=days.date(int(row["loc"]), at),
        location=str(row["location"]),
        client=str(row["client"] or ""),
        client_email=str(row["client_email"] or ""),
        item=str(row["item"] or ""),
        payment_method=str(row["method"] or ""),
        gross=sql.as_int(row["gross"]),
        tax=sql.as_int(row["tax"]),
        refunded=sql.as_int(row["refunded"]),
        disputed=sql.as_int(row["disputed"]),
        fee=sql.as_int(row["fee"]),
        currency=str(row["currency"]),
        stripe_payment_intent=str(row["intent"] or ""),
        sale_id=int(row["sale_id"]),
        status=str(row["status"]),
        product="memberships" if row["channel"] == "membership" else "packages",
    )


@dataclass
class LinePage:
    rows: list[PaymentLine]
    next_cursor: str | None


def _line_after(
    kind: str, time: str, id_column: str, position: tuple[datetime, str, int] | None
) -> tuple[str, list[Any]]:
    """The keyset condition of one kind of row after a cursor at (time, kind, id)."""
    if position is None:
        return "", []
    at, after_kind, row_id = position
    if KIND_ORDER[kind] < KIND_ORDER[after_kind]:
        return _after(time, id_column, at, None)
    if kind == after_kind:
        return _after(time, id_column, at, row_id)
    return f" AND {time} >= {{}}", [at]


def dispute_line_columns(kind: str) -> str:
    """The listed columns of a dispute's withdrawal or reinstatement (``d``, ``p``, ``s``)."""
    if kind == WITHDRAWN:
        return "0 AS gross, 0 AS tax, 0 AS refunded, d.amount_cents AS disputed, d.fee_cents AS fee"
    return "0 AS gross, 0 AS tax, 0 AS refunded, 0 - d.amount_cents AS disputed, 0 AS fee"


async def payment_lines(f: Filters, *, after: str | None = None, limit: int = 100) -> LinePage:
    """One keyset page of payment, refund and dispute rows, oldest first.

    Ordered by (time, kind, id). Each branch walks its time index from the
    cursor and stops at the limit; the short lists are then merged. Once a
    full page is in hand, the later branches stop at its last instant.
    """
    if not f.locations:
        return LinePage(rows=[], next_cursor=None)
    days = LocalDays(((loc.id, loc.timezone) for loc in f.locations), f.period)
    p_time, r_time = _time_columns(f.status)
    p_status, r_status = _status_clauses(f.status)
    extra, extra_args = _payment_extra(f)
    position = _decode_line_cursor(after)
    common = "JOIN location l ON l.id = s.location JOIN app_user u ON u.id = s.client "
    _, _, lo, hi = _period_clause(p_time, "s.location", days)
    rows: list[dict[str, Any]] = []

    async def fetch(
        kind: str,
        source: str,
        time: str,
        figures: str,
        where: str,
        after: tuple[str, list[Any]],
        location: str = "s.location",
    ) -> None:
        """One kind of row (``source``'s first alias) from the cursor on, a page and
        one at the most, into ``rows``; ``location``: the column that places it."""
        row = row_alias(source)
        period, period_args, _, _ = _period_clause(time, location, days)
        found = await sql.fetch(
            f"SELECT '{kind}' AS kind, {row}.id AS id, {time} AS ts, s.location AS loc, "
            f"l.name AS location, {CLIENT}, s.item_name AS item, p.method AS method, "
            f"{figures}, {row}.currency AS currency, p.payment_intent_id AS intent, "
            f"s.id AS sale_id, s.channel AS channel, {row}.status AS status FROM {source}{common}"
            f"WHERE {where}{time} >= {{}} AND {time} < {{}} AND {period}"
            f"{extra}{after[0]} ORDER BY {time}, {row}.id LIMIT {{}}",
            [lo, hi, *period_args, *extra_args, *after[1], limit + 1],
        )
        for found_row in found:
            found_row["ts"] = sql.as_datetime(found_row["ts"])
        rows.extend(found)

    def bound(clause: str, args: list[Any], time: str) -> tuple[str, list[Any]]:
        # A full page in hand: no row after its last instant can be on it.
        if len(rows) <= limit:
            return clause, args
        rows.sort(key=_line_order)
        return clause + f" AND {time} <= {{}}", [*args, rows[limit]["ts"]]

    await fetch(
        "payment", PAYMENT_FROM, p_time,
        f"p.amount_cents AS gross, {PAYMENT_TAX} AS tax, 0 AS refunded, 0 AS disputed, "
        "COALESCE(p.fee_cents, 0) AS fee",
        f"{p_status} AND ", _line_after("payment", p_time, "p.id", position),
        # The payment's own location: one clinic's payments of a period come from
        # its index in time order, not from every clinic's.
        "p.location",
    )  # fmt: skip
    await fetch(
        "refund", REFUND_FROM, r_time,
        f"0 AS gross, 0 - ({REFUND_TAX}) AS tax, r.amount_cents AS refunded, 0 AS disputed, "
        "0 AS fee",
        f"{r_status} AND ", bound(*_line_after("refund", r_time, "r.id", position), r_time),
    )  # fmt: skip
    if f.status in DISPUTE_STATUSES:
        for kind in DISPUTE_KINDS:
            d_time = DISPUTE_TIME[kind]
            d_after = bound(*_line_after(kind, d_time, "d.id", position), d_time)
            await fetch(kind, DISPUTE_FROM, d_time, dispute_line_columns(kind), "", d_after)
    rows.sort(key=_line_order)
    lines = [_line(r, days) for r in rows[:limit]]
    cursor = None
    if len(rows) > limit and lines:
        last = lines[-1]
        cursor = encode_cursor([last.at.isoformat(), last.kind], last.id)
    return LinePage(rows=lines, next_cursor=cursor)


def _line_order(row: dict[str, Any]) -> tuple[datetime, int, int]:
    return row["ts"], KIND_ORDER[str(row["kind"])], int(row["id"])


def _decode_line_cursor(cursor: str | None) -> tuple[datetime, str, int] | None:
    decoded = decode_cursor(cursor)
    if decoded is None:
        return None
    value, row_id = decoded
    try:
        at_text, kind = value
        at = datetime.fromisoformat(str(at_text))
    except (TypeError, ValueError):
        return None
    if kind not in KIND_ORDER:
        return None
    return (at if at.tzinfo else at.replace(tzinfo=UTC)), str(kind), row_id


async def iter_payment_lines(f: Filters, *, batch: int = 2000) -> AsyncIterator[PaymentLine]:
    """Every row of the report, fetched a keyset page at a time (flat memory)."""
    cursor: str | None = None
    while True:
        page = await payment_lines(f, after=cursor, limit=batch)
        for line in page.rows:
            yield line
        if page.next_cursor is None:
            return
        cursor = page.next_cursor
