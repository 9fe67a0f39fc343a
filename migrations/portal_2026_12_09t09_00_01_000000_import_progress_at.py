"""Imports: when a running batch last wrote its progress, so a run whose process was
killed is seen to have stopped (then resumed or undone)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Timestamptz
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-09T09:00:01:000000"
VERSION = "1.38.0"
DESCRIPTION = "import progress at"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)
    manager.add_column(
        table_class_name="ImportBatch", tablename="import_batch", column_name="progress_at",
        db_column_name="progress_at", column_class_name="Timestamptz", column_class=Timestamptz,
        params={
            "default": None, "null": True, "primary_key": False, "unique": False, "index": False,
            "index_method": IndexMethod.btree, "choices": None, "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )  # fmt: skip
    return manager
