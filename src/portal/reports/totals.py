"""The daily totals recomputed from the rows: ``portal reports rebuild`` and ``verify``.

``ledger.daily`` keeps ``ledger_day``, ``credit_day`` and ``cash_day`` as the
money moves. Here the same figures are aggregated afresh from ``journal_line``
(with its entry's kind), ``sale_session`` with its sale, and the payments,
refunds and disputes, by the same dating
rule: each location's local days (constant-offset segments, no zone lookup per
row), lines without a location in UTC. ``rebuild`` replaces the totals one
local month at a time (every location's, one pass over the month's rows), each
in its own short transaction that
first blocks the totals' writers (PostgreSQL: ``LOCK TABLE … IN EXCLUSIVE
MODE``, which waits for postings in flight and lets readers through; SQLite:
the immediate transaction), so a posting commits either before the step reads
the rows or after it has written their totals: safe while the portal serves.
``verify`` compares every total with the fresh aggregate, a month at a time in
one snapshot (PostgreSQL: REPEATABLE READ), and lists each difference.

The monthly totals (``ledger_month``, ``credit_month``, ``cash_month``: each daily
table summed per local month) are derived from the daily rows of each month a
rebuild step touches, in the step's transaction, and verified against the sum of
the month's daily rows (which are themselves verified against the rows).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from portal import db
from portal.ledger import daily
from portal.ledger.tables import CashDay, CreditDay, LedgerDay
from portal.reports import sql
from portal.reports.cash import DISPUTE_FROM, PAYMENT_FROM, PAYMENT_TAX, REFUND_FROM, REFUND_TAX
from portal.reports.periods import local_midnight, next_month, offset_segments

EPOCH = daily.EPOCH_DAY

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Place:
    """A location key of the totals and the zone that dates its days."""

    id: int  # daily.UNLOCATED for journal lines without a location
    timezone: str
    name: str


async def places() -> list[Place]:
    rows = await sql.fetch("SELECT id, timezone, name FROM location ORDER BY id", [])
    out = [Place(daily.UNLOCATED, "UTC", "(no location)")]
    out += [Place(int(r["id"]), str(r["timezone"]), str(r["name"])) for r in rows]
    return out


def _segments(
    places: list[Place], first: date, end: date
) -> tuple[str, list[Any], datetime, datetime]:
    """``seg(loc, lo, hi, off)``: each location's local days [first, end) as UTC pieces
    of one offset, and the overall UTC range (for the time indexes)."""
    rows: list[tuple[int, datetime, datetime, int]] = []
    for place in places:
        lo, hi = local_midnight(place.timezone, first), local_midnight(place.timezone, end)
        rows.extend((place.id, a, b, off) for a, b, off in offset_segments(place.timezone, lo, hi))
    cte, args = sql.values_cte(
        "seg", [("loc", "int"), ("lo", "ts"), ("hi", "ts"), ("off", "int")], rows
    )
    overall_lo = min((r[1] for r in rows), default=datetime(1970, 1, 1, tzinfo=UTC))
    overall_hi = max((r[2] for r in rows), default=datetime(1970, 1, 1, tzinfo=UTC))
    return cte, args, overall_lo, overall_hi


def _kind_case() -> tuple[str, str]:
    kinds = ", ".join(f"'{a}'" for a in sorted(daily.KIND_ACCOUNTS))
    therapists = ", ".join(f"'{a}'" for a in sorted(daily.THERAPIST_ACCOUNTS))
    return (
        f"CASE WHEN jl.account IN ({kinds}) THEN je.kind ELSE '' END",
        f"CASE WHEN jl.account IN ({therapists}) THEN COALESCE(jl.therapist_id, 0) ELSE 0 END",
    )


def _dated(at: str, location: str, cte: str) -> tuple[str, str]:
    """(``WITH … SELECT loc, day`` head, ``JOIN seg … WHERE`` time range) for rows dated
    by ``at`` at ``location``."""
    head = f"WITH {cte} SELECT seg.loc AS loc, {sql.local_day(at, 'seg.off')} AS day"
    join = f"JOIN seg ON seg.loc = {location} AND {at} >= seg.lo AND {at} < seg.hi"
    return head, join


async def fresh_ledger(
    places: list[Place], first: date, end: date
) -> dict[daily.LedgerKey, list[int]]:
    """``ledger_day`` of these locations' local days [first, end), from the journal."""
    cte, args, lo, hi = _segments(places, first, end)
    kind, therapist = _kind_case()
    head, join = _dated("jl.occurred_at", "COALESCE(jl.location, 0)", cte)
    product = daily.product_sql("s.channel", "je.kind", "jl.sale_id")
    rows = await sql.fetch(
        f"{head}, jl.account AS account, jl.currency AS currency, {kind} AS kind, "
        f"{therapist} AS therapist, {product} AS product, "
        "SUM(jl.debit_cents) AS d, SUM(jl.credit_cents) AS c "
        f"FROM journal_line jl JOIN journal_entry je ON je.id = jl.entry {join} "
        "LEFT JOIN sale s ON s.id = jl.sale_id "
        "WHERE jl.occurred_at >= {} AND jl.occurred_at < {} GROUP BY 1, 2, 3, 4, 5, 6, 7",
        [*args, lo, hi],
    )
    return {
        (int(r["loc"]), int(r["day"]), str(r["account"]), str(r["currency"]), str(r["kind"]),
         int(r["therapist"]), str(r["product"])): [sql.as_int(r["d"]), sql.as_int(r["c"])]
        for r in rows
    }  # fmt: skip


async def fresh_credits(
    places: list[Place], first: date, end: date
) -> dict[daily.CreditKey, list[int]]:
    """``credit_day`` of these locations' local days [first, end), from the credits."""
    cte, args, lo, hi = _segments(places, first, end)
    movement = (
        "CASE "
        + " ".join(f"WHEN ss.state = '{s}' THEN '{m}'" for s, m in daily.MOVEMENT_OF_STATE.items())
        + " END"
    )
    states = ", ".join(f"'{s}'" for s in daily.MOVEMENT_OF_STATE)
    product = daily.product_sql("s.channel", "''", "s.id")
    sold_head, sold_join = _dated("s.activated_at", "s.location", cte)
    ended_head, ended_join = _dated("ss.changed_at", "s.location", cte)
    sold, ended = await sql.fetch_all(
        (
            f"{sold_head}, s.currency AS currency, '{daily.SOLD}' AS movement, COUNT(*) AS n, "
            f"SUM(ss.value_cents) AS v, {product} AS product FROM sale s {sold_join} "
            "JOIN sale_session ss ON ss.sale = s.id "
            "WHERE s.activated_at >= {} AND s.activated_at < {} GROUP BY 1, 2, 3, 4, 7",
            [*args, lo, hi],
        ),
        (
            f"{ended_head}, s.currency AS currency, {movement} AS movement, COUNT(*) AS n, "
            f"SUM(ss.value_cents) AS v, {product} AS product "
            "FROM sale_session ss JOIN sale s ON s.id = ss.sale "
            f"{ended_join} WHERE ss.state IN ({states}) "
            "AND ss.changed_at >= {} AND ss.changed_at < {} GROUP BY 1, 2, 3, 4, 7",
            [*args, lo, hi],
        ),
    )
    return {
        (int(r["loc"]), int(r["day"]), str(r["currency"]), str(r["movement"]), str(r["product"])): [
            sql.as_int(r["n"]),
            sql.as_int(r["v"]),
        ]
        for r in [*sold, *ended]
    }


# What each source row adds to ``cash_day`` (the payments report's dating and
# columns under each status filter): (status, time column, FROM, WHERE, {sum: SQL}).
_PAYMENT_SUMS = {
    "payments": "COUNT(*)",
    "gross": "SUM(p.amount_cents)",
    "tax": f"SUM({PAYMENT_TAX})",
    "fee": "SUM(COALESCE(p.fee_cents, 0))",
}
_REFUND_SUMS = {
    "refunds": "COUNT(*)",
    "refunded": "SUM(r.amount_cents)",
    "refund_tax": f"SUM(COALESCE({REFUND_TAX}, 0))",
}
_CASH_SOURCES = (
    (daily.CASH_SUCCEEDED, "p.succeeded_at", PAYMENT_FROM, "p.status = 'succeeded'",
     _PAYMENT_SUMS),
    (daily.CASH_SUCCEEDED, "r.completed_at", REFUND_FROM, "r.status = 'succeeded'",
     _REFUND_SUMS),
    (daily.CASH_SUCCEEDED, "d.withdrawn_at", DISPUTE_FROM, "1 = 1",
     {"disputes": "COUNT(*)", "disputed": "SUM(d.amount_cents)",
      "dispute_fee": "SUM(d.fee_cents)"}),
    (daily.CASH_SUCCEEDED, "d.reinstated_at", DISPUTE_FROM, "1 = 1",
     {"reinstatements": "COUNT(*)", "reinstated": "SUM(d.amount_cents)"}),
    (daily.CASH_PENDING, "p.created_at", PAYMENT_FROM, "p.status = 'pending'", _PAYMENT_SUMS),
    (daily.CASH_FAILED, "p.created_at", PAYMENT_FROM, "p.status IN ('failed', 'cancelled')",
     _PAYMENT_SUMS),
    (daily.CASH_PENDING, "r.created_at", REFUND_FROM, "r.status = 'pending'", _REFUND_SUMS),
    (daily.CASH_FAILED, "r.created_at", REFUND_FROM, "r.status = 'failed'", _REFUND_SUMS),
)  # fmt: skip


async def fresh_cash(places: list[Place], first: date, end: date) -> dict[daily.CashKey, list[int]]:
    """``cash_day`` of these locations' local days [first, end), from payments, refunds
    and disputes."""
    out: dict[daily.CashKey, list[int]] = {}
    cte, args, lo, hi = _segments(places, first, end)
    queries = []
    for _, at, source, where, sums in _CASH_SOURCES:
        head, join = _dated(at, "s.location", cte)
        currency = at.split(".")[0] + ".currency"
        queries.append(
            (
                f"{head}, {currency} AS currency, p.method AS method, p.provider AS provider, "
                "s.package_id AS package, "
                + ", ".join(f"{expr} AS {name}" for name, expr in sums.items())
                + f" FROM {source}{join} WHERE {where} AND {at} >= {{}} AND {at} < {{}} "
                "GROUP BY 1, 2, 3, 4, 5, 6",
                [*args, lo, hi],
            )
        )
    results = await sql.fetch_all(*queries)
    for (status, _, _, _, sums), rows in zip(_CASH_SOURCES, results, strict=True):
        for r in rows:
            key = (
                int(r["loc"]),
                int(r["day"]),
                str(r["currency"]),
                str(r["method"]),
                str(r["provider"]),
                int(r["package"]),
                status,
            )
            kept = out.setdefault(key, [0] * len(daily.CASH_SUMS))
            for name in sums:
                kept[daily.CASH_SUMS.index(name)] += sql.as_int(r[name])
    return out


TABLES: dict[str, tuple[type[LedgerDay] | type[CreditDay] | type[CashDay], tuple[str, ...],
                         tuple[str, ...]]] = {
    "ledger_day": (LedgerDay, daily.LEDGER_KEY, daily.LEDGER_SUMS),
    "credit_day": (CreditDay, daily.CREDIT_KEY, daily.CREDIT_SUMS),
    "cash_day": (CashDay, daily.CASH_KEY, daily.CASH_SUMS),
}  # fmt: skip


def _month_name(name: str) -> str:
    """The monthly table of daily table ``name``."""
    return daily.MONTHS[name]._meta.tablename


def _width(name: str) -> int:
    """How many sums a row of a daily or monthly table has."""
    for day_name, (_, _, sums) in TABLES.items():
        if name in (day_name, _month_name(day_name)):
            return len(sums)
    raise KeyError(name)


async def stored(
    name: str, first: date, end: date, *, months: bool = False
) -> dict[Any, list[int]]:
    """The totals kept in table ``name`` for local days [first, end), every location;
    ``months``: its monthly table's rows of the months starting in [first, end)."""
    table, key, sums = TABLES[name]
    source = _month_name(name) if months else table._meta.tablename
    rows = await sql.fetch(
        f"SELECT {', '.join((*key, *sums))} FROM {source} WHERE day >= {{}} AND day < {{}}",
        [daily.number_of(first), daily.number_of(end)],
    )
    return {
        tuple(r[k] if isinstance(r[k], str) else int(r[k]) for k in key): [
            sql.as_int(r[s]) for s in sums
        ]
        for r in rows
    }


async def _block_writers() -> None:
    """Inside a rebuild step: postings in flight commit first, new ones wait for it."""
    if not sql.is_sqlite():
        # In the writers' order (``daily.write``): no deadlock with one in flight.
        await LedgerDay.raw(f"LOCK TABLE {', '.join(daily.TABLE_ORDER)} IN EXCLUSIVE MODE").run()


async def _fresh(places: list[Place], first: date, end: date) -> dict[str, dict[Any, list[int]]]:
    return {
        "ledger_day": await fresh_ledger(places, first, end),
        "credit_day": await fresh_credits(places, first, end),
        "cash_day": await fresh_cash(places, first, end),
    }


async def _replace(places: list[Place], first: date, end: date) -> None:
    """One step: every location's totals of local days [first, end) (within one month)
    from the rows, and that month's monthly totals from its days."""
    async with db.transaction():
        await _block_writers()
        fresh = await _fresh(places, first, end)
        for name, (table, key, sums) in TABLES.items():
            await table.raw(
                f"DELETE FROM {name} WHERE day >= {{}} AND day < {{}}",
                daily.number_of(first),
                daily.number_of(end),
            ).run()
            await _insert(table, key, sums, fresh[name])
            await _derive_month(name, first.replace(day=1))


async def _derive_month(name: str, month: date) -> None:
    """The monthly totals of ``month`` (its first day) as the sum of its daily rows."""
    table, key, sums = TABLES[name]
    target = _month_name(name)
    first, end = daily.number_of(month), daily.number_of(next_month(month))
    await table.raw(f"DELETE FROM {target} WHERE day = {{}}", first).run()
    rest = [k for k in key if k != "day"]
    columns = ", ".join(key)
    # The month's day number is the portal's own integer, written inline.
    selected = ", ".join(str(int(first)) if k == "day" else k for k in key)
    totals = ", ".join(f"SUM({s})" for s in sums)
    await table.raw(
        f"INSERT INTO {target} ({columns}, {', '.join(sums)}) SELECT {selected}, {totals} "
        f"FROM {name} WHERE day >= {{}} AND day < {{}} GROUP BY {', '.join(rest)}",
        first,
        end,
    ).run()


async def _insert(
    table: type[LedgerDay] | type[CreditDay] | type[CashDay],
    key: tuple[str, ...],
    sums: tuple[str, ...],
    rows: dict[Any, list[int]],
) -> None:
    """A step's fresh totals into their emptied days: by COPY on PostgreSQL (writers
    wait on the step's lock, so nothing else writes these keys), else by upsert."""
    engine = db.current_engine()
    current = getattr(engine, "current_transaction", None)
    tx = current.get() if current is not None else None
    if sql.is_sqlite() or tx is None:
        await daily.upsert(table, key, sums, rows, months=False)
        return
    records = [(*k, *v) for k, v in sorted(rows.items()) if any(v)]
    if records:
        await tx.connection.copy_records_to_table(
            table._meta.tablename, columns=[*key, *sums], records=records
        )


async def _first_day() -> date:
    """The earliest local day any row can fall on (a day before the earliest instant)."""
    rows = await sql.fetch(
        "SELECT MIN(occurred_at) AS t FROM journal_entry UNION ALL "
        "SELECT MIN(activated_at) AS t FROM sale UNION ALL "
        "SELECT MIN(succeeded_at) AS t FROM payment UNION ALL "
        "SELECT MIN(created_at) AS t FROM payment UNION ALL "
        "SELECT MIN(completed_at) AS t FROM refund UNION ALL "
        "SELECT MIN(created_at) AS t FROM refund UNION ALL "
        "SELECT MIN(withdrawn_at) AS t FROM dispute",
        [],
    )
    instants = [sql.as_datetime(r["t"]) for r in rows]
    found = [t for t in instants if t is not None]
    earliest = min(found) if found else datetime.now(tz=UTC)
    return (earliest - timedelta(days=1)).date()


def _months(first: date, last: date) -> Iterator[tuple[date, date]]:
    """[first, last] as [from, until) pieces cut at month starts."""
    start = first
    while start <= last:
        until = min(next_month(start), last + timedelta(days=1))
        yield start, until
        start = until


async def rebuild(since: date | None = None, progress: Progress | None = None) -> int:
    """Recompute every total from ``since`` (or the first row) to a day past today;
    returns the number of steps (months, every location at once)."""
    first = since or await _first_day()
    last = (datetime.now(tz=UTC) + timedelta(days=2)).date()
    # Rows dated in the future (appointments ahead are never journalled; a
    # clock skew could be) are covered up to the latest one.
    rows = await sql.fetch("SELECT MAX(occurred_at) AS t FROM journal_entry", [])
    latest = sql.as_datetime(rows[0]["t"]) if rows else None
    if latest is not None and latest.date() + timedelta(days=1) > last:
        last = latest.date() + timedelta(days=1)
    todo = list(_months(first, last))
    every = await places()
    # Monthly rows go with their days: the month of ``first`` (and of ``last``) is
    # derived again by its step.
    names = [
        (n, table) for name, (table, _, _) in TABLES.items() for n in (name, _month_name(name))
    ]
    if since is None:  # nothing can be dated before the first row
        for name, table in names:
            await table.raw(f"DELETE FROM {name} WHERE day < {{}}", daily.number_of(first)).run()
    # Totals dated after the range (from a clock that ran ahead) go too.
    for name, table in names:
        await table.raw(
            f"DELETE FROM {name} WHERE day >= {{}}",
            daily.number_of(last + timedelta(days=1)),
        ).run()
    for done, (a, b) in enumerate(todo, start=1):
        await _replace(every, a, b)
        if progress is not None:
            progress(done, len(todo), f"{a:%Y-%m}")
    return len(todo)


@dataclass
class Difference:
    table: str
    key: tuple[Any, ...]
    stored: list[int]
    fresh: list[int]

    def line(self) -> str:
        day = daily.day_of(int(self.key[1])).isoformat()
        rest = " ".join(str(k) for k in self.key[2:] if k not in ("", 0))
        return (
            f"{self.table} location {self.key[0]} {day} {rest}: "
            f"stored {self.stored}, from the rows {self.fresh}"
        )


@dataclass
class Verification:
    differences: list[Difference] = field(default_factory=list)
    checked: int = 0  # months compared


async def _snapshot() -> None:
    if not sql.is_sqlite():
        await LedgerDay.raw("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").run()


async def verify(progress: Progress | None = None) -> Verification:
    """Every total against a fresh aggregate of the rows; zero on both sides is equal."""
    first = await _first_day()
    rows = await sql.fetch(
        " UNION ALL ".join(f"SELECT MAX(day) AS d FROM {name}" for name in TABLES), []
    )
    last_stored = max((int(r["d"]) for r in rows if r["d"] is not None), default=0)
    last = max(
        (datetime.now(tz=UTC) + timedelta(days=2)).date(), daily.day_of(last_stored)
    ) + timedelta(days=1)
    result = Verification()
    every = await places()
    steps = list(_months(first, last - timedelta(days=1)))
    for done, (a, b) in enumerate(steps, start=1):
        # One snapshot per month: a row and its total commit together, so they agree
        # in any snapshot.
        async with db.transaction():
            await _snapshot()
            fresh = await _fresh(every, a, b)
            pairs = []
            for name in TABLES:
                pairs.append((name, await stored(name, a, b), fresh[name]))
                # The month's monthly rows against the sum of its daily ones.
                month, end = a.replace(day=1), next_month(a)
                days = await stored(name, month, end)
                kept = await stored(name, month, end, months=True)
                pairs.append((_month_name(name), kept, daily.by_month(days)))
        _compare(result, pairs)
        if progress is not None:
            progress(done, len(steps), f"{a:%Y-%m}")
    # Totals outside the days any row can fall on are differences too.
    outside: list[tuple[str, dict[Any, list[int]], dict[Any, list[int]]]] = []
    for name in TABLES:
        outside.append((name, await _outside(name, first, last), {}))
        outside.append(
            (_month_name(name), await _outside(name, first.replace(day=1), last, months=True), {})
        )
    _compare(result, outside)
    result.checked = len(steps)
    return result


async def _outside(
    name: str, first: date, end: date, *, months: bool = False
) -> dict[Any, list[int]]:
    before = await stored(name, EPOCH, first, months=months)
    after = await stored(name, end, date(9999, 1, 1), months=months)
    return {**before, **after}


def _compare(
    result: Verification, pairs: list[tuple[str, dict[Any, list[int]], dict[Any, list[int]]]]
) -> None:
    for name, kept, aggregated in pairs:
        width = _width(name)
        for key in sorted(set(kept) | set(aggregated), key=str):
            a = kept.get(key, [0] * width)
            b = aggregated.get(key, [0] * width)
            if a != b:
                result.differences.append(Difference(name, key, a, b))
