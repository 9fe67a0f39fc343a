"""How fast the therapist list renders its first and its last page with 10,000 therapists.

Fills a PostgreSQL database (created if missing, its schema reset) with
10,000 therapists spread over three locations, then requests the list through
the in-process app with an httpx ASGI client as a signed-in owner: the first
page, and the last page by following "next" cursors to the end once and then
asking for that cursor directly. Prints the median (and slowest) of N requests.

    .venv/bin/python bench/therapist_list.py [--requests 25] [--therapists 10000]
        [--database-url postgresql://postgres@127.0.0.1:5432/portal_bench]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import statistics
import time
from datetime import date, timedelta

os.environ.setdefault("PICCOLO_CONF", "portal.piccolo_conf")
os.environ.setdefault("DATABASE_URL", "sqlite:////tmp/portal-bench-unused.sqlite3")
os.environ.setdefault("SECRET_KEY", "bench-secret-" + "x" * 40)

import asyncpg
import httpx

from portal import db
from portal.app import create_app
from portal.auth.service import OWNER, open_session
from portal.auth.tables import User
from portal.locations.tables import Location
from portal.migrate import apply_migrations
from portal.settings import Settings
from portal.staff.tables import Therapist, TherapistLocation
from portal.timeutil import utcnow

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/portal_bench"
FIRST = ["Ava", "Ben", "Chloe", "Diego", "Elif", "Farah", "Gus", "Hana", "Ivan", "Jun", "Kofi"]
LAST = ["Nguyen", "Patel", "Okafor", "Silva", "Brooks", "Raman", "Ellis", "Haddad", "Kim"]
NEXT_RE = re.compile(r'href="([^"]*after=[^"]*)"[^>]*rel="next"')


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


async def fill(count: int) -> int:
    now = utcnow()
    locations = []
    for slug, tz in (
        ("north", "America/Los_Angeles"),
        ("south", "America/Chicago"),
        ("east", "America/New_York"),
    ):
        rows = (
            await Location.insert(
                Location(
                    name=f"Clinic {slug}",
                    slug=slug,
                    timezone=tz,
                    currency="USD",
                    active=True,
                    created_at=now,
                    updated_at=now,
                )
            )
            .returning(Location.id)
            .run()
        )
        locations.append(rows[0]["id"])
    owner = (
        await User.insert(
            User(
                email="owner@bench.test",
                name="Owner",
                role=OWNER,
                password_hash="",
                active=True,
                created_at=now,
                password_changed_at=now,
            )
        )
        .returning(User.id)
        .run()
    )
    start = time.perf_counter()
    batch = 1000
    for offset in range(0, count, batch):
        rows = [
            Therapist(
                name=f"{FIRST[n % len(FIRST)]} {LAST[(n // len(FIRST)) % len(LAST)]} {n:05d}",
                email=f"t{n}@bench.test",
                licence_number=f"LMT {n}",
                licence_state="Oregon",
                licence_expires=date(2027, 1, 1) + timedelta(days=n % 700),
                insurance_expires=date(2027, 1, 1) + timedelta(days=n % 500),
                active=n % 10 != 0,
                created_at=now,
                updated_at=now,
            )
            for n in range(offset, min(offset + batch, count))
        ]
        ids = await Therapist.insert(*rows).returning(Therapist.id).run()
        await TherapistLocation.insert(
            *[
                TherapistLocation(therapist=r["id"], location=locations[i % len(locations)])
                for i, r in enumerate(ids)
            ]
        ).run()
    print(f"inserted {count} therapists in {time.perf_counter() - start:.1f} s")
    await db.current_engine().run_ddl("ANALYZE")
    return int(owner[0]["id"])


async def timed(client: httpx.AsyncClient, url: str, n: int) -> tuple[float, float, str]:
    times = []
    text = ""
    for _ in range(n):
        start = time.perf_counter()
        response = await client.get(url)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, response.status_code
        text = response.text
    return statistics.median(times), max(times), text


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--therapists", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=25)
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)

    await reset(args.database_url)
    engine = db.current_engine()
    await db.start_pool(engine, min_size=1, max_size=4)
    try:
        owner_id = await fill(args.therapists)
        settings = Settings(
            database_url=args.database_url,
            secret_key="bench-" + "k" * 40,
            embedded=False,
            base_url="http://bench",
        )
        app = create_app(settings, manage_database=False)
        token = await open_session(settings, owner_id)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            client.cookies.set("portal_session", token)
            for _ in range(3):  # warm up templates and the pool
                await client.get("/therapists?status=all")
            results = []
            location = await Location.select(Location.id).first().run()
            variants = (
                ("all", "status=all"),
                ("active", "status=active"),
                ("1 location", f"status=all&location={location['id'] if location else 0}"),
            )
            for label, query in variants:
                first_ms, first_max, html = await timed(
                    client, f"/therapists?{query}", args.requests
                )
                # Follow the next cursors to the end once, to find the last page.
                pages, url, walk = 1, f"/therapists?{query}", time.perf_counter()
                while (match := NEXT_RE.search(html)) is not None:
                    url = match.group(1).replace("&amp;", "&")
                    html = (await client.get(url)).text
                    pages += 1
                walk_s = time.perf_counter() - walk
                last_ms, last_max, html = await timed(client, url, args.requests)
                rows = len(re.findall(r'<a href="/therapists/\d+">', html))
                results.append((label, pages, first_ms, first_max, last_ms, last_max, walk_s, rows))
        print(
            f"\n{args.therapists} therapists, 50 per page, "
            f"median of {args.requests} requests (slowest in brackets)"
        )
        for label, pages, first_ms, first_max, last_ms, last_max, walk_s, rows in results:
            print(
                f"  {label:<10} {pages:>4} pages  first page {first_ms:6.1f} ms ({first_max:.1f})"
                f"  last page {last_ms:6.1f} ms ({last_max:.1f})  [{rows} rows on the last page;"
                f" walking all pages took {walk_s:.1f} s]"
            )
    finally:
        await db.close_pool(engine)


if __name__ == "__main__":
    asyncio.run(main())
