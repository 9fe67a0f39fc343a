"""Sales and payments: uniqueness Piccolo columns cannot express, reporting indexes."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-27T16:07:15:000000"
VERSION = "1.38.0"
DESCRIPTION = "sales and payments constraints and indexes"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def constraints():
        engine = engine_finder()
        for statement in (
            "CREATE UNIQUE INDEX sale_session_position ON sale_session (sale, position)",
            "CREATE INDEX sale_session_sale_state ON sale_session (sale, state)",
            "CREATE INDEX sale_location_status ON sale (location, status, id)",
            "CREATE INDEX sale_client_id ON sale (client, id)",
            "CREATE INDEX payment_status_time ON payment (status, succeeded_at, id)",
            "CREATE INDEX refund_status_time ON refund (status, completed_at, id)",
        ):
            await engine.run_ddl(statement)

    manager.add_raw(constraints)
    return manager
