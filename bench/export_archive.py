"""The owner's data export (``portal.exports.archive``) over a filled chain, read-only.

Runs against an already filled PostgreSQL database (``bench/generate.py``: 200,000
clients, a million sales, appointments and payments), writes the archive to a
temporary file and prints the rows per file, the time, the archive's size and the
process's peak resident memory above what it used before (sampled at every
progress report, i.e. every batch of 1,000 rows).

    .venv/bin/python bench/export_archive.py
        [--database-url postgresql://postgres@127.0.0.1:5432/portal_bench] [--notes]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PICCOLO_CONF", "portal.piccolo_conf")
os.environ.setdefault("DATABASE_URL", "sqlite:////tmp/portal-bench-unused.sqlite3")
os.environ.setdefault("SECRET_KEY", "bench-secret-" + "x" * 40)

from bench.csv_export import rss_kib
from portal import db, progress
from portal.exports import archive


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--database-url", default="postgresql://postgres@127.0.0.1:5432/portal_bench"
    )
    parser.add_argument("--notes", action="store_true")
    args = parser.parse_args()
    engine = db.make_engine(args.database_url)
    db.bind_engine(engine)
    await db.start_pool(engine, min_size=1, max_size=4)
    baseline = rss_kib()
    peak = baseline

    async def sample(done: int, total: int, step: str) -> None:
        nonlocal peak
        peak = max(peak, rss_kib())

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "export.zip"
        started = time.monotonic()
        with progress.listening(sample), path.open("wb") as target:
            written = await archive.write(target, archive.Scope(notes=args.notes))
        elapsed = time.monotonic() - started
        size = path.stat().st_size
    await db.close_pool(engine)
    for name, count in written.rows.items():
        print(f"{name:<28} {count:>10,} rows")
    print(
        f"{written.total:,} rows in {elapsed:.1f} s ({written.total / elapsed:,.0f} rows/s), "
        f"archive {size / 2**20:.1f} MiB, peak RSS +{(peak - baseline) / 1024:.1f} MiB"
    )


if __name__ == "__main__":
    asyncio.run(main())
