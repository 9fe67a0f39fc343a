"""The payments report over a year of 1,000,000 payments: app against raw SQL, CSV speed.

Fills a PostgreSQL database (created if missing, its schema reset) with one
year (2025) of sales and payments over three locations in three time zones
(plus a refund for every 50th sale), with generate_series. Then measures:

* (after the fill, the daily totals are rebuilt from the rows: the summaries
  read them, ``reports.totals``);
* the payments summary (month × location totals of the whole year) through
  ``reports.service.payment_summary``, against the very SQL it sends, compiled
  and run directly with asyncpg;
* the same for one month by day, and the first keyset page of payment rows
  (100);
* the CSV download: the generator the ``Stream`` response iterates
  (keyset pages of 2,000), consumed to the end — rows per second and the
  process's peak resident memory above what it used before; and the XLSX of
  one month the same way.

    .venv/bin/python bench/reports.py [--payments 1000000] [--repeat 5] [--skip-fill]
        [--database-url postgresql://postgres@127.0.0.1:5432/portal_bench_reports]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import time
from typing import Any

os.environ.setdefault("PICCOLO_CONF", "portal.piccolo_conf")
os.environ.setdefault("DATABASE_URL", "sqlite:////tmp/portal-bench-unused.sqlite3")
os.environ.setdefault("SECRET_KEY", "bench-secret-" + "x" * 40)

import asyncpg
from piccolo.querystring import QueryString

from portal import db
from portal.auth.service import ACCOUNTANT, CurrentUser
from portal.migrate import apply_migrations
from portal.reports import filters as report_filters
from portal.reports import service, sql, totals
from portal.reports.controllers import PAYMENT_COLUMNS, _payment_rows
from portal.reports.exports import csv_stream, xlsx_stream

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/portal_bench_reports"
YEAR = {"start": ["2025-01-01"], "end": ["2025-12-31"]}


async def reset(url: str) -> None:
    server, name = re.match(r"^(postgres(?:ql)?://[^/]*)/([^?]+)", url).groups()  # type: ignore[union-attr]
    conn = await asyncpg.connect(f"{server}/postgres")
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    engine = db.make_engine(url)
    db.bind_engine(engine)
    await engine.run_ddl("DROP SCHEMA public CASCADE")
    await engine.run_ddl("CREATE SCHEMA public")
    await apply_migrations(quiet=True)


FILL = [
    """INSERT INTO location (name, slug, address, phone, timezone, currency, tax_rate_bp,
       prices_include_tax, cancellation_window_hours, refund_rule, active, created_at, updated_at)
       VALUES ('Portland', 'pdx', '', '', 'America/Los_Angeles', 'USD', 0, false, 24, 'list_price',
               true, now(), now()),
              ('Austin', 'aus', '', '', 'America/Chicago', 'USD', 825, false, 24, 'list_price',
               true, now(), now()),
              ('Brooklyn', 'bkn', '', '', 'America/New_York', 'USD', 0, false, 24, 'list_price',
               true, now(), now())""",
    """INSERT INTO app_user (email, name, role, password_hash, active, created_at,
       password_changed_at)
       SELECT 'client' || g || '@bench.test', 'Client ' || g, 'client', 'x', true, now(), now()
       FROM generate_series(1, 1000) g""",
    """INSERT INTO sale (client, location, package_id, price_version_id, price_is_override,
       service_id, service_name, item_name, sessions_total, validity_days, currency, price_cents,
       unit_list_price_cents, net_cents, tax_cents, total_cents, tax_rate_bp, prices_include_tax,
       terms, status, channel, payment_method, frozen, created_at, activated_at, valid_until)
       SELECT 1 + g % 1000, 1 + g % 3, 1 + g % 4, 1, false, 1, 'Neuromuscular massage',
              (3 + 2 * (g % 4)) || ' × 60 min neuromuscular', 3 + 2 * (g % 4), 180, 'USD',
              30000 + 100 * (g % 50), NULL, 30000 + 100 * (g % 50),
              CASE WHEN g % 3 = 1 THEN (30000 + 100 * (g % 50)) * 825 / 10000 ELSE 0 END,
              30000 + 100 * (g % 50)
                + CASE WHEN g % 3 = 1 THEN (30000 + 100 * (g % 50)) * 825 / 10000 ELSE 0 END,
              0, false, '{}', 'active', 'online', CASE WHEN g % 5 = 0 THEN 'cash' ELSE 'card' END,
              false, t, t, t + interval '180 days'
       FROM (SELECT g, timestamptz '2025-01-01 00:00:00+00'
                       + (g * (31536000.0 / $1)) * interval '1 second' AS t
             FROM generate_series(1, $1) g) s""",
    """INSERT INTO payment (sale, location, provider, method, status, amount_cents, currency,
       fee_cents, net_cents, checkout_url, payment_intent_id, charge_id, failure_message,
       created_at, succeeded_at)
       SELECT id, location, CASE WHEN payment_method = 'card' THEN 'stripe' ELSE 'in_clinic' END,
              payment_method, 'succeeded', total_cents, currency,
              CASE WHEN payment_method = 'card' THEN total_cents * 29 / 1000 + 30 ELSE 0 END,
              total_cents - CASE WHEN payment_method = 'card'
                                 THEN total_cents * 29 / 1000 + 30 ELSE 0 END,
              '', CASE WHEN payment_method = 'card' THEN 'pi_' || id END,
              CASE WHEN payment_method = 'card' THEN 'ch_' || id END, '',
              activated_at - interval '2 minutes', activated_at
       FROM sale""",
    """INSERT INTO refund (sale, payment, amount_cents, currency, sessions_requested,
       sessions_revoked, rule, reason, status, external, error, created_at, completed_at)
       SELECT p.sale, p.id, p.amount_cents / 3, p.currency, 1, 1, 'pro_rata', 'bench',
              'succeeded', false, '', p.succeeded_at + interval '3 days',
              p.succeeded_at + interval '3 days'
       FROM payment p WHERE p.sale % 50 = 0""",
    "ANALYZE",
]


async def fill(url: str, payments: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        for statement in FILL:
            started = time.perf_counter()
            await conn.execute(statement, *([payments] if "$1" in statement else []))
            words = statement.split()
            print(f"  {' '.join(words[:3]):<24} {time.perf_counter() - started:6.1f} s")
    finally:
        await conn.close()


async def timed(call: Any, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        await call()
        out.append(time.perf_counter() - started)
    return out


def rss_kib() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fmt(seconds: list[float]) -> str:
    return f"median {statistics.median(seconds) * 1000:7.0f} ms (max {max(seconds) * 1000:.0f})"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--payments", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-fill", action="store_true")
    parser.add_argument("--database-url", default=DEFAULT_URL)
    args = parser.parse_args()
    if args.skip_fill:
        db.bind_engine(db.make_engine(args.database_url))
    else:
        print(f"filling {args.payments:,} payments …")
        await reset(args.database_url)
        await fill(args.database_url, args.payments)
    engine = db.current_engine()
    await db.start_pool(engine, min_size=1, max_size=4)
    if not args.skip_fill:
        # The summaries read the daily totals; the rows were filled beside the portal.
        started = time.perf_counter()
        await totals.rebuild()
        print(f"  daily totals rebuilt    {time.perf_counter() - started:6.1f} s")
    user = CurrentUser(1, "accountant@bench.test", "", ACCOUNTANT, frozenset())
    f = await report_filters.parse(user, {**YEAR, "group": ["month"]})
    march = await report_filters.parse(
        user, {"start": ["2025-03-01"], "end": ["2025-03-31"], "group": ["day"]}
    )

    captured: list[tuple[str, list[Any]]] = []
    original = sql.fetch

    async def capture(text: str, values: Any) -> list[dict[str, Any]]:
        captured.append((text, list(values)))
        return await original(text, values)

    conn = await asyncpg.connect(args.database_url)
    try:
        for label, call in (
            ("summary, month × location, 1 year", lambda: service.payment_summary(f)),
            ("summary, day × location, 1 month", lambda: service.payment_summary(march)),
            ("first page of rows (100)", lambda: service.payment_lines(f)),
        ):
            captured.clear()
            sql.fetch = capture  # type: ignore[assignment]
            await call()
            sql.fetch = original  # type: ignore[assignment]
            queries = [QueryString(t, *v).compile_string("postgres") for t, v in captured]

            async def direct(queries: list[tuple[str, list[Any]]] = queries) -> None:
                for text, values in queries:
                    await conn.fetch(text, *values)

            await call()  # warm
            app_times = await timed(call, args.repeat)
            sql_times = await timed(direct, args.repeat)
            print(f"{label:<38} app {fmt(app_times)}   SQL {fmt(sql_times)}")
    finally:
        await conn.close()

    summary = await service.payment_summary(f)
    expected = sum(t.payments + t.refunds for t in summary.totals.values())
    baseline = rss_kib()
    peak = baseline
    rows = 0
    size = 0
    started = time.perf_counter()
    async for chunk in csv_stream(PAYMENT_COLUMNS, _payment_rows(f)):
        rows += chunk.count(b"\n")
        size += len(chunk)
        peak = max(peak, rss_kib())
    elapsed = time.perf_counter() - started
    rows -= 1  # the header
    assert rows == expected, (rows, expected)
    print(
        f"CSV: {rows:,} rows, {size / 1e6:.0f} MB in {elapsed:.1f} s = {rows / elapsed:,.0f} "
        f"rows/s; peak RSS {peak / 1024:.0f} MiB, {(peak - baseline) / 1024:.1f} MiB above "
        f"the {baseline / 1024:.0f} MiB before"
    )
    baseline = rss_kib()
    peak = baseline
    size = 0
    started = time.perf_counter()
    async for chunk in xlsx_stream("Payments", PAYMENT_COLUMNS, _payment_rows(march)):
        size += len(chunk)
        peak = max(peak, rss_kib())
    elapsed = time.perf_counter() - started
    march_rows = sum(
        t.payments + t.refunds for t in (await service.payment_summary(march)).totals.values()
    )
    print(
        f"XLSX: {march_rows:,} rows (one month), {size / 1e6:.1f} MB in {elapsed:.1f} s = "
        f"{march_rows / elapsed:,.0f} rows/s; peak RSS {(peak - baseline) / 1024:.1f} MiB above "
        "the start"
    )
    await db.close_pool(engine)


if __name__ == "__main__":
    asyncio.run(main())
