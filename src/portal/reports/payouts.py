"""Stripe payouts on the "Fees and payouts" report: what reached the bank and what it contained.

A payout belongs to the period by its arrival date, a bank day (not an
instant, so no time zone applies). Its contents are the imported balance
transactions (``payout_line``), each placed at the location of the sale it
paid or refunded. Scope follows the other reports: owners and accountants
who choose no location see every payout, lines the portal cannot place and
payouts Stripe does not itemise included; anyone else (a manager, or a
chosen set of locations) sees only the lines of their locations, and a
payout only when it has such a line, with the sum of those lines in place of
the payout's amount. Every figure is one SQL aggregate or one keyset page.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from typing import Any

from portal.auth.service import CurrentUser
from portal.errors import Forbidden, NotFound
from portal.locations.service import visible_location_ids
from portal.pagination import decode_cursor, encode_cursor
from portal.reports import sql
from portal.reports.filters import Filters

# How the report names Stripe's balance transaction types.
TYPE_LABELS = {
    "charge": "Payment",
    "payment": "Payment",
    "refund": "Refund",
    "payment_refund": "Refund",
    "adjustment": "Adjustment",
    "payout_failure": "Returned payout",
    "stripe_fee": "Stripe fee",
}
# Export rows standing for what Stripe does not itemise.
UNITEMIZED = "unitemized"
DIFFERENCE = "difference"


def type_label(kind: str) -> str:
    return TYPE_LABELS.get(kind, kind.replace("_", " ").capitalize())


@dataclass(slots=True)
class PayoutRow:
    id: int
    stripe_payout_id: str
    arrival_date: date
    status: str
    amount: int  # Stripe's amount of the whole payout
    currency: str
    automatic: bool
    itemized: bool
    failure_message: str
    lines: int  # lines in scope
    all_lines: int
    gross: int
    fee: int
    net: int

    @property
    def partial(self) -> bool:
        """Only some of its lines are in scope (a payout spanning locations)."""
        return self.lines < self.all_lines

    @property
    def shown_amount(self) -> int:
        """The payout's amount, or the share of the locations in scope."""
        return self.net if self.partial else self.amount

    @property
    def ties(self) -> bool:
        """Its lines add up to the payout's amount."""
        return self.itemized and not self.partial and self.net == self.amount


@dataclass
class PayoutTotals:
    payouts: int = 0
    paid: int = 0
    paid_amount: int = 0  # money that reached the bank (the share in scope)
    gross: int = 0  # of the lines of paid payouts
    fee: int = 0
    net: int = 0


@dataclass
class PayoutPage:
    rows: list[PayoutRow]
    next_cursor: str | None
    totals: dict[str, PayoutTotals] = field(default_factory=dict)


@dataclass(slots=True)
class PayoutLineRow:
    id: int
    balance_transaction_id: str
    type: str
    location: str
    location_id: int | None
    client: str  # the client's name (their email when they have none)
    client_email: str
    item: str
    sale_id: int | None
    payment_id: int | None
    refund_id: int | None
    payment_intent_id: str
    source_id: str
    description: str
    gross: int
    fee: int
    net: int
    currency: str
    at: datetime | None

    @property
    def label(self) -> str:
        return type_label(self.type)


@dataclass
class PayoutDetail:
    payout: PayoutRow
    lines: list[PayoutLineRow]


# -- scope ---------------------------------------------------------------------------------


def _line_scope(location_ids: list[int] | None, include_unlocated: bool) -> tuple[str, list[Any]]:
    """Which lines are in scope: the locations (None: every line)."""
    if location_ids is None:
        return "1 = 1", []
    marks, args = sql.in_list(location_ids)
    if include_unlocated:
        return f"(pl.location IN {marks} OR pl.location IS NULL)", args
    return f"pl.location IN {marks}", args


def _scope(f: Filters) -> tuple[str, list[Any], bool]:
    """(line clause, args, full): full scope also shows payouts without lines in scope."""
    clause, args = _line_scope(f.location_ids, f.include_unlocated)
    return clause, args, f.include_unlocated


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _grouped(f: Filters, where_extra: str = "") -> tuple[str, list[Any]]:
    """Payouts arriving in the period with the sums of their lines in scope."""
    clause, args, full = _scope(f)
    having = "1 = 1" if full else "COUNT(pl.id) > 0"
    query = (
        "SELECT po.id AS id, po.stripe_payout_id AS stripe_payout_id, "
        "po.arrival_date AS arrival_date, po.status AS status, po.amount_cents AS amount, "
        "po.currency AS currency, po.automatic AS automatic, po.itemized AS itemized, "
        "po.failure_message AS failure_message, COUNT(pl.id) AS n, "
        "COALESCE(SUM(pl.gross_cents), 0) AS gross, COALESCE(SUM(pl.fee_cents), 0) AS fee, "
        "COALESCE(SUM(pl.net_cents), 0) AS net, "
        "(SELECT COUNT(*) FROM payout_line x WHERE x.payout = po.id) AS all_n "
        f"FROM payout po LEFT JOIN payout_line pl ON pl.payout = po.id AND {clause} "
        f"WHERE po.arrival_date >= {{}} AND po.arrival_date <= {{}}{where_extra} "
        "GROUP BY po.id, po.stripe_payout_id, po.arrival_date, po.status, po.amount_cents, "
        "po.currency, po.automatic, po.itemized, po.failure_message "
        f"HAVING {having}"
    )
    return query, [*args, f.period.start, f.period.end]


def _row(r: dict[str, Any]) -> PayoutRow:
    return PayoutRow(
        id=int(r["id"]),
        stripe_payout_id=str(r["stripe_payout_id"]),
        arrival_date=_as_date(r["arrival_date"]),
        status=str(r["status"]),
        amount=sql.as_int(r["amount"]),
        currency=str(r["currency"]),
        automatic=bool(r["automatic"]),
        itemized=bool(r["itemized"]),
        failure_message=str(r["failure_message"] or ""),
        lines=sql.as_int(r["n"]),
        all_lines=sql.as_int(r["all_n"]),
        gross=sql.as_int(r["gross"]),
        fee=sql.as_int(r["fee"]),
        net=sql.as_int(r["net"]),
    )


def _decode(cursor: str | None) -> tuple[date, int] | None:
    decoded = decode_cursor(cursor)
    if decoded is None:
        return None
    value, row_id = decoded
    try:
        day = date.fromisoformat(str(value[0] if isinstance(value, list) else value))
    except (TypeError, ValueError, IndexError):
        return None
    return day, row_id


async def payout_page(
    f: Filters, *, after: str | None = None, limit: int = 100, with_totals: bool = True
) -> PayoutPage:
    """One keyset page of the period's payouts by arrival date, and the totals per currency."""
    if not f.locations and not f.include_unlocated:
        return PayoutPage(rows=[], next_cursor=None)
    extra, extra_args = "", []
    position = _decode(after)
    if position is not None:
        extra = " AND (po.arrival_date > {} OR (po.arrival_date = {} AND po.id > {}))"
        extra_args = [position[0], position[0], position[1]]
    query, args = _grouped(f, extra)
    # The keyset arguments follow the period's in the WHERE clause.
    rows = await sql.fetch(
        f"{query} ORDER BY po.arrival_date, po.id LIMIT {{}}", [*args, *extra_args, limit + 1]
    )
    page = [_row(r) for r in rows[:limit]]
    cursor = None
    if len(rows) > limit and page:
        cursor = encode_cursor([page[-1].arrival_date.isoformat()], page[-1].id)
    return PayoutPage(
        rows=page, next_cursor=cursor, totals=await payout_totals(f) if with_totals else {}
    )


async def payout_totals(f: Filters) -> dict[str, PayoutTotals]:
    """Per currency: payouts in the period, and what the paid ones brought to the bank."""
    if not f.locations and not f.include_unlocated:
        return {}
    query, args = _grouped(f)
    rows = await sql.fetch(
        "SELECT v.currency AS currency, COUNT(*) AS payouts, "
        "SUM(CASE WHEN v.status = 'paid' THEN 1 ELSE 0 END) AS paid, "
        "SUM(CASE WHEN v.status <> 'paid' THEN 0 WHEN v.n < v.all_n THEN v.net "
        "ELSE v.amount END) AS paid_amount, "
        "SUM(CASE WHEN v.status = 'paid' THEN v.gross ELSE 0 END) AS gross, "
        "SUM(CASE WHEN v.status = 'paid' THEN v.fee ELSE 0 END) AS fee, "
        "SUM(CASE WHEN v.status = 'paid' THEN v.net ELSE 0 END) AS net "
        f"FROM ({query}) v GROUP BY v.currency ORDER BY v.currency",
        args,
    )
    return {
        str(r["currency"]): PayoutTotals(
            payouts=sql.as_int(r["payouts"]),
            paid=sql.as_int(r["paid"]),
            paid_amount=sql.as_int(r["paid_amount"]),
            gross=sql.as_int(r["gross"]),
            fee=sql.as_int(r["fee"]),
            net=sql.as_int(r["net"]),
        )
        for r in rows
    }


async def iter_payouts(f: Filters, *, batch: int = 500) -> AsyncIterator[PayoutRow]:
    cursor: str | None = None
    while True:
        page = await payout_page(f, after=cursor, limit=batch, with_totals=False)
        for row in page.rows:
            yield row
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


# -- contents ------------------------------------------------------------------------------

_LINE_COLUMNS = (
    "SELECT pl.id AS id, pl.payout AS payout, pl.balance_transaction_id AS txn, "
    "pl.type AS type, pl.location AS location_id, l.name AS location, "
    "COALESCE(NULLIF(u.name, ''), u.email) AS client, u.email AS client_email, "
    "s.item_name AS item, pl.sale AS sale_id, pl.payment AS payment_id, "
    "pl.refund AS refund_id, pl.payment_intent_id AS intent, pl.source_id AS source_id, "
    "pl.description AS description, pl.gross_cents AS gross, pl.fee_cents AS fee, "
    "pl.net_cents AS net, pl.currency AS currency, pl.stripe_created AS at "
    "FROM payout_line pl LEFT JOIN location l ON l.id = pl.location "
    "LEFT JOIN sale s ON s.id = pl.sale LEFT JOIN app_user u ON u.id = s.client "
)


def _line(r: dict[str, Any]) -> PayoutLineRow:
    def opt_id(key: str) -> int | None:
        return int(r[key]) if r[key] is not None else None

    return PayoutLineRow(
        id=int(r["id"]),
        balance_transaction_id=str(r["txn"]),
        type=str(r["type"]),
        location=str(r["location"] or ""),
        location_id=opt_id("location_id"),
        client=str(r["client"] or ""),
        client_email=str(r["client_email"] or ""),
        item=str(r["item"] or ""),
        sale_id=opt_id("sale_id"),
        payment_id=opt_id("payment_id"),
        refund_id=opt_id("refund_id"),
        payment_intent_id=str(r["intent"] or ""),
        source_id=str(r["source_id"] or ""),
        description=str(r["description"] or ""),
        gross=sql.as_int(r["gross"]),
        fee=sql.as_int(r["fee"]),
        net=sql.as_int(r["net"]),
        currency=str(r["currency"]),
        at=sql.as_datetime(r["at"]),
    )


async def _lines_of(
    payout_ids: list[int], clause: str, args: list[Any]
) -> dict[int, list[PayoutLineRow]]:
    out: dict[int, list[PayoutLineRow]] = {i: [] for i in payout_ids}
    if not payout_ids:
        return out
    marks, id_args = sql.in_list(payout_ids)
    rows = await sql.fetch(
        f"{_LINE_COLUMNS}WHERE pl.payout IN {marks} AND {clause} "
        "ORDER BY pl.payout, pl.stripe_created, pl.id",
        [*id_args, *args],
    )
    for r in rows:
        out[int(r["payout"])].append(_line(r))
    return out


async def payout_detail(user: CurrentUser, f: Filters, payout_id: int) -> PayoutDetail:
    """One payout and its lines in scope.

    404 for an unknown id; 403 when none of its lines is at a location the
    user may see (a manager and another clinic's payout). The lines shown
    follow the filters, like the list.
    """
    visible = visible_location_ids(user)
    scope_ids = None if visible is None else sorted(visible)
    user_clause, user_args = _line_scope(scope_ids, include_unlocated=False)
    header = await sql.fetch(
        "SELECT po.id AS id, po.stripe_payout_id AS stripe_payout_id, "
        "po.arrival_date AS arrival_date, po.status AS status, po.amount_cents AS amount, "
        "po.currency AS currency, po.automatic AS automatic, po.itemized AS itemized, "
        "po.failure_message AS failure_message, "
        f"(SELECT COUNT(*) FROM payout_line pl WHERE pl.payout = po.id AND {user_clause}) AS n, "
        "(SELECT COUNT(*) FROM payout_line x WHERE x.payout = po.id) AS all_n, "
        "0 AS gross, 0 AS fee, 0 AS net FROM payout po WHERE po.id = {}",
        [*user_args, payout_id],
    )
    if not header:
        raise NotFound("No such payout.")
    if visible is not None and not sql.as_int(header[0]["n"]):
        raise Forbidden("This payout holds nothing of your locations.")
    clause, args, _ = _scope(f)
    lines = (await _lines_of([payout_id], clause, args))[payout_id]
    row = _row(header[0])
    row.lines = len(lines)
    row.gross = sum(line.gross for line in lines)
    row.fee = sum(line.fee for line in lines)
    row.net = sum(line.net for line in lines)
    return PayoutDetail(payout=row, lines=lines)


# -- download ------------------------------------------------------------------------------


@dataclass(slots=True)
class ExportRow:
    """A row of the download: a line's figures (blank for no line) with its payout."""

    payout: PayoutRow
    type: str
    location: str = ""
    client: str = ""
    client_email: str = ""
    sale_id: int | None = None
    payment_intent_id: str = ""
    gross: int = 0
    fee: int = 0
    net: int = 0
    balance_transaction_id: str = ""


# What an export row takes of a line: every field but its payout, by the same name.
_LINE_FIELDS = tuple(f.name for f in fields(ExportRow) if f.name != "payout")


async def iter_export_rows(f: Filters, *, batch: int = 500) -> AsyncIterator[ExportRow]:
    """Every line in scope of the period's payouts, payout by payout.

    With the full scope each payout's rows add up to its amount: a payout
    Stripe does not itemise is one ``unitemized`` row, and lines that do not
    add up (never seen, but possible) get a ``difference`` row.
    """
    clause, args, full = _scope(f)
    cursor: str | None = None
    while True:
        page = await payout_page(f, after=cursor, limit=batch, with_totals=False)
        lines = await _lines_of([p.id for p in page.rows], clause, args)
        for payout in page.rows:
            for line in lines[payout.id]:
                yield ExportRow(payout, **{name: getattr(line, name) for name in _LINE_FIELDS})
            rest = payout.amount - payout.net
            if full and rest:
                kind = DIFFERENCE if payout.itemized else UNITEMIZED
                yield ExportRow(payout, kind, gross=rest, net=rest)
        if page.next_cursor is None:
            return
        cursor = page.next_cursor
