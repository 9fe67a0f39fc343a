"""Monthly totals: ``ledger_month``, ``credit_month`` and ``cash_month`` hold the daily
totals summed per location and local month (``day``: the month's first day number),
kept by the same writes as the days. Their keys and rows come next
(``monthly_totals_rows``)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import BigInt, Integer, Serial, Varchar
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-10T09:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "monthly totals"


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


def _text(length):
    return (Varchar, {"default": "", "length": length})


_INT = (Integer, {"default": 0})
_BIG = (BigInt, {"default": 0})
CASH_SUMS = (
    "payments", "gross", "tax", "fee", "refunds", "refunded", "refund_tax",
    "disputes", "disputed", "dispute_fee", "reinstatements", "reinstated",
)  # fmt: skip

# class name, table, its daily table, key columns, sum columns
TABLES = (
    (
        "LedgerMonth", "ledger_month", "ledger_day",
        [("location", _INT), ("day", _INT), ("account", _text(40)), ("currency", _text(3)),
         ("kind", _text(40)), ("therapist", _INT), ("product", _text(12))],
        [("debit_cents", _BIG), ("credit_cents", _BIG)],
    ),
    (
        "CreditMonth", "credit_month", "credit_day",
        [("location", _INT), ("day", _INT), ("currency", _text(3)), ("movement", _text(20)),
         ("product", _text(12))],
        [("sessions", _BIG), ("value_cents", _BIG)],
    ),
    (
        "CashMonth", "cash_month", "cash_day",
        [("location", _INT), ("day", _INT), ("currency", _text(3)), ("method", _text(20)),
         ("provider", _text(20)), ("package", _INT), ("status", _text(12))],
        [(name, _BIG) for name in CASH_SUMS],
    ),
)  # fmt: skip


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)
    for class_name, tablename, _daily, key, sums in TABLES:
        manager.add_table(class_name=class_name, tablename=tablename, schema=None, columns=None)
        manager.add_column(
            table_class_name=class_name, tablename=tablename, column_name="id",
            db_column_name="id", column_class_name="Serial", column_class=Serial,
            params=_params(default=None, primary_key=True), schema=None,
        )  # fmt: skip
        for name, (column_class, extra) in [*key, *sums]:
            if name == "status":
                extra = {**extra, "default": "succeeded"}
            manager.add_column(
                table_class_name=class_name, tablename=tablename, column_name=name,
                db_column_name=name, column_class_name=column_class.__name__,
                column_class=column_class, params=_params(**extra), schema=None,
            )  # fmt: skip

    return manager
