"""Clients and email: one intake version number per client, list and throttling indexes."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-27T16:07:42:000000"
VERSION = "1.38.0"
DESCRIPTION = "clients and email constraints and indexes"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def constraints():
        engine = engine_finder()
        statements = [
            "CREATE UNIQUE INDEX client_intake_version ON client_intake (client, version)",
            "CREATE INDEX account_request_key_at ON account_request (kind, account_key, at)",
            "CREATE INDEX account_request_address_at ON account_request (kind, address, at)",
            "CREATE INDEX password_reset_user_open ON password_reset (\"user\", used_at)",
            "CREATE INDEX email_outbox_to_id ON email_outbox (to_address, id)",
            "CREATE INDEX app_user_client_name ON app_user (role, name, id)",
        ]
        for statement in statements:
            await engine.run_ddl(statement)

    manager.add_raw(constraints)
    return manager
