"""PostgreSQL: the job queue's own tables and functions (procrastinate's schema).

procrastinate keeps its queue in PostgreSQL (``procrastinate_jobs``,
``procrastinate_periodic_defers``, ``procrastinate_workers``, …). Its schema
is applied here, once, by ``portal migrate``, so a database is ready for
``portal worker`` and for every app process that queues a job. Embedded mode
(SQLite) keeps the queue in the server's memory and needs nothing.

Upgrading procrastinate past 3.10 means a later migration applying that
release's files from ``procrastinate/sql/migrations`` (the version is pinned
in pyproject.toml for this reason).
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-07T16:30:01:000000"
VERSION = "1.38.0"
DESCRIPTION = "job queue schema"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def apply_schema():
        engine = engine_finder()
        if engine.engine_type != "postgres":
            return
        from procrastinate.schema import SchemaManager

        # The schema is many statements (functions, triggers): asyncpg's simple
        # query protocol runs them as one script.
        connection = await engine.get_new_connection()
        try:
            exists = await connection.fetchval("SELECT to_regclass('procrastinate_jobs')")
            if exists is None:
                await connection.execute(SchemaManager.get_schema())
        finally:
            await connection.close()

    manager.add_raw(apply_schema)
    return manager
