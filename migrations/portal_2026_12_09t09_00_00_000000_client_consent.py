"""Client profiles: marketing consent and notes for staff (a clients import brings both;
the owner's archive exports them in the same columns)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Boolean, Text
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-09T09:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "client consent"

_PARAMS = {
    "null": False, "primary_key": False, "unique": False, "index": False,
    "index_method": IndexMethod.btree, "choices": None, "db_column_name": None, "secret": False,
}  # fmt: skip


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)
    for name, column_class, default in (
        ("marketing_consent", Boolean, False),
        ("staff_notes", Text, ""),
    ):
        manager.add_column(
            table_class_name="ClientProfile", tablename="client_profile", column_name=name,
            db_column_name=name, column_class_name=column_class.__name__,
            column_class=column_class, params={**_PARAMS, "default": default}, schema=None,
        )  # fmt: skip
    return manager
