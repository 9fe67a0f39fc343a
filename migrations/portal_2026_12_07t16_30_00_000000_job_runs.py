"""Jobs: the record of each job's runs, and when an outbox message was last tried."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import (
    BigInt,
    Boolean,
    Integer,
    Serial,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-07T16:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "job runs"


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


CLASS_NAME = "JobRun"
TABLENAME = "job_run"
COLUMNS = [
    ("id", Serial, _params(default=None, primary_key=True)),
    ("job", Varchar, _params(length=40, default="", index=True)),
    ("trigger", Varchar, _params(length=10, default="schedule")),
    ("status", Varchar, _params(length=12, default="running", index=True)),
    ("scheduled_for", Timestamptz, _params(default=None, null=True)),
    ("queue_job_id", BigInt, _params(default=None, null=True, index=True)),
    ("attempt", Integer, _params(default=1)),
    ("requested_by", Integer, _params(default=None, null=True)),
    ("worker", Varchar, _params(length=100, default="")),
    ("started_at", Timestamptz, _params(default=TimestamptzNow())),
    ("heartbeat_at", Timestamptz, _params(default=TimestamptzNow())),
    ("finished_at", Timestamptz, _params(default=None, null=True)),
    ("duration_ms", Integer, _params(default=None, null=True)),
    ("done", Integer, _params(default=0)),
    ("total", Integer, _params(default=0)),
    ("step", Varchar, _params(length=200, default="")),
    ("summary", Text, _params(default="")),
    ("error", Text, _params(default="")),
    ("alerted", Boolean, _params(default=False)),
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
    manager.add_column(
        table_class_name="OutboxMessage", tablename="email_outbox",
        column_name="last_attempt_at", db_column_name="last_attempt_at",
        column_class_name="Timestamptz", column_class=Timestamptz,
        params=_params(default=None, null=True), schema=None,
    )
    return manager
