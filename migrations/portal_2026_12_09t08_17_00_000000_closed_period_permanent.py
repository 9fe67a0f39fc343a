"""Closed periods are permanent: the database refuses to change or remove a closed
month, whatever the caller (the portal only ever inserts them)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-09T08:17:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "closed periods permanent"

TABLE = "closed_period"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def triggers():
        engine = engine_finder()
        if engine.engine_type == "sqlite":
            statements = [
                f"CREATE TRIGGER {TABLE}_no_update BEFORE UPDATE ON {TABLE} "
                f"BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only'); END",
                f"CREATE TRIGGER {TABLE}_no_delete BEFORE DELETE ON {TABLE} "
                f"BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only'); END",
            ]
        else:
            # portal_append_only() comes from the foundation constraints.
            statements = [
                f"CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE} "
                "FOR EACH ROW EXECUTE FUNCTION portal_append_only()"
            ]
        for statement in statements:
            await engine.run_ddl(statement)

    manager.add_raw(triggers)
    return manager
