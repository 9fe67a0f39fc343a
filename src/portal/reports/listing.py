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
    PAYMENT_TAX,
    REFUND_TAX,
    WITHDRAWN,
    _payment_extra,
    _status_clauses,
    _time_columns,
)
from portal.reports.filters import Filters
from portal.reports.segments import LocalDays, _after, _period_clause


@dataclass(slots=True)
class PaymentLine:
    """One row of the payments report: a payment, a refund of one, or a dispute's
    withdrawal or reinstatement (``disputed`` = +amount withdrawn, −amount put back)."""

    kind: str  # payment | refund | dispute_withdrawn | dispute_reinstated
    id: int
    at: datetime
    date: date
    location: str
    client: str
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
    p_after, p_after_args = _line_after("payment", p_time, "p.id", position)
    r_after, r_after_args = _line_after("refund", r_time, "r.id", position)
    p_period, p_period_args, lo, hi = _period_clause(p_time, "s.location", days)
    r_period, r_period_args, _, _ = _period_clause(r_time, "s.location", days)
    common = "JOIN location l ON l.id = s.location JOIN app_user u ON u.id = s.client "
    payments = (
        f"SELECT 'payment' AS kind, p.id AS id, {p_time} AS ts, s.location AS loc, "
        "l.name AS location, u.email AS client, s.item_name AS item, p.method AS method, "
        f"p.amount_cents AS gross, {PAYMENT_TAX} AS tax, 0 AS refunded, 0 AS disputed, "
        "COALESCE(p.fee_cents, 0) AS fee, p.currency AS currency, "
        "p.payment_intent_id AS intent, s.id AS sale_id, p.status AS status "
        f"FROM payment p JOIN sale s ON s.id = p.sale {common}"
        f"WHERE {p_status} AND {p_time} >= {{}} AND {p_time} < {{}} AND {p_period}"
        f"{extra}{p_after} ORDER BY {p_time}, p.id LIMIT {{}}"
    )
    rows = await sql.fetch(
        payments, [lo, hi, *p_period_args, *extra_args, *p_after_args, limit + 1]
    )
    for row in rows:
        row["ts"] = sql.as_datetime(row["ts"])

    def bound(clause: str, args: list[Any], time: str) -> tuple[str, list[Any]]:
        # A full page in hand: no row after its last instant can be on it.
        if len(rows) <= limit:
            return clause, args
        rows.sort(key=_line_order)
        return clause + f" AND {time} <= {{}}", [*args, rows[limit]["ts"]]

    r_after, r_after_args = bound(r_after, r_after_args, r_time)
    refunds = (
        f"SELECT 'refund' AS kind, r.id AS id, {r_time} AS ts, s.location AS loc, "
        "l.name AS location, u.email AS client, s.item_name AS item, p.method AS method, "
        f"0 AS gross, 0 - ({REFUND_TAX}) AS tax, r.amount_cents AS refunded, 0 AS disputed, "
        "0 AS fee, r.currency AS currency, p.payment_intent_id AS intent, s.id AS sale_id, "
        "r.status AS status "
        "FROM refund r JOIN payment p ON p.id = r.payment JOIN sale s ON s.id = r.sale "
        f"{common}WHERE {r_status} AND {r_time} >= {{}} AND {r_time} < {{}} AND {r_period}"
        f"{extra}{r_after} ORDER BY {r_time}, r.id LIMIT {{}}"
    )
    refund_rows = await sql.fetch(
        refunds, [lo, hi, *r_period_args, *extra_args, *r_after_args, limit + 1]
    )
    for row in refund_rows:
        row["ts"] = sql.as_datetime(row["ts"])
    rows += refund_rows
    if f.status in DISPUTE_STATUSES:
        for kind in DISPUTE_KINDS:
            d_time = DISPUTE_TIME[kind]
            d_after, d_after_args = bound(*_line_after(kind, d_time, "d.id", position), d_time)
            d_period, d_period_args, _, _ = _period_clause(d_time, "s.location", days)
            disputes = (
                f"SELECT '{kind}' AS kind, d.id AS id, {d_time} AS ts, s.location AS loc, "
                "l.name AS location, u.email AS client, s.item_name AS item, "
                f"p.method AS method, {dispute_line_columns(kind)}, d.currency AS currency, "
                "p.payment_intent_id AS intent, s.id AS sale_id, d.status AS status "
                f"FROM {DISPUTE_FROM}{common}"
                f"WHERE {d_time} >= {{}} AND {d_time} < {{}} AND {d_period}"
                f"{extra}{d_after} ORDER BY {d_time}, d.id LIMIT {{}}"
            )
            dispute_rows = await sql.fetch(
                disputes, [lo, hi, *d_period_args, *extra_args, *d_after_args, limit + 1]
            )
            for row in dispute_rows:
                row["ts"] = sql.as_datetime(row["ts"])
            rows += dispute_rows
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
