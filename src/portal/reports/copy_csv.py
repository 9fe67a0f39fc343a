"""The big CSV downloads on PostgreSQL: the database writes the CSV itself.

``/reports/payments.csv`` and ``/reports/journal.csv`` can run to millions of
rows. On PostgreSQL one ``COPY (SELECT …) TO STDOUT WITH (FORMAT csv)`` on a
pooled connection produces the whole file: the SELECT is the listing of
``service.payment_lines`` / ``service.journal_lines`` (same rows, filters and
order) with every cell already formatted the way ``exports.csv_stream``
writes it:

* local dates from the period's constant-offset segments (``_segments``, the
  same pieces ``LocalDays`` uses), as the UTC time plus the segment's offset;
* amounts in currency units with the currency's decimals (``units``);
* text cells with the formula-injection escaping of ``exports._csv_cell``,
  and empty text as NULL (COPY writes NULL as nothing and "" as ``""``);
* COPY's CSV quoting (comma, quote, CR or LF → quoted, quotes doubled) is
  the ``csv`` module's minimal quoting; only the line end differs, and
  ``CrLf`` turns each row's LF into CRLF, leaving line breaks inside quoted
  cells alone.

asyncpg hands the COPY's data to a callback; the callback puts each chunk on a
small bounded queue that the response's byte iterator drains. While the
client is slow the queue is full, the callback waits, asyncpg stops reading
the socket and PostgreSQL waits in turn, so memory stays flat. If the client
goes away the iterator is closed, the COPY task is cancelled and asyncpg
cancels the statement on the server.

SQLite keeps the Python writer (``csv_stream`` over the service's keyset
pages); the PostgreSQL tests compare the two byte for byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import lru_cache
from typing import Any

from babel.core import get_global
from piccolo.engine.postgres import PostgresEngine
from piccolo.querystring import QueryString

from portal import db
from portal.ledger import daily
from portal.money import minor_digits
from portal.reports import service
from portal.reports.filters import METHODS, Filters
from portal.reports.listing import CLIENT

# Chunks (about 64 KiB each, as asyncpg reads them) held between the database
# and the client at most.
QUEUE_CHUNKS = 8

Query = tuple[str, list[Any]]  # SQL with {} placeholders, and its values

# -- SQL pieces ---------------------------------------------------------------------------


def cell(expression: str) -> str:
    """A text cell as ``exports._csv_cell`` writes it; NULL for an empty one.

    Text that starts like a formula (= + - @ tab CR) and is not a plain number
    gets a leading apostrophe.
    """
    return (
        f"CASE WHEN {expression} = '' THEN NULL "
        f"WHEN ascii({expression}) IN (61, 43, 45, 64, 9, 13) "
        f"AND {expression} !~ '^-?[0-9]+(\\.[0-9]+)?\\n?$' THEN '''' || {expression} "
        f"ELSE {expression} END"
    )


def labelled(expression: str, labels: dict[str, str]) -> str:
    """A code column shown by its label (the code itself when it has none)."""
    whens = " ".join(f"WHEN '{code}' THEN '{label}'" for code, label in labels.items())
    return f"CASE {expression} {whens} ELSE {expression} END"


def amount(cents: str, digits: str = "cur.digits") -> str:
    """Minor units → currency units as text ("1234.50", "-0.05", "1500" for yen)."""
    return (
        f"CASE COALESCE({digits}, {_default_digits()}) "
        f"WHEN 2 THEN (({cents}) * 0.01)::text WHEN 0 THEN ({cents})::text "
        f"WHEN 3 THEN (({cents}) * 0.001)::text WHEN 4 THEN (({cents}) * 0.0001)::text "
        f"ELSE NULL END"
    )


def local_date(column: str, offset: str = "seg.off") -> str:
    """The local date of a UTC instant, from its segment's constant offset in seconds."""
    return f"to_char(({column} AT TIME ZONE 'UTC') + {offset} * INTERVAL '1 second', 'YYYY-MM-DD')"


@lru_cache(maxsize=1)
def _default_digits() -> int:
    return int(get_global("currency_fractions")["DEFAULT"][0])


@lru_cache(maxsize=1)
def currency_cte() -> str:
    """``cur(code, digits)``: every currency whose minor unit is not the default's."""
    default = _default_digits()
    rows = []
    for code in sorted(get_global("currency_fractions")):
        if code == "DEFAULT" or not (len(code) == 3 and code.isalpha() and code.isupper()):
            continue
        digits = minor_digits(code)
        if digits != default:
            if digits not in (0, 2, 3, 4):  # amount() writes these
                raise ValueError(f"{code} has {digits} decimals")
            rows.append(f"('{code}', {digits})")
    return f"cur(code, digits) AS (VALUES {', '.join(rows) or '(NULL, NULL)'})"


# -- the two listings ----------------------------------------------------------------------


async def payments_query(f: Filters) -> Query | None:
    """The payments report's rows as CSV cells, in ``payment_lines`` order; None if none."""
    if not f.locations:
        return None
    segments, seg_args, lo, hi = service._segments(f)
    p_time, r_time = service._time_columns(f.status)
    p_status, r_status = service._status_clauses(f.status)
    extra, extra_args = service._payment_extra(f)
    order = service.KIND_ORDER
    common = (
        "JOIN seg ON seg.loc = s.location AND {t} >= seg.lo AND {t} < seg.hi "
        "JOIN location l ON l.id = s.location JOIN app_user u ON u.id = s.client "
    )
    payments = (
        f"SELECT {p_time} AS ts, {order['payment']} AS k, p.id AS id, seg.off AS off, "
        f"'payment' AS kind, l.name AS location, {CLIENT}, s.item_name AS item, "
        f"p.method AS method, p.amount_cents AS gross, {service.PAYMENT_TAX} AS tax, "
        "0 AS refunded, 0 AS disputed, COALESCE(p.fee_cents, 0) AS fee, "
        "p.currency AS currency, p.payment_intent_id AS intent, s.id AS sale_id, "
        "s.channel AS channel "
        f"FROM payment p JOIN sale s ON s.id = p.sale {common.format(t=p_time)}"
        f"WHERE {p_status} AND {p_time} >= {{}} AND {p_time} < {{}}{extra}"
    )
    refunds = (
        f"SELECT {r_time} AS ts, {order['refund']} AS k, r.id AS id, seg.off AS off, "
        f"'refund' AS kind, l.name AS location, {CLIENT}, s.item_name AS item, "
        f"p.method AS method, 0 AS gross, 0 - ({service.REFUND_TAX}) AS tax, "
        "r.amount_cents AS refunded, 0 AS disputed, 0 AS fee, r.currency AS currency, "
        "p.payment_intent_id AS intent, s.id AS sale_id, s.channel AS channel "
        "FROM refund r JOIN payment p ON p.id = r.payment JOIN sale s ON s.id = r.sale "
        f"{common.format(t=r_time)}"
        f"WHERE {r_status} AND {r_time} >= {{}} AND {r_time} < {{}}{extra}"
    )
    branches = [payments, refunds]
    args = [*seg_args, lo, hi, *extra_args, lo, hi, *extra_args]
    if f.status in service.DISPUTE_STATUSES:
        for kind in service.DISPUTE_KINDS:
            d_time = service.DISPUTE_TIME[kind]
            branches.append(
                f"SELECT {d_time} AS ts, {order[kind]} AS k, d.id AS id, seg.off AS off, "
                f"'{kind}' AS kind, l.name AS location, {CLIENT}, "
                f"s.item_name AS item, p.method AS method, "
                f"{service.dispute_line_columns(kind)}, d.currency AS currency, "
                "p.payment_intent_id AS intent, s.id AS sale_id, s.channel AS channel "
                f"FROM {service.DISPUTE_FROM}{common.format(t=d_time)}"
                f"WHERE {d_time} >= {{}} AND {d_time} < {{}}{extra}"
            )
            args += [lo, hi, *extra_args]
    query = (
        f"WITH {segments}, {currency_cte()} "
        f"SELECT {local_date('x.ts', 'x.off')}, {cell('x.location')}, {cell('x.client')}, "
        f"{cell('x.client_email')}, {cell('x.item')}, {cell(labelled('x.method', METHODS))}, "
        f"{amount('x.gross')}, {amount('x.tax')}, "
        f"{amount('x.refunded')}, {amount('x.disputed')}, {amount('x.fee')}, "
        f"{amount('x.gross - x.refunded - x.disputed - x.fee')}, {cell('x.currency')}, "
        f"{cell('x.intent')}, x.sale_id, {cell('x.kind')}, "
        f"CASE WHEN x.channel = '{daily.MEMBERSHIP_CHANNEL}' THEN 'membership' ELSE 'package' END "
        f"FROM ({' UNION ALL '.join(branches)}) x LEFT JOIN cur ON cur.code = x.currency "
        "ORDER BY x.ts, x.k, x.id"
    )
    return query, args


async def journal_query(f: Filters) -> Query | None:
    """The journal's lines as CSV cells, in ``journal_lines`` order; None if none."""
    if not f.locations and not f.include_unlocated:
        return None
    # Each line is dated in its own location's zone (service.LINE_LOCATION).
    debit = f"CASE WHEN jl.debit_cents <> 0 THEN {amount('jl.debit_cents')} END"
    credit = f"CASE WHEN jl.credit_cents <> 0 THEN {amount('jl.credit_cents')} END"
    query, args = service.journal_query(
        f,
        f"je.id, {local_date('jl.occurred_at')}, {cell('jl.account')}, {debit}, {credit}, "
        f"{cell('l.name')}, {cell('je.memo')}, {cell('je.reference')}",
        None,
        ctes=f"{currency_cte()}, ",
        joins="LEFT JOIN cur ON cur.code = jl.currency ",
    )
    return query, args


# -- streaming ----------------------------------------------------------------------------


class CrLf:
    """COPY ends rows with LF, the ``csv`` module with CRLF: converts, across chunks.

    A line break inside a quoted cell stays as it is. Whether a byte is inside
    quotes follows from the number of quote characters before it (a doubled
    quote inside a cell leaves an empty stretch "outside"), so the state
    carried from one chunk to the next is one bit.
    """

    def __init__(self) -> None:
        self.inside = False

    def __call__(self, chunk: bytes) -> bytes:
        if not self.inside and b'"' not in chunk:
            return chunk.replace(b"\n", b"\r\n")
        parts = chunk.split(b'"')
        first = 1 if self.inside else 0
        for i in range(first, len(parts), 2):
            parts[i] = parts[i].replace(b"\n", b"\r\n")
        # An odd number of quotes in the chunk flips the state.
        if (len(parts) - 1) % 2:
            self.inside = not self.inside
        return b'"'.join(parts)


def header_line(header: Sequence[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(header)
    return buffer.getvalue().encode()


@contextlib.asynccontextmanager
async def _connection(engine: PostgresEngine) -> AsyncIterator[Any]:
    """The current transaction's connection, a pooled one, or a new one."""
    transaction = engine.current_transaction.get()
    if transaction is not None:
        yield transaction.connection
    elif engine.pool is not None:
        async with engine.pool.acquire() as connection:
            yield connection
    else:
        connection = await engine.get_new_connection()
        try:
            yield connection
        finally:
            await connection.close()


_DONE = object()


async def copy_stream(header: Sequence[str], query: Query | None) -> AsyncIterator[bytes]:
    """The header, then COPY's CSV of ``query`` (``{}`` placeholders) with CRLF line ends."""
    yield header_line(header)
    if query is None:
        return
    engine = db.current_engine()
    assert isinstance(engine, PostgresEngine)
    text, args = QueryString(query[0], *query[1]).compile_string("postgres")
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=QUEUE_CHUNKS)

    async def sink(chunk: bytes | bytearray) -> None:
        # asyncpg may hand over a bytearray; the queue keeps an immutable copy.
        await queue.put(bytes(chunk))

    async def run() -> None:
        try:
            async with _connection(engine) as connection:
                await connection.copy_from_query(text, *args, output=sink, format="csv")
        except Exception as exc:  # handed to the reader, which raises it
            await queue.put(exc)
        else:
            await queue.put(_DONE)

    task = asyncio.create_task(run())
    crlf = CrLf()
    try:
        while True:
            item = await queue.get()
            if item is _DONE:
                break
            if isinstance(item, Exception):
                raise item
            yield crlf(item)
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def available() -> bool:
    """Whether the downloads can use COPY (PostgreSQL)."""
    return isinstance(db.current_engine(), PostgresEngine)


async def _listing(
    header: Sequence[str], make_query: Callable[[Filters], Awaitable[Query | None]], f: Filters
) -> AsyncIterator[bytes]:
    async for chunk in copy_stream(header, await make_query(f)):
        yield chunk


def payments_csv(f: Filters, header: Sequence[str]) -> AsyncIterator[bytes] | None:
    """The payments CSV written by PostgreSQL; None on SQLite (the Python writer's turn)."""
    return _listing(header, payments_query, f) if available() else None


def journal_csv(f: Filters, header: Sequence[str]) -> AsyncIterator[bytes] | None:
    """The journal CSV written by PostgreSQL; None on SQLite (the Python writer's turn)."""
    return _listing(header, journal_query, f) if available() else None
