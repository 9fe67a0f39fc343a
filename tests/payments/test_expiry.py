"""Package expiry (`portal sales expire`): unused sessions become breakage, once."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from portal.ledger import service as ledger
from portal.ledger.tables import JournalEntry, JournalLine
from portal.payments import service as payments
from portal.sales import service as sales
from portal.sales.tables import Sale, SaleSession
from portal.timeutil import utcnow
from tests.conftest import TEST_DATABASE_URL
from tests.payments.helpers import SESSION_VALUE, Shop

PORTAL = str(Path(sys.executable).with_name("portal"))


async def _cash_sale(shop: Shop) -> int:
    return await payments.record_in_clinic_sale(
        shop.manager_user,
        client_id=shop.client.id,
        package_id=shop.package_id,
        location_id=shop.location_id,
        method="cash",
    )


async def _set_state(sale_id: int, position: int, state: str) -> None:
    await (
        SaleSession.update({SaleSession.state: state})
        .where((SaleSession.sale == sale_id) & (SaleSession.position == position))
        .run()
    )


async def _age(sale_id: int, days: int) -> None:
    """Move the sale's validity ``days`` into the past."""
    await (
        Sale.update({Sale.valid_until: utcnow() - timedelta(days=days)})
        .where(Sale.id == sale_id)
        .run()
    )


async def test_expiry_journals_breakage_once(shop: Shop) -> None:
    lapsed = await _cash_sale(shop)
    current = await _cash_sale(shop)
    disputed = await _cash_sale(shop)
    await _set_state(lapsed, 1, sales.REDEEMED)  # given
    await _set_state(lapsed, 2, sales.HELD)  # booked: not expired under the booking
    await _age(lapsed, 1)
    await _age(disputed, 1)
    await sales.set_frozen(disputed, True)

    run = await sales.expire_due()
    assert (run.sales, run.sessions, run.value_cents) == (1, 3, {"USD": 3 * SESSION_VALUE})
    states = [r["state"] for r in await sales.sessions_of(lapsed)]
    assert states == [sales.REDEEMED, sales.HELD, sales.EXPIRED, sales.EXPIRED, sales.EXPIRED]
    assert (await sales.session_counts(current)).available == 5
    assert (await sales.session_counts(disputed)).available == 5  # waits for the dispute

    entry = await JournalEntry.select().where(JournalEntry.kind == "package_expired").run()
    assert len(entry) == 1 and entry[0]["reference"] == f"sale:{lapsed}"
    lines = await JournalLine.select().where(JournalLine.entry == entry[0]["id"]).run()
    assert sorted((r["account"], r["debit_cents"], r["credit_cents"]) for r in lines) == [
        ("breakage_revenue", 0, 3 * SESSION_VALUE),
        ("deferred_revenue", 3 * SESSION_VALUE, 0),
    ]
    # Deferred revenue left on the lapsed sale: the booked session (the given one is
    # still deferred until the bookings work recognises it as service revenue).
    assert await ledger.balance("breakage_revenue", sale_id=lapsed) == 3 * SESSION_VALUE
    assert await ledger.balance("deferred_revenue", sale_id=lapsed) == 2 * SESSION_VALUE

    # A second run changes nothing.
    lines_before = await JournalLine.count().run()
    again = await sales.expire_due()
    assert (again.sales, again.sessions) == (0, 0)
    assert await JournalLine.count().run() == lines_before

    # The booking is cancelled later: its session comes back and expires on the next run.
    await _set_state(lapsed, 2, sales.AVAILABLE)
    late = await sales.expire_due()
    assert (late.sales, late.sessions) == (1, 1)
    assert await ledger.balance("breakage_revenue", sale_id=lapsed) == 4 * SESSION_VALUE
    assert await JournalEntry.count().where(JournalEntry.kind == "package_expired").run() == 2


async def test_refunded_and_pending_sales_do_not_expire(shop: Shop) -> None:
    refunded = await _cash_sale(shop)
    await payments.refund_sale(None, shop.manager_user, refunded, sessions=5, reason="Moved")
    assert (await sales.get_sale(refunded))["status"] == sales.REFUNDED
    await _age(refunded, 1)
    run = await sales.expire_due()
    assert run.sessions == 0


def _env(db: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_")}
    url = f"sqlite:///{db.engine.path}" if db.kind == "sqlite" else TEST_DATABASE_URL
    env.update({"DATABASE_URL": url, "SECRET_KEY": "cli-secret-" + "e" * 40})
    return env


async def test_expire_command_is_cron_safe(db: Any, shop: Shop) -> None:
    lapsed = await _cash_sale(shop)
    await _age(lapsed, 2)
    env = _env(db)
    first = subprocess.run(
        [PORTAL, "sales", "expire"], env=env, capture_output=True, text=True, timeout=120
    )
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == (
        "Expired 5 unused session(s) of 1 package(s); breakage recognised: $450.00."
    )
    assert (await sales.session_counts(lapsed)).expired == 5
    second = subprocess.run(
        [PORTAL, "sales", "expire"], env=env, capture_output=True, text=True, timeout=120
    )
    assert second.returncode == 0, second.stderr
    assert "nothing changed" in second.stdout
    assert await JournalEntry.count().where(JournalEntry.kind == "package_expired").run() == 1
