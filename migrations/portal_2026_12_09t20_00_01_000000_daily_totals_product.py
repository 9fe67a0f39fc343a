"""The daily totals of the journal and of the credits keep the product each figure belongs
to (``memberships``, ``packages``, or '' for lines about no sale), so the liability and
revenue reports separate memberships from packages from the totals. Totals written
before this are under ''; a database with memberships or packages already sold runs
``portal reports rebuild`` once (``portal reports verify`` lists them until then)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-09T20:00:01:000000"
VERSION = "1.38.0"
DESCRIPTION = "daily totals product"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def product():
        engine = engine_finder()
        for table in ("ledger_day", "credit_day"):
            await engine.run_ddl(
                f"ALTER TABLE {table} ADD COLUMN product VARCHAR(12) NOT NULL DEFAULT ''"
            )
        await engine.run_ddl("DROP INDEX ledger_day_key")
        await engine.run_ddl(
            "CREATE UNIQUE INDEX ledger_day_key ON ledger_day "
            "(location, day, account, currency, kind, therapist, product)"
        )
        await engine.run_ddl("DROP INDEX credit_day_key")
        await engine.run_ddl(
            "CREATE UNIQUE INDEX credit_day_key ON credit_day "
            "(location, day, currency, movement, product)"
        )

    manager.add_raw(product)
    return manager
