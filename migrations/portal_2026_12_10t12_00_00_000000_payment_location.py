"""A payment carries its sale's location (``payment.location``), written with the
payment and filled here for the payments already recorded, so that one clinic's
payments over a period are read from the index ``(location, status,
succeeded_at, id)`` in time order (before, the payments report walked every
clinic's payments of the period and dropped the other clinics')."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-10T12:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "payment location"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def location():
        engine = engine_finder()
        postgres = engine.engine_type == "postgres"
        statements = [
            "ALTER TABLE payment ADD COLUMN location INTEGER NULL "
            "REFERENCES location (id) ON DELETE RESTRICT",
            "UPDATE payment SET location = sale.location FROM sale WHERE sale.id = payment.sale"
            if postgres
            else "UPDATE payment SET location = "
            "(SELECT sale.location FROM sale WHERE sale.id = payment.sale)",
            "CREATE INDEX payment_location_time ON payment (location, status, succeeded_at, id)",
        ]
        if postgres:
            statements.append("ALTER TABLE payment ALTER COLUMN location SET NOT NULL")
        for statement in statements:
            await engine.run_ddl(statement)

    manager.add_raw(location)
    return manager
