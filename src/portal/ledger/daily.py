"""Daily totals: what the reports add up, kept as the money moves.

Two tables (``ledger.tables``): ``ledger_day`` sums the journal per location,
local day, account and currency (deferred revenue also per entry kind, service
revenue also per therapist); ``credit_day`` counts session credits per selling
location, local day and movement (sold, redeemed, expired, refunded) with their
value; ``cash_day`` the money moved (``payments.totals``). A location's day is its
own local day, the journal's one dating rule (lines without a location: UTC).
Each has a monthly twin (``ledger_month``, …: the same key, ``day`` the month's
first day) kept by the same writes. The reports' totals and charts read these
instead of a year of rows; ``reports.totals`` rebuilds and verifies them.

The single writers call in here: ``ledger.post`` for every journal line and
``sales.service`` for every credit it creates, ends, revives or re-dates. The
changes are summed per key in the writer's transaction and written when that
transaction is about to commit (``db.before_commit``), as
``INSERT … ON CONFLICT (key) DO UPDATE SET x = x + excluded.x`` per table and
month table, in key order, one statement on PostgreSQL (``write``): a line and
its totals commit together or not at all, two writers of the same day take the
totals' row locks in the same order (no deadlock), and they hold them only for
the commit.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from portal import db
from portal.ledger import periods
from portal.ledger.tables import CashDay, CashMonth, CreditDay, CreditMonth, LedgerDay, LedgerMonth

EPOCH_DAY = date(1970, 1, 1)
UNLOCATED = 0  # the location key of journal lines without one (UTC days)

# Deferred revenue keeps the entry kind (the liability report's sold, redeemed,
# expired and refunded columns); service revenue keeps the therapist (revenue by
# therapist). Other accounts are summed over both.
KIND_ACCOUNTS = frozenset({"deferred_revenue"})
THERAPIST_ACCOUNTS = frozenset({"service_revenue"})

SOLD = "sold"
REDEEMED = "redeemed"
EXPIRED = "expired"
REFUNDED = "refunded"
MOVEMENTS = (SOLD, REDEEMED, EXPIRED, REFUNDED)
# Where a credit's final state lands (the liability report's session columns).
MOVEMENT_OF_STATE = {
    "redeemed": REDEEMED,
    "forfeited": REDEEMED,
    "expired": EXPIRED,
    "revoked": REFUNDED,
}

# Which product a line or a credit belongs to (the reports' kind filter): a membership's
# (its sale's channel, or a membership fee), a package's (any other sale), or neither
# (lines about no sale: payouts). The same rule as the journal page's Product column.
MEMBERSHIPS = "memberships"
PACKAGES = "packages"
PRODUCTS = (PACKAGES, MEMBERSHIPS)
MEMBERSHIP_CHANNEL = "membership"  # sales.service.MEMBERSHIP (sales build on the ledger)
MEMBERSHIP_FEE = "membership_fee"  # the entry kind of a membership's fees


def product_of(kind: str, channel: str | None) -> str:
    """The product of an entry of ``kind`` about a sale of ``channel`` (None: no sale)."""
    if channel == MEMBERSHIP_CHANNEL or kind == MEMBERSHIP_FEE:
        return MEMBERSHIPS
    return PACKAGES if channel is not None else ""


def product_sql(channel: str, kind: str, sale_id: str) -> str:
    """:func:`product_of` in SQL, over a sale's channel, an entry's kind and the sale id."""
    return (
        f"CASE WHEN {channel} = '{MEMBERSHIP_CHANNEL}' OR {kind} = '{MEMBERSHIP_FEE}' "
        f"THEN '{MEMBERSHIPS}' WHEN {sale_id} IS NOT NULL THEN '{PACKAGES}' ELSE '' END"
    )


LEDGER_KEY = ("location", "day", "account", "currency", "kind", "therapist", "product")
LEDGER_SUMS = ("debit_cents", "credit_cents")
CREDIT_KEY = ("location", "day", "currency", "movement", "product")
CREDIT_SUMS = ("sessions", "value_cents")
CASH_KEY = ("location", "day", "currency", "method", "provider", "package", "status")
# The status filters of the payments report: succeeded money is dated by the moment
# it moved (succeeded, completed, withdrawn, reinstated); pending and failed (or
# cancelled) payments and refunds by their creation.
CASH_SUCCEEDED = "succeeded"
CASH_PENDING = "pending"
CASH_FAILED = "failed"
CASH_STATUSES = (CASH_SUCCEEDED, CASH_PENDING, CASH_FAILED)
CASH_SUMS = (
    "payments", "gross", "tax", "fee", "refunds", "refunded", "refund_tax",
    "disputes", "disputed", "dispute_fee", "reinstatements", "reinstated",
)  # fmt: skip
ROWS_PER_STATEMENT = 500  # 9,500 parameters at most: inside SQLite's and asyncpg's limits
MAX_PARAMETERS = 30_000  # one statement's (asyncpg: 32,767)

LedgerKey = tuple[int, int, str, str, str, int, str]
CreditKey = tuple[int, int, str, str, str]
CashKey = tuple[int, int, str, str, str, int, str]


def day_number(tz: str, at: datetime) -> int:
    """Days since 1970-01-01 of ``at``'s local date in ``tz``."""
    return (at.astimezone(ZoneInfo(tz)).date() - EPOCH_DAY).days


def day_of(number: int) -> date:
    return date.fromordinal(EPOCH_DAY.toordinal() + number)


def number_of(day: date) -> int:
    return (day - EPOCH_DAY).days


def month_of(number: int) -> int:
    """The day number of the first day of day ``number``'s month (the key of its month's
    row in the monthly totals)."""
    return number_of(day_of(number).replace(day=1))


def ledger_key(
    location: int | None,
    day: int,
    account: str,
    currency: str,
    kind: str,
    therapist: int | None,
    product: str = "",
) -> LedgerKey:
    return (
        location or UNLOCATED,
        day,
        account,
        currency,
        kind if account in KIND_ACCOUNTS else "",
        (therapist or 0) if account in THERAPIST_ACCOUNTS else 0,
        product,
    )


class _Changes:
    """The totals' changes of one transaction, summed per key until it commits."""

    def __init__(self, scope: object | None) -> None:
        self.scope = scope
        self.written = False
        self.ledger: dict[LedgerKey, list[int]] = defaultdict(lambda: [0, 0])
        self.credits: dict[CreditKey, list[int]] = defaultdict(lambda: [0, 0])
        self.cash: dict[CashKey, list[int]] = defaultdict(lambda: [0] * len(CASH_SUMS))

    async def write(self) -> None:
        """Every table's changes and their months (``write``)."""
        self.written = True
        await write(
            [
                (LedgerDay, LEDGER_KEY, LEDGER_SUMS, self.ledger),
                (CreditDay, CREDIT_KEY, CREDIT_SUMS, self.credits),
                (CashDay, CASH_KEY, CASH_SUMS, self.cash),
            ]
        )


_CHANGES: ContextVar[_Changes | None] = ContextVar("daily_changes", default=None)
# The zones of the locations an open transaction has dated totals for: a sale's
# journal lines and its credits are dated by the same location's zone.
_ZONES: ContextVar[tuple[object, dict[int | None, str]] | None] = ContextVar(
    "daily_zones", default=None
)


async def _zones(location_ids: Iterable[int | None]) -> dict[int | None, str]:
    """``periods.zones``, read once per location and transaction."""
    scope = db.commit_scope()
    memo = _ZONES.get()
    if memo is None or scope is None or memo[0] is not scope:
        memo = (scope, {})
        if scope is not None:
            _ZONES.set(memo)
    known = memo[1]
    missing = {i for i in location_ids if i not in known}
    if missing:
        known.update(await periods.zones(missing))
    return known


async def _apply(fill: Callable[[_Changes], None]) -> None:
    """Add changes to the open transaction's batch, or write them at once outside one."""
    scope = db.commit_scope()
    if scope is None:
        changes = _Changes(None)
        fill(changes)
        async with db.transaction():
            await changes.write()
        return
    current = _CHANGES.get()
    if current is None or current.scope is not scope or current.written:
        current = _Changes(scope)
        db.before_commit(current.write)
        _CHANGES.set(current)
    fill(current)


DayTable = type[LedgerDay] | type[CreditDay] | type[CashDay]
# Each daily table's monthly one: the same key with ``day`` the month's first day,
# kept by the same writes (``upsert``), read by the reports for whole months.
MONTHS: dict[str, type[LedgerMonth] | type[CreditMonth] | type[CashMonth]] = {
    "ledger_day": LedgerMonth,
    "credit_day": CreditMonth,
    "cash_day": CashMonth,
}


def by_month(rows: dict[Any, list[int]]) -> dict[Any, list[int]]:
    """Daily keys (``day`` second) → the same changes summed per month."""
    out: dict[Any, list[int]] = {}
    firsts: dict[int, int] = {}
    for key, sums in rows.items():
        day = key[1]
        month = firsts.get(day)
        if month is None:
            month = firsts[day] = month_of(day)
        kept = out.get((key[0], month, *key[2:]))
        if kept is None:
            out[(key[0], month, *key[2:])] = list(sums)
        else:
            for i, value in enumerate(sums):
                kept[i] += value
    return out


Changes = tuple[DayTable, Sequence[str], Sequence[str], dict[Any, list[int]]]
# The order the totals' tables are written in, as the rebuild locks them.
TABLE_ORDER = ("ledger_day", "ledger_month", "credit_day", "credit_month", "cash_day", "cash_month")


async def upsert(
    table: DayTable,
    key: Sequence[str],
    sums: Sequence[str],
    rows: dict[Any, list[int]],
    *,
    months: bool = True,
) -> None:
    """Add ``rows`` (key → sums) to the table and (``months``) to its monthly table."""
    await write([(table, key, sums, rows)], months=months)


async def write(changes: Sequence[Changes], *, months: bool = True) -> None:
    """Add each table's changes (key → sums) to it and (``months``) to its monthly
    table, in key order; zero changes are skipped.

    On PostgreSQL everything goes in one statement (one round trip, as one table's
    did before the monthly totals): each table's upsert a data-modifying ``WITH``
    and the last the statement's own, which PostgreSQL runs first and the ``WITH``s
    after it, last to first. Every writer takes the rows' locks in that order:
    tables in the reverse of ``TABLE_ORDER``, each table's keys in order. Changes
    too many for one statement (and SQLite's, one writer at a time) go one
    statement at a time in the same order, after taking the tables' locks in
    ``TABLE_ORDER`` as the one statement does and as the rebuild does.
    """
    parts: list[tuple[str, list[tuple[Any, list[int]]], DayTable, Sequence[str], Sequence[str]]]
    parts = []
    for table, key, sums, rows in changes:
        items = sorted((k, v) for k, v in rows.items() if any(v))
        if not items:
            continue
        name = table._meta.tablename
        parts.append((name, items, table, key, sums))
        if months:
            monthly = sorted((k, v) for k, v in by_month(dict(items)).items() if any(v))
            if monthly:
                parts.append((MONTHS[name]._meta.tablename, monthly, table, key, sums))
    if not parts:
        return
    parts.sort(key=lambda part: TABLE_ORDER.index(part[0]))
    engine = db.current_engine()
    sqlite = db.is_sqlite(engine)
    parameters = sum(len(items) * (len(key) + len(sums)) for _, items, _, key, sums in parts)
    if not sqlite and parameters <= MAX_PARAMETERS:
        statements = [_upsert(name, key, sums, items) for name, items, _, key, sums in parts]
        *before, (last, last_args) = statements
        ctes = ", ".join(f"w{i} AS ({text})" for i, (text, _) in enumerate(before))
        args = [arg for _, part_args in before for arg in part_args]
        await (
            parts[0][2]
            .raw(f"{'WITH ' + ctes + ' ' if ctes else ''}{last}", *args, *last_args)
            .run()
        )
        return
    if not sqlite and engine.transaction_exists():
        names = ", ".join(name for name in TABLE_ORDER if any(p[0] == name for p in parts))
        await parts[0][2].raw(f"LOCK TABLE {names} IN ROW EXCLUSIVE MODE").run()
    for name, items, table, key, sums in reversed(parts):
        for start in range(0, len(items), ROWS_PER_STATEMENT):
            text, args = _upsert(name, key, sums, items[start : start + ROWS_PER_STATEMENT])
            await table.raw(text, *args).run()


def _upsert(
    name: str, key: Sequence[str], sums: Sequence[str], items: Sequence[tuple[Any, list[int]]]
) -> tuple[str, list[Any]]:
    """``INSERT … ON CONFLICT (key) DO UPDATE SET x = x + excluded.x`` of ``items``."""
    columns = ", ".join((*key, *sums))
    adds = ", ".join(f"{s} = {name}.{s} + excluded.{s}" for s in sums)
    marks = "(" + ", ".join("{}" for _ in (*key, *sums)) + ")"
    args: list[Any] = []
    for k, v in items:
        args += [*k, *v]
    return (
        f"INSERT INTO {name} ({columns}) VALUES {', '.join(marks for _ in items)} "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {adds}",
        args,
    )


async def journal_lines(
    lines: Iterable[tuple[int | None, str, int, int]],
    *,
    at: datetime,
    currency: str,
    kind: str,
    therapist: int | None,
    product: str = "",
) -> None:
    """An entry's lines (location, account, debit, credit), all dated ``at``."""
    lines = list(lines)
    zone_of = await _zones(location for location, *_ in lines)

    def fill(changes: _Changes) -> None:
        for location, account, debit, credit in lines:
            day = day_number(zone_of.get(location, "UTC"), at)
            key = ledger_key(location, day, account, currency, kind, therapist, product)
            sums = changes.ledger[key]
            sums[0] += debit
            sums[1] += credit

    await _apply(fill)


async def credits(
    location_id: int,
    currency: str,
    moves: Iterable[tuple[str, datetime, int, int]],
    *,
    channel: str,
) -> None:
    """Credit movements of one sale (its location, currency and channel): (movement, at,
    sessions, value); negative sessions and value take a movement back (a credit revived
    or re-dated)."""
    product = product_of("", channel)
    moves = list(moves)
    if not moves:
        return
    tz = (await _zones([location_id])).get(location_id, "UTC")

    def fill(changes: _Changes) -> None:
        for movement, at, sessions, value in moves:
            sums = changes.credits[(location_id, day_number(tz, at), currency, movement, product)]
            sums[0] += sessions
            sums[1] += value

    await _apply(fill)


async def cash(changes: dict[CashKey, list[int]]) -> None:
    """Changes of money moved or asked for (``payments.totals`` works out the keys,
    days and statuses)."""

    def fill(batch: _Changes) -> None:
        for key, sums in changes.items():
            kept = batch.cash[key]
            for i, value in enumerate(sums):
                kept[i] += value

    await _apply(fill)
