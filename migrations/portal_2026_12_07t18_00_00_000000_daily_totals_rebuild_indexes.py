"""The time indexes ``portal reports rebuild`` and ``verify`` read credits by: a
month of sales activated and of credits changed at a time."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-07T18:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "daily totals rebuild indexes"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def indexes():
        engine = engine_finder()
        await engine.run_ddl("CREATE INDEX sale_activated_at ON sale (activated_at)")
        await engine.run_ddl("CREATE INDEX sale_session_changed_at ON sale_session (changed_at)")

    manager.add_raw(indexes)
    return manager
