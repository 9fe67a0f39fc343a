"""Imports: one record per line of a batch; one saved mapping per kind and name."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-08T10:00:01:000000"
VERSION = "1.38.0"
DESCRIPTION = "import keys"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def indexes():
        engine = engine_finder()
        for statement in (
            "CREATE UNIQUE INDEX import_row_line ON import_row (batch, line)",
            "CREATE UNIQUE INDEX import_mapping_name ON import_mapping (kind, name)",
        ):
            await engine.run_ddl(statement)

    manager.add_raw(indexes)
    return manager
