"""The payments and journal CSV downloads at about a million rows, read-only.

Runs against an already filled PostgreSQL database (``bench/generate.py``),
never writes to it. For each download it consumes the byte iterator the
``Stream`` response iterates — the database's COPY writer on PostgreSQL and
the Python writer the SQLite path uses — to the end, and prints rows per
second, the size, the SHA-256 of the bytes (the two writers must agree) and
the process's peak resident memory above what it used before.

    .venv/bin/python bench/csv_export.py [--writer copy|python|both]
        [--report payments|journal|both] [--repeat 1]
        [--database-url postgresql://postgres@127.0.0.1:5432/portal_bench]
        [--payments-period 2024-12-01:2026-11-30] [--journal-period 2025-01-01:2025-04-30]
        [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import os
import pstats
import time
from collections.abc import AsyncIterator, Callable

os.environ.setdefault("PICCOLO_CONF", "portal.piccolo_conf")
os.environ.setdefault("DATABASE_URL", "sqlite:////tmp/portal-bench-unused.sqlite3")
os.environ.setdefault("SECRET_KEY", "bench-secret-" + "x" * 40)

from portal import db
from portal.auth.service import OWNER, CurrentUser
from portal.reports import copy_csv
from portal.reports import filters as report_filters
from portal.reports.controllers import (
    JOURNAL_COLUMNS,
    PAYMENT_COLUMNS,
    _journal_rows,
    _payment_rows,
)
from portal.reports.exports import csv_stream
from portal.reports.filters import Filters

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/portal_bench"


def rss_kib() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def writers(report: str, f: Filters) -> dict[str, Callable[[], AsyncIterator[bytes]]]:
    if report == "payments":
        return {
            "python": lambda: csv_stream(PAYMENT_COLUMNS, _payment_rows(f)),
            "copy": lambda: copy_csv.payments_csv(f, PAYMENT_COLUMNS),
        }
    return {
        "python": lambda: csv_stream(JOURNAL_COLUMNS, _journal_rows(f)),
        "copy": lambda: copy_csv.journal_csv(f, JOURNAL_COLUMNS),
    }


async def measure(label: str, make: Callable[[], AsyncIterator[bytes]], profile: bool) -> str:
    baseline = rss_kib()
    peak = baseline
    rows = size = 0
    digest = hashlib.sha256()
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    async for chunk in make():
        rows += chunk.count(b"\r\n")
        size += len(chunk)
        digest.update(chunk)
        peak = max(peak, rss_kib())
    if profiler:
        profiler.disable()
    elapsed = time.perf_counter() - started
    rows -= 1  # the header
    print(
        f"{label:<18} {rows:>9,} rows {size / 1e6:6.1f} MB {elapsed:6.1f} s "
        f"{rows / elapsed:>9,.0f} rows/s  peak RSS +{(peak - baseline) / 1024:.1f} MiB "
        f"(from {baseline / 1024:.0f} MiB)  sha256 {digest.hexdigest()[:16]}",
        flush=True,
    )
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    return digest.hexdigest()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--writer", choices=["copy", "python", "both"], default="both")
    parser.add_argument("--report", choices=["payments", "journal", "both"], default="both")
    parser.add_argument("--payments-period", default="2024-12-01:2026-11-30")
    parser.add_argument("--journal-period", default="2025-01-01:2025-04-30")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    engine = db.make_engine(args.database_url)
    db.bind_engine(engine)
    await db.start_pool(engine, min_size=1, max_size=4)
    user = CurrentUser(1, "owner@bench.test", "", OWNER, frozenset())
    try:
        for report in ("payments", "journal"):
            if args.report not in (report, "both"):
                continue
            start, end = getattr(args, f"{report}_period").split(":")
            f = await report_filters.parse(user, {"start": [start], "end": [end]})
            digests = set()
            for name, make in writers(report, f).items():
                if args.writer not in (name, "both"):
                    continue
                for _ in range(args.repeat):
                    digests.add(await measure(f"{report} {name}", make, args.profile))
            if len(digests) > 1:
                print(f"{report}: the writers DIFFER")
    finally:
        await db.close_pool(engine)


if __name__ == "__main__":
    asyncio.run(main())
