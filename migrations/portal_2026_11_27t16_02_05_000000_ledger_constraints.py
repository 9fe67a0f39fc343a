"""Journal lines and entries are append-only; indexes for balances and reports."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-27T16:02:05:000000"
VERSION = "1.38.0"
DESCRIPTION = "ledger: append-only triggers and reporting indexes"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def constraints_and_triggers():
        engine = engine_finder()
        statements = [
            "CREATE INDEX journal_line_account_location_time "
            "ON journal_line (account, location, occurred_at)",
            "CREATE INDEX journal_line_time ON journal_line (occurred_at)",
        ]
        for table in ("journal_entry", "journal_line"):
            if engine.engine_type == "sqlite":
                statements += [
                    f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END",
                    f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END",
                ]
            else:
                statements.append(
                    f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                    "FOR EACH ROW EXECUTE FUNCTION portal_append_only()"
                )
        for statement in statements:
            await engine.run_ddl(statement)

    manager.add_raw(constraints_and_triggers)
    return manager
