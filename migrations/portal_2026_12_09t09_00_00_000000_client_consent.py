"""Client profiles: marketing consent and notes for staff (a clients import brings both;
the owner's archive exports them in the same columns). Imports: when a running batch
last wrote its progress, so a run whose process was killed is seen to have stopped
(then resumed or undone)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Boolean, Text, Timestamptz
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-09T09:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "client consent, import progress"

_PARAMS = {
    "primary_key": False, "unique": False, "index": False, "index_method": IndexMethod.btree,
    "choices": None, "db_column_name": None, "secret": False,
}  # fmt: skip


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)
    for table_class, table, name, column_class, default in (
        ("ClientProfile", "client_profile", "marketing_consent", Boolean, False),
        ("ClientProfile", "client_profile", "staff_notes", Text, ""),
        ("ImportBatch", "import_batch", "progress_at", Timestamptz, None),
    ):
        manager.add_column(
            table_class_name=table_class, tablename=table, column_name=name,
            db_column_name=name, column_class_name=column_class.__name__,
            column_class=column_class, schema=None,
            params={**_PARAMS, "default": default, "null": default is None},
        )  # fmt: skip
    return manager
