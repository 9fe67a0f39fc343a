"""The clients list reads its names from one index: ``(role, active, name, id)`` with
the rest of a listed row (email, created_at) included on PostgreSQL. A clinic's
active clients by name walk it without reading a table row (about 2,000 index
entries for a page of one clinic's fifty at a chain's size, each tested against
``client_profile_location_user``), where ``app_user_client_name`` read each
client's row to test whether they are active."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-12T09:30:17:000000"
VERSION = "1.38.0"
DESCRIPTION = "clients list index"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def index():
        engine = engine_finder()
        include = " INCLUDE (email, created_at)" if engine.engine_type == "postgres" else ""
        await engine.run_ddl(
            f"CREATE INDEX app_user_client_list ON app_user (role, active, name, id){include}"
        )

    manager.add_raw(index)
    return manager
