"""Test fixtures: every database test runs on SQLite and on PostgreSQL.

* ``database`` (session scope, params sqlite/postgres) migrates one database
  per engine once.
* ``db`` (per test) gives the test a clean database: a fresh copy of the
  migrated SQLite file, or the PostgreSQL database emptied of what the last
  test wrote (rows deleted from the tables that have any, their id sequences
  restarted: a few milliseconds, where truncating every table took 0.3 s).
* ``app`` is one app per settings for the whole session (:func:`shared_app`);
  what a test leaves in ``app.state`` is removed after it.
* ``client`` is an HTTP client on the app in this process and event loop;
  ``owner_client`` / ``manager_client`` are signed in through a session row
  (``factories.login``), not the sign-in form.

Passwords are hashed with cheap argon2 parameters (``ARGON2_TEST_PARAMS``, set
here before anything hashes; production never sets it).

Under pytest-xdist (``make test`` runs ``-n 2 --dist loadgroup``) every worker
has its own databases (``RUN_DATABASE`` ends in the worker id), temporary
directories, Stripe stand-in and ports; the browser and race suites each run
on one worker (``xdist_group``), so their servers start once.

Without ``CI=true`` a missing PostgreSQL or Chromium skips those tests with a
loud line; with ``CI=true`` it is a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest

os.environ.setdefault("PICCOLO_CONF", "portal.piccolo_conf")
# Importing portal.piccolo_conf builds an engine from the environment; point it
# somewhere harmless so no test touches var/.
os.environ.setdefault("DATABASE_URL", "sqlite:////tmp/portal-tests-unused.sqlite3")
os.environ.setdefault("SECRET_KEY", "test-secret-key-" + "x" * 32)
# Before anything imports portal.auth.passwords: argon2 at its cheapest for the
# suite and the servers it starts (production reads no such setting by default).
os.environ.setdefault("ARGON2_TEST_PARAMS", "time_cost=1,memory_cost=64,parallelism=1")
# Temporary directories (the SQLite databases, the servers' var dirs) in memory
# where the machine has it: SQLite syncs its WAL to disk at every commit, and on
# a shared disk that wait was most of a SQLite test's time (migrations: 5 s on
# disk, 0.7 s in /dev/shm). pytest's numbered directories and their clean-up
# are unchanged; only the root moves.
if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
    os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", "/dev/shm")

from litestar import Litestar
from piccolo.engine.base import Engine

from portal import db as portal_db
from portal.app import create_app
from portal.auth import passwords
from portal.auth.service import MANAGER
from portal.migrate import apply_migrations
from portal.piccolo_app import TABLES
from portal.settings import Settings
from tests import factories

pytest_plugins = ["tests.stripe_standin"]

assert passwords._hasher.memory_cost == 64, "portal.auth.passwords was imported too early"

# Two workers on two shared cores: a property's example may take longer than
# Hypothesis's 200 ms deadline for reasons that are not the code's.
hypothesis.settings.register_profile("portal", deadline=None)
hypothesis.settings.load_profile("portal")

IN_CI = os.environ.get("CI", "").lower() == "true"
# The xdist worker this process is ("gw0", "gw1", ...), or "" without xdist.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
# One id per run, shared by the controller and its workers (they inherit it).
RUN_ID = os.environ.setdefault("PORTAL_TEST_RUN", f"{os.getpid()}_{secrets.token_hex(3)}")
RUN_PREFIX = f"portal_test_{RUN_ID}"
# One database name per run and worker (and ``<name>_races`` etc. beside it),
# dropped at the end: two runs on one machine, or two workers of one run,
# never share tables.
RUN_DATABASE = f"{RUN_PREFIX}_{WORKER}" if WORKER else RUN_PREFIX


def _per_worker(url: str) -> str:
    """An explicit TEST_DATABASE_URL gets the worker id appended under xdist."""
    if not WORKER:
        return url
    base, _, query = url.partition("?")
    return f"{base}_{WORKER}" + (f"?{query}" if query else "")


TEST_DATABASE_URL = (
    _per_worker(os.environ["TEST_DATABASE_URL"])
    if "TEST_DATABASE_URL" in os.environ
    else f"postgresql://postgres@127.0.0.1:5432/{RUN_DATABASE}"
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
        # A throw-away database: a commit need not wait for its WAL to reach the
        # disk (every connection to it, the servers' and workers' too, inherits
        # this). Atomicity and visibility are unchanged; only a crash of the
        # PostgreSQL server itself could lose the last commits.
        await conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
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
    reset_sql: str = ""  # PostgreSQL: empties what a test wrote (see _reset_sql)


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
    """Drop this run's databases, and only those.

    A worker drops its own (``portal_test_<run>_gwN`` and ``…_gwN_*``); the
    controller, or a run without xdist, drops ``portal_test_<run>`` and
    ``portal_test_<run>_*`` (a worker that crashed left its own behind).
    """
    if "TEST_DATABASE_URL" not in os.environ:
        asyncio.run(_drop_run_databases(TEST_DATABASE_URL))


# Suites of real servers that start them once per session: all their tests on one
# worker (with ``--dist loadgroup``), so each worker does not start its own.
# (Modules with module-scoped fixtures of their own are grouped the same way,
# by :func:`_own_module_fixture`.)
XDIST_GROUPS = {"e2e": "browser", "races": "races"}


def _own_module_fixture(item: pytest.Item) -> str | None:
    """The test's module, if the test uses a module-scoped fixture of that module's own
    (its own Stripe stand-in, a migrated database for its commands)."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    module = item.nodeid.split("::")[0]
    for definitions in info.name2fixturedefs.values():
        if any(d.scope == "module" and d.baseid == module for d in definitions):
            return module
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Suites of real servers on one worker each; so are the tests of a module that share
    a module-scoped fixture of its own, which then starts once instead of once per worker."""
    tests_dir = Path(__file__).parent
    for item in items:
        if item.get_closest_marker("xdist_group"):
            continue
        try:
            suite = item.path.relative_to(tests_dir).parts[0]
        except ValueError:
            continue
        group = XDIST_GROUPS.get(suite) or _own_module_fixture(item)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))


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
        await portal_db.close_pool(engine)  # the template is copied from now on
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
    reset_sql = await _reset_sql(engine)
    await portal_db.start_pool(engine, min_size=1, max_size=8)
    try:
        yield Database(kind=kind, engine=engine, reset_sql=reset_sql)
    finally:
        await portal_db.close_pool(engine)


TRUNCATE_SQL = "TRUNCATE {} RESTART IDENTITY CASCADE".format(
    ", ".join(t._meta.tablename for t in TABLES)
)


async def _reset_sql(engine: Engine) -> str:
    """One statement that empties the tables a test wrote and restarts the id sequences it used.

    Measured on two busy cores: ``TRUNCATE`` of all 41 tables 0.3–1 s, ``TRUNCATE``
    of only the non-empty ones 0.35 s, ``DELETE`` from the non-empty ones 15 ms
    (most tests write a handful of rows). Rows go with triggers off
    (``session_replication_role = replica``, as TRUNCATE ignores them too: the
    append-only triggers, the foreign keys), so the order does not matter; that
    needs a superuser, otherwise the non-empty tables are truncated.
    """
    rows = await engine.run_ddl(
        """
        SELECT t.relname AS tablename, s.relname AS sequence
        FROM pg_class s
        JOIN pg_depend d ON d.objid = s.oid AND d.classid = 'pg_class'::regclass
            AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
        JOIN pg_class t ON t.oid = d.refobjid
        JOIN pg_namespace n ON n.oid = s.relnamespace
        WHERE s.relkind = 'S' AND n.nspname = 'public'
        """
    )
    superuser = (
        await engine.run_ddl("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    )[0]["rolsuper"]
    sequences: dict[str, list[str]] = {}
    for row in rows:
        sequences.setdefault(row["tablename"], []).append(row["sequence"])
    names = [t._meta.tablename for t in TABLES]
    restart = " ".join(
        f'IF (SELECT is_called FROM "{seq}") THEN PERFORM setval(\'"{seq}"\', 1, false); END IF;'
        for name in names
        for seq in sequences.get(name, [])
    )
    if superuser:
        empty = " ".join(
            f'IF EXISTS (SELECT 1 FROM "{name}") THEN DELETE FROM "{name}"; END IF;'
            for name in names
        )
        body = f"PERFORM set_config('session_replication_role', 'replica', true); {empty}"
    else:
        written = " UNION ALL ".join(
            f"SELECT '{name}' WHERE EXISTS (SELECT 1 FROM \"{name}\")" for name in names
        )
        body = (
            f"SELECT string_agg(quote_ident(n), ', ') INTO dirty FROM ({written}) AS w(n); "
            "IF dirty IS NOT NULL THEN EXECUTE 'TRUNCATE ' || dirty || ' CASCADE'; END IF;"
        )
    return f"DO $reset$ DECLARE dirty text; BEGIN {body} {restart} END $reset$;"


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
        await portal_db.close_pool(engine)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    assert database.engine is not None
    portal_db.bind_engine(database.engine)
    await database.engine.run_ddl(database.reset_sql or TRUNCATE_SQL)
    yield database
    await _assert_journal_balanced()


async def _assert_journal_balanced() -> None:
    """After every test, whatever it did: debits equal credits in the journal."""
    from portal.ledger.service import totals

    debits, credits = await totals()
    assert debits == credits, f"journal out of balance: debits {debits} != credits {credits}"


_APPS: dict[Settings, Litestar] = {}


def shared_app(settings: Settings) -> Litestar:
    """The session's app for ``settings`` (building one costs ~0.4 s).

    The app keeps nothing of a database (the test binds Piccolo's engine), so
    one serves both engines. Use it through :func:`using_app`, which cleans
    ``app.state`` after the test.
    """
    app = _APPS.get(settings)
    if app is None:
        app = _APPS[settings] = create_app(settings, manage_database=False)
    return app


@contextlib.asynccontextmanager
async def using_app(settings: Settings) -> AsyncIterator[Litestar]:
    """:func:`shared_app` for one test; what the test (or a request) added to
    ``app.state`` — a Stripe gateway, say — is closed and removed afterwards,
    so the next test gets the app as built."""
    app = shared_app(settings)
    built = set(app.state.keys())
    try:
        yield app
    finally:
        for key in set(app.state.keys()) - built:
            value = app.state.pop(key)
            close = getattr(value, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()


@pytest.fixture
async def app(db: Database, settings: Settings) -> AsyncIterator[Litestar]:
    async with using_app(settings) as app:
        yield app


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
