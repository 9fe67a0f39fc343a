"""Daily totals: the journal per location, local day, account and currency, the
session credits per location, day and movement, and succeeded money per location,
day, currency, method, provider and package (unique keys next)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import BigInt, Integer, Serial, Varchar
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-07T16:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "daily totals"


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


TABLES = {
    "LedgerDay": (
        "ledger_day",
        [
            ("location", Integer, {"default": 0}),
            ("day", Integer, {"default": 0}),
            ("account", Varchar, {"default": "", "length": 40}),
            ("currency", Varchar, {"default": "", "length": 3}),
            ("kind", Varchar, {"default": "", "length": 40}),
            ("therapist", Integer, {"default": 0}),
            ("debit_cents", BigInt, {"default": 0}),
            ("credit_cents", BigInt, {"default": 0}),
        ],
    ),
    "CreditDay": (
        "credit_day",
        [
            ("location", Integer, {"default": 0}),
            ("day", Integer, {"default": 0}),
            ("currency", Varchar, {"default": "", "length": 3}),
            ("movement", Varchar, {"default": "", "length": 20}),
            ("sessions", BigInt, {"default": 0}),
            ("value_cents", BigInt, {"default": 0}),
        ],
    ),
    "CashDay": (
        "cash_day",
        [
            ("location", Integer, {"default": 0}),
            ("day", Integer, {"default": 0}),
            ("currency", Varchar, {"default": "", "length": 3}),
            ("method", Varchar, {"default": "", "length": 20}),
            ("provider", Varchar, {"default": "", "length": 20}),
            ("package", Integer, {"default": 0}),
            *[
                (name, BigInt, {"default": 0})
                for name in (
                    "payments", "gross", "tax", "fee", "refunds", "refunded", "refund_tax",
                    "disputes", "disputed", "dispute_fee", "reinstatements", "reinstated",
                )
            ],
        ],
    ),
}


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)
    for class_name, (tablename, columns) in TABLES.items():
        manager.add_table(class_name=class_name, tablename=tablename, schema=None, columns=None)
        manager.add_column(
            table_class_name=class_name, tablename=tablename, column_name="id",
            db_column_name="id", column_class_name="Serial", column_class=Serial,
            params=_params(default=None, primary_key=True), schema=None,
        )  # fmt: skip
        for name, column_class, extra in columns:
            manager.add_column(
                table_class_name=class_name, tablename=tablename, column_name=name,
                db_column_name=name, column_class_name=column_class.__name__,
                column_class=column_class, params=_params(**extra), schema=None,
            )  # fmt: skip
    return manager
