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
import io
import json
import os
import pstats
import re
import signal
import socket
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

from portal import db  # noqa: E402
from portal.auth.service import CLIENT, CurrentUser, open_session  # noqa: E402
from portal.migrate import apply_migrations  # noqa: E402
from portal.settings import Settings  # noqa: E402
from portal.web.pagination import encode_cursor  # noqa: E402

PAGE = 50
DEEP_PAGE = 10_000
SECRET = "bench-secret-" + "x" * 40


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


async def list_pages(conn: asyncpg.Connection, client: httpx.AsyncClient, n: int) -> dict[str, Any]:
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
    pages = {"payments": sale_page, "clients": client_page, "appointments": appt_page}
    lists = {
        "payments": (
            "/sales",
            f"/sales?after={encode_cursor(sale['id'], sale['id'])}",
            f"/sales?location={busiest}&status=active",
        ),
        "clients": (
            "/clients",
            f"/clients?after={encode_cursor(client_row['name'], client_row['id'])}",
            f"/clients?location={busiest}",
        ),
        "appointments": (
            "/appointments/list",
            "/appointments/list?after="
            + encode_cursor(appt["start_at"].astimezone(UTC).isoformat(), appt["id"]),
            f"/appointments/list?location={busiest}&status=completed",
        ),
    }
    out: dict[str, Any] = {}
    for name, (first, deep, filtered) in lists.items():
        result = {
            "deep_page_number": pages[name],
            "page_1": await timed(client, first, n),
            f"page_{DEEP_PAGE}": await timed(client, deep, n),
            "filtered": await timed(client, filtered, n),
            "urls": {"page_1": first, "deep": deep, "filtered": filtered},
        }
        result["deep_over_first"] = round(
            result[f"page_{DEEP_PAGE}"]["median_ms"] / result["page_1"]["median_ms"], 2
        )
        out[name] = result
        print(
            f"  {name:<13} page 1 {result['page_1']['median_ms']:6.1f} ms · page {DEEP_PAGE:,} "
            f"{result[f'page_{DEEP_PAGE}']['median_ms']:6.1f} ms · filtered "
            f"{result['filtered']['median_ms']:6.1f} ms · ratio {result['deep_over_first']}",
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
    lo = datetime(year, 1, 1, tzinfo=UTC)
    hi = datetime(year + 1, 1, 1, tzinfo=UTC)
    period = f"start={year}-01-01&end={year}-12-31"
    out: dict[str, Any] = {
        "year": year,
        "payments_in_year": await conn.fetchval(
            "SELECT count(*) FROM payment WHERE succeeded_at >= $1 AND succeeded_at < $2", lo, hi
        ),
    }
    pairs = {
        "payments": (f"/reports/payments?{period}&group=month", PAYMENTS_SQL),
        "liability": (f"/reports/liability?{period}", LIABILITY_SQL),
    }
    for name, (url, sql) in pairs.items():
        page = await timed(client, url, n)
        direct = await sql_timed(conn, sql, (lo, hi), n)
        out[name] = {
            "portal_ms": page["median_ms"],
            "direct_sql_ms": direct,
            "ratio": round(page["median_ms"] / direct, 2),
            "url": url,
        }
        print(
            f"  {name:<10} portal {page['median_ms']:8.1f} ms · one SQL query {direct:8.1f} ms"
            f" · ratio {out[name]['ratio']}",
            flush=True,
        )
    for name, url in {
        "revenue": f"/reports/revenue?{period}&group=month",
        "trial_balance": f"/reports/trial-balance?{period}",
        "reports_dashboard": "/reports",
    }.items():
        page = await timed(client, url, max(3, n // 3))
        out[name] = {"portal_ms": page["median_ms"], "url": url}
        print(f"  {name:<10} portal {page['median_ms']:8.1f} ms", flush=True)
    return out


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
            )
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
            started = time.perf_counter()
            found = []
            for day in week:
                found.extend(await bookings.free_slots(busiest, 1, day))
            times.append((time.perf_counter() - started) * 1000)
            slots = found
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
    if len(rows) < count:
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
                print("reports", flush=True)
                results["reports"] = await reports(
                    conn, client, datetime.now(UTC).year - 1, args.report_requests
                )
            finally:
                await conn.close()
        print("downloads", flush=True)
        results["downloads"] = await downloads(base, cookie, pid, first, last)
    # Throughput with two worker processes, as the image runs them (WEB_CONCURRENCY=2),
    # on the same two cores as the client that drives them.
    with server(args.database_url, workers=2) as (base, _pid):
        print("throughput (8 connections, 2 worker processes)", flush=True)
        results["throughput"] = await dashboard(base, cookie, args.seconds)
    print("slot search and booking", flush=True)
    results.update(await slots_and_booking(args.database_url, args.requests))
    print("profile", flush=True)
    results["dashboard_profile"] = await profile_dashboard(args.database_url, owner)
    results["targets"] = targets(results)
    return results


def targets(r: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, page in r["list_pages"].items():
        for key in ("page_1", f"page_{DEEP_PAGE}", "filtered"):
            out[f"{name} {key} ≤ 10 ms"] = page[key]["median_ms"] <= 10
        out[f"{name} deep ÷ first ≤ 1.2"] = page["deep_over_first"] <= 1.2
    out["payments page ≥ 300 views/s"] = r["throughput"]["payments_page_rps_8_connections"] >= 300
    for name in ("payments", "liability"):
        out[f"{name} report ÷ SQL ≤ 1.2"] = r["reports"][name]["ratio"] <= 1.2
    csv = r["downloads"]["payments_csv_all"]
    out["CSV ≥ 100,000 rows/s"] = csv["rows_per_second"] >= 100_000
    out["CSV memory growth < 100 MB"] = csv["server_memory_growth_mib"] < 100
    return out


def markdown(r: dict[str, Any]) -> str:
    """The results as the table in bench/README.md."""
    lines = [
        "| measurement | result | target | met |",
        "|---|---:|---|:---:|",
    ]
    t = r["targets"]

    def row(name: str, value: str, target: str, key: str | None = None) -> None:
        met = "" if key is None else ("yes" if t[key] else "**no**")
        lines.append(f"| {name} | {value} | {target} | {met} |")

    for name, page in r["list_pages"].items():
        deep = f"page_{DEEP_PAGE}"
        row(
            f"{name} list, page 1",
            f"{page['page_1']['median_ms']} ms",
            "≤ 10 ms",
            f"{name} page_1 ≤ 10 ms",
        )
        row(
            f"{name} list, page {page['deep_page_number']:,}",
            f"{page[deep]['median_ms']} ms",
            "≤ 10 ms",
            f"{name} {deep} ≤ 10 ms",
        )
        row(
            f"{name} list, filtered",
            f"{page['filtered']['median_ms']} ms",
            "≤ 10 ms",
            f"{name} filtered ≤ 10 ms",
        )
        row(
            f"{name} list, deep ÷ first",
            f"{page['deep_over_first']}",
            "≤ 1.2",
            f"{name} deep ÷ first ≤ 1.2",
        )
    th = r["throughput"]
    row(
        "first payments page, 8 connections",
        f"{th['payments_page_rps_8_connections']} views/s",
        "≥ 300",
        "payments page ≥ 300 views/s",
    )
    rep = r["reports"]
    for name in ("payments", "liability"):
        row(
            f"{name} report, {rep['year']}, all locations",
            f"{rep[name]['portal_ms']:,.0f} ms vs {rep[name]['direct_sql_ms']:,.0f} ms in SQL "
            f"= {rep[name]['ratio']}",
            "≤ 1.2",
            f"{name} report ÷ SQL ≤ 1.2",
        )
    for name in ("revenue", "trial_balance", "reports_dashboard"):
        row(
            f"{name.replace('_', ' ')} page, {rep['year']}",
            f"{rep[name]['portal_ms']:,.0f} ms",
            "recorded",
        )
    csv = r["downloads"]["payments_csv_all"]
    row(
        f"payments CSV, {csv['rows']:,} rows",
        f"{csv['rows_per_second']:,} rows/s",
        "≥ 100,000 rows/s",
        "CSV ≥ 100,000 rows/s",
    )
    row(
        "payments CSV, server memory growth",
        f"{csv['server_memory_growth_mib']} MiB",
        "< 100 MB",
        "CSV memory growth < 100 MB",
    )
    journal = r["downloads"]["journal_csv_month"]
    row(
        f"journal CSV (a month), {journal['rows']:,} rows",
        f"{journal['rows_per_second']:,} rows/s",
        "recorded",
    )
    ss, bc = r["slot_search"], r["booking_contention"]
    row(
        "free-slot search, a week at the busiest location",
        f"median {ss['week_median_ms']} ms, p99 {ss['week_p99_ms']} ms",
        "recorded",
    )
    row(
        f"booking, {bc['contenders_per_slot']} clients per slot × {bc['slots']} slots",
        f"median {bc['median_ms']} ms, p99 {bc['p99_ms']} ms, {bc['successful_bookings']} booked",
        "one per slot",
    )
    row(
        "dashboard ÷ bare route (req/s)",
        f"{th['dashboard_rps']} ÷ {th['bare_rps']} = {th['dashboard_over_bare']}",
        "recorded",
    )
    calls = [a for a in r["dashboard_profile"] if "call" in a][:3]
    top = ", ".join(f"`{a['call']}` {a['share']:.0%}" for a in calls)
    row("dashboard profile, top three", top, "named")
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
