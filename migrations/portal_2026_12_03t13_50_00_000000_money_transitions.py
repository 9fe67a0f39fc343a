"""Money transitions: one-time form keys, refund tax, dispute money, sales needing review."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import BigInt, Integer, Serial, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-03T13:50:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "money transitions"


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


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    manager.add_table(class_name="OneTimeKey", tablename="one_time_key", schema=None, columns=None)
    manager.add_column(
        table_class_name="OneTimeKey", tablename="one_time_key", column_name="id",
        db_column_name="id", column_class_name="Serial", column_class=Serial,
        params=_params(default=None, primary_key=True), schema=None,
    )
    manager.add_column(
        table_class_name="OneTimeKey", tablename="one_time_key", column_name="key",
        db_column_name="key", column_class_name="Varchar", column_class=Varchar,
        params=_params(length=64, default="", unique=True), schema=None,
    )
    manager.add_column(
        table_class_name="OneTimeKey", tablename="one_time_key", column_name="user_id",
        db_column_name="user_id", column_class_name="Integer", column_class=Integer,
        params=_params(default=None, null=True), schema=None,
    )
    manager.add_column(
        table_class_name="OneTimeKey", tablename="one_time_key", column_name="action",
        db_column_name="action", column_class_name="Varchar", column_class=Varchar,
        params=_params(length=40, default=""), schema=None,
    )
    manager.add_column(
        table_class_name="OneTimeKey", tablename="one_time_key", column_name="result",
        db_column_name="result", column_class_name="Varchar", column_class=Varchar,
        params=_params(length=120, default=""), schema=None,
    )
    manager.add_column(
        table_class_name="OneTimeKey", tablename="one_time_key", column_name="created_at",
        db_column_name="created_at", column_class_name="Timestamptz", column_class=Timestamptz,
        params=_params(default=TimestamptzNow(), index=True), schema=None,
    )

    manager.add_column(
        table_class_name="Refund", tablename="refund", column_name="tax_cents",
        db_column_name="tax_cents", column_class_name="BigInt", column_class=BigInt,
        params=_params(default=0), schema=None,
    )
    manager.add_column(
        table_class_name="Dispute", tablename="dispute", column_name="fee_cents",
        db_column_name="fee_cents", column_class_name="BigInt", column_class=BigInt,
        params=_params(default=0), schema=None,
    )
    for name in ("withdrawn_at", "reinstated_at"):
        manager.add_column(
            table_class_name="Dispute", tablename="dispute", column_name=name,
            db_column_name=name, column_class_name="Timestamptz", column_class=Timestamptz,
            params=_params(default=None, null=True, index=True), schema=None,
        )
    manager.add_column(
        table_class_name="Sale", tablename="sale", column_name="review_reason",
        db_column_name="review_reason", column_class_name="Text", column_class=Text,
        params=_params(default=""), schema=None,
    )
    return manager
