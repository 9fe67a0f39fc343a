"""Sales: drop the single-column indexes that a wider index already starts with
(``sale.client``: ``sale_client_id``; ``sale.location``: ``sale_location_id``;
``sale.status``: ``sale_status_id``; ``sale_session.sale``: ``sale_session_position``).
Every query they served uses the wider one; each sale and credit written (an import
of 200,000 balances writes a million credits) keeps one index fewer up to date."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-09T09:00:01:000000"
VERSION = "1.38.0"
DESCRIPTION = "sale prefix indexes"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def drop():
        engine = engine_finder()
        for name in ("sale_client", "sale_location", "sale_status", "sale_session_sale"):
            await engine.run_ddl(f"DROP INDEX IF EXISTS {name}")

    manager.add_raw(drop)
    return manager
