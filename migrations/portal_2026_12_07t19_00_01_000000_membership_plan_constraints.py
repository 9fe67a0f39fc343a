"""Membership plans: names unique per location regardless of case, price lookup index,
append-only price versions (as the catalog's)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-07T19:00:01:000000"
VERSION = "1.38.0"
DESCRIPTION = "membership plan constraints"

TABLE = "membership_plan_price"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def constraints_and_triggers():
        engine = engine_finder()
        statements = [
            "CREATE UNIQUE INDEX membership_plan_name_ci ON membership_plan (location, lower(name))",
            f"CREATE INDEX {TABLE}_lookup ON {TABLE} (plan, effective_from, id)",
        ]
        if engine.engine_type == "sqlite":
            statements += [
                f"CREATE TRIGGER {TABLE}_no_update BEFORE UPDATE ON {TABLE} "
                f"BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only'); END",
                f"CREATE TRIGGER {TABLE}_no_delete BEFORE DELETE ON {TABLE} "
                f"BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only'); END",
            ]
        else:
            # portal_append_only() comes from the foundation constraints.
            statements.append(
                f"CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE} "
                "FOR EACH ROW EXECUTE FUNCTION portal_append_only()"
            )
        for statement in statements:
            await engine.run_ddl(statement)

    manager.add_raw(constraints_and_triggers)
    return manager
