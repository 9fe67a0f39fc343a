"""One sale per front-desk form: the form's token is unique (NULLs allowed)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-27T19:04:26:000000"
VERSION = "1.38.0"
DESCRIPTION = "sale request key unique"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def constraints():
        engine = engine_finder()
        await engine.run_ddl("CREATE UNIQUE INDEX sale_request_key ON sale (request_key)")

    manager.add_raw(constraints)
    return manager
