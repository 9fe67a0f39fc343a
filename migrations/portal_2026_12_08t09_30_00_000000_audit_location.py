"""The audit trail records the clinic a change belongs to and the actor's name, so the
owners' audit log filters by location and shows people by name."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-08T09:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "audit location and actor name"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def columns():
        engine = engine_finder()
        for statement in (
            "ALTER TABLE audit_log ADD COLUMN location_id INTEGER NULL",
            "ALTER TABLE audit_log ADD COLUMN actor_name VARCHAR(120) NOT NULL DEFAULT ''",
            "CREATE INDEX audit_log_location ON audit_log (location_id, at, id)",
            "CREATE INDEX audit_log_at ON audit_log (at, id)",
        ):
            await engine.run_ddl(statement)

    manager.add_raw(columns)
    return manager
