"""One closed period per location and month, and one "all locations" row per month."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-04T09:00:01:000000"
VERSION = "1.38.0"
DESCRIPTION = "closed periods unique"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def constraints():
        # A plain unique index on (location, month) would let any number of
        # NULL ("all locations") rows through; two partial indexes do not.
        engine = engine_finder()
        await engine.run_ddl(
            "CREATE UNIQUE INDEX closed_period_location_month ON closed_period (location, month) "
            "WHERE location IS NOT NULL"
        )
        await engine.run_ddl(
            "CREATE UNIQUE INDEX closed_period_all_month ON closed_period (month) "
            "WHERE location IS NULL"
        )

    manager.add_raw(constraints)
    return manager
