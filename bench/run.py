"""`make bench`: fill PostgreSQL with the chain-sized data set, then measure the portal on it.

Steps (each printed as it runs):

1. ``bench/generate.py`` fills the database (skipped with ``--skip-generate``).
2. The portal is started as a real server (uvicorn, one process, production
   settings) on a free loopback port, with ``bench/benchapp.py``'s bare route.
3. Measurements, each paired with its reference in the same run so the
   machine's noise cancels out of the ratio:

   * list pages (payments, clients, appointments), signed in as the owner,
     full HTML: page 1, page 10,000 (cursor of row 499,950, taken from SQL)
     and a filtered page — medians, and last ÷ first;
   * page views per second of the first payments page over 8 connections;
   * payments and package-liability reports for a year, all locations, months
     in each location's zone — the portal's request ÷ the same report as one
     SQL query in UTC months, run directly against PostgreSQL; revenue and
     trial balance pages beside them;
   * CSV download of every payment (about 1,000,000 rows) and of the journal
     for a month: rows per second, and the server's peak memory growth;
   * free-slot search for a week at the busiest location, and bookings under
     contention (8 clients at once for each of 20 free slots): median, p99;
   * dashboard requests per second ÷ the bare route's, and the top costs of
     the dashboard from a profile.

4. Results go to ``bench/results.json`` and a table is printed for
   ``bench/README.md``.

    .venv/bin/python bench/run.py [--skip-generate] [--database-url URL] [--requests 30]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import html
import io
import json
import os
import pstats
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

os.environ.setdefault("PICCOLO_CONF", "portal.piccolo_conf")
os.environ.setdefault("SECRET_KEY", "bench-secret-" + "x" * 40)

import asyncpg  # noqa: E402
import generate  # noqa: E402
import httpx  # noqa: E402
from load import free_port  # noqa: E402

from portal import db  # noqa: E402
from portal.auth.service import CLIENT, CurrentUser, open_session  # noqa: E402
from portal.migrate import apply_migrations  # noqa: E402
from portal.settings import Settings  # noqa: E402
from portal.web.pagination import encode_cursor  # noqa: E402

PAGE = 50
DEEP_PAGE = 10_000
SECRET = "bench-secret-" + "x" * 40


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Sampler:
    """The server's resident memory every 50 ms, in a thread, while a block runs."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self.start = pid, 0, 0
        self._stop = threading.Event()

    def __enter__(self) -> Sampler:
        self.start = self.peak = rss_kib(self.pid)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss_kib(self.pid))

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_kib(self.pid))

    @property
    def growth_mib(self) -> float:
        return round((self.peak - self.start) / 1024, 1)


@contextlib.contextmanager
def server(url: str, workers: int = 1) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "SECRET_KEY": SECRET,
        "BASE_URL": f"http://127.0.0.1:{port}",
        "DB_POOL_MIN": "4",
        "DB_POOL_MAX": "10",
        # No line per request on the terminal while throughput is measured.
        "LOG_LEVEL": "warning",
    }
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "uvicorn", "benchapp:app", "--app-dir", str(HERE),
            "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
            "--log-level", "warning", "--workers", str(workers),
        ],
        env=env,
        cwd=ROOT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            if proc.poll() is not None:
                raise SystemExit("the portal did not start")
            time.sleep(0.1)
        yield base, proc.pid
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


async def timed(client: httpx.AsyncClient, url: str, n: int) -> dict[str, Any]:
    for _ in range(3):
        (await client.get(url)).raise_for_status()
    times = []
    text = ""
    for _ in range(n):
        started = time.perf_counter()
        response = await client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"{url} answered {response.status_code}")
        text = response.text
    return {
        "median_ms": round(statistics.median(times), 2),
        "p99_ms": round(pct(times, 0.99), 2),
        "bytes": len(text),
    }


async def rate(base: str, cookie: str, url: str, seconds: float, connections: int = 8) -> float:
    """Page views per second over ``connections`` keep-alive connections."""
    done = 0
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done, errors
        async with httpx.AsyncClient(base_url=base, cookies={"portal_session": cookie}) as c:
            while time.perf_counter() < deadline:
                response = await c.get(url)
                if response.status_code == 200:
                    done += 1
                else:
                    errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    if errors:
        raise SystemExit(f"{url}: {errors} failed requests")
    return round(done / (time.perf_counter() - started), 1)


async def fetch_one(conn: asyncpg.Connection, sql: str, *args: Any) -> Any:
    return await conn.fetchrow(sql, *args)


NEXT_RE = re.compile(r'href="([^"]*after=[^"]*)"[^>]*rel="next"')


async def last_page(client: httpx.AsyncClient, url: str) -> tuple[str, int]:
    """The last page of a list, found by following its "Next page" links; its number."""
    pages = 1
    while True:
        response = await client.get(url)
        response.raise_for_status()
        found = NEXT_RE.search(response.text)
        if found is None:
            return url, pages
        url = html.unescape(found.group(1))
        pages += 1


async def list_pages(conn: asyncpg.Connection, client: httpx.AsyncClient, n: int) -> dict[str, Any]:
    """Each list: page 1 and its deepest page, unfiltered and filtered (the unfiltered
    deep page from its cursor in SQL, page 10,000; a filtered list's last page by
    following its links)."""

    async def deep(sql: str, table_count: str) -> Any:
        """The last row before page 10,000 (or the last full page of a smaller data set)."""
        rows = int(await conn.fetchval(table_count))
        offset = max(0, min((DEEP_PAGE - 1) * PAGE, rows - PAGE) - 1)
        return await fetch_one(conn, sql, offset), offset // PAGE + 2

    busiest = await conn.fetchval(
        "SELECT location FROM sale GROUP BY location ORDER BY count(*) DESC LIMIT 1"
    )
    sale, sale_page = await deep(
        "SELECT id FROM sale ORDER BY id DESC OFFSET $1 LIMIT 1", "SELECT count(*) FROM sale"
    )
    client_row, client_page = await deep(
        "SELECT name, id FROM app_user WHERE role = 'client' ORDER BY name, id OFFSET $1 LIMIT 1",
        "SELECT count(*) FROM app_user WHERE role = 'client'",
    )
    appt, appt_page = await deep(
        "SELECT start_at, id FROM appointment ORDER BY start_at DESC, id DESC OFFSET $1 LIMIT 1",
        "SELECT count(*) FROM appointment",
    )
    therapists_last, therapist_page = await last_page(client, "/therapists")
    lists = {
        "payments": (
            "/sales",
            (f"/sales?after={encode_cursor(sale['id'], sale['id'])}", sale_page),
            f"/sales?location={busiest}&status=active",
        ),
        "clients": (
            "/clients",
            (
                f"/clients?after={encode_cursor(client_row['name'], client_row['id'])}",
                client_page,
            ),
            f"/clients?location={busiest}",
        ),
        "appointments": (
            "/appointments/list",
            (
                "/appointments/list?after="
                + encode_cursor(appt["start_at"].astimezone(UTC).isoformat(), appt["id"]),
                appt_page,
            ),
            f"/appointments/list?location={busiest}&status=completed",
        ),
        "therapists": (
            "/therapists",
            (therapists_last, therapist_page),
            f"/therapists?location={busiest}",
        ),
    }
    out: dict[str, Any] = {}
    for name, (first, (deep_url, deep_number), filtered) in lists.items():
        filtered_last, filtered_number = await last_page(client, filtered)
        result = {
            "deep_page_number": deep_number,
            "filtered_last_page_number": filtered_number,
            "page_1": await timed(client, first, n),
            "deep": await timed(client, deep_url, n),
            "filtered": await timed(client, filtered, n),
            "filtered_last": await timed(client, filtered_last, n),
            "urls": {
                "page_1": first,
                "deep": deep_url,
                "filtered": filtered,
                "filtered_last": filtered_last,
            },
        }
        result["deep_over_first"] = round(
            result["deep"]["median_ms"] / result["page_1"]["median_ms"], 2
        )
        out[name] = result
        print(
            f"  {name:<13} page 1 {result['page_1']['median_ms']:6.1f} ms · page "
            f"{deep_number:,} {result['deep']['median_ms']:6.1f} ms · filtered "
            f"{result['filtered']['median_ms']:6.1f} ms · filtered page {filtered_number:,} "
            f"{result['filtered_last']['median_ms']:6.1f} ms",
            flush=True,
        )
    return out


PAYMENTS_SQL = """
WITH p AS (
  SELECT s.location AS loc, date_trunc('month', p.succeeded_at AT TIME ZONE 'UTC') AS m,
         count(*) AS n, sum(p.amount_cents) AS gross, sum(s.tax_cents) AS tax,
         sum(coalesce(p.fee_cents, 0)) AS fee, 0::bigint AS refunded
  FROM payment p JOIN sale s ON s.id = p.sale
  WHERE p.status = 'succeeded' AND p.succeeded_at >= $1 AND p.succeeded_at < $2
  GROUP BY 1, 2
  UNION ALL
  SELECT s.location, date_trunc('month', r.completed_at AT TIME ZONE 'UTC'), count(*), 0, 0, 0,
         sum(r.amount_cents)
  FROM refund r JOIN sale s ON s.id = r.sale
  WHERE r.status = 'succeeded' AND r.completed_at >= $1 AND r.completed_at < $2
  GROUP BY 1, 2
)
SELECT loc, m, sum(n), sum(gross), sum(tax), sum(fee), sum(refunded) FROM p GROUP BY 1, 2
"""

LIABILITY_SQL = """
WITH money AS (
  SELECT jl.location AS loc,
    sum(CASE WHEN jl.occurred_at < $1 THEN jl.credit_cents - jl.debit_cents ELSE 0 END) AS opening,
    sum(CASE WHEN jl.occurred_at >= $1 AND je.kind = 'sale_paid'
        THEN jl.credit_cents - jl.debit_cents ELSE 0 END) AS sold,
    sum(CASE WHEN jl.occurred_at >= $1 AND je.kind = 'package_expired'
        THEN jl.debit_cents - jl.credit_cents ELSE 0 END) AS expired,
    sum(CASE WHEN jl.occurred_at >= $1 AND je.kind = 'refund'
        THEN jl.debit_cents - jl.credit_cents ELSE 0 END) AS refunded,
    sum(CASE WHEN jl.occurred_at >= $1
         AND je.kind NOT IN ('sale_paid', 'package_expired', 'refund')
        THEN jl.debit_cents - jl.credit_cents ELSE 0 END) AS redeemed,
    sum(jl.credit_cents - jl.debit_cents) AS closing
  FROM journal_line jl JOIN journal_entry je ON je.id = jl.entry
  WHERE jl.account = 'deferred_revenue' AND jl.occurred_at < $2
  GROUP BY 1
), sessions AS (
  SELECT s.location AS loc,
    sum(CASE WHEN s.activated_at < $1 AND NOT (ss.state IN ('redeemed', 'forfeited', 'expired',
        'revoked') AND ss.changed_at < $1) THEN 1 ELSE 0 END) AS opening,
    sum(CASE WHEN s.activated_at >= $1 THEN 1 ELSE 0 END) AS sold,
    sum(CASE WHEN ss.changed_at >= $1 AND ss.changed_at < $2 AND ss.state IN ('redeemed',
        'forfeited') THEN 1 ELSE 0 END) AS redeemed,
    sum(CASE WHEN ss.changed_at >= $1 AND ss.changed_at < $2 AND ss.state = 'expired'
        THEN 1 ELSE 0 END) AS expired,
    sum(CASE WHEN ss.changed_at >= $1 AND ss.changed_at < $2 AND ss.state = 'revoked'
        THEN 1 ELSE 0 END) AS refunded,
    sum(CASE WHEN NOT (ss.state IN ('redeemed', 'forfeited', 'expired', 'revoked')
        AND ss.changed_at < $2) THEN 1 ELSE 0 END) AS closing
  FROM sale_session ss JOIN sale s ON s.id = ss.sale
  WHERE s.activated_at < $2
  GROUP BY 1
)
SELECT * FROM money JOIN sessions USING (loc)
"""


REVENUE_SQL = """
WITH recognised AS (
  SELECT jl.location AS loc, date_trunc('month', jl.occurred_at AT TIME ZONE 'UTC') AS m,
         jl.account, jl.therapist_id, sum(jl.credit_cents - jl.debit_cents) AS amount
  FROM journal_line jl
  WHERE jl.account IN ('service_revenue', 'breakage_revenue', 'revenue_reversals')
    AND jl.occurred_at >= $1 AND jl.occurred_at < $2
  GROUP BY 1, 2, 3, 4
), collected AS (
  SELECT s.location AS loc, date_trunc('month', p.succeeded_at AT TIME ZONE 'UTC') AS m,
         sum(p.amount_cents) AS amount
  FROM payment p JOIN sale s ON s.id = p.sale
  WHERE p.status = 'succeeded' AND p.succeeded_at >= $1 AND p.succeeded_at < $2
  GROUP BY 1, 2
)
SELECT loc, m, account, therapist_id, amount FROM recognised
UNION ALL SELECT loc, m, 'collected', NULL, amount FROM collected
"""

TRIAL_BALANCE_SQL = """
SELECT jl.location, jl.account, jl.currency,
  sum(CASE WHEN jl.occurred_at < $1 THEN jl.debit_cents - jl.credit_cents ELSE 0 END) AS opening,
  sum(CASE WHEN jl.occurred_at >= $1 THEN jl.debit_cents ELSE 0 END) AS debits,
  sum(CASE WHEN jl.occurred_at >= $1 THEN jl.credit_cents ELSE 0 END) AS credits
FROM journal_line jl WHERE jl.occurred_at < $2
GROUP BY 1, 2, 3
"""

FEES_SQL = """
SELECT s.location, date_trunc('month', p.succeeded_at AT TIME ZONE 'UTC') AS m,
       count(*), sum(p.amount_cents), sum(coalesce(p.fee_cents, 0))
FROM payment p JOIN sale s ON s.id = p.sale
WHERE p.status = 'succeeded' AND p.provider = 'stripe'
  AND p.succeeded_at >= $1 AND p.succeeded_at < $2
GROUP BY 1, 2
"""

REPORTS = {
    # name: (page, extra query, the same figures aggregated from the rows in SQL)
    "payments": ("/reports/payments", "&group=month", PAYMENTS_SQL),
    "liability": ("/reports/liability", "", LIABILITY_SQL),
    "revenue": ("/reports/revenue", "&group=month", REVENUE_SQL),
    "trial_balance": ("/reports/trial-balance", "", TRIAL_BALANCE_SQL),
    "fees": ("/reports/fees", "&group=month", FEES_SQL),
}
# A range before the first total and one after today: answered, with nothing in them.
EMPTY_RANGES = (("1999-01-01", "1999-12-31"), ("2035-01-01", "2035-03-31"))
API = {
    "payments": "/api/v1/reports/payments",
    "liability": "/api/v1/reports/liability",
    "revenue": "/api/v1/reports/revenue",
    "fees": "/api/v1/reports/fees",
    "trial_balance": "/api/v1/reports/trial-balance",
}


async def sql_timed(conn: asyncpg.Connection, sql: str, args: tuple[Any, ...], n: int) -> float:
    await conn.fetch(sql, *args)
    times = []
    for _ in range(n):
        started = time.perf_counter()
        await conn.fetch(sql, *args)
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 1)


async def reports(
    conn: asyncpg.Connection, client: httpx.AsyncClient, year: int, n: int
) -> dict[str, Any]:
    """Each report for a year at every location (÷ the same figures in one SQL query
    over the rows), for one location and one month, the dashboard, and ranges with
    no totals."""
    lo = datetime(year, 1, 1, tzinfo=UTC)
    hi = datetime(year + 1, 1, 1, tzinfo=UTC)
    period = f"start={year}-01-01&end={year}-12-31"
    busiest = await conn.fetchval(
        "SELECT location FROM sale GROUP BY location ORDER BY count(*) DESC LIMIT 1"
    )
    month = f"start={year}-12-01&end={year}-12-31&location={busiest}"
    out: dict[str, Any] = {
        "year": year,
        "payments_in_year": await conn.fetchval(
            "SELECT count(*) FROM payment WHERE succeeded_at >= $1 AND succeeded_at < $2", lo, hi
        ),
        "one_location": busiest,
    }
    for name, (path, extra, sql) in REPORTS.items():
        year_page = await timed(client, f"{path}?{period}{extra}", n)
        month_page = await timed(client, f"{path}?{month}{extra}", n)
        direct = await sql_timed(conn, sql, (lo, hi), max(3, n // 2))
        out[name] = {
            "portal_ms": year_page["median_ms"],
            "direct_sql_ms": direct,
            "ratio": round(year_page["median_ms"] / direct, 3),
            "one_location_month_ms": month_page["median_ms"],
            "url": f"{path}?{period}{extra}",
        }
        print(
            f"  {name:<13} year {year_page['median_ms']:8.1f} ms · rows in SQL {direct:8.1f} ms"
            f" · ratio {out[name]['ratio']} · one location, a month "
            f"{month_page['median_ms']:6.1f} ms",
            flush=True,
        )
    page = await timed(client, "/reports", n)
    out["reports_dashboard"] = {"portal_ms": page["median_ms"], "url": "/reports"}
    print(f"  reports dashboard (twelve months) {page['median_ms']:8.1f} ms", flush=True)
    out["empty_ranges"] = await empty_ranges(client)
    return out


async def empty_ranges(client: httpx.AsyncClient) -> dict[str, Any]:
    """Every report page and API answer for periods before the first total and after
    today: 200, and the API's rows carry no money."""
    statuses: dict[str, int] = {}
    money: dict[str, int] = {}
    for start, end in EMPTY_RANGES:
        period = f"start={start}&end={end}"
        for name, (path, _, _) in REPORTS.items():
            page = await client.get(f"{path}?{period}")
            statuses[f"{name} {start}"] = page.status_code
            api = await client.get(f"{API[name]}?{period}")
            statuses[f"api {name} {start}"] = api.status_code
            if api.status_code == 200:
                money[f"{name} {start}"] = moved(api.json())
    ok = all(code == 200 for code in statuses.values()) and not any(money.values())
    print(
        f"  before the first total and after today: {len(statuses)} requests, "
        f"{'all 200 with nothing moved' if ok else 'NOT all empty: ' + str(statuses | money)}",
        flush=True,
    )
    return {"statuses": statuses, "money_moved": money, "ok": ok}


MOVED = re.compile(r"_cents$|^(payments|refunds|disputes|sold|redeemed|expired|refunded)$")


def moved(data: Any) -> int:
    """The money and counts that moved in an API answer (balances carried in are not)."""
    if isinstance(data, dict):
        return sum(
            abs(v) if isinstance(v, int) and MOVED.search(k) and "opening" not in k
            and "closing" not in k and "balance" not in k else moved(v)
            for k, v in data.items()
        )  # fmt: skip
    if isinstance(data, list):
        return sum(moved(v) for v in data)
    return 0


async def downloads(base: str, cookie: str, pid: int, first: date, last: date) -> dict[str, Any]:
    out: dict[str, Any] = {}
    month_start = date(last.year, last.month, 1) - timedelta(days=1)
    month_start = month_start.replace(day=1)
    month_end = date(last.year, last.month, 1) - timedelta(days=1)
    for name, url in {
        "payments_csv_all": f"/reports/payments.csv?start={first}&end={last}",
        "journal_csv_month": f"/reports/journal.csv?start={month_start}&end={month_end}",
    }.items():
        rows = 0
        size = 0
        async with httpx.AsyncClient(
            base_url=base, cookies={"portal_session": cookie}, timeout=None
        ) as c:
            with Sampler(pid) as memory:
                started = time.perf_counter()
                async with c.stream("GET", url) as response:
                    if response.status_code != 200:
                        raise SystemExit(f"{url} answered {response.status_code}")
                    async for chunk in response.aiter_bytes():
                        rows += chunk.count(b"\n")
                        size += len(chunk)
                elapsed = time.perf_counter() - started
        out[name] = {
            "rows": rows - 1,
            "megabytes": round(size / 1e6, 1),
            "seconds": round(elapsed, 1),
            "rows_per_second": round((rows - 1) / elapsed),
            "server_memory_growth_mib": memory.growth_mib,
            "url": url,
        }
        print(
            f"  {name:<18} {rows - 1:>9,} rows in {elapsed:5.1f} s = "
            f"{out[name]['rows_per_second']:>7,} rows/s · server memory +{memory.growth_mib} MiB",
            flush=True,
        )
    return out


async def slots_and_booking(url: str, n: int) -> dict[str, Any]:
    from portal.bookings import service as bookings

    engine = db.make_engine(url)
    db.bind_engine(engine)
    await db.start_pool(engine, min_size=8, max_size=16)
    try:
        conn = await asyncpg.connect(url)
        try:
            busiest = await conn.fetchval(
                "SELECT location FROM appointment WHERE start_at > now() "
                "AND status = 'booked' GROUP BY location ORDER BY count(*) DESC LIMIT 1"
            ) or await conn.fetchval("SELECT min(id) FROM location")
            zone_name = await conn.fetchval("SELECT timezone FROM location WHERE id = $1", busiest)
            zone = ZoneInfo(zone_name)
            booked_next_week = await conn.fetchval(
                "SELECT count(*) FROM appointment WHERE location = $1 AND status = 'booked' "
                "AND start_at >= now() AND start_at < now() + interval '7 days'",
                busiest,
            )
        finally:
            await conn.close()
        tomorrow = (datetime.now(zone) + timedelta(days=1)).date()
        week = [tomorrow + timedelta(days=i) for i in range(7)]
        times = []
        slots: list[Any] = []
        for _ in range(n):
            # The booking page's search: the chosen day's week at once (its day strip).
            started = time.perf_counter()
            by_day = await bookings.free_slots_by_day(busiest, 1, week[0], days=len(week))
            times.append((time.perf_counter() - started) * 1000)
            slots = [slot for day in week for slot in by_day[day]]
        search = {
            "location": busiest,
            "booked_next_7_days": booked_next_week,
            "free_slot_choices": len(slots),
            "week_median_ms": round(statistics.median(times), 1),
            "week_p99_ms": round(pct(times, 0.99), 1),
        }
        print(
            f"  slot search, a week at location {busiest} ({booked_next_week} booked): "
            f"median {search['week_median_ms']} ms, p99 {search['week_p99_ms']} ms, "
            f"{len(slots)} free choices",
            flush=True,
        )
        # 20 free (therapist, start) pairs; 8 clients ask for each therapist at that time.
        firsts: dict[datetime, Any] = {}
        for slot in slots:
            firsts.setdefault(slot.start, slot)
        starts = [firsts[start] for start in sorted(firsts)][::7][:20]
        contenders = await clients_with_credit(url, busiest, 8 * len(starts))
        starts = starts[: len(contenders) // 8]  # a small data set has fewer clients
        latencies: list[float] = []
        winners = 0

        async def attempt(client_id: int, slot: Any) -> bool:
            actor = CurrentUser(
                id=client_id, email="", name="", role=CLIENT, location_ids=frozenset()
            )
            began = time.perf_counter()
            try:
                await bookings.book(
                    actor,
                    client_id=client_id,
                    location_id=busiest,
                    service_id=1,
                    start_at=slot.start,
                    therapist_id=slot.therapist_id,
                    notify_client=False,
                )
                ok = True
            except (bookings.SlotTaken, bookings.NoCredit):
                ok = False
            latencies.append((time.perf_counter() - began) * 1000)
            return ok

        for i, slot in enumerate(starts):
            group = contenders[i * 8 : (i + 1) * 8]
            results = await asyncio.gather(*(attempt(c, slot) for c in group))
            winners += sum(results)
        booking = {
            "slots": len(starts),
            "contenders_per_slot": 8,
            "successful_bookings": winners,
            "median_ms": round(statistics.median(latencies), 1),
            "p99_ms": round(pct(latencies, 0.99), 1),
        }
        print(
            f"  booking under contention: {len(starts)} slots × 8 clients → {winners} bookings; "
            f"median {booking['median_ms']} ms, p99 {booking['p99_ms']} ms",
            flush=True,
        )
        if winners != len(starts):
            raise SystemExit("contended booking: not exactly one booking per slot")
        return {"slot_search": search, "booking_contention": booking}
    finally:
        await db.close_pool(engine)


async def clients_with_credit(url: str, location: int, count: int) -> list[int]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT DISTINCT s.client FROM sale_session ss JOIN sale s ON s.id = ss.sale "
            "WHERE ss.state = 'available' AND s.status = 'active' AND s.location = $1 "
            "AND s.valid_until > now() + interval '10 days' LIMIT $2",
            location,
            count,
        )
    finally:
        await conn.close()
    if len(rows) < 8:
        raise SystemExit(f"only {len(rows)} clients with a credit at location {location}")
    return [int(r["client"]) for r in rows]


async def dashboard(base: str, cookie: str, seconds: float) -> dict[str, Any]:
    dash = await rate(base, cookie, "/", seconds)
    bare = await rate(base, cookie, "/bench/bare", seconds)
    first_payments = await rate(base, cookie, "/sales", seconds)
    out = {
        "dashboard_rps": dash,
        "bare_rps": bare,
        "dashboard_over_bare": round(dash / bare, 2),
        "payments_page_rps_8_connections": first_payments,
    }
    print(
        f"  dashboard {dash} req/s · bare route {bare} req/s · ratio {out['dashboard_over_bare']}"
        f"\n  first payments page, 8 connections: {first_payments} page views/s",
        flush=True,
    )
    return out


async def profile_dashboard(url: str, owner: int, requests: int = 200) -> list[dict[str, Any]]:
    """cProfile of the dashboard served in-process: the functions with the most own time."""
    from portal.app import create_app

    settings = Settings(
        database_url=url, secret_key=SECRET, embedded=False, base_url="http://bench"
    )
    engine = db.make_engine(url)
    db.bind_engine(engine)
    await db.start_pool(engine, min_size=2, max_size=4)
    try:
        app = create_app(settings, manage_database=False)
        token = await open_session(settings, owner)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as c:
            c.cookies.set("portal_session", token)
            for _ in range(5):
                (await c.get("/")).raise_for_status()
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(requests):
                await c.get("/")
            profiler.disable()
    finally:
        await db.close_pool(engine)
    stats = pstats.Stats(profiler, stream=io.StringIO())
    raw = stats.stats  # type: ignore[attr-defined]
    wall = max(v[3] for v in raw.values())  # the outermost call: all the profiled time
    # What the page spends its time on: the portal's own calls under the handler,
    # by cumulative time (the middleware around them left out).
    calls = []
    for (filename, _line, func), value in raw.items():
        if "src/portal/" not in filename or "web/middleware" in filename:
            continue
        if func == "__call__":
            continue
        module = "portal." + filename.split("src/portal/")[1].removesuffix(".py").replace("/", ".")
        calls.append((f"{module}.{func}", value[3]))
    calls.sort(key=lambda kv: -kv[1])
    print("  dashboard profile, the portal's calls by cumulative time:", flush=True)
    for name, seconds in calls[:5]:
        print(f"    {name:<60} {100 * seconds / wall:5.1f} %", flush=True)
    # And own time by library, without the event loop's wait for the database.
    by_area: dict[str, float] = {}
    for (filename, _line, func), value in raw.items():
        if func in ("poll", "select") or "selectors" in filename:
            continue
        by_area[area(filename)] = by_area.get(area(filename), 0.0) + value[2]
    busy = sum(by_area.values())
    areas = sorted(by_area.items(), key=lambda kv: -kv[1])[:5]
    print("  own CPU time by library:", ", ".join(f"{n} {v / busy:.0%}" for n, v in areas))
    return [{"call": name, "share": round(seconds / wall, 3)} for name, seconds in calls[:5]] + [
        {"area": name, "cpu_share": round(seconds / busy, 3)} for name, seconds in areas
    ]


def area(filename: str) -> str:
    """Group a profiled file into the library or portal module it belongs to."""
    match = re.search(r"site-packages/([^/]+)", filename)
    if match:
        return match.group(1).removesuffix(".py")
    match = re.search(r"src/portal/(.+)\.py$", filename)
    if match:
        return "portal." + match.group(1).replace("/", ".")
    if "asyncio" in filename:
        return "asyncio (event loop)"
    if filename.startswith("<") or "~" in filename:
        return "builtins (C)"
    return Path(filename).stem


def portal_command(url: str, *argv: str) -> dict[str, Any]:
    """``portal argv…`` as an operator runs it: wall time, exit status, resident memory
    every 50 ms (peak, and the peak of each half of the run: flat memory keeps the
    second half's within a few MiB of the first's)."""
    env = {**os.environ, "DATABASE_URL": url, "SECRET_KEY": SECRET}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "portal"), *argv],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    samples: list[tuple[float, int]] = []
    while proc.poll() is None:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            samples.append((time.perf_counter() - started, rss_kib(proc.pid)))
        time.sleep(0.05)
    output = proc.stdout.read() if proc.stdout else ""
    seconds = time.perf_counter() - started
    half = seconds / 2
    first = [kib for at, kib in samples if at < half and kib] or [0]
    second = [kib for at, kib in samples if at >= half and kib] or [0]
    return {
        "command": "portal " + " ".join(argv),
        "seconds": round(seconds, 1),
        "exit_status": proc.returncode,
        "peak_rss_mib": round(max(first + second) / 1024, 1),
        "first_half_peak_rss_mib": round(max(first) / 1024, 1),
        "second_half_peak_rss_mib": round(max(second) / 1024, 1),
        "output_tail": output.strip().splitlines()[-3:],
    }


# The three kinds of recorded event, each through the service a person's action calls.
EVENTS = ("sale", "refund", "completion")
WARM_UP = 2


@contextlib.contextmanager
def totals_hook(enabled: bool) -> Iterator[None]:
    """With ``enabled`` False the daily totals are not kept: their writers (``ledger.daily``
    and ``payments.totals``) do nothing, as before the totals existed."""
    from portal.ledger import daily
    from portal.payments import totals as payment_totals

    if enabled:
        yield
        return

    async def nothing(*_args: Any, **_kwargs: Any) -> None:
        return None

    @contextlib.asynccontextmanager
    async def untracked(**_rows: Any) -> Any:
        async with db.transaction():
            yield

    saved = {
        (daily, "journal_lines"): daily.journal_lines,
        (daily, "credits"): daily.credits,
        (daily, "cash"): daily.cash,
        (payment_totals, "tracked"): payment_totals.tracked,
        (payment_totals, "added"): payment_totals.added,
    }
    for module, name in saved:
        setattr(module, name, untracked if name == "tracked" else nothing)
    try:
        yield
    finally:
        for (module, name), value in saved.items():
            setattr(module, name, value)


async def event_cost(url: str, owner: int, rounds: int) -> dict[str, Any]:
    """Milliseconds per recorded event with the totals kept and without, alternating
    each round so the machine's load falls on both; the totals of the events recorded
    without them are rebuilt afterwards (``reports.totals.rebuild --since``)."""
    from portal.auth.service import OWNER
    from portal.bookings import outcomes
    from portal.payments import checkout, refunds
    from portal.reports import totals

    engine = db.make_engine(url)
    db.bind_engine(engine)
    await db.start_pool(engine, min_size=2, max_size=4)
    conn = await asyncpg.connect(url)
    try:
        location, package = await conn.fetchrow(
            "SELECT s.location, s.package_id FROM sale s WHERE s.package_id IS NOT NULL "
            "ORDER BY s.id DESC LIMIT 1"
        )
        clients = [
            int(r["id"])
            for r in await conn.fetch(
                "SELECT id FROM app_user WHERE role = 'client' ORDER BY id LIMIT $1",
                2 * rounds + WARM_UP,
            )
        ]
        booked = await conn.fetch(
            "SELECT id, start_at FROM appointment WHERE status = 'booked' AND start_at > now() "
            "ORDER BY start_at LIMIT $1",
            2 * rounds + WARM_UP,
        )
    finally:
        await conn.close()
    actor = CurrentUser(id=owner, email="", name="", role=OWNER, location_ids=frozenset())
    kept_times: dict[tuple[str, bool], list[float]] = {
        (e, on): [] for e in EVENTS for on in (True, False)
    }
    since = (datetime.now(UTC) - timedelta(days=2)).date()
    try:
        for i in range(2 * rounds + WARM_UP):
            on = i % 2 == 0
            # The first rounds (one with, one without) warm the pool and caches, not timed.
            times = kept_times if i >= WARM_UP else {k: [] for k in kept_times}
            with totals_hook(on):
                started = time.perf_counter()
                sale_id = await checkout.record_in_clinic_sale(
                    actor, client_id=clients[i], package_id=package, location_id=location,
                    method="cash",
                )  # fmt: skip
                times[("sale", on)].append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                await refunds.refund_sale(None, actor, sale_id, sessions=1, reason="bench")
                times[("refund", on)].append((time.perf_counter() - started) * 1000)
                appointment = booked[i]
                started = time.perf_counter()
                await outcomes.complete(
                    actor, int(appointment["id"]), now=appointment["start_at"] + timedelta(hours=1)
                )
                times[("completion", on)].append((time.perf_counter() - started) * 1000)
        rebuild_started = time.perf_counter()
        await totals.rebuild(since)
        repaired = round(time.perf_counter() - rebuild_started, 1)
    finally:
        await db.close_pool(engine)
    out: dict[str, Any] = {"rounds": rounds, "rebuild_since_seconds": repaired}
    for event in EVENTS:
        kept = statistics.median(kept_times[(event, True)])
        bare = statistics.median(kept_times[(event, False)])
        out[event] = {
            "with_totals_ms": round(kept, 2),
            "without_totals_ms": round(bare, 2),
            "ratio": round(kept / bare, 2),
        }
        print(
            f"  {event:<10} {kept:7.2f} ms with the totals · {bare:7.2f} ms without · "
            f"ratio {out[event]['ratio']}",
            flush=True,
        )
    return out


async def measure(args: argparse.Namespace, generated: dict[str, Any] | None) -> dict[str, Any]:
    conn = await asyncpg.connect(args.database_url)
    try:
        owner = await conn.fetchval("SELECT id FROM app_user WHERE role = 'owner' LIMIT 1")
        first, last = await conn.fetchrow(
            "SELECT min(succeeded_at)::date, max(succeeded_at)::date FROM payment"
        )
        counts = {
            t: await conn.fetchval(f"SELECT count(*) FROM {t}")
            for t in ("location", "therapist", "room", "sale", "payment", "appointment")
        }
        counts["clients"] = await conn.fetchval("SELECT count(*) FROM app_user WHERE role='client'")
        counts["journal_line"] = await conn.fetchval("SELECT count(*) FROM journal_line")
    finally:
        await conn.close()
    results: dict[str, Any] = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg()},
        "data": counts,
        "generate": generated,
    }
    engine = db.make_engine(args.database_url)
    db.bind_engine(engine)
    await apply_migrations(quiet=True)  # a database filled by an older checkout
    # Every daily total from the rows, as an operator rebuilds them (in a process of its
    # own, its memory sampled).
    print("rebuild of every daily total (portal reports rebuild)", flush=True)
    results["rebuild"] = portal_command(args.database_url, "reports", "rebuild")
    print(f"  {results['rebuild']}", flush=True)
    conn = await asyncpg.connect(args.database_url)
    try:
        # As autovacuum keeps a live database: the rebuild rewrote the totals, and
        # migrations may have rewritten whole tables (index-only scans need the
        # visibility map that VACUUM sets).
        await conn.execute("VACUUM (ANALYZE)")
    finally:
        await conn.close()
    settings = Settings(
        database_url=args.database_url, secret_key=SECRET, embedded=False, base_url="http://bench"
    )
    cookie = await open_session(settings, owner)
    with server(args.database_url) as (base, pid):
        async with httpx.AsyncClient(
            base_url=base, cookies={"portal_session": cookie}, timeout=120
        ) as client:
            conn = await asyncpg.connect(args.database_url)
            try:
                print(f"list pages (median of {args.requests})", flush=True)
                results["list_pages"] = await list_pages(conn, client, args.requests)
                print(f"reports (median of {args.report_requests})", flush=True)
                results["reports"] = await reports(
                    conn, client, datetime.now(UTC).year - 1, args.report_requests
                )
            finally:
                await conn.close()
        if not args.skip_downloads:
            print("downloads", flush=True)
            results["downloads"] = await downloads(base, cookie, pid, first, last)
    # Throughput with two worker processes, as the image runs them (WEB_CONCURRENCY=2),
    # on the same two cores as the client that drives them.
    with server(args.database_url, workers=2) as (base, _pid):
        print("throughput (8 connections, 2 worker processes)", flush=True)
        results["throughput"] = await dashboard(base, cookie, args.seconds)
    print("slot search and booking", flush=True)
    results.update(await slots_and_booking(args.database_url, args.requests))
    print("cost per recorded event, with and without the daily totals", flush=True)
    results["event_cost"] = await event_cost(args.database_url, owner, args.event_rounds)
    print("profile", flush=True)
    results["dashboard_profile"] = await profile_dashboard(args.database_url, owner)
    if not args.skip_verify:
        print("verify (portal reports verify)", flush=True)
        results["verify"] = portal_command(args.database_url, "reports", "verify")
        print(f"  {results['verify']}", flush=True)
    results["machine"]["load_average_end"] = os.getloadavg()
    results["targets"] = targets(results)
    return results


LIST_MS = 8
REPORT_MS = 50
REPORT_RATIO = 0.05
MONTH_MS = 20
DASHBOARD_MS = 100
BOOKING_P99_MS = 250
SLOTS_P99_MS = 100
VIEWS_PER_S = 350
REBUILD_S = 120
FLAT_MIB = 25  # the second half's peak memory over the first half's
EVENT_RATIO = 1.2
PAGES = {
    "page_1": "page 1",
    "deep": "deepest",
    "filtered": "filtered",
    "filtered_last": "filtered, last page",
}


def targets(r: dict[str, Any]) -> dict[str, bool]:
    """Each row of the issue's targets table, met or not."""
    out: dict[str, bool] = {}
    for name, page in r["list_pages"].items():
        for key, label in PAGES.items():
            out[f"{name} list, {label} ≤ {LIST_MS} ms"] = page[key]["median_ms"] <= LIST_MS
    rep = r["reports"]
    for name in REPORTS:
        out[f"{name} report, a year ≤ {REPORT_MS} ms"] = rep[name]["portal_ms"] <= REPORT_MS
        out[f"{name} report ÷ rows in SQL ≤ {REPORT_RATIO}"] = rep[name]["ratio"] <= REPORT_RATIO
        out[f"{name} report, one location, a month ≤ {MONTH_MS} ms"] = (
            rep[name]["one_location_month_ms"] <= MONTH_MS
        )
    out[f"reports dashboard ≤ {DASHBOARD_MS} ms"] = (
        rep["reports_dashboard"]["portal_ms"] <= DASHBOARD_MS
    )
    out["reports before the first total and after today answer, empty"] = rep["empty_ranges"]["ok"]
    bc = r["booking_contention"]
    out[f"booking p99 ≤ {BOOKING_P99_MS} ms"] = bc["p99_ms"] <= BOOKING_P99_MS
    out["booking: exactly one booked per slot"] = bc["successful_bookings"] == bc["slots"]
    out[f"free-slot search p99 ≤ {SLOTS_P99_MS} ms"] = (
        r["slot_search"]["week_p99_ms"] <= SLOTS_P99_MS
    )
    out[f"first payments page ≥ {VIEWS_PER_S} views/s"] = (
        r["throughput"]["payments_page_rps_8_connections"] >= VIEWS_PER_S
    )
    rb = r["rebuild"]
    out[f"rebuild ≤ {REBUILD_S} s"] = rb["exit_status"] == 0 and rb["seconds"] <= REBUILD_S
    out["rebuild, flat memory"] = (
        rb["second_half_peak_rss_mib"] - rb["first_half_peak_rss_mib"] <= FLAT_MIB
    )
    for event in EVENTS:
        out[f"{event}: cost ≤ {EVENT_RATIO} × without the totals"] = (
            r["event_cost"][event]["ratio"] <= EVENT_RATIO
        )
    if "verify" in r:
        out["verify: the totals equal the rows"] = r["verify"]["exit_status"] == 0
    return out


def markdown(r: dict[str, Any]) -> str:
    """The results as the table in bench/README.md: the issue's targets, then what is
    only recorded."""
    lines = ["| measurement | result | target | met |", "|---|---:|---|:---:|"]
    t = r["targets"]

    def row(name: str, value: str, target: str, key: str | None = None) -> None:
        met = "" if key is None else ("yes" if t[key] else "**no**")
        lines.append(f"| {name} | {value} | {target} | {met} |")

    rep = r["reports"]
    for name in REPORTS:
        label = name.replace("_", " ")
        x = rep[name]
        row(
            f"{label} report, {rep['year']}, all locations",
            f"{x['portal_ms']:,.1f} ms",
            f"≤ {REPORT_MS} ms",
            f"{name} report, a year ≤ {REPORT_MS} ms",
        )
        row(
            f"{label} report ÷ the same figures from the rows in SQL",
            f"{x['portal_ms']:,.1f} ÷ {x['direct_sql_ms']:,.0f} ms = {x['ratio']}",
            f"≤ {REPORT_RATIO}",
            f"{name} report ÷ rows in SQL ≤ {REPORT_RATIO}",
        )
        row(
            f"{label} report, one location, December",
            f"{x['one_location_month_ms']:,.1f} ms",
            f"≤ {MONTH_MS} ms",
            f"{name} report, one location, a month ≤ {MONTH_MS} ms",
        )
    row(
        "reports dashboard, twelve months, all locations",
        f"{rep['reports_dashboard']['portal_ms']:,.1f} ms",
        f"≤ {DASHBOARD_MS} ms",
        f"reports dashboard ≤ {DASHBOARD_MS} ms",
    )
    empty = rep["empty_ranges"]
    row(
        "reports for 1999 and 2035 (pages and API)",
        f"{len(empty['statuses'])} answers, "
        f"{sum(c == 200 for c in empty['statuses'].values())} × 200, "
        f"money moved {sum(empty['money_moved'].values())}",
        "200, nothing in them",
        "reports before the first total and after today answer, empty",
    )
    bc = r["booking_contention"]
    row(
        f"booking, 8 clients × same therapist and minute, {bc['slots']} slots",
        f"p99 {bc['p99_ms']} ms (median {bc['median_ms']} ms)",
        f"p99 ≤ {BOOKING_P99_MS} ms",
        f"booking p99 ≤ {BOOKING_P99_MS} ms",
    )
    row(
        "booking: booked per slot",
        f"{bc['successful_bookings']} of {bc['slots']} slots",
        "exactly one",
        "booking: exactly one booked per slot",
    )
    ss = r["slot_search"]
    row(
        "free-slot search, a week at the busiest location",
        f"p99 {ss['week_p99_ms']} ms (median {ss['week_median_ms']} ms)",
        f"p99 ≤ {SLOTS_P99_MS} ms",
        f"free-slot search p99 ≤ {SLOTS_P99_MS} ms",
    )
    for name, page in r["list_pages"].items():
        numbers = {
            "deep": f"page {page['deep_page_number']:,}",
            "filtered_last": f"filtered, page {page['filtered_last_page_number']:,}",
        }
        for key, label in PAGES.items():
            row(
                f"{name} list, {numbers.get(key, label)}",
                f"{page[key]['median_ms']} ms",
                f"≤ {LIST_MS} ms",
                f"{name} list, {label} ≤ {LIST_MS} ms",
            )
    th = r["throughput"]
    row(
        "first payments page, 2 workers, 8 connections",
        f"{th['payments_page_rps_8_connections']} views/s",
        f"≥ {VIEWS_PER_S}",
        f"first payments page ≥ {VIEWS_PER_S} views/s",
    )
    rb = r["rebuild"]
    row(
        "rebuild of every daily total (`portal reports rebuild`)",
        f"{rb['seconds']} s",
        f"≤ {REBUILD_S} s",
        f"rebuild ≤ {REBUILD_S} s",
    )
    row(
        "rebuild, peak resident memory, first half → second half",
        f"{rb['first_half_peak_rss_mib']} → {rb['second_half_peak_rss_mib']} MiB",
        f"flat (+≤ {FLAT_MIB} MiB)",
        "rebuild, flat memory",
    )
    ec = r["event_cost"]
    for event in EVENTS:
        row(
            f"cost per {event}, totals kept ÷ not kept",
            f"{ec[event]['with_totals_ms']} ÷ {ec[event]['without_totals_ms']} ms = "
            f"{ec[event]['ratio']}",
            f"≤ {EVENT_RATIO}",
            f"{event}: cost ≤ {EVENT_RATIO} × without the totals",
        )
    if "verify" in r:
        v = r["verify"]
        row(
            "`portal reports verify` after the run",
            f"exit {v['exit_status']} in {v['seconds']} s",
            "no difference",
            "verify: the totals equal the rows",
        )
    for name, page in r["list_pages"].items():
        row(f"{name} list, deepest ÷ page 1", f"{page['deep_over_first']}", "recorded")
    if "downloads" in r:
        csv = r["downloads"]["payments_csv_all"]
        row(
            f"payments CSV, {csv['rows']:,} rows",
            f"{csv['rows_per_second']:,} rows/s, "
            f"server memory +{csv['server_memory_growth_mib']} MiB",
            "recorded",
        )
        journal = r["downloads"]["journal_csv_month"]
        row(
            f"journal CSV (a month), {journal['rows']:,} rows",
            f"{journal['rows_per_second']:,} rows/s",
            "recorded",
        )
    row(
        "dashboard ÷ bare route (req/s)",
        f"{th['dashboard_rps']} ÷ {th['bare_rps']} = {th['dashboard_over_bare']}",
        "recorded",
    )
    calls = [a for a in r["dashboard_profile"] if "call" in a][:3]
    top = ", ".join(f"`{a['call']}` {a['share']:.0%}" for a in calls)
    row("dashboard profile, top three", top, "recorded")
    for when, key in (("started", "load_average"), ("ended", "load_average_end")):
        load = r["machine"].get(key) or []
        row(
            f"load average when the run {when} (1, 5, 15 min)",
            ", ".join(f"{x:.1f}" for x in load),
            "",
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    default_url = os.environ.get("BENCH_DATABASE_URL", generate.DEFAULT_URL)
    p.add_argument("--database-url", default=default_url)
    p.add_argument("--skip-generate", action="store_true")
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--requests", type=int, default=30)
    p.add_argument("--report-requests", type=int, default=5)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--event-rounds", type=int, default=20)
    p.add_argument("--skip-downloads", action="store_true")
    p.add_argument("--skip-verify", action="store_true")
    p.add_argument("--out", default=str(HERE / "results.json"))
    p.add_argument(
        "--table-only", action="store_true", help="print the table of an earlier --out and stop"
    )
    args = p.parse_args()
    if args.table_only:
        print(markdown(json.loads(Path(args.out).read_text())))
        return
    generated = None
    if not args.skip_generate:
        gen_args = argparse.Namespace(database_url=args.database_url, scale=args.scale, seed=7)
        generated = asyncio.run(generate.generate(gen_args))
    results = asyncio.run(measure(args, generated))
    Path(args.out).write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nresults written to {args.out}\n")
    print(markdown(results))
    print()
    for name, ok in results["targets"].items():
        print(f"  {'met ' if ok else 'MISS'}  {name}")


if __name__ == "__main__":
    main()
