"""What must hold after any race, checked in the database itself (SQLite and PostgreSQL).

Besides the rows: the location's liability report equals its journal every local
month (and rolls forward), its trial balance balances, and its payments report's
card totals equal the Stripe stand-in's balance transactions.

The tests share one database per engine, each with a location of its own, so
the per-sale and per-location checks look at the test's location (one test's
broken sale does not fail the next); the journal's total balance and the load
driver's integrity checks (no double booking, paid sales whole) look at
everything.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bench import load
from portal.sales.tables import Sale
from tests.servers import Portal

# Each check is scoped to one location ({location}: a SQL expression over a
# location column — the test's location id, or the column itself for all).
CHECKS: dict[str, str] = {
    "refunded more than paid": """
        SELECT s.id, COALESCE(p.paid, 0), COALESCE(r.refunded, 0)
        FROM sale s
        LEFT JOIN (SELECT sale, SUM(amount_cents) AS paid FROM payment
                   WHERE status = 'succeeded' GROUP BY sale) p ON p.sale = s.id
        LEFT JOIN (SELECT sale, SUM(amount_cents) AS refunded FROM refund
                   WHERE status IN ('succeeded', 'pending') GROUP BY sale) r ON r.sale = s.id
        WHERE s.location = {sale_location} AND COALESCE(r.refunded, 0) > COALESCE(p.paid, 0)
    """,
    "sessions revoked differ from the refunds' sessions_revoked": """
        SELECT s.id, COALESCE(x.revoked, 0), COALESCE(r.counted, 0)
        FROM sale s
        LEFT JOIN (SELECT sale, COUNT(*) AS revoked FROM sale_session
                   WHERE state = 'revoked' AND refund_id IS NOT NULL GROUP BY sale) x
               ON x.sale = s.id
        LEFT JOIN (SELECT sale, SUM(sessions_revoked) AS counted FROM refund GROUP BY sale) r
               ON r.sale = s.id
        WHERE s.location = {sale_location} AND COALESCE(x.revoked, 0) <> COALESCE(r.counted, 0)
    """,
    "refund whose sessions_revoked are not the sessions pointing at it": """
        SELECT r.id, r.sessions_revoked, COUNT(x.id)
        FROM refund r
        JOIN sale s ON s.id = r.sale
        LEFT JOIN sale_session x ON x.refund_id = r.id AND x.state = 'revoked'
        WHERE s.location = {sale_location}
        GROUP BY r.id, r.sessions_revoked
        HAVING COUNT(x.id) <> r.sessions_revoked
    """,
    "sessions revoked without a refund or a lost dispute": """
        SELECT x.sale, COUNT(*) FROM sale_session x
        JOIN sale s ON s.id = x.sale
        WHERE s.location = {sale_location} AND x.state = 'revoked' AND x.refund_id IS NULL
          AND NOT EXISTS (SELECT 1 FROM dispute d WHERE d.sale = x.sale AND d.outcome = 'lost')
        GROUP BY x.sale
    """,
    "journal out of balance for a location and currency": """
        SELECT location, currency, SUM(debit_cents), SUM(credit_cents) FROM journal_line
        WHERE location = {line_location}
        GROUP BY location, currency HAVING SUM(debit_cents) <> SUM(credit_cents)
    """,
    "journal out of balance in total": """
        SELECT currency, SUM(debit_cents), SUM(credit_cents) FROM journal_line
        GROUP BY currency HAVING SUM(debit_cents) <> SUM(credit_cents)
    """,
    "deferred revenue differs from the value of open credits": """
        SELECT s.id, COALESCE(j.deferred, 0), COALESCE(c.open_value, 0)
        FROM sale s
        LEFT JOIN (SELECT sale_id, SUM(credit_cents) - SUM(debit_cents) AS deferred
                   FROM journal_line WHERE account = 'deferred_revenue' AND sale_id IS NOT NULL
                   GROUP BY sale_id) j ON j.sale_id = s.id
        LEFT JOIN (SELECT sale, SUM(value_cents) AS open_value FROM sale_session
                   WHERE state IN ('available', 'held') GROUP BY sale) c ON c.sale = s.id
        WHERE s.location = {sale_location} AND COALESCE(j.deferred, 0) <> COALESCE(c.open_value, 0)
    """,
}


async def rows(sql: str, *args: Any) -> list[dict[str, Any]]:
    """A query on the test's database (the engine Piccolo is bound to)."""
    result: list[dict[str, Any]] = await Sale.raw(sql, *args).run()
    return result


async def problems(location_id: int | None = None) -> dict[str, list[Any]]:
    """The checks that found rows: for one location's sales and journal, or everywhere."""
    scope = {
        "sale_location": "s.location" if location_id is None else str(int(location_id)),
        "line_location": "location" if location_id is None else str(int(location_id)),
    }
    found: dict[str, list[Any]] = {}
    for name, sql in CHECKS.items():
        hits = await rows(sql.format(**scope))
        if hits:
            found[name] = [tuple(h.values()) for h in hits[:10]]
    return found


async def assert_whole(portal: Portal) -> None:
    """After every race: no 5xx anywhere, and the money invariants hold."""
    deliveries = await portal.deliveries()  # waits for the stand-in's queue first
    failed = [
        (d["event_type"], d["endpoint_id"], d["status"], d["error"])
        for d in deliveries
        if d["status"] is None or not 200 <= int(d["status"]) < 300
    ]
    assert not failed, f"webhook deliveries not answered 2xx: {failed}"
    errors = portal.server_errors()
    assert not errors, f"5xx answers: {errors}"
    found = await problems(portal.location_id)
    found.update(await load.integrity_problems(portal.database_url))
    differ = await totals_problems()
    if differ:
        found["daily totals differ from the rows"] = differ
    if portal.location_id is not None:
        reported = await report_problems(portal.location_id)
        reported += await stripe_problems(portal.location_id, portal.standin)
        if reported:
            found["reports disagree with the journal or with Stripe"] = reported
    assert found == {}, f"invariants broken: {found}"


# -- the reports, after every race ------------------------------------------------------


async def _filters(location_id: int, **params: Any) -> Any:
    from portal.identity import ACCOUNTANT, CurrentUser
    from portal.reports import filters as report_filters

    query = {k: [str(v)] for k, v in {"location": location_id, **params}.items()}
    user = CurrentUser(1, "accountant@example.test", "", ACCOUNTANT, frozenset())
    return await report_filters.parse(user, query)


async def _local_months(location_id: int) -> list[tuple[date, date]]:
    """Every local month of the location from its first journal line to its last."""
    found = await rows(
        "SELECT MIN(jl.occurred_at) AS lo, MAX(jl.occurred_at) AS hi, l.timezone AS tz "
        f"FROM journal_line jl JOIN location l ON l.id = jl.location "
        f"WHERE jl.location = {int(location_id)} GROUP BY l.timezone"
    )
    if not found or found[0]["lo"] is None:
        return []
    zone = ZoneInfo(str(found[0]["tz"]))
    lo, hi = found[0]["lo"], found[0]["hi"]
    if isinstance(lo, str):  # SQLite hands timestamps back as text
        lo, hi = datetime.fromisoformat(lo), datetime.fromisoformat(hi)
    lo, hi = (t if t.tzinfo else t.replace(tzinfo=UTC) for t in (lo, hi))
    month, last = lo.astimezone(zone).date().replace(day=1), hi.astimezone(zone).date()
    out = []
    while month <= last:
        following = (month + timedelta(days=32)).replace(day=1)
        out.append((month, following - timedelta(days=1)))
        month = following
    return out


async def totals_problems() -> list[str]:
    """The daily totals equal a fresh aggregation of the rows (``portal reports verify``)."""
    from portal.reports import totals

    return [d.line() for d in (await totals.verify()).differences[:10]]


async def report_problems(location_id: int) -> list[str]:
    """The location's liability report equals its journal (trial balance) every month,
    rolls forward month to month, and its trial balance balances."""
    from portal.reports import service as reports

    found: list[str] = []
    previous: dict[str, int] = {}
    for first, last in await _local_months(location_id):
        f = await _filters(location_id, start=first.isoformat(), end=last.isoformat())
        tb = await reports.trial_balance(f)
        if not tb.balanced:
            found.append(f"trial balance {first:%Y-%m} does not balance")
        deferred = {t.currency: -t.closing for t in tb.lines if t.account == "deferred_revenue"}
        for row in await reports.liability(f):
            label = f"liability {row.currency} {first:%Y-%m}"
            if not row.balanced:
                found.append(f"{label} does not tie to its credits")
            if row.closing != deferred.get(row.currency, 0):
                found.append(f"{label}: {row.closing} != journal {deferred.get(row.currency, 0)}")
            if row.currency in previous and previous[row.currency] != row.opening:
                found.append(f"{label}: opens at {row.opening}, not {previous[row.currency]}")
            previous[row.currency] = row.closing
    return found


async def stripe_problems(location_id: int, standin: Any) -> list[str]:
    """The payments report's card totals (gross, refunded, disputed, fee, net) for the
    location equal the stand-in's balance transactions of its charges, refunds and disputes."""
    from portal.reports import service as reports
    from tests.servers import stripe_client

    charges = await rows(
        "SELECT p.charge_id AS charge FROM payment p JOIN sale s ON s.id = p.sale "
        f"WHERE s.location = {int(location_id)} AND p.status = 'succeeded' "
        "AND p.charge_id IS NOT NULL"
    )
    theirs: dict[str, list[int]] = {}
    async with stripe_client(standin) as client:
        for row in charges:
            charge = str(row["charge"])
            sources = [("charge", charge)]
            refunds = await client.v1.refunds.list_async({"charge": charge, "limit": 100})
            sources += [("refund", r.id) for r in refunds.data]
            disputes = await client.v1.disputes.list_async({"charge": charge, "limit": 100})
            sources += [("dispute", d.id) for d in disputes.data]
            for kind, source in sources:
                txns = await client.v1.balance_transactions.list_async(
                    {"source": source, "limit": 100}
                )
                for t in txns.data:
                    sums = theirs.setdefault(t.currency.upper(), [0] * 5)
                    column = {"charge": 0, "refund": 1, "dispute": 2}[kind]
                    sums[column] += t.amount if kind == "charge" else -t.amount
                    sums[3] += t.fee
                    sums[4] += t.net
    months = await _local_months(location_id)
    ours: dict[str, list[int]] = {}
    if months:
        f = await _filters(
            location_id, start=months[0][0].isoformat(), end=months[-1][1].isoformat(),
            method="card", group="month",
        )  # fmt: skip
        for row in (await reports.payment_summary(f)).rows:
            t = row.totals
            sums = ours.setdefault(row.currency, [0] * 5)
            for i, value in enumerate((t.gross, t.refunded, t.disputed, t.fee, t.net)):
                sums[i] += value
    if ours != theirs:
        return [f"payments report (gross, refunded, disputed, fee, net) {ours} != Stripe {theirs}"]
    return []
