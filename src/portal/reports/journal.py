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
from portal.reports.segments import (
    LINE_LOCATION,
    LocalDays,
    _after,
    _line_zones,
    _period_clause,
)


@dataclass(slots=True)
class JournalRow:
    id: int
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


async def journal_lines(
    f: Filters, *, after: str | None = None, limit: int = 100
) -> tuple[list[JournalRow], str | None]:
    """A keyset page of journal lines in the period, by time then id.

    Each line is dated in its own location's zone (``LINE_LOCATION``), as in
    every other journal figure; each location's lines of an entry balance.
    """
    if not f.locations and not f.include_unlocated:
        return [], None
    days = LocalDays(_line_zones(f), f.period)
    period, period_args, lo, hi = _period_clause("jl.occurred_at", LINE_LOCATION, days)
    scope, scope_args = _journal_scope(f)
    position = decode_cursor(after)
    keyset = ""
    key_args: list[Any] = []
    if position is not None:
        try:
            at = datetime.fromisoformat(str(position[0]))
        except ValueError:
            at = None
        if at is not None:
            keyset, key_args = _after(
                "jl.occurred_at", "jl.id", at if at.tzinfo else at.replace(tzinfo=UTC), position[1]
            )
    rows = await sql.fetch(
        "SELECT jl.id AS id, jl.occurred_at AS ts, jl.location AS line_location, "
        "jl.account AS account, jl.debit_cents AS debit, jl.credit_cents AS credit, "
        "jl.currency AS currency, l.name AS location, je.memo AS memo, "
        "je.reference AS reference, je.kind AS kind, jl.sale_id AS sale_id "
        "FROM journal_line jl JOIN journal_entry je ON je.id = jl.entry "
        "LEFT JOIN location l ON l.id = jl.location "
        f"WHERE jl.occurred_at >= {{}} AND jl.occurred_at < {{}} AND {period} AND {scope}"
        f"{keyset} ORDER BY jl.occurred_at, jl.id LIMIT {{}}",
        [lo, hi, *period_args, *scope_args, *key_args, limit + 1],
    )
    out = []
    for row in rows[:limit]:
        at = sql.as_datetime(row["ts"])
        assert at is not None
        line_location = row["line_location"]
        out.append(
            JournalRow(
                id=int(row["id"]),
                at=at,
                date=days.date(int(line_location) if line_location else None, at),
                account=str(row["account"]),
                debit=sql.as_int(row["debit"]),
                credit=sql.as_int(row["credit"]),
                currency=str(row["currency"]),
                location=str(row["location"] or ""),
                memo=str(row["memo"] or ""),
                reference=str(row["reference"] or ""),
                kind=str(row["kind"] or ""),
                sale_id=int(row["sale_id"]) if row["sale_id"] is not None else None,
            )
        )
    cursor = None
    if len(rows) > limit and out:
        cursor = encode_cursor(out[-1].at.isoformat(), out[-1].id)
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
        f"FROM ledger_day WHERE day <= {{}} AND {scope}{accounts} GROUP BY 1, 2",
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
