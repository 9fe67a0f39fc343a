"""`portal backup` and `portal restore`, on SQLite and on PostgreSQL.

Every test works on a database of its own: a SQLite file in the test's folder,
or a PostgreSQL database created for the test and dropped after it (never the
shared test database, which a restore would replace). The commands run as a
person runs them: the `portal` executable with DATABASE_URL in its environment.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import sqlite3
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from piccolo.apps.migrations.tables import Migration
from piccolo.engine.base import Engine

from portal import db as portal_db
from portal.auth.tables import User
from portal.ledger import service as ledger
from portal.ledger.tables import JournalEntry, JournalLine
from portal.locations.tables import Location
from portal.migrate import apply_migrations, pending_migrations
from portal.piccolo_app import TABLES
from portal.sales.tables import Sale
from tests import factories
from tests.conftest import TEST_DATABASE_URL, Database
from tests.reports import helpers

PORTAL = str(Path(sys.executable).parent / "portal")
SERVER_URL = re.sub(r"/[^/?]+(\?.*)?$", "", TEST_DATABASE_URL)


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(f"{SERVER_URL}/postgres", timeout=10)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@dataclass
class Scratch:
    """The test's own database, migrated and bound as Piccolo's engine."""

    kind: str
    url: str
    engine: Engine
    folder: Path
    made: list[str] = field(default_factory=list)  # PostgreSQL databases to drop

    async def another(self) -> str:
        """The URL of a new, empty database of the same engine (a restore drill's target)."""
        if self.kind == "sqlite":
            return f"sqlite:///{self.folder / f'drill-{secrets.token_hex(4)}.sqlite3'}"
        name = f"portal_drill_{secrets.token_hex(6)}"
        await _admin(f'CREATE DATABASE "{name}"')
        self.made.append(name)
        return f"{SERVER_URL}/{name}"

    async def stop(self) -> None:
        """The portal stops (as it should for a restore): its pool is closed."""
        if getattr(self.engine, "pool", None) is not None:
            await portal_db.close_pool(self.engine)

    async def bind(self, url: str) -> None:
        """Point Piccolo at ``url`` (a fresh pool, as a restarted portal would have)."""
        await self.stop()
        self.url = url
        self.engine = portal_db.make_engine(url)
        portal_db.bind_engine(self.engine)
        await portal_db.start_pool(self.engine, min_size=1, max_size=2)

    def env(self, url: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY")}
        env.update(
            DATABASE_URL=url or self.url,
            SECRET_KEY="backup-secret-" + "b" * 40,
            PORTAL_VAR_DIR=str(self.folder),
        )
        return env

    async def portal(self, *args: str, url: str | None = None) -> tuple[int, str, str]:
        """Run the `portal` command; the event loop stays free for writers meanwhile."""
        process = await asyncio.create_subprocess_exec(
            PORTAL,
            *args,
            env=self.env(url),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 300)
        return process.returncode or 0, out.decode(), err.decode()


@pytest.fixture
async def scratch(database: Database, tmp_path: Path) -> AsyncIterator[Scratch]:
    if database.kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'portal.sqlite3'}"
    else:
        name = f"portal_backup_{secrets.token_hex(6)}"
        await _admin(f'CREATE DATABASE "{name}"')
        url = f"{SERVER_URL}/{name}"
    engine = portal_db.make_engine(url)
    portal_db.bind_engine(engine)
    await portal_db.prepare(engine)
    await apply_migrations(quiet=True)
    await portal_db.start_pool(engine, min_size=1, max_size=2)
    scratch = Scratch(kind=database.kind, url=url, engine=engine, folder=tmp_path)
    if database.kind == "postgres":
        scratch.made.append(name)
    try:
        yield scratch
        debits, credits = await ledger.totals()
        assert debits == credits, f"journal out of balance: {debits} != {credits}"
    finally:
        await scratch.stop()
        if database.engine is not None:
            portal_db.bind_engine(database.engine)
        for made in scratch.made:
            await _admin(f'DROP DATABASE IF EXISTS "{made}" WITH (FORCE)')


async def snapshot() -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, the record of applied migrations included."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for table in [*TABLES, Migration]:
        rows[table._meta.tablename] = await table.select().order_by(table._meta.primary_key).run()
    return rows


async def make_business() -> dict[str, int]:
    """Locations, staff, a client, two paid sales (one partly used): journal lines."""
    alpha = await factories.make_location(name="Alpha Clinic", slug="alpha")
    beta = await factories.make_location(name="Beta Clinic", slug="beta", currency="EUR")
    spare = await factories.make_location(name="Spare Clinic", slug="spare")
    await factories.make_user("owner")
    leaver = await factories.make_user("accountant")
    client = await factories.make_user("client", email="client@example.test")
    at = datetime(2026, 3, 2, 15, tzinfo=UTC)
    sale = await helpers.make_sale(alpha, client.id, at=at, net=50_000, tax=5_000, fee=1_625)
    await helpers.make_sale(beta, client.id, at=at, net=20_000, currency="EUR", method="cash")
    await helpers.redeem(sale, 2, at=at)
    return {"alpha": alpha, "spare": spare, "sale": sale, "leaver": leaver.id, "client": client.id}


async def change_everything(ids: dict[str, int]) -> None:
    """What happens after a backup: edits, deletions, new sales."""
    await Location.update({Location.name: "Renamed"}).where(Location.id == ids["alpha"]).run()
    await Location.delete().where(Location.id == ids["spare"]).run()
    await factories.make_location(slug="opened-later")
    await factories.make_location(slug="opened-later-too")
    await User.delete().where(User.id == ids["leaver"]).run()
    await Sale.update({Sale.item_name: "Changed"}).where(Sale.id == ids["sale"]).run()
    at = datetime(2026, 3, 5, 9, tzinfo=UTC)
    await helpers.make_sale(ids["alpha"], ids["client"], at=at, net=9_000, fee=300)


async def test_backup_change_restore_gives_the_data_back(scratch: Scratch) -> None:
    ids = await make_business()
    before = await snapshot()
    assert len(before["journal_line"]) >= 8 and len(before["location"]) == 3
    backup_file = scratch.folder / "portal.backup"

    status, out, err = await scratch.portal("backup", str(backup_file))
    assert status == 0, err
    engine = "SQLite" if scratch.kind == "sqlite" else "PostgreSQL"
    assert f"Backed up the {engine} database to {backup_file}" in out
    assert backup_file.stat().st_size > 0
    assert not list(scratch.folder.glob(".*partial"))

    await change_everything(ids)
    assert await snapshot() != before

    # The portal is stopped for a restore; it starts again on the restored database.
    await scratch.stop()
    status, out, err = await scratch.portal("restore", str(backup_file), "--force")
    assert status == 0, err
    assert f"Restored the {engine} database" in out and "Every migration is applied." in out
    await scratch.bind(scratch.url)

    assert await snapshot() == before
    assert await pending_migrations() == []
    debits, credits = await ledger.totals()
    assert debits == credits > 0
    assert await ledger.balance("processing_fees") == 1_625
    # The id sequences are the backup's too: the next row gets the next id.
    newest = await factories.make_location(slug="after-restore")
    assert newest == max(row["id"] for row in before["location"]) + 1

    # The restore drill: the same backup into a new, empty database.
    drill = await scratch.another()
    status, out, err = await scratch.portal("restore", str(backup_file), url=drill)
    assert status == 0, err
    assert "Every migration is applied." in out
    await scratch.bind(drill)
    assert await snapshot() == before


async def test_backup_while_the_portal_writes(scratch: Scratch) -> None:
    """A writer keeps journalling (through the portal's own ledger) while the backup
    runs: the backup is the database at one instant, whole and consistent."""
    location = await factories.make_location()
    # Bulk, so that copying takes a while: balanced one-cent lines under one entry.
    await ledger.post(
        event_key="bulk", kind="fee", currency="USD", location_id=location,
        lines=[ledger.debit("processing_fees", 1), ledger.credit("stripe_clearing", 1)],
    )  # fmt: skip
    await JournalLine.raw(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 60000) "
        "INSERT INTO journal_line (entry, account, debit_cents, credit_cents, location, currency, "
        "occurred_at, sale_id, therapist_id) "
        "SELECT l.entry, CASE WHEN i % 2 = 1 THEN 'processing_fees' ELSE 'stripe_clearing' END, "
        "i % 2, 1 - i % 2, l.location, l.currency, l.occurred_at, NULL, NULL "
        "FROM n, journal_line l WHERE l.id = (SELECT MIN(id) FROM journal_line)"
    ).run()
    written = 0
    stop = asyncio.Event()

    async def keep_writing() -> None:
        nonlocal written
        while not stop.is_set():
            n = written + 1
            await ledger.post(
                event_key=f"writer:{n}", kind="fee", currency="USD", location_id=location,
                lines=[ledger.debit("processing_fees", n), ledger.credit("stripe_clearing", n)],
            )  # fmt: skip
            written = n
            await asyncio.sleep(0)

    writer = asyncio.create_task(keep_writing())
    try:
        while written < 20:
            await asyncio.sleep(0.01)
        started_at = written
        backup_file = scratch.folder / "live.backup"
        status, _, err = await scratch.portal("backup", str(backup_file))
        during = written
    finally:
        stop.set()
        await writer
    # Every entry the backup can hold was committed by now.
    finished_at = written
    assert status == 0, err
    assert during > started_at, "the writer was held up for the whole backup"

    if scratch.kind == "sqlite":
        assert not Path(f"{backup_file}-wal").exists()  # one self-contained file
        copy = sqlite3.connect(f"file:{backup_file}?mode=ro", uri=True)
        try:
            assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            keys = [r[0] for r in copy.execute("SELECT event_key FROM journal_entry")]
            per_entry = copy.execute(
                "SELECT e.event_key, COUNT(l.id), SUM(l.debit_cents), SUM(l.credit_cents) "
                "FROM journal_entry e JOIN journal_line l ON l.entry = e.id GROUP BY e.event_key"
            ).fetchall()
            debits, credits = copy.execute(
                "SELECT SUM(debit_cents), SUM(credit_cents) FROM journal_line"
            ).fetchone()
        finally:
            copy.close()
    else:
        drill = await scratch.another()
        status, _, err = await scratch.portal("restore", str(backup_file), url=drill)
        assert status == 0, err
        await scratch.bind(drill)
        keys = [r["event_key"] for r in await JournalEntry.select(JournalEntry.event_key).run()]
        per_entry = [
            (r["event_key"], r["n"], r["d"], r["c"])
            for r in await JournalLine.raw(
                "SELECT e.event_key, COUNT(l.id) AS n, SUM(l.debit_cents) AS d, "
                "SUM(l.credit_cents) AS c FROM journal_entry e "
                "JOIN journal_line l ON l.entry = e.id GROUP BY e.event_key"
            ).run()
        ]
        debits, credits = await ledger.totals()

    # One instant: writer entries 1..k with nothing missing, every one whole and balanced.
    writer_keys = sorted(int(k.split(":")[1]) for k in keys if k.startswith("writer:"))
    assert started_at <= len(writer_keys) <= finished_at
    assert writer_keys == list(range(1, len(writer_keys) + 1))
    for key, lines, debit, credit in per_entry:
        if key.startswith("writer:"):
            assert lines == 2 and debit == credit == int(key.split(":")[1]), key
    assert debits == credits


async def refused(scratch: Scratch, *args: str, status: int, url: str | None = None) -> str:
    """Run a command that must fail: exit ``status``, one line on stderr, no traceback."""
    code, _, err = await scratch.portal(*args, url=url)
    assert code == status, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("portal: "), err
    return lines[0]


async def test_refusals_and_failures_are_one_line(scratch: Scratch) -> None:
    await factories.make_location(slug="kept")
    backup_file = str(scratch.folder / "kept.backup")
    assert (await scratch.portal("backup", backup_file))[0] == 0
    original = Path(backup_file).read_bytes()

    # A backup never overwrites a file unless told to.
    assert "already exists; add --force" in await refused(scratch, "backup", backup_file, status=2)
    assert Path(backup_file).read_bytes() == original
    assert (await scratch.portal("backup", backup_file, "--force"))[0] == 0
    # A restore never replaces a database that holds data unless told to.
    await Location.update({Location.name: "Still here"}).where(Location.slug == "kept").run()
    await scratch.stop()
    assert "add --force" in await refused(scratch, "restore", backup_file, status=2)
    await scratch.bind(scratch.url)
    assert await Location.exists().where(Location.name == "Still here").run()
    # No such file; a file that is not a backup; a backup of the other engine.
    missing = str(scratch.folder / "missing.backup")
    assert "no backup file" in await refused(scratch, "restore", missing, status=2)
    junk = scratch.folder / "junk.backup"
    junk.write_text("not a backup\n")
    message = await refused(scratch, "restore", str(junk), "--force", status=2)
    assert "not a portal backup" in message
    other = "postgresql://postgres@127.0.0.1:1/x" if scratch.kind == "sqlite" else "sqlite:///x"
    message = await refused(scratch, "restore", backup_file, "--force", status=2, url=other)
    assert "backup, but DATABASE_URL points at" in message
    # The database cannot be reached (PostgreSQL) or is not there (SQLite): 1.
    if scratch.kind == "sqlite":
        gone = f"sqlite:///{scratch.folder / 'no-such.sqlite3'}"
        message = await refused(scratch, "backup", missing, status=1, url=gone)
        assert "no SQLite database" in message
        assert not (scratch.folder / "no-such.sqlite3").exists()
    else:
        down = f"{SERVER_URL.rsplit(':', 1)[0]}:1/x"
        message = await refused(scratch, "backup", missing, status=1, url=down)
        assert "cannot connect to the database" in message
    assert not Path(missing).exists() and not list(scratch.folder.glob(".*partial"))
