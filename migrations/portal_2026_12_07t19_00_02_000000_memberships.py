"""Memberships: a client's subscription to a plan, and its billing periods."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.base import OnDelete, OnUpdate
from piccolo.columns.column_types import (
    BigInt,
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

ID = "2026-12-07T19:00:02:000000"
VERSION = "1.38.0"
DESCRIPTION = "memberships and their billing periods"


def _id() -> Serial:
    return Serial(
        null=False, primary_key=True, unique=False, index=False, index_method=IndexMethod.btree,
        choices=None, db_column_name="id", secret=False,
    )  # fmt: skip


class User(Table, tablename="app_user", schema=None):
    id = _id()


class Location(Table, tablename="location", schema=None):
    id = _id()


class MembershipPlan(Table, tablename="membership_plan", schema=None):
    id = _id()


class Membership(Table, tablename="membership", schema=None):
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


def _when(**extra):
    return _params(default=TimestamptzNow(), **extra)


def _maybe_when():
    return _params(default=None, null=True)


def _id_text():
    return _params(length=255, default=None, null=True)


TABLES = [
    (
        "Membership",
        "membership",
        [
            ("id", Serial, _params(default=None, primary_key=True)),
            ("client", ForeignKey, _fk(User, index=True)),
            # Indexed in the next migration: "membership_plan" is a table's name.
            ("plan", ForeignKey, _fk(MembershipPlan)),
            ("location", ForeignKey, _fk(Location, index=True)),
            ("name", Varchar, _params(length=120, default="")),
            ("terms", Text, _params(default="")),
            ("currency", Varchar, _params(length=3, default="")),
            ("total_cents", BigInt, _params(default=0)),
            ("sessions_per_period", Integer, _params(default=0)),
            ("status", Varchar, _params(length=20, default="", index=True)),
            ("checkout_session_id", Varchar, _id_text()),
            ("subscription_id", Varchar, _id_text()),
            ("customer_id", Varchar, _id_text()),
            ("current_period_start", Timestamptz, _maybe_when()),
            ("current_period_end", Timestamptz, _maybe_when()),
            ("cancel_at", Timestamptz, _maybe_when()),
            ("paused", Boolean, _params(default=False)),
            ("grace_until", Timestamptz, _maybe_when()),
            ("created_at", Timestamptz, _when()),
            ("joined_at", Timestamptz, _maybe_when()),
            ("ended_at", Timestamptz, _maybe_when()),
            ("review_reason", Text, _params(default="")),
        ],
    ),
    (
        "MembershipPeriod",
        "membership_period",
        [
            ("id", Serial, _params(default=None, primary_key=True)),
            ("membership", ForeignKey, _fk(Membership, index=True)),
            ("invoice_id", Varchar, _params(length=255, default="")),
            ("period_start", Timestamptz, _when()),
            ("period_end", Timestamptz, _when()),
            ("amount_cents", BigInt, _params(default=0)),
            ("currency", Varchar, _params(length=3, default="")),
            ("status", Varchar, _params(length=20, default="")),
            ("sale_id", Integer, _params(default=None, null=True)),
            ("failed_at", Timestamptz, _maybe_when()),
            ("paid_at", Timestamptz, _maybe_when()),
            ("created_at", Timestamptz, _when()),
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
