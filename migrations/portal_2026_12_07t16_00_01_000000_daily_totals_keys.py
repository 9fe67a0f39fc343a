"""One row per daily-totals key: the target of the writers' upserts
(``INSERT … ON CONFLICT (key) DO UPDATE SET x = x + excluded.x``)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-07T16:00:01:000000"
VERSION = "1.38.0"
DESCRIPTION = "daily totals keys"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def keys():
        engine = engine_finder()
        # Location first: every report and every rebuild step reads one
        # location's (or a few locations') days in order.
        await engine.run_ddl(
            "CREATE UNIQUE INDEX ledger_day_key ON ledger_day "
            "(location, day, account, currency, kind, therapist)"
        )
        await engine.run_ddl(
            "CREATE UNIQUE INDEX credit_day_key ON credit_day (location, day, currency, movement)"
        )
        await engine.run_ddl(
            "CREATE UNIQUE INDEX cash_day_key ON cash_day "
            "(location, day, currency, method, provider, package)"
        )

    manager.add_raw(keys)
    return manager
