"""Imports: where a batch's uploaded file is kept while it waits, runs or may resume."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Varchar
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-08T10:00:02:000000"
VERSION = "1.38.0"
DESCRIPTION = "import files"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)
    manager.add_column(
        table_class_name="ImportBatch", tablename="import_batch", column_name="stored_path",
        db_column_name="stored_path", column_class_name="Varchar", column_class=Varchar,
        params={
            "length": 500, "default": "", "null": False, "primary_key": False, "unique": False,
            "index": False, "index_method": IndexMethod.btree, "choices": None,
            "db_column_name": None, "secret": False,
        },
        schema=None,
    )
    return manager
