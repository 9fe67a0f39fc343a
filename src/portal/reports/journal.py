"""The journal's lines in keyset pages and the trial balance, each line dated in
its own location's zone (``LINE_LOCATION``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from portal.ledger.service import ACCOUNTS, ASSET, EXPENSE
from portal.pagination import decode_cursor, encode_cursor
from portal.reports import rollup, sql
from portal.reports.filters import Filters
from portal.reports.periods import EPOCH_DAY, SECONDS_PER_DAY, day_from_number
from portal.reports.segments import LINE_LOCATION, _line_zones, _segments


@dataclass(slots=True)
class JournalRow:
    id: int
    entry: int
    at: datetime
    date: date
    account: str
    debit: int
    credit: int
    currency: str
    location: str
    memo: str
    reference: str
    kind: str
    sale_id: int | None
    product: str = ""  # memberships | packages | "" (neither: payouts, imports, …)


# Which product a line is of, from its sale's channel or its entry's kind (listings only;
# the daily totals keep their keys).
PRODUCT = (
    "CASE WHEN s.channel = 'membership' OR je.kind = 'membership_fee' THEN 'memberships' "
    "WHEN s.id IS NOT NULL THEN 'packages' ELSE '' END"
)


def _journal_scope(f: Filters) -> tuple[str, list[Any]]:
    """Which lines: the chosen locations (and unlocated ones when allowed), the accounts."""
    marks, args = sql.in_list(f.location_ids)
    clause = f"(jl.location IN {marks}"
    clause += " OR jl.location IS NULL)" if f.include_unlocated else ")"
    if f.accounts:
        accounts, account_args = sql.in_list(f.accounts)
        clause += f" AND jl.account IN {accounts}"
        args += account_args
    return clause, args


# The earliest instant of a local day in any zone (UTC+14, Kiribati), in seconds
# before its UTC midnight: where a keyset page may start its index scan.
_EARLIEST_OFFSET = 14 * 3600


def journal_query(
    f: Filters, columns: str, after: str | None, *, ctes: str = "", joins: str = ""
) -> tuple[str, list[Any]]:
    """``WITH seg … SELECT <columns> … ORDER BY day, entry, line``: the lines in scope in
    date order (each on its own location's local day, ``LINE_LOCATION``), an entry's
    lines together; after a keyset position (day, entry, line) when given.

    ``columns`` may use ``jl`` (the line), ``je`` (its entry), ``l`` (its location),
    ``seg.off`` (its zone's offset), ``{day}`` (its local day number), and what
    ``ctes`` and ``joins`` add.
    """
    segments, seg_args, lo, hi = _segments(f, _line_zones(f))
    scope, scope_args = _journal_scope(f)
    day = sql.local_day("jl.occurred_at", "seg.off")
    keyset, key_args = "", []
    position = decode_cursor(after)
    if position is not None and isinstance(position[0], list) and len(position[0]) == 2:
        (number, entry), line = position[0], position[1]
        if isinstance(number, int) and isinstance(entry, int):
            earliest = datetime.fromtimestamp(number * SECONDS_PER_DAY - _EARLIEST_OFFSET, UTC)
            keyset = (
                f" AND jl.occurred_at >= {{}} AND ({day} > {{}} OR ({day} = {{}} AND "
                "(je.id > {} OR (je.id = {} AND jl.id > {}))))"
            )
            key_args = [earliest, number, number, entry, entry, line]
    query = (
        f"WITH {ctes}{segments} SELECT {columns.format(day=day)} "
        "FROM journal_line jl JOIN journal_entry je ON je.id = jl.entry "
        f"JOIN seg ON seg.loc = {LINE_LOCATION} "
        "AND jl.occurred_at >= seg.lo AND jl.occurred_at < seg.hi "
        f"LEFT JOIN location l ON l.id = jl.location {joins}"
        f"WHERE jl.occurred_at >= {{}} AND jl.occurred_at < {{}} AND {scope}{keyset} "
        f"ORDER BY {day}, je.id, jl.id"
    )
    return query, [*seg_args, lo, hi, *scope_args, *key_args]


async def journal_lines(
    f: Filters, *, after: str | None = None, limit: int = 100
) -> tuple[list[JournalRow], str | None]:
    """A keyset page of journal lines in the period, in date order: by local day, then
    entry (its number is the ``entry`` column of the downloads), then line.

    Each line is dated in its own location's zone (``LINE_LOCATION``), as in
    every other journal figure; each location's lines of an entry balance.
    """
    if not f.locations and not f.include_unlocated:
        return [], None
    query, args = journal_query(
        f,
        "jl.id AS id, jl.occurred_at AS ts, {day} AS day, je.id AS entry, "
        "jl.account AS account, jl.debit_cents AS debit, jl.credit_cents AS credit, "
        "jl.currency AS currency, l.name AS location, je.memo AS memo, "
        f"je.reference AS reference, je.kind AS kind, jl.sale_id AS sale_id, {PRODUCT} AS product",
        after,
        joins="LEFT JOIN sale s ON s.id = jl.sale_id ",
    )
    rows = await sql.fetch(query + " LIMIT {}", [*args, limit + 1])
    out = []
    for row in rows[:limit]:
        at = sql.as_datetime(row["ts"])
        assert at is not None
        out.append(
            JournalRow(
                id=int(row["id"]),
                entry=int(row["entry"]),
                at=at,
                date=day_from_number(int(row["day"])),
                account=str(row["account"]),
                debit=sql.as_int(row["debit"]),
                credit=sql.as_int(row["credit"]),
                currency=str(row["currency"]),
                location=str(row["location"] or ""),
                memo=str(row["memo"] or ""),
                reference=str(row["reference"] or ""),
                kind=str(row["kind"] or ""),
                sale_id=int(row["sale_id"]) if row["sale_id"] is not None else None,
                product=str(row["product"] or ""),
            )
        )
    cursor = None
    if len(rows) > limit and out:
        last = out[-1]
        cursor = encode_cursor([(last.date - EPOCH_DAY).days, last.entry], last.id)
    return out, cursor


async def iter_journal_lines(f: Filters, *, batch: int = 2000) -> AsyncIterator[JournalRow]:
    cursor: str | None = None
    while True:
        rows, cursor = await journal_lines(f, after=cursor, limit=batch)
        for row in rows:
            yield row
        if cursor is None:
            return


@dataclass
class TrialLine:
    account: str
    name: str
    type: str
    currency: str
    opening_debit: int = 0
    opening_credit: int = 0
    debits: int = 0
    credits: int = 0

    @property
    def normal_debit(self) -> bool:
        return self.type in (ASSET, EXPENSE)

    @property
    def closing(self) -> int:
        """Closing balance, positive on the debit side."""
        return self.opening_debit + self.debits - self.opening_credit - self.credits

    @property
    def opening(self) -> int:
        return self.opening_debit - self.opening_credit

    @property
    def closing_debit(self) -> int:
        return max(self.closing, 0)

    @property
    def closing_credit(self) -> int:
        return max(-self.closing, 0)

    @property
    def opening_balance_debit(self) -> int:
        return max(self.opening, 0)

    @property
    def opening_balance_credit(self) -> int:
        return max(-self.opening, 0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "name": self.name,
            "type": self.type,
            "currency": self.currency,
            "opening_debit": self.opening_balance_debit,
            "opening_credit": self.opening_balance_credit,
            "debits": self.debits,
            "credits": self.credits,
            "closing_debit": self.closing_debit,
            "closing_credit": self.closing_credit,
        }


@dataclass
class TrialBalance:
    lines: list[TrialLine]
    totals: dict[str, TrialLine]  # per currency

    @property
    def balanced(self) -> bool:
        return all(
            t.debits == t.credits and t.closing_debit == t.closing_credit
            for t in self.totals.values()
        )


async def trial_balance(f: Filters) -> TrialBalance:
    """Opening balances, period debits and credits, closing balances per account."""
    if not f.locations and not f.include_unlocated:
        return TrialBalance(lines=[], totals={})
    # From the daily totals (``ledger.daily``): every line is already on its own
    # location's local day, so "before the period" is a day number for all.
    start, end = rollup.days(f)
    scope, scope_args = rollup.locations(f, unlocated=True)
    accounts = ""
    if f.accounts:
        marks, account_args = sql.in_list(f.accounts)
        accounts = f" AND account IN {marks}"
        scope_args += account_args
    rows = await sql.fetch(
        "SELECT account, currency, "
        "SUM(CASE WHEN day < {} THEN debit_cents ELSE 0 END) AS open_d, "
        "SUM(CASE WHEN day < {} THEN credit_cents ELSE 0 END) AS open_c, "
        "SUM(CASE WHEN day >= {} THEN debit_cents ELSE 0 END) AS d, "
        "SUM(CASE WHEN day >= {} THEN credit_cents ELSE 0 END) AS c "
        f"FROM {rollup.source('ledger_day', None, end, cuts=[start])} "
        f"WHERE day <= {{}} AND {scope}{accounts} GROUP BY 1, 2",
        [start, start, start, start, end, *scope_args],
    )
    order = list(ACCOUNTS)
    lines = []
    for row in rows:
        account = str(row["account"])
        name, kind = ACCOUNTS.get(account, (account, ASSET))
        lines.append(
            TrialLine(
                account=account,
                name=name,
                type=kind,
                currency=str(row["currency"]),
                opening_debit=sql.as_int(row["open_d"]),
                opening_credit=sql.as_int(row["open_c"]),
                debits=sql.as_int(row["d"]),
                credits=sql.as_int(row["c"]),
            )
        )
    lines.sort(key=lambda t: (t.currency, order.index(t.account) if t.account in order else 99))
    totals: dict[str, TrialLine] = {}
    for line in lines:
        total = totals.setdefault(
            line.currency, TrialLine(account="", name="Total", type="", currency=line.currency)
        )
        total.debits += line.debits
        total.credits += line.credits
    # Closing columns of the total are sums of each account's closing side.
    for currency, total in totals.items():
        mine = [t for t in lines if t.currency == currency]
        total.opening_debit = sum(t.opening_balance_debit for t in mine)
        total.opening_credit = sum(t.opening_balance_credit for t in mine)
    return TrialBalance(lines=lines, totals=dict(sorted(totals.items())))


def trial_total_closing(tb: TrialBalance, currency: str) -> tuple[int, int]:
    mine = [t for t in tb.lines if t.currency == currency]
    return sum(t.closing_debit for t in mine), sum(t.closing_credit for t in mine)
