"""Real `portal worker` processes on one PostgreSQL database.

* Two workers, schedules every two seconds: each tick runs once, whichever
  worker defers it and whichever runs it.
* A worker killed (SIGKILL) in the middle of a job: another worker finds the
  job's worker silent, queues the job again and runs it; the job's effect
  happens once (each message sent at most once, each package expired and
  journalled once, each appointment reminded once). The test holds one item
  of the run (the mail server keeps that message's answer back, or the test
  holds a lock on that package's or appointment's row), so the kill lands
  in the middle of the run whatever the machine's speed: the items before it
  done by the first worker, the held one cut, the rest left to the second.
* The database cut (a TCP proxy stopped) under a running worker: it waits,
  reconnects when the database is back, and runs what was queued meanwhile.

PostgreSQL only: in embedded mode (SQLite) the queue lives in the server's
memory and there is no second worker to take over.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from aiosmtpd.controller import Controller
from piccolo.table import Table

from portal.bookings.tables import Appointment
from portal.email.tables import OutboxMessage
from portal.jobs import queue
from portal.jobs.catalog import JOBS
from portal.jobs.runs import INTERRUPTED, SUCCEEDED
from portal.jobs.tables import JobRun
from portal.ledger.tables import JournalEntry
from portal.sales.tables import Sale, SaleSession
from portal.settings import Settings
from portal.staff import hours as h
from portal.timeutil import utcnow
from tests.conftest import TEST_DATABASE_URL
from tests.email.smtpd import free_port
from tests.faults.test_database_down import TcpProxy
from tests.jobs.conftest import empty_queue, give_package

PORTAL = str(Path(sys.executable).with_name("portal"))
NY = ZoneInfo("America/New_York")
ALL_OFF = {f"JOB_SCHEDULE_{spec.name.upper()}": "off" for spec in JOBS}


# PostgreSQL only (see above): the suite's engine parameter, narrowed.
pytestmark = pytest.mark.parametrize("database", ["postgres"], indirect=True)


@pytest.fixture
async def pg(db: Any) -> Any:
    await empty_queue(db)
    return db


def worker_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "SMTP_", "JOB"))}
    env.update(ALL_OFF)
    env.update(
        {
            "DATABASE_URL": TEST_DATABASE_URL,
            "SECRET_KEY": "worker-secret-" + "w" * 40,
            "WORKER_HEARTBEAT_SECONDS": "1",
            "JOB_STALLED_SECONDS": "3",
            "JOB_SCHEDULE_RETRY_STALLED": "* * * * * */1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


@contextlib.asynccontextmanager
async def workers(env: dict[str, str], tmp_path: Path, count: int) -> AsyncIterator[list[Any]]:
    procs = []
    for n in range(count):
        log = open(tmp_path / f"worker{n}-{time.monotonic_ns()}.log", "wb")  # noqa: SIM115
        procs.append(
            await asyncio.create_subprocess_exec(PORTAL, "worker", env=env, stdout=log, stderr=log)
        )
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), timeout=20)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_two_workers_run_each_tick_once(pg, tmp_path):
    env = worker_env(
        tmp_path, JOB_SCHEDULE_PURGE="* * * * * */2", JOB_SCHEDULE_OUTBOX="* * * * * */2"
    )
    async with workers(env, tmp_path, 2):

        async def enough() -> bool:
            return await JobRun.count().where(JobRun.status == SUCCEEDED).run() >= 8

        await wait_until(enough, 60, "eight runs")
        await asyncio.sleep(2)
    rows = await JobRun.select().where(JobRun.status != "running").run()
    assert rows and all(r["status"] == SUCCEEDED for r in rows)
    for job in ("purge", "outbox"):
        ticks = [r["scheduled_for"] for r in rows if r["job"] == job]
        assert len(ticks) >= 3
        assert len(ticks) == len(set(ticks)), f"a tick of {job} ran twice: {sorted(ticks)}"
    defers = await JobRun.raw(
        "SELECT task_name, defer_timestamp, count(*) AS n FROM procrastinate_periodic_defers "
        "GROUP BY task_name, defer_timestamp HAVING count(*) > 1"
    ).run()
    assert defers == []
    registered = await JobRun.raw("SELECT count(*) AS n FROM procrastinate_workers").run()
    assert registered[0]["n"] == 0  # both stopped cleanly and unregistered


async def _defer(job: str) -> int:
    """Queue a run of ``job`` from this process, as an app process does for "run now"."""
    settings = Settings(database_url=TEST_DATABASE_URL, secret_key="s" * 40, embedded=False)
    app = queue.build(settings)
    async with app.open_async():
        job_id: int = await app.configure_task(
            queue.task_name(job), allow_unknown=False, queueing_lock=job
        ).defer_async()
    return job_id


async def _kill_mid_run(
    job: str,
    env: dict[str, str],
    tmp_path: Path,
    held: contextlib.AbstractAsyncContextManager[Any],
    stuck: Callable[[], Awaitable[bool]],
    done_before: Callable[[], Awaitable[int]],
    items_before: int,
) -> None:
    """Start a worker, let ``job`` run until ``held`` stops it at one item, SIGKILL it,
    let the item go, start another.

    ``stuck`` says the run is waiting on the held item; ``done_before`` counts the
    items the first worker finished, which must be the ``items_before`` ahead of it.
    """
    async with workers(env, tmp_path, 1) as (first,):
        async with held:
            await _defer(job)
            await wait_until(stuck, 60, f"{job} under way, held at one item")
            first.kill()
            await first.wait()
            assert await done_before() == items_before, "the first worker did what came before"
        [cut] = await JobRun.select().where(JobRun.job == job).run()
        assert cut["status"] == "running" and cut["done"] < cut["total"], cut
    async with workers(env, tmp_path, 1):

        async def finished() -> bool:
            return (
                await JobRun.count().where((JobRun.job == job) & (JobRun.status == SUCCEEDED)).run()
                > 0
            )

        await wait_until(finished, 90, f"{job} run again to the end")
    runs = await JobRun.select().where(JobRun.job == job).order_by(JobRun.id).run()
    assert [(r["status"], r["attempt"]) for r in runs] == [(INTERRUPTED, 1), (SUCCEEDED, 2)]
    assert runs[0]["queue_job_id"] == runs[1]["queue_job_id"]


@contextlib.asynccontextmanager
async def row_locked(table: type[Table], row_id: int) -> AsyncIterator[None]:
    """A lock on one row, held in a transaction of the test's own until the block ends:
    a job that writes that row waits there."""
    conn = await asyncpg.connect(TEST_DATABASE_URL)
    try:
        async with conn.transaction():
            await conn.execute(
                f'SELECT 1 FROM "{table._meta.tablename}" WHERE id = $1 FOR UPDATE', row_id
            )
            yield
    finally:
        await conn.close()


def waiting_on(table: type[Table]) -> Callable[[], Awaitable[bool]]:
    """Whether a connection to the test database (the worker's) waits for a lock on a
    row of ``table`` (the one the test holds)."""

    async def waiting() -> bool:
        rows = await JobRun.raw(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND query ~ ('\\m' || {} || '\\M')",
            table._meta.tablename,
        ).run()
        return int(rows[0]["n"]) > 0

    return waiting


class HoldingCollector:
    """Accepts every message, but holds back its answer to message number ``hold_at``
    (counted from 0) until the :meth:`held` block ends."""

    def __init__(self, hold_at: int) -> None:
        self.subjects: list[str] = []
        self.hold_at = hold_at
        self.holding = threading.Event()
        self.released = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        for line in envelope.content.decode(errors="replace").splitlines():
            if line.startswith("Subject: "):
                self.subjects.append(line[len("Subject: ") :])
        if len(self.subjects) == self.hold_at + 1:
            self.holding.set()
            while not self.released.is_set():
                await asyncio.sleep(0.02)
        return "250 OK"

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        try:
            yield
        finally:
            self.released.set()


async def test_outbox_delivery_killed_mid_run_sends_each_message_at_most_once(pg, tmp_path):

    held_at = 10
    collector = HoldingCollector(hold_at=held_at)
    port = free_port()
    controller = Controller(collector, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        count = 40
        created = utcnow() - timedelta(minutes=2)
        await OutboxMessage.insert(
            *[
                OutboxMessage(
                    created_at=created, to_address=f"c{i}@example.test", subject=f"Message {i}",
                    template="welcome", kind="welcome", body_text="Hi", transport="smtp",
                    status="queued",
                )
                for i in range(count)
            ]
        ).run()  # fmt: skip
        env = worker_env(
            tmp_path, SMTP_HOST="127.0.0.1", SMTP_PORT=str(port), SMTP_STARTTLS="false"
        )

        async def holding() -> bool:
            return collector.holding.is_set()

        async def sent_before() -> int:
            return await OutboxMessage.count().where(OutboxMessage.status == "sent").run()

        await _kill_mid_run(
            "outbox", env, tmp_path, collector.held(), holding, sent_before, held_at
        )
    finally:
        controller.stop()
    assert len(collector.subjects) == len(set(collector.subjects)), "a message was sent twice"
    statuses = await OutboxMessage.select(OutboxMessage.status).run()
    sent = sum(1 for s in statuses if s["status"] == "sent")
    in_flight = sum(1 for s in statuses if s["status"] == "sending")
    # The one message being sent at the kill cannot be known delivered: never sent again.
    assert in_flight <= 1 and sent + in_flight == count
    assert len(collector.subjects) >= sent


async def test_package_expiry_killed_mid_run_expires_each_package_once(pg, tmp_path, clinic):
    lapsed = utcnow() - timedelta(hours=1)
    sale_ids = [
        await give_package(clinic.client.id, clinic.location_id, clinic.service_id, sessions=2)
        for _ in range(40)
    ]
    await Sale.update({Sale.valid_until: lapsed}).where(Sale.id.is_in(sale_ids)).run()
    held_at = 10  # packages are expired in the order of their sale's id

    async def expired_before() -> int:
        return await JournalEntry.count().where(JournalEntry.kind == "package_expired").run()

    await _kill_mid_run(
        "expire_packages", worker_env(tmp_path), tmp_path,
        row_locked(Sale, sorted(sale_ids)[held_at]), waiting_on(Sale), expired_before, held_at,
    )  # fmt: skip
    left = (
        await SaleSession.count()
        .where(SaleSession.sale.is_in(sale_ids) & (SaleSession.state == "available"))
        .run()
    )
    assert left == 0
    expired = await JournalEntry.count().where(JournalEntry.kind == "package_expired").run()
    assert expired == len(sale_ids)  # one breakage entry per package, none doubled


async def test_reminders_killed_mid_run_remind_each_appointment_once(pg, tmp_path, clinic):
    tomorrow = (datetime.now(NY) + timedelta(days=1)).date()
    first = h.wall_to_utc(tomorrow, 8 * 60, NY)
    now = utcnow()
    count = 40
    # One-minute appointments back to back (no booking rule is under test here).
    ids = await Appointment.insert(
        *[
            Appointment(
                client=clinic.client.id, therapist=clinic.therapist_id, room=clinic.rooms[0],
                location=clinic.location_id, service=clinic.service_id,
                start_at=first + timedelta(minutes=i), end_at=first + timedelta(minutes=i + 1),
                busy_until=first + timedelta(minutes=i + 1), status="booked",
                created_at=now, updated_at=now,
            )
            for i in range(count)
        ]
    ).returning(Appointment.id).run()  # fmt: skip
    # Reminded in the order they start: the held one has its message queued, but
    # the worker dies waiting to mark it reminded; the next worker must not send
    # it twice.
    held_at = 10
    held = sorted(int(r["id"]) for r in ids)[held_at]

    async def reminded_before() -> int:
        return await Appointment.count().where(Appointment.reminder_sent_at.is_not_null()).run()

    await _kill_mid_run(
        "reminders", worker_env(tmp_path), tmp_path,
        row_locked(Appointment, held), waiting_on(Appointment), reminded_before, held_at,
    )  # fmt: skip
    reminders = (
        await OutboxMessage.select(OutboxMessage.dedupe_key)
        .where(OutboxMessage.kind == "reminder")
        .run()
    )
    assert len(reminders) == count  # one per appointment: none missing, none doubled
    assert await Appointment.count().where(Appointment.reminder_sent_at.is_null()).run() == 0


async def test_a_worker_waits_out_a_database_outage_and_loses_no_job(pg, tmp_path):
    match = re.match(r"^postgres(?:ql)?://([^@/]*@)?([^:/]+)(?::(\d+))?/(.+)$", TEST_DATABASE_URL)
    assert match
    user, host, port, name = match.groups()
    proxy = TcpProxy(host, int(port or 5432))
    await proxy.start()
    try:
        env = worker_env(
            tmp_path,
            DATABASE_URL=f"postgresql://{user or ''}127.0.0.1:{proxy.port}/{name}",
            JOB_SCHEDULE_PURGE="* * * * * */2",
        )
        async with workers(env, tmp_path, 1) as (worker,):

            async def runs(trigger: str) -> int:
                return (
                    await JobRun.count()
                    .where((JobRun.status == SUCCEEDED) & (JobRun.trigger == trigger))
                    .run()
                )

            await wait_until(lambda: _at_least(runs("schedule"), 1), 60, "a first run")
            await proxy.stop()
            # An app process, whose own link is fine, queues a run meanwhile.
            await _defer("purge")
            await asyncio.sleep(6)
            assert worker.returncode is None, "the worker gave up"
            await proxy.start()
            before = await runs("schedule")
            await wait_until(lambda: _at_least(runs("manual"), 1), 90, "the queued run")
            await wait_until(lambda: _at_least(runs("schedule"), before + 1), 60, "a new tick")
    finally:
        proxy.close()
    logs = "".join(p.read_text() for p in tmp_path.glob("worker*.log"))
    assert "cannot be reached" in logs or "stopped by itself" in logs


async def _at_least(count: Any, n: int) -> bool:
    return int(await count) >= n
