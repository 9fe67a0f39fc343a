"""Importing a chain: N clients then N remaining balances on PostgreSQL, timed, with the
process's memory sampled while it runs (flat memory: the files are streamed in chunks).

Writes two CSV files the way another system exports them (semicolons, Windows-1252,
day/month dates), empties its own database (``portal_import_bench``, never the
``portal_bench`` of ``bench/generate.py``), migrates it, and runs the import service
(``portal.imports.service.run_import``, the code the CLI and the wizard's job run).
Afterwards it checks the books: the location's deferred revenue equals the value of
the imported credits, and the journal balances.

    .venv/bin/python bench/import_bench.py [--rows 200000]
        [--database-url postgresql://postgres@127.0.0.1:5432/portal_import_bench]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("PICCOLO_CONF", "portal.piccolo_conf")
os.environ.setdefault("DATABASE_URL", "sqlite:////tmp/portal-bench-unused.sqlite3")
os.environ.setdefault("SECRET_KEY", "bench-secret-" + "x" * 40)

import generate  # bench/generate.py: its database reset

from portal import db, progress
from portal.catalog.tables import Service
from portal.imports import reading
from portal.imports import service as imports
from portal.imports.layouts import LAYOUTS, guess_mapping
from portal.ledger import service as ledger
from portal.locations.tables import Location
from portal.timeutil import utcnow

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/portal_import_bench"
FIRST = ["Zoë", "José", "Ann", "Bob", "Léa", "Kai", "Mia", "Tom", "Eva", "Noé"]
LAST = ["Müller", "Peña", "Lee", "Stone", "O'Neil", "Ngata", "Smith", "Dubois"]


def rss_kib() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def write_files(directory: Path, rows: int) -> tuple[Path, Path]:
    rng = random.Random(7)
    clients = directory / "clients.csv"
    balances = directory / "balances.csv"
    with clients.open("w", encoding="cp1252", newline="") as handle:
        writer = csv.writer(handle, delimiter=";")
        writer.writerow(["Client ID", "First Name", "Last Name", "E-mail", "Mobile", "Birthdate"])
        for i in range(rows):
            writer.writerow(
                [
                    f"C{i}", rng.choice(FIRST), rng.choice(LAST), f"client{i}@example.test",
                    f"07{700000000 + i:09d}", f"{rng.randint(1, 28):02d}/"
                    f"{rng.randint(1, 12):02d}/{rng.randint(1950, 2005)}",
                ]
            )  # fmt: skip
    with balances.open("w", encoding="cp1252", newline="") as handle:
        writer = csv.writer(handle, delimiter=";")
        writer.writerow(["E-mail", "Package", "Remaining", "Remaining value", "Expiry"])
        for i in range(rows):
            left = rng.randint(1, 9)
            writer.writerow(
                [f"client{i}@example.test", "Massage", left, f"{left * 45},50", "31/12/2027"]
            )
    return clients, balances


async def server_cpu_seconds() -> float:
    """CPU time used so far by this database's server processes (PostgreSQL on this
    machine: /proc), so that a run on a shared machine says what it cost as well as how
    long it took."""
    rows = await Service.raw(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
    ).run()
    ticks = 0
    for row in rows:
        try:
            stat = Path(f"/proc/{row['pid']}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


async def reset(url: str) -> None:
    """The database emptied and migrated (``bench/generate.py``'s reset), with a pool."""
    await generate.reset(url)
    await db.start_pool(db.current_engine(), min_size=1, max_size=4)


async def timed(kind: str, path: Path, location_id: int) -> dict[str, Any]:
    sheet = reading.open_sheet(path)
    mapping = guess_mapping(LAYOUTS[kind], sheet.headers)
    baseline = rss_kib()
    peak = baseline
    samples: list[int] = []

    async def listener(done: int, total: int, step: str) -> None:
        nonlocal peak
        now = rss_kib()
        peak = max(peak, now)
        samples.append(now)
        if done % 20000 < imports.CHUNK_ROWS:
            print(f"  {kind}: {done}/{total}, {now / 1024:.0f} MiB", flush=True)

    load = os.getloadavg()[0]
    server = await server_cpu_seconds()
    cpu = time.process_time()
    started = time.perf_counter()
    with progress.listening(listener):
        summary = await imports.run_import(
            kind, sheet, location_id=location_id, mapping=mapping, actor=None, order="dmy"
        )
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu
    server = await server_cpu_seconds() - server
    quarter = samples[len(samples) // 4] if samples else baseline
    return {
        "kind": kind,
        "rows": summary.total,
        "created": summary.created,
        "rejected": summary.rejected,
        "seconds": round(seconds, 1),
        "rows_per_second": round(summary.total / seconds),
        "python_cpu_seconds": round(cpu, 1),
        "postgres_cpu_seconds": round(server, 1),
        "load_average": f"{load:.1f} -> {os.getloadavg()[0]:.1f}",
        "rss_before_mib": round(baseline / 1024),
        "rss_at_quarter_mib": round(quarter / 1024),
        "rss_peak_mib": round(peak / 1024),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument(
        "--database-url", default=os.environ.get("BENCH_IMPORT_DATABASE_URL", DEFAULT_URL)
    )
    args = parser.parse_args()
    await reset(args.database_url)
    now = utcnow()
    location_id = await db.insert_row(
        Location(
            name="London", slug="london", address="1 High St", phone="", timezone="Europe/London",
            currency="GBP", tax_rate_bp=0, prices_include_tax=False, cancellation_window_hours=24,
            active=True, created_at=now, updated_at=now,
        )
    )  # fmt: skip
    await db.insert_row(
        Service(name="Massage", duration_minutes=60, active=True, created_at=now, updated_at=now)
    )
    with tempfile.TemporaryDirectory() as tmp:
        clients, balances = write_files(Path(tmp), args.rows)
        sizes = {p.name: round(p.stat().st_size / 1024 / 1024, 1) for p in (clients, balances)}
        print(f"files: {sizes} MB", flush=True)
        results = [
            await timed("clients", clients, location_id),
            await timed("balances", balances, location_id),
        ]
    owed = await ledger.balance("deferred_revenue", location_id=location_id)
    credits = await Service.raw(
        "SELECT COALESCE(SUM(value_cents), 0) AS v FROM sale_session WHERE state = 'available'"
    ).run()
    debits, credits_total = await ledger.totals()
    checks = {
        "deferred_revenue_cents": owed,
        "open_credit_value_cents": int(credits[0]["v"]),
        "journal_balanced": debits == credits_total,
    }
    both = {
        "seconds": round(sum(r["seconds"] for r in results), 1),
        "cpu_seconds": round(
            sum(r["python_cpu_seconds"] + r["postgres_cpu_seconds"] for r in results), 1
        ),
        "rss_peak_mib": max(r["rss_peak_mib"] for r in results),
        "load_average": f"{results[0]['load_average'].split(' ->')[0]} -> "
        f"{results[-1]['load_average'].split('-> ')[1]}",
    }
    print(
        json.dumps(
            {"rows": args.rows, "results": results, "both": both, "checks": checks}, indent=2
        )
    )
    assert checks["deferred_revenue_cents"] == checks["open_credit_value_cents"]
    assert checks["journal_balanced"]
    await db.close_pool(db.current_engine())


if __name__ == "__main__":
    asyncio.run(main())
