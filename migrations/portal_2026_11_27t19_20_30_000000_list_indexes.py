"""Indexes for the list pages: each filter of the appointments, sales and clients lists
walks an index in the list's order (or reads only an index), so page 10,000 and a
filtered page cost what page 1 costs.

* appointments (newest first, ``start_at DESC, id DESC``): the whole list, a status,
  a location with a status; the location alone and the therapist already have
  ``appointment_location_time`` and ``appointment_therapist_time``.
* sales (newest first, ``id DESC``): a location, a status (location with status
  has ``sale_location_status``).
* clients of a manager's locations (a purchase, an appointment or the preferred
  location there) and clients by preferred location: index-only reads of
  (location, client).
* searches by client name or email (``ILIKE '%…%'``): trigram indexes on
  PostgreSQL; SQLite scans, which is fine at the sizes it is used for.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-27T19:20:30:000000"
VERSION = "1.38.0"
DESCRIPTION = "indexes for the appointments, sales and clients lists"

INDEXES = [
    "CREATE INDEX appointment_time_id ON appointment (start_at, id)",
    "CREATE INDEX appointment_status_time ON appointment (status, start_at, id)",
    "CREATE INDEX appointment_location_status_time ON appointment (location, status, start_at, id)",
    "CREATE INDEX appointment_location_client ON appointment (location, client)",
    "CREATE INDEX sale_location_id ON sale (location, id)",
    "CREATE INDEX sale_status_id ON sale (status, id)",
    "CREATE INDEX sale_location_client ON sale (location, client, status)",
    'CREATE INDEX client_profile_location_user ON client_profile (preferred_location, "user")',
]
POSTGRES = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX app_user_name_trgm ON app_user USING gin (name gin_trgm_ops)",
    "CREATE INDEX app_user_email_trgm ON app_user USING gin (email gin_trgm_ops)",
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def indexes():
        engine = engine_finder()
        statements = INDEXES + ([] if engine.engine_type == "sqlite" else POSTGRES)
        for statement in statements:
            await engine.run_ddl(statement)

    manager.add_raw(indexes)
    return manager
