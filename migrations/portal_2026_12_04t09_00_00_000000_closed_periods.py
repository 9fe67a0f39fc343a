"""Closed periods: a month closed for one location or for all of them (uniqueness next)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.base import OnDelete, OnUpdate
from piccolo.columns.column_types import Date, ForeignKey, Integer, Serial, Timestamptz
from piccolo.columns.defaults.date import DateNow
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.indexes import IndexMethod
from piccolo.table import Table

ID = "2026-12-04T09:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "closed periods"


class Location(Table, tablename="location", schema=None):
    id = Serial(
        null=False, primary_key=True, unique=False, index=False, index_method=IndexMethod.btree,
        choices=None, db_column_name="id", secret=False,
    )  # fmt: skip


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

    manager.add_table(
        class_name="ClosedPeriod", tablename="closed_period", schema=None, columns=None
    )
    manager.add_column(
        table_class_name="ClosedPeriod", tablename="closed_period", column_name="id",
        db_column_name="id", column_class_name="Serial", column_class=Serial,
        params=_params(default=None, primary_key=True), schema=None,
    )  # fmt: skip
    manager.add_column(
        table_class_name="ClosedPeriod", tablename="closed_period", column_name="location",
        db_column_name="location", column_class_name="ForeignKey", column_class=ForeignKey,
        params=_params(
            references=Location, on_delete=OnDelete.restrict, on_update=OnUpdate.cascade,
            target_column=None, null=True, index=True,
        ),
        schema=None,
    )  # fmt: skip
    manager.add_column(
        table_class_name="ClosedPeriod", tablename="closed_period", column_name="month",
        db_column_name="month", column_class_name="Date", column_class=Date,
        params=_params(default=DateNow(), index=True), schema=None,
    )  # fmt: skip
    manager.add_column(
        table_class_name="ClosedPeriod", tablename="closed_period", column_name="closed_by",
        db_column_name="closed_by", column_class_name="Integer", column_class=Integer,
        params=_params(default=None, null=True), schema=None,
    )  # fmt: skip
    manager.add_column(
        table_class_name="ClosedPeriod", tablename="closed_period", column_name="closed_at",
        db_column_name="closed_at", column_class_name="Timestamptz", column_class=Timestamptz,
        params=_params(default=TimestamptzNow()), schema=None,
    )  # fmt: skip

    return manager
