"""The monthly totals' unique keys (the writers' upsert target), and their rows summed
from the daily totals already kept, so an upgraded database needs no rebuild."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-10T09:00:01:000000"
VERSION = "1.38.0"
DESCRIPTION = "monthly totals rows"

CASH_SUMS = (
    "payments", "gross", "tax", "fee", "refunds", "refunded", "refund_tax",
    "disputes", "disputed", "dispute_fee", "reinstatements", "reinstated",
)  # fmt: skip
# table, its daily table, key columns, sum columns
TABLES = (
    ("ledger_month", "ledger_day",
     ("location", "day", "account", "currency", "kind", "therapist", "product"),
     ("debit_cents", "credit_cents")),
    ("credit_month", "credit_day", ("location", "day", "currency", "movement", "product"),
     ("sessions", "value_cents")),
    ("cash_month", "cash_day",
     ("location", "day", "currency", "method", "provider", "package", "status"), CASH_SUMS),
)  # fmt: skip


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def keys_and_rows():
        engine = engine_finder()
        sqlite = engine.engine_type == "sqlite"
        for tablename, daily, names, sums in TABLES:
            await engine.run_ddl(
                f"CREATE UNIQUE INDEX {tablename}_key ON {tablename} ({', '.join(names)})"
            )
            # The month's first day of a day number (days since 1970-01-01).
            if sqlite:
                month = (
                    "CAST(julianday(date(day * 86400, 'unixepoch', 'start of month'))"
                    " - 2440587.5 AS INTEGER)"
                )
            else:
                month = "(date_trunc('month', DATE '1970-01-01' + day)::date - DATE '1970-01-01')"
            others = [n for n in names if n != "day"]
            columns = ", ".join([*names, *sums])
            selected = ", ".join(
                [month if n == "day" else n for n in names] + [f"SUM({name})" for name in sums]
            )
            await engine.run_ddl(
                f"INSERT INTO {tablename} ({columns}) SELECT {selected} FROM {daily} "
                f"GROUP BY {', '.join(others)}, {month}"
            )

    manager.add_raw(keys_and_rows)
    return manager
