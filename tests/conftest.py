"""Test fixtures: every database test runs on SQLite and on PostgreSQL.

* ``database`` (session scope, params sqlite/postgres) migrates one database
  per engine once.
* ``db`` (per test) gives the test a clean database: a fresh copy of the
  migrated SQLite file, or the PostgreSQL database with every table truncated.
* ``client`` is an HTTP client on the app in this process and event loop.

Without ``CI=true`` a missing PostgreSQL or Chromium skips those tests with a
loud line; with ``CI=true`` it is a failure.
"""

from __future__ import annotations

import os
import asyncio
import re
import secrets
import shutil
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

os.environ.setdefault("PICCOLO_CONF", "portal.piccolo_conf")
# Importing portal.piccolo_conf builds an engine from the environment; point it
# somewhere harmless so no test touches var/.
os.environ.setdefault("DATABASE_URL", "sqlite:////tmp/portal-tests-unused.sqlite3")
os.environ.setdefault("SECRET_KEY", "test-secret-key-" + "x" * 32)

from piccolo.engine.base import Engine

from portal import db as portal_db
from portal.app import create_app
from portal.auth.service import MANAGER
from portal.migrate import apply_migrations
from portal.piccolo_app import TABLES
from portal.settings import Settings
from tests import factories

pytest_plugins = ["tests.stripe_standin"]

IN_CI = os.environ.get("CI", "").lower() == "true"
# One database name per run (and ``<name>_load`` etc. beside it), dropped at the
# end: two runs on one machine (a developer's and CI's) never share tables.
RUN_DATABASE = f"portal_test_{os.getpid()}_{secrets.token_hex(3)}"
TEST_DATABASE_URL = os.environ.get(
    "TEST_DATABASE_URL", f"postgresql://postgres@127.0.0.1:5432/{RUN_DATABASE}"
)
TEST_SECRET = "test-secret-key-for-the-portal-suite-0123456789"


def _loud(message: str) -> None:
    line = "!" * 78
    sys.stderr.write(f"\n{line}\n!! {message}\n{line}\n")


async def _ensure_postgres_database(url: str) -> str | None:
    """Create the test database if missing; returns why PostgreSQL is unusable, or None."""
    import asyncpg

    match = re.match(r"^(postgres(?:ql)?://[^/]*)/([^?]+)", url)
    if not match:
        return f"TEST_DATABASE_URL is not a PostgreSQL URL: {url}"
    server, name = match.groups()
    try:
        conn = await asyncpg.connect(f"{server}/postgres", timeout=5)
    except Exception as exc:
        return f"cannot connect to PostgreSQL at {server}: {exc}"
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return None


@dataclass
class Database:
    kind: str
    engine: Engine | None = None
    template: Path | None = None
    workdir: Path | None = None
    counter: int = 0


async def _drop_run_databases(url: str) -> None:
    import asyncpg

    match = re.match(r"^(postgres(?:ql)?://[^/]*)/([^?]+)", url)
    if not match:
        return
    server, name = match.groups()
    try:
        conn = await asyncpg.connect(f"{server}/postgres", timeout=5)
    except Exception:
        return
    try:
        names = await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname = $1 OR datname LIKE $2",
            name,
            name.replace("_", "\\_") + "\\_%",
        )
        for row in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')
    finally:
        await conn.close()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Drop this run's databases (only the ones named for this run)."""
    if "TEST_DATABASE_URL" not in os.environ:
        asyncio.run(_drop_run_databases(TEST_DATABASE_URL))


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [f"databases: sqlite + {TEST_DATABASE_URL} (CI={IN_CI})"]


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings(
        database_url="sqlite:///unused",
        secret_key=TEST_SECRET,
        embedded=False,
        base_url="http://testserver",
    )


async def _reset_postgres_schema(engine: Engine) -> None:
    await engine.run_ddl("DROP SCHEMA public CASCADE")
    await engine.run_ddl("CREATE SCHEMA public")


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
async def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Database]:
    kind = request.param
    if kind == "sqlite":
        workdir = tmp_path_factory.mktemp("sqlite")
        template = workdir / "template.sqlite3"
        engine = portal_db.make_engine(f"sqlite:///{template}")
        portal_db.bind_engine(engine)
        await apply_migrations(quiet=True)
        yield Database(kind=kind, template=template, workdir=workdir)
        return
    problem = await _ensure_postgres_database(TEST_DATABASE_URL)
    if problem:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI: {problem}")
        _loud(f"SKIPPING PostgreSQL tests: {problem}")
        pytest.skip(f"PostgreSQL unavailable: {problem}")
    engine = portal_db.make_engine(TEST_DATABASE_URL)
    portal_db.bind_engine(engine)
    await _reset_postgres_schema(engine)
    await apply_migrations(quiet=True)
    await portal_db.start_pool(engine, min_size=1, max_size=8)
    try:
        yield Database(kind=kind, engine=engine)
    finally:
        await portal_db.close_pool(engine)


TRUNCATE_SQL = "TRUNCATE {} RESTART IDENTITY CASCADE".format(
    ", ".join(t._meta.tablename for t in TABLES)
)


@pytest.fixture
async def db(database: Database) -> AsyncIterator[Database]:
    """A clean database for one test, bound as Piccolo's engine."""
    if database.kind == "sqlite":
        assert database.template is not None and database.workdir is not None
        database.counter += 1
        path = database.workdir / f"test-{database.counter}.sqlite3"
        shutil.copyfile(database.template, path)
        engine = portal_db.make_engine(f"sqlite:///{path}")
        portal_db.bind_engine(engine)
        await portal_db.prepare(engine)
        yield Database(kind="sqlite", engine=engine, workdir=database.workdir)
        await _assert_journal_balanced()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    assert database.engine is not None
    portal_db.bind_engine(database.engine)
    await database.engine.run_ddl(TRUNCATE_SQL)
    yield database
    await _assert_journal_balanced()


async def _assert_journal_balanced() -> None:
    """After every test, whatever it did: debits equal credits in the journal."""
    from portal.ledger.service import totals

    debits, credits = await totals()
    assert debits == credits, f"journal out of balance: debits {debits} != credits {credits}"


@pytest.fixture
def app(db: Database, settings: Settings) -> Any:
    return create_app(settings, manage_database=False)


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with factories.make_client(app) as c:
        yield c


@pytest.fixture
async def locations(db: Database) -> tuple[int, int]:
    """Two locations: 'own' (A) and 'other' (B)."""
    a = await factories.make_location(name="Alpha Clinic", slug="alpha")
    b = await factories.make_location(name="Beta Clinic", slug="beta", timezone="Europe/London")
    return a, b


@pytest.fixture
async def owner(db: Database) -> factories.Account:
    return await factories.make_user("owner")


@pytest.fixture
async def manager(locations: tuple[int, int]) -> factories.Account:
    return await factories.make_user(MANAGER, location_ids=[locations[0]])


@pytest.fixture
async def owner_client(app: Any, owner: factories.Account) -> AsyncIterator[httpx.AsyncClient]:
    async with factories.make_client(app) as c:
        await factories.login(c, owner)
        yield c


@pytest.fixture
async def manager_client(app: Any, manager: factories.Account) -> AsyncIterator[httpx.AsyncClient]:
    async with factories.make_client(app) as c:
        await factories.login(c, manager)
        yield c
