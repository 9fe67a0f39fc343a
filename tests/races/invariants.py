"""What must hold after any race, checked in the database itself (SQLite and PostgreSQL).

The tests share one database per engine, each with a location of its own, so
the per-sale and per-location checks look at the test's location (one test's
broken sale does not fail the next); the journal's total balance and the load
driver's integrity checks (no double booking, paid sales whole) look at
everything.
"""

from __future__ import annotations

from typing import Any

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
    assert found == {}, f"invariants broken: {found}"
