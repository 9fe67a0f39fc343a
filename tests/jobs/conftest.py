"""The job queue in tests: procrastinate on the test database (PostgreSQL) or in memory (SQLite).

``job_queue`` gives a test the portal's procrastinate app (every job and
schedule of the catalogue) on the engine under test; :func:`tick` defers what
the schedules hold at an instant through procrastinate's own periodic
deferrer (its unique row per job and tick included), and :func:`work` runs a
worker until the queue has nothing left to do now.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import procrastinate
import pytest
from procrastinate.periodic import PeriodicDeferrer, PeriodicRegistry

from portal.jobs import queue
from portal.jobs.tables import JobRun
from portal.settings import Settings
from tests.bookings.conftest import Clinic, clinic, give_package  # noqa: F401  (fixtures)
from tests.conftest import TEST_DATABASE_URL
from tests.email.smtpd import smtp_server  # noqa: F401  (fixture)
from tests.payments.conftest import shop  # noqa: F401  (fixture)

QUEUE_TABLES = (
    "procrastinate_events, procrastinate_periodic_defers, procrastinate_jobs, procrastinate_workers"
)


async def empty_queue(db: Any) -> None:
    """PostgreSQL: the queue's tables are not the portal's, so the suite's reset leaves them."""
    if db.kind == "postgres":
        await db.engine.run_ddl(f"TRUNCATE {QUEUE_TABLES} RESTART IDENTITY CASCADE")


def connector_for(db: Any) -> Any:
    if db.kind == "sqlite":
        return queue.MemoryConnector()
    return procrastinate.PsycopgConnector(conninfo=queue.conninfo(TEST_DATABASE_URL))


@pytest.fixture
def job_settings(settings: Settings) -> Settings:
    # Retries come back after 1 s, so a test sees one without waiting long.
    return dataclasses.replace(settings, job_max_attempts=3, job_retry_wait_seconds=1)


@pytest.fixture
async def job_queue(db: Any, job_settings: Settings) -> AsyncIterator[procrastinate.App]:
    await empty_queue(db)
    app = queue.build(job_settings, connector=connector_for(db))
    async with app.open_async():
        yield app


async def tick(app: procrastinate.App, at: datetime) -> None:
    """Defer every scheduled job whose tick is at most ten minutes before ``at``."""
    deferrer = PeriodicDeferrer(registry=app.periodic_registry, max_delay=600)
    await deferrer.defer_jobs(deferrer.get_previous_tasks(at=at.timestamp()))


async def work(app: procrastinate.App) -> None:
    """Run a worker until nothing is left to do now (retries later than now wait).

    Its own periodic deferrer is left out: the ticks a test runs are the ones
    it gives :func:`tick`, whatever the clock says.
    """
    registry = app.periodic_registry
    app.periodic_registry = PeriodicRegistry()
    try:
        await app.run_worker_async(wait=False, install_signal_handlers=False, listen_notify=False)
    finally:
        app.periodic_registry = registry


async def runs_of(job: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = (
        await JobRun.select().where(JobRun.job == job).order_by(JobRun.id).run()
    )
    return rows
