"""``cash_day`` keeps every status of the payments report: a ``status`` key
(succeeded, pending, failed), the rows already there being succeeded money, and
the time indexes ``portal reports rebuild`` reads pending and failed payments and
refunds by (their creation). Run ``portal reports rebuild`` once after this
migration to add the totals of the pending and failed rows already recorded
(``portal reports verify`` lists them until then)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-07T20:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "cash day status"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def status():
        engine = engine_finder()
        await engine.run_ddl(
            "ALTER TABLE cash_day ADD COLUMN status VARCHAR(12) NOT NULL DEFAULT 'succeeded'"
        )
        await engine.run_ddl("DROP INDEX cash_day_key")
        await engine.run_ddl(
            "CREATE UNIQUE INDEX cash_day_key ON cash_day "
            "(location, day, currency, method, provider, package, status)"
        )
        await engine.run_ddl("CREATE INDEX payment_status_created ON payment (status, created_at)")
        await engine.run_ddl("CREATE INDEX refund_status_created ON refund (status, created_at)")

    manager.add_raw(status)
    return manager
