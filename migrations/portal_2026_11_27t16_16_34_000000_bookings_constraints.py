"""No double booking, enforced by the database itself.

PostgreSQL: exclusion constraints over (therapist, busy range) and (room,
busy range) for appointments that occupy time. SQLite has no exclusion
constraints; triggers refuse an overlapping insert or update (the portal's
write transactions are IMMEDIATE there, so the check and the write cannot
interleave with another writer).
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-27T16:16:34:000000"
VERSION = "1.38.0"
DESCRIPTION = "bookings: no overlapping appointments per therapist and room"

BUSY = "('booked', 'completed', 'no_show')"


def _sqlite_trigger(name: str, event: str) -> str:
    return (
        f"CREATE TRIGGER {name} BEFORE {event} ON appointment "
        f"WHEN NEW.status IN {BUSY} "
        "BEGIN SELECT RAISE(ABORT, 'appointment_overlap') WHERE EXISTS ("
        "SELECT 1 FROM appointment a WHERE a.id != NEW.id "
        f"AND a.status IN {BUSY} "
        'AND (a.therapist = NEW.therapist OR a.room = NEW.room) '
        "AND a.start_at < NEW.busy_until AND NEW.start_at < a.busy_until); END"
    )


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def constraints():
        engine = engine_finder()
        statements = [
            "CREATE INDEX appointment_therapist_time ON appointment (therapist, start_at)",
            "CREATE INDEX appointment_room_time ON appointment (room, start_at)",
            "CREATE INDEX appointment_location_time ON appointment (location, start_at, id)",
            "CREATE INDEX appointment_client_time ON appointment (client, start_at)",
        ]
        if engine.engine_type == "sqlite":
            statements += [
                _sqlite_trigger("appointment_no_overlap_insert", "INSERT"),
                _sqlite_trigger("appointment_no_overlap_update", "UPDATE"),
            ]
        else:
            statements += [
                "CREATE EXTENSION IF NOT EXISTS btree_gist",
                "ALTER TABLE appointment ADD CONSTRAINT appointment_therapist_no_overlap "
                "EXCLUDE USING gist (therapist WITH =, tstzrange(start_at, busy_until) WITH &&) "
                f"WHERE (status IN {BUSY})",
                "ALTER TABLE appointment ADD CONSTRAINT appointment_room_no_overlap "
                "EXCLUDE USING gist (room WITH =, tstzrange(start_at, busy_until) WITH &&) "
                f"WHERE (status IN {BUSY})",
            ]
        for statement in statements:
            await engine.run_ddl(statement)

    manager.add_raw(constraints)
    return manager
