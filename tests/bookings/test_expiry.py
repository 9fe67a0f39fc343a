"""`portal packages expire`: future bookings of expired packages are released with a
message, unused sessions become breakage, and a second run changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from portal.audit.tables import AuditLog
from portal.bookings import expiry
from portal.bookings import service as bookings
from portal.email.tables import OutboxMessage
from portal.ledger import service as ledger
from portal.ledger.tables import JournalEntry
from portal.sales import service as sales
from portal.sales.tables import Sale
from portal.staff import hours as h
from tests.conftest import TEST_DATABASE_URL

NY = ZoneInfo("America/New_York")
PORTAL = str(Path(sys.executable).with_name("portal"))


def ny(day: date, hour: int) -> datetime:
    return h.wall_to_utc(day, hour * 60, NY)


def future_day(days: int = 10) -> date:
    return (datetime.now(NY) + timedelta(days=days)).date()


async def _book(clinic, start: datetime, *, now: datetime | None = None) -> int:
    return await bookings.book(
        clinic.as_client(), client_id=clinic.client.id, location_id=clinic.location_id,
        service_id=clinic.service_id, start_at=start, now=now, notify_client=False,
    )  # fmt: skip


async def _lapse(sale_id: int, at: datetime) -> None:
    """The package's validity ended at ``at`` (shortened, as after a correction)."""
    await Sale.update({Sale.valid_until: at}).where(Sale.id == sale_id).run()


async def test_expiry_releases_future_bookings_then_records_breakage_once(clinic):
    day = future_day()
    given = await _book(clinic, ny(day, 9))
    await bookings.complete(clinic.as_manager(), given, now=ny(day, 10))
    future = await _book(clinic, ny(day, 13))
    now = ny(day, 11)
    await _lapse(clinic.sale_id, now - timedelta(hours=1))

    run = await expiry.expire_packages(now=now)
    assert [r.appointment_id for r in run.released] == [future]
    assert run.expiry.sessions == 4 and run.expiry.sales == 1  # 3 unused + the released one
    assert run.expiry.value_cents == {"USD": 4 * 9000}
    released = await bookings.get_appointment(future)
    assert released["status"] == bookings.CANCELLED
    assert "expired on" in released["cancel_reason"]
    counts = await sales.session_counts(clinic.sale_id)
    assert (counts.redeemed, counts.expired, counts.held, counts.available) == (1, 4, 0, 0)
    assert await ledger.balance("breakage_revenue", location_id=clinic.location_id) == 4 * 9000
    assert await ledger.balance("deferred_revenue", location_id=clinic.location_id) == 0
    message = await OutboxMessage.select().where(OutboxMessage.kind == "cancellation").first().run()
    assert message["to_address"] == clinic.client.email
    assert (
        "expired on" in message["body_text"]
        and "so this booking was released" in (message["body_text"])
    )
    audit = await AuditLog.select().where(AuditLog.action == "release_expired").first().run()
    assert audit["actor_email"] == "system" and audit["entity_id"] == str(future)
    # The given session keeps its revenue; nothing else moves on a second run.
    entries = await JournalEntry.count().run()
    again = await expiry.expire_packages(now=now + timedelta(hours=1))
    assert not again.changed_anything and again.released == []
    assert await JournalEntry.count().run() == entries
    assert await OutboxMessage.count().run() == 1


async def test_bookings_of_packages_still_valid_or_frozen_are_kept(clinic):
    day = future_day()
    kept = await _book(clinic, ny(day, 10))
    # Still valid: nothing happens.
    run = await expiry.expire_packages()
    assert not run.changed_anything
    # Expired but disputed (frozen): waits for the dispute.
    await _lapse(clinic.sale_id, datetime.now(UTC) - timedelta(days=1))
    await sales.set_frozen(clinic.sale_id, True)
    run = await expiry.expire_packages()
    assert not run.changed_anything
    assert (await bookings.get_appointment(kept))["status"] == bookings.BOOKED
    # A booking that already started is left for the therapist to complete.
    await sales.set_frozen(clinic.sale_id, False)
    run = await expiry.expire_packages(now=ny(day, 10) + timedelta(minutes=5))
    assert run.released == [] and run.expiry.sessions == 4
    assert (await bookings.get_appointment(kept))["status"] == bookings.BOOKED


def _env(db: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "SMTP_"))}
    url = f"sqlite:///{db.engine.path}" if db.kind == "sqlite" else TEST_DATABASE_URL
    env.update({"DATABASE_URL": url, "SECRET_KEY": "cli-secret-" + "e" * 40})
    return env


def _portal(db: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PORTAL, *args], env=_env(db), capture_output=True, text=True, timeout=120
    )


async def test_packages_expire_command_is_nightly_safe(db, clinic):
    future = await _book(clinic, ny(future_day(), 10))
    await _lapse(clinic.sale_id, datetime.now(UTC) - timedelta(days=1))
    first = _portal(db, "packages", "expire")
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        "Released 1 future booking(s) of expired packages; each client was sent a cancellation.",
        "Expired 5 unused session(s) of 1 package(s); breakage recognised: $450.00.",
    ]
    assert (await bookings.get_appointment(future))["status"] == bookings.CANCELLED
    second = _portal(db, "packages", "expire")
    assert second.returncode == 0, second.stderr
    assert "nothing changed" in second.stdout
    # The sales command (expiry without releasing bookings) still runs, and finds nothing.
    sales_run = _portal(db, "sales", "expire")
    assert sales_run.returncode == 0 and "nothing changed" in sales_run.stdout
    assert await JournalEntry.count().where(JournalEntry.kind == "package_expired").run() == 1
