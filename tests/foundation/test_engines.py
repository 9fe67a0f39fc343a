"""What a connection carries from one use to the next: SQLite's kept connections
(``engines.ReusingSQLiteEngine``) and PostgreSQL's pool (``db._keep_session``, which
leaves asyncpg's rollback as the only reset)."""

from __future__ import annotations

import pytest

from portal import db as portal_db
from portal.engines import ReusingSQLiteEngine
from portal.locations.tables import Location
from tests import factories

SQLITE = pytest.mark.parametrize("database", ["sqlite"], indirect=True)
POSTGRES = pytest.mark.parametrize("database", ["postgres"], indirect=True)


async def test_work_rolled_back_stays_undone_on_the_next_use(db):
    """A transaction that fails gives its connection back with nothing of it left:
    the next statements, on whichever connection they get, see none of its rows and
    run outside any transaction."""
    with pytest.raises(LookupError):
        async with portal_db.transaction():
            await factories.make_location(name="Never kept")
            raise LookupError("the rest of the work failed")
    for _ in range(3):  # enough uses to come back to the connection it had
        assert await Location.count().where(Location.name == "Never kept").run() == 0
    await factories.make_location(name="Kept")  # outside a transaction: committed at once
    assert await Location.count().where(Location.name == "Kept").run() == 1


async def _kept_engine(*, close_idle: bool) -> ReusingSQLiteEngine:
    """The test's SQLite engine with no connection kept (``close_idle``), or with one
    kept by a statement just run."""
    engine = portal_db.current_engine()
    assert isinstance(engine, ReusingSQLiteEngine)
    if close_idle:
        await engine.close_idle()
    else:
        await Location.count().run()
    return engine


@SQLITE
async def test_sqlite_keeps_a_connection_for_the_next_statement(db):
    engine = await _kept_engine(close_idle=False)
    kept = list(engine._idle)
    assert len(kept) == 1
    await Location.count().run()
    assert engine._idle == kept  # the same connection, taken and given back


@SQLITE
async def test_sqlite_closes_a_connection_whose_statement_failed(db):
    engine = await _kept_engine(close_idle=False)
    kept = list(engine._idle)
    with pytest.raises(Exception, match="no such table"):
        await Location.raw("SELECT * FROM no_such_table").run()
    # The failed statement took the kept connection and did not give it back.
    assert engine._idle == []
    assert all(c not in engine._idle for c in kept)
    assert await Location.count().run() >= 0  # a fresh connection serves the next one
    assert len(engine._idle) == 1 and engine._idle != kept


@SQLITE
async def test_sqlite_closes_a_connection_given_back_inside_a_transaction(db):
    engine = await _kept_engine(close_idle=True)
    lent = await engine.get_connection()
    await lent.execute("BEGIN")
    await lent.close()
    assert engine._idle == []  # never kept with a transaction open


@SQLITE
async def test_sqlite_keeps_at_most_its_idle_connections(db):
    engine = await _kept_engine(close_idle=True)
    lent = [await engine.get_connection() for _ in range(engine.IDLE_CONNECTIONS + 2)]
    for connection in lent:
        await connection.close()
    assert len(engine._idle) == engine.IDLE_CONNECTIONS


@POSTGRES
async def test_postgres_pool_gives_back_no_open_transaction(db):
    """``_keep_session`` resets nothing itself: asyncpg's rollback of a transaction left
    open is what a returned connection relies on."""
    engine = portal_db.current_engine()
    await portal_db.close_pool(engine)
    await portal_db.start_pool(engine, min_size=1, max_size=1)
    try:
        pool = engine.pool  # type: ignore[attr-defined]
        connection = await pool.acquire()
        first = id(connection._con)
        await connection.execute("BEGIN")
        await connection.execute("INSERT INTO location (name) VALUES ('Left open')")
        assert connection.is_in_transaction()
        await pool.release(connection)
        again = await pool.acquire()
        try:
            assert id(again._con) == first  # the same connection, kept by the pool
            assert not again.is_in_transaction()
            assert (
                await again.fetchval("SELECT count(*) FROM location WHERE name = 'Left open'") == 0
            )
        finally:
            await pool.release(again)
    finally:
        await portal_db.close_pool(engine)
        await portal_db.start_pool(engine, min_size=1, max_size=8)  # as the suite's
