"""Email: files attached to an outbox message (a booking's calendar entry)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Text
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-08T09:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "outbox attachments"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)
    manager.add_column(
        table_class_name="OutboxMessage", tablename="email_outbox",
        column_name="attachments", db_column_name="attachments",
        column_class_name="Text", column_class=Text,
        params={
            "default": "", "null": False, "primary_key": False, "unique": False,
            "index": False, "index_method": IndexMethod.btree, "choices": None,
            "db_column_name": None, "secret": False,
        },
        schema=None,
    )  # fmt: skip
    return manager
