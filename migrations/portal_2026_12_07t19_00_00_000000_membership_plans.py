"""Membership plans per location and the versions of their price per period."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.base import OnDelete, OnUpdate
from piccolo.columns.column_types import (
    Boolean,
    ForeignKey,
    Integer,
    Serial,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.indexes import IndexMethod
from piccolo.table import Table

ID = "2026-12-07T19:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "membership plans"


def _id() -> Serial:
    return Serial(
        null=False, primary_key=True, unique=False, index=False, index_method=IndexMethod.btree,
        choices=None, db_column_name="id", secret=False,
    )  # fmt: skip


class Location(Table, tablename="location", schema=None):
    id = _id()


class Service(Table, tablename="service", schema=None):
    id = _id()


class MembershipPlan(Table, tablename="membership_plan", schema=None):
    id = _id()


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


def _fk(table, **extra):
    return _params(
        references=table,
        on_delete=OnDelete.restrict,
        on_update=OnUpdate.cascade,
        target_column=None,
        **extra,
    )


TABLES = [
    (
        "MembershipPlan",
        "membership_plan",
        [
            ("id", Serial, _params(default=None, primary_key=True)),
            ("location", ForeignKey, _fk(Location, index=True)),
            ("name", Varchar, _params(length=120, default="")),
            ("service", ForeignKey, _fk(Service, index=True)),
            ("description", Text, _params(default="")),
            ("interval", Varchar, _params(length=10, default="")),
            ("sessions_per_period", Integer, _params(default=0)),
            ("rollover_cap", Integer, _params(default=0)),
            ("min_term_periods", Integer, _params(default=0)),
            ("notice_days", Integer, _params(default=0)),
            ("freeze_allowed", Boolean, _params(default=False)),
            ("freeze_fee_cents", Integer, _params(default=0)),
            ("member_discount_bp", Integer, _params(default=0)),
            ("ends_at", Timestamptz, _params(default=None, null=True)),
            ("sellable_online", Boolean, _params(default=True)),
            ("active", Boolean, _params(default=True, index=True)),
            ("created_at", Timestamptz, _params(default=TimestamptzNow())),
            ("updated_at", Timestamptz, _params(default=TimestamptzNow())),
        ],
    ),
    (
        "MembershipPlanPrice",
        "membership_plan_price",
        [
            ("id", Serial, _params(default=None, primary_key=True)),
            ("plan", ForeignKey, _fk(MembershipPlan, index=True)),
            ("amount_cents", Integer, _params(default=0)),
            ("currency", Varchar, _params(length=3, default="")),
            ("effective_from", Timestamptz, _params(default=TimestamptzNow())),
            ("created_at", Timestamptz, _params(default=TimestamptzNow())),
            ("created_by", Integer, _params(default=None, null=True)),
            ("note", Varchar, _params(length=200, default="")),
        ],
    ),
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
            )  # fmt: skip
    return manager
