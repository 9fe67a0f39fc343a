"""Refunds completed before refunds stored their tax: the tax their journal entry gave back.

Those entries rounded each refund's tax on its own (half up of amount × tax / total);
reports now read ``refund.tax_cents``, so the older rows get that figure.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-04T10:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "refund tax backfill"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def backfill():
        engine = engine_finder()
        await engine.run_ddl(
            "UPDATE refund SET tax_cents = (SELECT CASE WHEN s.total_cents = 0 THEN 0 "
            "ELSE (2 * refund.amount_cents * s.tax_cents + s.total_cents) / (2 * s.total_cents) "
            "END FROM sale s WHERE s.id = refund.sale) "
            "WHERE status = 'succeeded' AND tax_cents = 0"
        )

    manager.add_raw(backfill)
    return manager
