"""Clients found by phone and by date of birth (an import matches each row of a file
of clients against the portal's) without scanning every profile."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-08T10:00:03:000000"
VERSION = "1.38.0"
DESCRIPTION = "client lookups"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def indexes():
        engine = engine_finder()
        for statement in (
            "CREATE INDEX client_profile_phone ON client_profile (phone)",
            "CREATE INDEX client_profile_birth ON client_profile (date_of_birth)",
        ):
            await engine.run_ddl(statement)

    manager.add_raw(indexes)
    return manager
