"""How a membership is billed: ``stripe`` (a Stripe subscription, renewed by its invoices)
or ``desk`` (each period paid at the front desk, in cash or on the card terminal).
Memberships before this were all Stripe's. And a change of plan scheduled for a period
end: the plan, its frozen terms and the instant it applies (none: no change)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Integer, Text, Timestamptz, Varchar
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-09T20:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "membership billing"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)
    columns = [
        ("billing", Varchar, {"length": 10, "default": "stripe", "null": False}),
        ("next_plan", Integer, {"default": None, "null": True}),
        ("next_terms", Text, {"default": None, "null": True}),
        ("changes_at", Timestamptz, {"default": None, "null": True}),
    ]
    for name, column_class, params in columns:
        manager.add_column(
            table_class_name="Membership",
            tablename="membership",
            column_name=name,
            db_column_name=name,
            column_class_name=column_class.__name__,
            column_class=column_class,
            params={
                **params,
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
