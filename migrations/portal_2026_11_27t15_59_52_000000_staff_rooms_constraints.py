"""Staff and rooms: unique pairs, room names unique per location (ignoring case), list indexes."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-27T15:59:52:000000"
VERSION = "1.38.0"
DESCRIPTION = "staff and rooms constraints and indexes"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def constraints():
        engine = engine_finder()
        statements = [
            "CREATE UNIQUE INDEX therapist_location_unique ON therapist_location (therapist, location)",
            "CREATE UNIQUE INDEX therapist_service_unique ON therapist_service (therapist, service)",
            "CREATE INDEX therapist_name_id ON therapist (name, id)",
            "CREATE INDEX therapist_location_by_location ON therapist_location (location, therapist)",
            "CREATE INDEX working_hours_lookup ON working_hours (therapist, weekday, location)",
            "CREATE INDEX time_off_span ON time_off (therapist, ends_at, starts_at)",
            "CREATE UNIQUE INDEX room_location_name ON room (location, lower(name))",
            "CREATE INDEX room_name_id ON room (name, id)",
            "CREATE INDEX room_outage_span ON room_outage (room, ends_at, starts_at)",
        ]
        for statement in statements:
            await engine.run_ddl(statement)

    manager.add_raw(constraints)
    return manager
