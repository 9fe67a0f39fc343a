"""Package liability: deferred revenue per location, in money (the journal) and in
sessions (the credits), and the sales behind each figure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from portal.ledger.daily import (
    EXPIRED,
    MEMBERSHIP_CHANNEL,
    MEMBERSHIPS,
    REDEEMED,
    REFUNDED,
    SOLD,
)
from portal.pagination import decode_cursor, encode_cursor
from portal.reports import rollup, sql
from portal.reports.filters import Filters, Loc
from portal.reports.periods import bounds

# Journal entry kinds as the liability report classifies them. Whatever else
# moves deferred revenue (sessions given, forfeited by a late cancel or a
# no-show, any kind added later) counts as redeemed, so the identity
# closing = opening + sold − redeemed − expired − refunded always holds.
# Balances imported from another system (``portal.imports``) count as sold; the
# ``imported`` figure says how much of it came from imports.
IMPORTED_KINDS = ("opening_balance",)
# The drill-down of the imported part of ``sold``: the sales each import opened.
IMPORTED = "imported"
SOLD_KINDS = ("sale_paid", *IMPORTED_KINDS)
EXPIRED_KINDS = ("package_expired",)
REFUNDED_KINDS = ("refund", "dispute_lost")
LIABILITY_COLUMNS = ("opening", "sold", "redeemed", "expired", "refunded", "closing")
# Session states that end a credit, and which column each lands in.
REDEEMED_STATES = ("redeemed", "forfeited")
EXPIRED_STATES = ("expired",)
REFUNDED_STATES = ("revoked",)
TERMINAL_STATES = REDEEMED_STATES + EXPIRED_STATES + REFUNDED_STATES


@dataclass
class Liability:
    """Deferred revenue of one location (and currency) over a period."""

    location: Loc
    currency: str
    opening: int = 0
    sold: int = 0
    redeemed: int = 0
    expired: int = 0
    refunded: int = 0
    closing: int = 0
    imported: int = 0  # the part of ``sold`` that came from imported balances
    opening_sessions: int = 0
    sold_sessions: int = 0
    redeemed_sessions: int = 0
    expired_sessions: int = 0
    refunded_sessions: int = 0
    closing_sessions: int = 0
    # The value of the sessions outstanding at the end, from the credits
    # themselves: equals ``closing`` when the journal and the credits agree.
    closing_session_value: int = 0

    @property
    def computed_closing(self) -> int:
        return self.opening + self.sold - self.redeemed - self.expired - self.refunded

    @property
    def computed_closing_sessions(self) -> int:
        return (
            self.opening_sessions
            + self.sold_sessions
            - self.redeemed_sessions
            - self.expired_sessions
            - self.refunded_sessions
        )

    @property
    def balanced(self) -> bool:
        return (
            self.computed_closing == self.closing
            and self.computed_closing_sessions == self.closing_sessions
            and self.closing_session_value == self.closing
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "location_id": self.location.id,
            "location": self.location.name,
            "currency": self.currency,
            **{c: getattr(self, c) for c in LIABILITY_COLUMNS},
            **{f"{c}_sessions": getattr(self, f"{c}_sessions") for c in LIABILITY_COLUMNS},
        }


def _kinds(kinds: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{k}'" for k in kinds) + ")"


def _states(states: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{s}'" for s in states) + ")"


def _of_product(f: Filters) -> str:
    """The drill-down's lines of the kind filter's product (deferred revenue is a sale's)."""
    if not f.product:
        return ""
    test = "=" if f.product == MEMBERSHIPS else "<>"
    return f" AND jl.sale_id IN (SELECT id FROM sale WHERE channel {test} '{MEMBERSHIP_CHANNEL}')"


def _money_query(f: Filters) -> tuple[str, list[Any]]:
    """Deferred revenue from the daily totals: opening, movements by entry kind, closing."""
    start, end = rollup.days(f)
    scope, args = rollup.locations(f)
    kind, kind_args = rollup.product(f)
    moved = "credit_cents - debit_cents"
    back = "debit_cents - credit_cents"
    others = _kinds(SOLD_KINDS + EXPIRED_KINDS + REFUNDED_KINDS)
    return (
        "SELECT location AS loc, currency, "
        f"SUM(CASE WHEN day < {{}} THEN {moved} ELSE 0 END) AS opening, "
        f"SUM({moved}) AS closing, "
        f"SUM(CASE WHEN day >= {{}} AND kind IN {_kinds(SOLD_KINDS)} THEN {moved} ELSE 0 END) "
        "AS sold, "
        f"SUM(CASE WHEN day >= {{}} AND kind IN {_kinds(IMPORTED_KINDS)} THEN {moved} ELSE 0 END) "
        "AS imported, "
        f"SUM(CASE WHEN day >= {{}} AND kind IN {_kinds(EXPIRED_KINDS)} THEN {back} ELSE 0 END) "
        "AS expired, "
        f"SUM(CASE WHEN day >= {{}} AND kind IN {_kinds(REFUNDED_KINDS)} THEN {back} ELSE 0 END) "
        "AS refunded, "
        f"SUM(CASE WHEN day >= {{}} AND kind NOT IN {others} THEN {back} ELSE 0 END) "
        "AS redeemed "
        f"FROM {rollup.source('ledger_day', None, end, cuts=[start])} "
        "WHERE account = 'deferred_revenue' AND day <= {} "
        f"AND {scope}{kind} GROUP BY 1, 2",
        [start, start, start, start, start, start, end, *args, *kind_args],
    )


def _sessions_query(f: Filters) -> tuple[str, list[Any]]:
    """Sessions from the credits' daily totals: sold less every final movement."""
    start, end = rollup.days(f)
    scope, args = rollup.locations(f)
    kind, kind_args = rollup.product(f)
    net = f"CASE WHEN movement = '{SOLD}' THEN {{0}} ELSE -{{0}} END"

    def moved(movement: str) -> str:
        return (
            f"SUM(CASE WHEN day >= {{}} AND movement = '{movement}' THEN sessions ELSE 0 END) "
            f"AS {movement}"
        )

    return (
        "SELECT location AS loc, currency, "
        f"SUM(CASE WHEN day < {{}} THEN {net.format('sessions')} ELSE 0 END) AS opening, "
        f"{moved(SOLD)}, {moved(REDEEMED)}, {moved(EXPIRED)}, {moved(REFUNDED)}, "
        f"SUM({net.format('sessions')}) AS closing, "
        f"SUM({net.format('value_cents')}) AS closing_value "
        f"FROM {rollup.source('credit_day', None, end, cuts=[start])} "
        f"WHERE day <= {{}} AND {scope}{kind} GROUP BY 1, 2",
        [start, start, start, start, start, end, *args, *kind_args],
    )


async def liability(f: Filters) -> list[Liability]:
    """Opening, movements and closing of deferred revenue per location, in money and sessions."""
    if not f.locations:
        return []
    results: dict[tuple[int, str], Liability] = {}
    names = {loc.id: loc for loc in f.locations}

    def entry(location_id: int, currency: str) -> Liability:
        key = (location_id, currency)
        if key not in results:
            results[key] = Liability(location=names[location_id], currency=currency)
        return results[key]

    money, sessions = await sql.fetch_all(_money_query(f), _sessions_query(f))
    for row in money:
        item = entry(int(row["loc"]), str(row["currency"]))
        for column in ("opening", "closing", "sold", "imported", "expired", "refunded", "redeemed"):
            setattr(item, column, sql.as_int(row[column]))
    for row in sessions:
        item = entry(int(row["loc"]), str(row["currency"]))
        for column in LIABILITY_COLUMNS:
            setattr(item, f"{column}_sessions", sql.as_int(row[column]))
        item.closing_session_value = sql.as_int(row["closing_value"])
    for loc in f.locations:
        if not any(key[0] == loc.id for key in results):
            entry(loc.id, loc.currency)
    return sorted(results.values(), key=lambda r: (r.location.name, r.currency))


def liability_totals(rows: list[Liability]) -> dict[str, Liability]:
    """Per currency, the sum over locations."""
    out: dict[str, Liability] = {}
    for row in rows:
        total = out.setdefault(
            row.currency,
            Liability(
                location=Loc(id=0, name="All locations", slug="", timezone="UTC", currency=""),
                currency=row.currency,
            ),
        )
        for column in LIABILITY_COLUMNS:
            setattr(total, column, getattr(total, column) + getattr(row, column))
            name = f"{column}_sessions"
            setattr(total, name, getattr(total, name) + getattr(row, name))
        total.closing_session_value += row.closing_session_value
        total.imported += row.imported
    return dict(sorted(out.items()))


@dataclass(frozen=True)
class DrillRow:
    sale_id: int
    client: str
    item: str
    currency: str
    amount: int
    sessions: int
    status: str
    batch: int | None = None  # the import that opened the sale (the imported drill-down)


@dataclass
class DrillPage:
    column: str
    rows: list[DrillRow]
    next_cursor: str | None
    total: int | None = None  # the report's figure, for the check line


async def liability_sales(
    f: Filters,
    location: Loc,
    column: str,
    *,
    after: str | None = None,
    limit: int = 50,
    batch: int | None = None,
) -> DrillPage:
    """The sales behind one liability figure, with each sale's share (keyset by sale id)."""
    if column not in (*LIABILITY_COLUMNS, IMPORTED):
        column = "closing"
    lo, hi = bounds(location.timezone, f.period)
    position = decode_cursor(after)
    after_id = position[1] if position is not None else 0
    if column == IMPORTED:
        return await _imported_sales(location, lo, hi, after_id, limit, batch)
    if column in ("opening", "closing"):
        moment = lo if column == "opening" else hi
        rows = await sql.fetch(
            "SELECT jl.sale_id AS sale_id, SUM(jl.credit_cents - jl.debit_cents) AS amount "
            "FROM journal_line jl WHERE jl.account = 'deferred_revenue' AND jl.location = {} "
            f"AND jl.occurred_at < {{}} AND jl.sale_id > {{}}{_of_product(f)} GROUP BY jl.sale_id "
            "HAVING SUM(jl.credit_cents - jl.debit_cents) <> 0 ORDER BY jl.sale_id LIMIT {}",
            [location.id, moment, after_id, limit + 1],
        )
        terminal = _states(TERMINAL_STATES)
        session_sql = (
            "SELECT ss.sale AS sale_id, COUNT(*) AS n FROM sale_session ss "
            "JOIN sale s ON s.id = ss.sale WHERE ss.sale IN __IDS__ AND s.activated_at < {} "
            f"AND NOT (ss.state IN {terminal} AND ss.changed_at < {{}}) GROUP BY ss.sale"
        )
        session_args: list[Any] = [moment, moment]
    else:
        sign = (
            "jl.credit_cents - jl.debit_cents"
            if column == "sold"
            else "jl.debit_cents - jl.credit_cents"
        )
        if column == "redeemed":
            kind_clause = f"je.kind NOT IN {_kinds(SOLD_KINDS + EXPIRED_KINDS + REFUNDED_KINDS)}"
        else:
            kinds = {"sold": SOLD_KINDS, "expired": EXPIRED_KINDS, "refunded": REFUNDED_KINDS}
            kind_clause = f"je.kind IN {_kinds(kinds[column])}"
        rows = await sql.fetch(
            f"SELECT jl.sale_id AS sale_id, SUM({sign}) AS amount FROM journal_line jl "
            "JOIN journal_entry je ON je.id = jl.entry "
            "WHERE jl.account = 'deferred_revenue' AND jl.location = {} "
            f"AND jl.occurred_at >= {{}} AND jl.occurred_at < {{}} AND {kind_clause} "
            f"AND jl.sale_id > {{}}{_of_product(f)} GROUP BY jl.sale_id ORDER BY jl.sale_id "
            "LIMIT {}",
            [location.id, lo, hi, after_id, limit + 1],
        )
        if column == "sold":
            session_sql = (
                "SELECT ss.sale AS sale_id, COUNT(*) AS n FROM sale_session ss "
                "JOIN sale s ON s.id = ss.sale WHERE ss.sale IN __IDS__ "
                "AND s.activated_at >= {} AND s.activated_at < {} GROUP BY ss.sale"
            )
        else:
            states = {
                "redeemed": REDEEMED_STATES,
                "expired": EXPIRED_STATES,
                "refunded": REFUNDED_STATES,
            }[column]
            session_sql = (
                "SELECT ss.sale AS sale_id, COUNT(*) AS n FROM sale_session ss "
                f"WHERE ss.sale IN __IDS__ AND ss.state IN {_states(states)} "
                "AND ss.changed_at >= {} AND ss.changed_at < {} GROUP BY ss.sale"
            )
        session_args = [lo, hi]
    more = len(rows) > limit
    rows = rows[:limit]
    sale_ids = [int(r["sale_id"]) for r in rows if r["sale_id"] is not None]
    details: dict[int, dict[str, Any]] = {}
    counts: dict[int, int] = {}
    if sale_ids:
        ids, id_args = sql.in_list(sale_ids)
        for row in await sql.fetch(
            "SELECT s.id AS id, s.item_name AS item, s.currency AS currency, s.status AS status, "
            f"u.email AS client FROM sale s JOIN app_user u ON u.id = s.client WHERE s.id IN {ids}",
            id_args,
        ):
            details[int(row["id"])] = row
        for row in await sql.fetch(session_sql.replace("__IDS__", ids), [*id_args, *session_args]):
            counts[int(row["sale_id"])] = sql.as_int(row["n"])
    return _drill_page(column, rows, details, counts, location, more)


def _drill_page(
    column: str,
    rows: list[dict[str, Any]],
    details: dict[int, dict[str, Any]],
    counts: dict[int, int],
    location: Loc,
    more: bool,
) -> DrillPage:
    out = []
    for row in rows:
        sale_id = int(row["sale_id"]) if row["sale_id"] is not None else 0
        info = details.get(sale_id, {})
        out.append(
            DrillRow(
                sale_id=sale_id,
                client=str(info.get("client", "")),
                item=str(info.get("item", "(no sale)")),
                currency=str(info.get("currency", location.currency)),
                amount=sql.as_int(row["amount"]),
                sessions=counts.get(sale_id, 0),
                status=str(info.get("status", "")),
                batch=int(row["batch"]) if row.get("batch") is not None else None,
            )
        )
    cursor = encode_cursor("sale", out[-1].sale_id) if more and out else None
    return DrillPage(column=column, rows=out, next_cursor=cursor)


def _imported_batches(entries: list[dict[str, Any]]) -> list[int]:
    """The imports whose opening-balance entries these are (``import:<batch>:…``)."""
    found = set()
    for entry in entries:
        parts = str(entry["event_key"]).split(":")
        if len(parts) >= 2 and parts[0] == "import" and parts[1].isdigit():
            found.add(int(parts[1]))
    return sorted(found)


async def _imported_sales(
    location: Loc, lo: Any, hi: Any, after_id: int, limit: int, batch: int | None
) -> DrillPage:
    """The imported part of ``sold``: the sales the imports of the period opened at the
    location (or those of one import, whenever it ran), each with the value of the
    credits it brought in and the import it came from. An import undone has no sales
    left, and its entry and their reversal cancel out in the figure."""
    kinds = _kinds(IMPORTED_KINDS)
    if batch is None:
        entries = await sql.fetch(
            f"SELECT event_key FROM journal_entry WHERE kind IN {kinds} AND location = {{}} "
            "AND occurred_at >= {} AND occurred_at < {}",
            [location.id, lo, hi],
        )
        batches = _imported_batches(entries)
    else:
        batches = [batch]
    if not batches:
        return DrillPage(column=IMPORTED, rows=[], next_cursor=None)
    ids, id_args = sql.in_list(batches)
    rows = await sql.fetch(
        "SELECT s.id AS sale_id, r.batch AS batch, SUM(c.value_cents) AS amount, "
        "COUNT(c.id) AS n, s.item_name AS item, s.currency AS currency, s.status AS status, "
        "u.email AS client FROM import_row r JOIN sale s ON s.id = r.entity_id "
        "JOIN sale_session c ON c.sale = s.id JOIN app_user u ON u.id = s.client "
        f"WHERE r.batch IN {ids} AND r.entity = 'sale' AND r.outcome = 'created' "
        "AND s.location = {} AND s.id > {} "
        "GROUP BY s.id, r.batch, s.item_name, s.currency, s.status, u.email "
        "ORDER BY s.id LIMIT {}",
        [*id_args, location.id, after_id, limit + 1],
    )
    more = len(rows) > limit
    rows = rows[:limit]
    details = {int(r["sale_id"]): r for r in rows}
    counts = {int(r["sale_id"]): sql.as_int(r["n"]) for r in rows}
    return _drill_page(IMPORTED, rows, details, counts, location, more)
