"""Sign-up by emailed link: the sign-ups waiting for their link to be opened."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Serial, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-06T10:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "sign-up confirmation links"


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


CLASS_NAME = "SignupConfirmation"
TABLENAME = "signup_confirmation"
COLUMNS = [
    ("id", Serial, _params(default=None, primary_key=True)),
    ("token_hash", Varchar, _params(length=64, default="", unique=True)),
    ("email", Varchar, _params(length=254, default="", index=True)),
    ("name", Varchar, _params(length=120, default="")),
    ("password_hash", Varchar, _params(length=255, default="")),
    ("next_url", Varchar, _params(length=500, default="")),
    ("created_at", Timestamptz, _params(default=TimestamptzNow())),
    ("expires_at", Timestamptz, _params(default=TimestamptzNow(), index=True)),
    ("used_at", Timestamptz, _params(default=None, null=True)),
    ("address", Varchar, _params(length=64, default="")),
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)
    manager.add_table(class_name=CLASS_NAME, tablename=TABLENAME, schema=None, columns=None)
    for name, column_class, params in COLUMNS:
        manager.add_column(
            table_class_name=CLASS_NAME, tablename=TABLENAME, column_name=name,
            db_column_name=name, column_class_name=column_class.__name__,
            column_class=column_class, params=params, schema=None,
        )
    return manager
