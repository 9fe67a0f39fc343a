"""Memberships: one membership per Stripe subscription and per Checkout Session, one
period per invoice (so a replayed or concurrent webhook cannot add a second)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-07T19:00:03:000000"
VERSION = "1.38.0"
DESCRIPTION = "membership keys"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def indexes():
        engine = engine_finder()
        for statement in (
            "CREATE UNIQUE INDEX membership_subscription ON membership (subscription_id)",
            "CREATE UNIQUE INDEX membership_checkout ON membership (checkout_session_id)",
            "CREATE UNIQUE INDEX membership_period_invoice ON membership_period (invoice_id)",
            "CREATE INDEX membership_period_sale ON membership_period (sale_id)",
            "CREATE INDEX membership_by_plan ON membership (plan)",
        ):
            await engine.run_ddl(statement)

    manager.add_raw(indexes)
    return manager
