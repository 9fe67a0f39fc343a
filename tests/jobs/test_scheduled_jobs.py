"""Every scheduled job through the worker, on both engines: the schedule's tick is
deferred by procrastinate's periodic deferrer, a worker runs it, the run is recorded
and the job's effect is there once."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx

from portal.auth.service import hash_token, open_session
from portal.auth.tables import LoginAttempt, UserSession
from portal.bookings import service as bookings
from portal.bookings.tables import Appointment
from portal.clients.tables import PasswordReset, SignupConfirmation
from portal.email import service as email
from portal.email.tables import OutboxMessage
from portal.jobs import queue
from portal.jobs.runs import FAILED, SCHEDULE, SUCCEEDED
from portal.payments.tables import Payout
from portal.sales.tables import Sale, SaleSession
from portal.staff import hours as h
from portal.timeutil import utcnow
from tests import factories
from tests.jobs.conftest import connector_for, empty_queue, give_package, runs_of, tick, work
from tests.payments.helpers import pay

NY = ZoneInfo("America/New_York")
LA = ZoneInfo("America/Los_Angeles")


def local(zone: ZoneInfo, day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone).astimezone(UTC)


async def _lapse(sale_id: int) -> None:
    await (
        Sale.update({Sale.valid_until: utcnow() - timedelta(hours=1)})
        .where(Sale.id == sale_id)
        .run()
    )


async def _available(sale_id: int) -> int:
    return (
        await SaleSession.count()
        .where((SaleSession.sale == sale_id) & (SaleSession.state == "available"))
        .run()
    )


async def test_packages_expire_at_each_locations_own_three_oclock(clinic, job_queue):
    ny_sale = clinic.sale_id
    la_sale = await give_package(clinic.client.id, clinic.other_location_id, clinic.service_id)
    await _lapse(ny_sale)
    await _lapse(la_sale)
    day = datetime.now(NY).date()

    # 02:00 in New York: nobody's 03:00; the tick leaves no run behind.
    await tick(job_queue, local(NY, day, 2, 0) + timedelta(seconds=1))
    await work(job_queue)
    assert await runs_of("expire_packages") == []

    await tick(job_queue, local(NY, day, 3, 0) + timedelta(seconds=1))
    await work(job_queue)
    [run] = await runs_of("expire_packages")
    assert (run["status"], run["trigger"]) == (SUCCEEDED, SCHEDULE)
    assert run["scheduled_for"] == local(NY, day, 3)
    assert "1 location(s)" in run["summary"] and "expired 5 unused session(s)" in run["summary"]
    assert await _available(ny_sale) == 0
    assert await _available(la_sale) == 5  # Los Angeles is at midnight

    await tick(job_queue, local(LA, day, 3, 0) + timedelta(seconds=1))
    await work(job_queue)
    assert [r["status"] for r in await runs_of("expire_packages")] == [SUCCEEDED, SUCCEEDED]
    assert await _available(la_sale) == 0


async def test_the_same_tick_twice_defers_one_run(clinic, job_queue):
    await _lapse(clinic.sale_id)
    at = local(NY, datetime.now(NY).date(), 3, 0) + timedelta(seconds=1)
    await tick(job_queue, at)
    # A second deferrer (another worker) at the same instant: the tick's row is taken.
    await tick(job_queue, at + timedelta(seconds=5))
    await work(job_queue)
    assert len(await runs_of("expire_packages")) == 1


async def test_reminders_run_hourly_and_remind_once(clinic, job_queue):
    tomorrow = (datetime.now(NY) + timedelta(days=1)).date()
    appointment_id = await bookings.book(
        clinic.as_client(), client_id=clinic.client.id, location_id=clinic.location_id,
        service_id=clinic.service_id, start_at=h.wall_to_utc(tomorrow, 15 * 60, NY),
        notify_client=False,
    )  # fmt: skip
    now = utcnow()
    for hours in (0, 1):
        at = now.replace(minute=5, second=1, microsecond=0) + timedelta(hours=hours)
        await tick(job_queue, at)
        await work(job_queue)
    runs = await runs_of("reminders")
    assert [r["status"] for r in runs] == [SUCCEEDED, SUCCEEDED]
    assert runs[0]["summary"].startswith("Reminders: 1 sent") and "0 sent" in runs[1]["summary"]
    assert (runs[0]["done"], runs[0]["total"]) == (0, 1)  # reported before the one appointment
    reminders = await OutboxMessage.select().where(OutboxMessage.kind == "reminder").run()
    assert [m["to_address"] for m in reminders] == [clinic.client.email]
    row = await Appointment.select().where(Appointment.id == appointment_id).first().run()
    assert row["reminder_sent_at"] is not None


async def test_purge_deletes_what_expired_and_keeps_the_rest(db, job_queue, settings):
    user = await factories.make_user("client")
    past, now = utcnow() - timedelta(hours=1), utcnow()
    await open_session(settings, user.id)
    await UserSession.insert(
        UserSession(token_hash="e" * 64, user=user.id, created_at=past, last_seen_at=past,
                    expires_at=past)
    ).run()  # fmt: skip
    await PasswordReset.insert(
        PasswordReset(token_hash=hash_token("old"), user=user.id, created_at=past, expires_at=past),
        PasswordReset(token_hash=hash_token("new"), user=user.id, created_at=now,
                      expires_at=now + timedelta(minutes=30)),
    ).run()  # fmt: skip
    await SignupConfirmation.insert(
        SignupConfirmation(token_hash=hash_token("s"), email="new@example.test",
                           password_hash="x", created_at=past, expires_at=past)
    ).run()  # fmt: skip
    await LoginAttempt.insert(
        LoginAttempt(account_key=user.email, address="10.0.0.1", success=False,
                     at=now - timedelta(days=31))
    ).run()  # fmt: skip

    await tick(job_queue, now.replace(hour=2, minute=15, second=1, microsecond=0))
    await work(job_queue)
    [run] = await runs_of("purge")
    assert run["status"] == SUCCEEDED
    assert run["summary"].startswith("Deleted 1 expired session(s), 1 password-reset link(s), 1 ")
    assert await UserSession.count().run() == 1
    assert await PasswordReset.count().run() == 1
    assert await SignupConfirmation.count().run() == 0
    assert await LoginAttempt.count().run() == 0


async def _message(status: str, *, created_ago: timedelta, attempts: int = 0,
                   tried_ago: timedelta | None = None) -> int:  # fmt: skip
    now = utcnow()
    rows = await OutboxMessage.insert(
        OutboxMessage(
            created_at=now - created_ago, to_address="client@example.test", subject="Hello",
            template="welcome", kind="welcome", body_text="Hi", transport="smtp", status=status,
            attempts=attempts, last_attempt_at=None if tried_ago is None else now - tried_ago,
        )
    ).returning(OutboxMessage.id).run()  # fmt: skip
    return int(rows[0]["id"])


async def test_outbox_delivers_late_mail_and_retries_failures_with_back_off(
    db, job_settings, smtp_server
):
    await empty_queue(db)
    settings = smtp_server.settings_for(job_settings)
    app = queue.build(settings, connector=connector_for(db))
    waiting = await _message("queued", created_ago=timedelta(minutes=2))
    just_stored = await _message("queued", created_ago=timedelta(seconds=5))
    due = await _message("failed", created_ago=timedelta(hours=1), attempts=1,
                         tried_ago=timedelta(minutes=3))  # fmt: skip
    backing_off = await _message("failed", created_ago=timedelta(hours=1), attempts=2,
                                 tried_ago=timedelta(minutes=3))  # fmt: skip
    async with app.open_async():
        await tick(app, utcnow().replace(second=1, microsecond=0))
        await work(app)
    [run] = await runs_of("outbox")
    assert run["status"] == SUCCEEDED and run["summary"] == "Outbox: 2 sent, 0 failed."
    assert (run["done"], run["total"]) == (2, 2)
    statuses = {
        r["id"]: r["status"]
        for r in await OutboxMessage.select(OutboxMessage.id, OutboxMessage.status).run()
    }
    assert statuses == {waiting: "sent", just_stored: "queued", due: "sent", backing_off: "failed"}
    assert len(smtp_server.wait_for(2)) == 2
    # After 2 failed attempts the next one waits 2 ** 2 = 4 minutes from the last.
    last = await email.get_message(backing_off)
    assert email.retry_due_at(2, last["last_attempt_at"]) == last["last_attempt_at"] + timedelta(
        minutes=4
    )


async def test_stripe_payouts_and_reconcile_run_daily(shop, stripe_standin, job_settings, db):
    async with httpx.AsyncClient(base_url=stripe_standin.base_url) as client:
        (await client.post("/_standin/reset")).raise_for_status()
    await empty_queue(db)
    await pay(shop, stripe_standin)
    [made] = await stripe_standin.run_payouts()
    settings = dataclasses.replace(
        job_settings,
        stripe_api_base=stripe_standin.base_url,
        stripe_webhook_secret=stripe_standin.webhook_secret,
    )
    app = queue.build(settings, connector=connector_for(db))
    today = utcnow().replace(second=1, microsecond=0)
    async with app.open_async():
        await tick(app, today.replace(hour=4, minute=30))
        await work(app)
        await tick(app, today.replace(hour=4, minute=45))
        await work(app)
    [payouts] = await runs_of("stripe_payouts")
    assert payouts["status"] == SUCCEEDED, payouts["error"]
    assert made["id"] in payouts["summary"]
    assert await Payout.count().where(Payout.stripe_payout_id == made["id"]).run() == 1
    [reconcile] = await runs_of("stripe_reconcile")
    assert reconcile["status"] == SUCCEEDED, reconcile["error"]


async def test_a_job_that_raises_is_retried_with_back_off_and_owners_emailed_once(db, job_settings):
    await empty_queue(db)
    owner = await factories.make_user("owner")
    # Stripe cannot be reached: the job raises, the worker tries it again.
    settings = dataclasses.replace(job_settings, stripe_api_base="http://127.0.0.1:9")
    app = queue.build(settings, connector=connector_for(db))
    async with app.open_async():
        await tick(app, utcnow().replace(hour=4, minute=30, second=1, microsecond=0))
        await work(app)
        first = await runs_of("stripe_payouts")
        assert [(r["status"], r["attempt"]) for r in first] == [(FAILED, 1)]
        # The retry waits job_retry_wait_seconds ** 1 = 1 s, then runs.
        await asyncio.sleep(1.2)
        await work(app)
    runs = await runs_of("stripe_payouts")
    assert [(r["status"], r["attempt"]) for r in runs] == [(FAILED, 1), (FAILED, 2)]
    assert runs[0]["queue_job_id"] == runs[1]["queue_job_id"]
    assert "StripeGateway" in runs[0]["error"] or "Gateway" in runs[0]["error"]
    alerts = await OutboxMessage.select().where(OutboxMessage.kind == "job_failed").run()
    assert [a["to_address"] for a in alerts] == [owner.email]  # one per streak
    assert alerts[0]["subject"] == "Job failed: Import Stripe payouts"


async def test_a_waiting_tick_keeps_its_own_time(clinic, job_queue):
    """The 02:00 tick still waits when the 03:00 one comes: the waiting run stays the
    02:00 one (nobody's 03:00: nothing to do), and the queue holds one run of the job."""
    await _lapse(clinic.sale_id)
    day = datetime.now(NY).date()
    await tick(job_queue, local(NY, day, 2) + timedelta(seconds=1))
    await tick(job_queue, local(NY, day, 3) + timedelta(seconds=1))
    await work(job_queue)
    assert await runs_of("expire_packages") == []
    assert await _available(clinic.sale_id) == 5
