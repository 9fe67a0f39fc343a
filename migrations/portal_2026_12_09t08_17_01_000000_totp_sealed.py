"""Authenticator secrets are sealed at rest (auth/totp.py): the stored value is
longer than the 32-character secret, so the column becomes text."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-09T08:17:01:000000"
VERSION = "1.38.0"
DESCRIPTION = "totp secrets sealed"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def widen():
        engine = engine_finder()
        # SQLite does not enforce a varchar's length.
        if engine.engine_type != "sqlite":
            await engine.run_ddl("ALTER TABLE totp_factor ALTER COLUMN secret TYPE text")

    manager.add_raw(widen)
    return manager
