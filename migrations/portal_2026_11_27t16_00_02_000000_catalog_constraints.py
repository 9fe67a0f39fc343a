"""Catalog: case-insensitive unique names, price lookup indexes, append-only price versions."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-27T16:00:02:000000"
VERSION = "1.38.0"
DESCRIPTION = "catalog constraints, indexes and append-only price versions"

VERSION_TABLES = ("service_price", "package_price")


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def constraints_and_triggers():
        engine = engine_finder()
        statements = [
            "CREATE UNIQUE INDEX service_name_ci ON service (lower(name))",
            "CREATE UNIQUE INDEX package_name_ci ON package (lower(name))",
            "CREATE INDEX service_price_lookup ON service_price (service, effective_from, id)",
            "CREATE INDEX package_price_lookup "
            "ON package_price (package, location, effective_from, id)",
        ]
        for table in VERSION_TABLES:
            if engine.engine_type == "sqlite":
                statements += [
                    f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END",
                    f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END",
                ]
            else:
                # portal_append_only() comes from the foundation constraints.
                statements.append(
                    f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                    "FOR EACH ROW EXECUTE FUNCTION portal_append_only()"
                )
        for statement in statements:
            await engine.run_ddl(statement)

    manager.add_raw(constraints_and_triggers)
    return manager
