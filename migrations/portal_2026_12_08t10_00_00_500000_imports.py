"""Imports: batches of imported files, what became of each row, saved column mappings."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.base import OnDelete, OnUpdate
from piccolo.columns.column_types import ForeignKey, Integer, Serial, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.indexes import IndexMethod
from piccolo.table import Table

ID = "2026-12-08T10:00:00:500000"
VERSION = "1.38.0"
DESCRIPTION = "imports"


def _params(**extra):
    params = {
        "null": False,
        "primary_key": False,
        "unique": False,
        "index": False,
        "index_method": IndexMethod.btree,
        "choices": None,
        "db_column_name": None,
        "secret": False,
    }
    params.update(extra)
    return params


def _id() -> Serial:
    return Serial(
        null=False, primary_key=True, unique=False, index=False, index_method=IndexMethod.btree,
        choices=None, db_column_name="id", secret=False,
    )  # fmt: skip


class Location(Table, tablename="location", schema=None):
    id = _id()


class ImportBatch(Table, tablename="import_batch", schema=None):
    id = _id()


def _fk(table, on_delete, **extra):
    return _params(
        default=None, references=table, on_delete=on_delete,
        on_update=OnUpdate.cascade, target_column=None, **extra,
    )


TABLES = [
    ("ImportBatch", "import_batch", [
        ("id", Serial, _params(default=None, primary_key=True)),
        ("kind", Varchar, _params(length=20, default="")),
        ("location", ForeignKey, _fk(Location, OnDelete.restrict, index=True)),
        ("filename", Varchar, _params(length=255, default="")),
        ("file_hash", Varchar, _params(length=64, default="", index=True)),
        ("mapping", Text, _params(default="{}")),
        ("date_order", Varchar, _params(length=3, default="")),
        ("status", Varchar, _params(length=20, default="", index=True)),
        ("rows_total", Integer, _params(default=0)),
        ("rows_done", Integer, _params(default=0)),
        ("counts", Text, _params(default="{}")),
        ("created_by", Integer, _params(default=None, null=True)),
        ("created_at", Timestamptz, _params(default=TimestamptzNow())),
        ("finished_at", Timestamptz, _params(default=None, null=True)),
        ("undone_at", Timestamptz, _params(default=None, null=True)),
        ("undone_by", Integer, _params(default=None, null=True)),
    ]),
    ("ImportRow", "import_row", [
        ("id", Serial, _params(default=None, primary_key=True)),
        ("batch", ForeignKey, _fk(ImportBatch, OnDelete.cascade)),
        ("line", Integer, _params(default=0)),
        ("fingerprint", Varchar, _params(length=64, default="", index=True)),
        ("outcome", Varchar, _params(length=20, default="")),
        ("reason", Text, _params(default="")),
        ("entity", Varchar, _params(length=20, default="")),
        ("entity_id", Integer, _params(default=None, null=True, index=True)),
        ("external_id", Varchar, _params(length=120, default="", index=True)),
        ("marketing_consent", Varchar, _params(length=3, default="")),
        ("staff_notes", Text, _params(default="")),
        ("data", Text, _params(default="{}")),
    ]),
    ("ImportMapping", "import_mapping", [
        ("id", Serial, _params(default=None, primary_key=True)),
        ("name", Varchar, _params(length=80, default="")),
        ("kind", Varchar, _params(length=20, default="")),
        ("mapping", Text, _params(default="{}")),
        ("created_by", Integer, _params(default=None, null=True)),
        ("created_at", Timestamptz, _params(default=TimestamptzNow())),
    ]),
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)
    for class_name, tablename, columns in TABLES:
        manager.add_table(class_name=class_name, tablename=tablename, schema=None, columns=None)
        for name, column_class, params in columns:
            manager.add_column(
                table_class_name=class_name, tablename=tablename, column_name=name,
                db_column_name=name, column_class_name=column_class.__name__,
                column_class=column_class, params=params, schema=None,
            )
    return manager
