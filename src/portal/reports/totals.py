"""The daily totals recomputed from the rows: ``portal reports rebuild`` and ``verify``.

``ledger.daily`` keeps ``ledger_day`` and ``credit_day`` as the money moves.
Here the same figures are aggregated afresh from ``journal_line`` (with its
entry's kind) and from ``sale_session`` with its sale, by the same dating
rule: each location's local days (constant-offset segments, no zone lookup per
row), lines without a location in UTC. ``rebuild`` replaces the totals one
location and one local month at a time, each in its own short transaction that
first blocks the totals' writers (PostgreSQL: ``LOCK TABLE … IN EXCLUSIVE
MODE``, which waits for postings in flight and lets readers through; SQLite:
the immediate transaction), so a posting commits either before the step reads
the rows or after it has written their totals: safe while the portal serves.
``verify`` compares every total with the fresh aggregate, per location in one
snapshot (PostgreSQL: REPEATABLE READ), and lists each difference.
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
from portal.reports.cash import DISPUTE_FROM, PAYMENT_TAX
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


def _segments(place: Place, first: date, last: date) -> tuple[str, list[Any], datetime, datetime]:
    lo, hi = local_midnight(place.timezone, first), local_midnight(place.timezone, last)
    pieces = offset_segments(place.timezone, lo, hi)
    cte, args = sql.values_cte("seg", [("lo", "ts"), ("hi", "ts"), ("off", "int")], pieces)
    return cte, args, lo, hi


def _kind_case() -> tuple[str, str]:
    kinds = ", ".join(f"'{a}'" for a in sorted(daily.KIND_ACCOUNTS))
    therapists = ", ".join(f"'{a}'" for a in sorted(daily.THERAPIST_ACCOUNTS))
    return (
        f"CASE WHEN jl.account IN ({kinds}) THEN je.kind ELSE '' END",
        f"CASE WHEN jl.account IN ({therapists}) THEN COALESCE(jl.therapist_id, 0) ELSE 0 END",
    )


async def fresh_ledger(place: Place, first: date, end: date) -> dict[daily.LedgerKey, list[int]]:
    """``ledger_day`` of one location for local days [first, end), from the journal."""
    cte, args, lo, hi = _segments(place, first, end)
    kind, therapist = _kind_case()
    where = "jl.location IS NULL" if place.id == daily.UNLOCATED else "jl.location = {}"
    where_args = [] if place.id == daily.UNLOCATED else [place.id]
    rows = await sql.fetch(
        f"WITH {cte} SELECT {sql.local_day('jl.occurred_at', 'seg.off')} AS day, "
        f"jl.account AS account, jl.currency AS currency, {kind} AS kind, "
        f"{therapist} AS therapist, SUM(jl.debit_cents) AS d, SUM(jl.credit_cents) AS c "
        "FROM journal_line jl JOIN journal_entry je ON je.id = jl.entry "
        "JOIN seg ON jl.occurred_at >= seg.lo AND jl.occurred_at < seg.hi "
        f"WHERE {where} AND jl.occurred_at >= {{}} AND jl.occurred_at < {{}} "
        "GROUP BY 1, 2, 3, 4, 5",
        [*args, *where_args, lo, hi],
    )
    out: dict[daily.LedgerKey, list[int]] = {}
    for r in rows:
        key = (
            place.id,
            int(r["day"]),
            str(r["account"]),
            str(r["currency"]),
            str(r["kind"]),
            int(r["therapist"]),
        )
        out[key] = [sql.as_int(r["d"]), sql.as_int(r["c"])]
    return out


async def fresh_credits(place: Place, first: date, end: date) -> dict[daily.CreditKey, list[int]]:
    """``credit_day`` of one location for local days [first, end), from the credits."""
    out: dict[daily.CreditKey, list[int]] = {}
    if place.id == daily.UNLOCATED:
        return out
    cte, args, lo, hi = _segments(place, first, end)
    movement = (
        "CASE "
        + " ".join(f"WHEN ss.state = '{s}' THEN '{m}'" for s, m in daily.MOVEMENT_OF_STATE.items())
        + " END"
    )
    states = ", ".join(f"'{s}'" for s in daily.MOVEMENT_OF_STATE)
    sold, ended = await sql.fetch_all(
        (
            f"WITH {cte} SELECT {sql.local_day('s.activated_at', 'seg.off')} AS day, "
            f"s.currency AS currency, '{daily.SOLD}' AS movement, COUNT(*) AS n, "
            "SUM(ss.value_cents) AS v FROM sale_session ss JOIN sale s ON s.id = ss.sale "
            "JOIN seg ON s.activated_at >= seg.lo AND s.activated_at < seg.hi "
            "WHERE s.location = {} AND s.activated_at >= {} AND s.activated_at < {} "
            "GROUP BY 1, 2, 3",
            [*args, place.id, lo, hi],
        ),
        (
            f"WITH {cte} SELECT {sql.local_day('ss.changed_at', 'seg.off')} AS day, "
            f"s.currency AS currency, {movement} AS movement, COUNT(*) AS n, "
            "SUM(ss.value_cents) AS v FROM sale_session ss JOIN sale s ON s.id = ss.sale "
            "JOIN seg ON ss.changed_at >= seg.lo AND ss.changed_at < seg.hi "
            f"WHERE s.location = {{}} AND ss.state IN ({states}) "
            "AND ss.changed_at >= {} AND ss.changed_at < {} GROUP BY 1, 2, 3",
            [*args, place.id, lo, hi],
        ),
    )
    for r in [*sold, *ended]:
        key = (place.id, int(r["day"]), str(r["currency"]), str(r["movement"]))
        out[key] = [sql.as_int(r["n"]), sql.as_int(r["v"])]
    return out


# What each source row adds to ``cash_day`` (the payments report's dating and
# columns): (time column, FROM, WHERE, {sum column: SQL}).
_CASH_SOURCES = (
    ("p.succeeded_at", "payment p JOIN sale s ON s.id = p.sale", "p.status = 'succeeded'",
     {"payments": "COUNT(*)", "gross": "SUM(p.amount_cents)", "tax": f"SUM({PAYMENT_TAX})",
      "fee": "SUM(COALESCE(p.fee_cents, 0))"}),
    ("r.completed_at", "refund r JOIN payment p ON p.id = r.payment JOIN sale s ON s.id = r.sale",
     "r.status = 'succeeded'",
     {"refunds": "COUNT(*)", "refunded": "SUM(r.amount_cents)",
      "refund_tax": "SUM(COALESCE(r.tax_cents, 0))"}),
    ("d.withdrawn_at", DISPUTE_FROM, "1 = 1",
     {"disputes": "COUNT(*)", "disputed": "SUM(d.amount_cents)",
      "dispute_fee": "SUM(d.fee_cents)"}),
    ("d.reinstated_at", DISPUTE_FROM, "1 = 1",
     {"reinstatements": "COUNT(*)", "reinstated": "SUM(d.amount_cents)"}),
)  # fmt: skip


async def fresh_cash(place: Place, first: date, end: date) -> dict[daily.CashKey, list[int]]:
    """``cash_day`` of one location for local days [first, end), from payments,
    refunds and disputes."""
    out: dict[daily.CashKey, list[int]] = {}
    if place.id == daily.UNLOCATED:
        return out
    cte, args, lo, hi = _segments(place, first, end)
    queries = []
    for at, source, where, sums in _CASH_SOURCES:
        currency = at.split(".")[0] + ".currency"
        queries.append(
            (
                f"WITH {cte} SELECT {sql.local_day(at, 'seg.off')} AS day, "
                f"{currency} AS currency, p.method AS method, p.provider AS provider, "
                "s.package_id AS package, "
                + ", ".join(f"{expr} AS {name}" for name, expr in sums.items())
                + f" FROM {source} JOIN seg ON {at} >= seg.lo AND {at} < seg.hi "
                f"WHERE s.location = {{}} AND {where} AND {at} >= {{}} AND {at} < {{}} "
                "GROUP BY 1, 2, 3, 4, 5",
                [*args, place.id, lo, hi],
            )
        )
    for (_, _, _, sums), rows in zip(_CASH_SOURCES, await sql.fetch_all(*queries), strict=True):
        for r in rows:
            key = (
                place.id,
                int(r["day"]),
                str(r["currency"]),
                str(r["method"]),
                str(r["provider"]),
                int(r["package"]),
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


async def stored(name: str, place: Place, first: date, end: date) -> dict[Any, list[int]]:
    """The totals kept in table ``name`` for one location's local days [first, end)."""
    table, key, sums = TABLES[name]
    rows = await sql.fetch(
        f"SELECT {', '.join((*key, *sums))} FROM {table._meta.tablename} "
        "WHERE location = {} AND day >= {} AND day < {}",
        [place.id, daily.number_of(first), daily.number_of(end)],
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
        await LedgerDay.raw(f"LOCK TABLE {', '.join(TABLES)} IN EXCLUSIVE MODE").run()


async def _fresh(place: Place, first: date, end: date) -> dict[str, dict[Any, list[int]]]:
    return {
        "ledger_day": await fresh_ledger(place, first, end),
        "credit_day": await fresh_credits(place, first, end),
        "cash_day": await fresh_cash(place, first, end),
    }


async def _replace(place: Place, first: date, end: date) -> None:
    """One step: a location's totals of local days [first, end) from its rows."""
    async with db.transaction():
        await _block_writers()
        fresh = await _fresh(place, first, end)
        for name, (table, key, sums) in TABLES.items():
            await table.raw(
                f"DELETE FROM {name} WHERE location = {{}} AND day >= {{}} AND day < {{}}",
                place.id,
                daily.number_of(first),
                daily.number_of(end),
            ).run()
            await daily.upsert(table, key, sums, fresh[name])


async def _first_day() -> date:
    """The earliest local day any row can fall on (a day before the earliest instant)."""
    rows = await sql.fetch(
        "SELECT MIN(occurred_at) AS t FROM journal_entry UNION ALL "
        "SELECT MIN(activated_at) AS t FROM sale UNION ALL "
        "SELECT MIN(succeeded_at) AS t FROM payment UNION ALL "
        "SELECT MIN(completed_at) AS t FROM refund UNION ALL "
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
    returns the number of steps (location-months)."""
    first = since or await _first_day()
    last = (datetime.now(tz=UTC) + timedelta(days=2)).date()
    # Rows dated in the future (appointments ahead are never journalled; a
    # clock skew could be) are covered up to the latest one.
    rows = await sql.fetch("SELECT MAX(occurred_at) AS t FROM journal_entry", [])
    latest = sql.as_datetime(rows[0]["t"]) if rows else None
    if latest is not None and latest.date() + timedelta(days=1) > last:
        last = latest.date() + timedelta(days=1)
    todo = [(p, a, b) for p in await places() for a, b in _months(first, last)]
    if since is None:  # nothing can be dated before the first row
        for name, (table, _, _) in TABLES.items():
            await table.raw(f"DELETE FROM {name} WHERE day < {{}}", daily.number_of(first)).run()
    # Totals dated after the range (from a clock that ran ahead) go too.
    for name, (table, _, _) in TABLES.items():
        await table.raw(
            f"DELETE FROM {name} WHERE day >= {{}}",
            daily.number_of(last + timedelta(days=1)),
        ).run()
    for done, (place, a, b) in enumerate(todo, start=1):
        await _replace(place, a, b)
        if progress is not None:
            progress(done, len(todo), f"{place.name} {a:%Y-%m}")
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
    checked: int = 0  # location keys compared


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
    all_places = await places()
    for done, place in enumerate(all_places, start=1):
        async with db.transaction():
            await _snapshot()
            fresh = await _fresh(place, first, last)
            pairs = [(name, await stored(name, place, EPOCH, last), fresh[name]) for name in TABLES]
        for name, kept, aggregated in pairs:
            width = len(TABLES[name][2])
            for key in sorted(set(kept) | set(aggregated), key=str):
                a = kept.get(key, [0] * width)
                b = aggregated.get(key, [0] * width)
                if a != b:
                    result.differences.append(Difference(name, key, a, b))
        result.checked += 1
        if progress is not None:
            progress(done, len(all_places), place.name)
    return result
