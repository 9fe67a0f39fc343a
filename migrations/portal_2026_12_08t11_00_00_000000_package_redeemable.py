"""Where a package's sessions may be booked: only at the selling clinic, or at every
clinic. The package holds the rule; each sale keeps the rule it was sold under.
Packages and sales before this were accepted everywhere: they keep that rule."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Varchar
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-08T11:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "package redeemable"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)
    for class_name, table in (("Package", "package"), ("Sale", "sale")):
        manager.add_column(
            table_class_name=class_name,
            tablename=table,
            column_name="redeemable",
            db_column_name="redeemable",
            column_class_name="Varchar",
            column_class=Varchar,
            params={
                "length": 20,
                "default": "all_clinics",
                "null": False,
                "primary_key": False,
                "unique": False,
                "index": False,
                "index_method": IndexMethod.btree,
                "choices": None,
                "db_column_name": None,
                "secret": False,
            },
            schema=None,
        )
    return manager
