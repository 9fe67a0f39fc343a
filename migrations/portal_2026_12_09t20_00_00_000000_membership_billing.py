"""How a membership is billed: ``stripe`` (a Stripe subscription, renewed by its invoices)
or ``desk`` (each period paid at the front desk, in cash or on the card terminal).
Memberships before this were all Stripe's."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Varchar
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-09T20:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "membership billing"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)
    manager.add_column(
        table_class_name="Membership",
        tablename="membership",
        column_name="billing",
        db_column_name="billing",
        column_class_name="Varchar",
        column_class=Varchar,
        params={
            "length": 10,
            "default": "stripe",
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
