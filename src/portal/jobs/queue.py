"""The job queue and worker: procrastinate, on PostgreSQL or in memory.

PostgreSQL (production): the queue, the schedules' ticks and the workers'
heartbeats are procrastinate's tables (applied by ``portal migrate``). Any
number of ``portal worker`` processes and app processes share them:

* each schedule tick is deferred once, whichever workers see it — the tick's
  row in ``procrastinate_periodic_defers`` is unique per job and time;
* a job's ``lock`` (its name) runs one of its runs at a time, and its
  ``queueing_lock`` keeps at most one waiting, so "run now" on a job already
  waiting adds nothing;
* a job that raised is retried with back-off (``JOB_MAX_ATTEMPTS``,
  ``JOB_RETRY_WAIT_SECONDS`` ** attempt seconds);
* a job whose worker stopped sending heartbeats (killed, machine gone) is
  given back to the queue by the ``retry_stalled`` tick of any other worker,
  and run again — the jobs are idempotent, so its effect happens once.

Embedded (SQLite, ``make run``): the same tasks and schedules on
procrastinate's in-memory connector, run by a worker inside the server
process (:class:`InProcessWorker`), started and stopped with the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import signal
import socket
from datetime import UTC, datetime
from typing import Any

import procrastinate
from procrastinate import exceptions as queue_errors
from procrastinate.jobs import Job, Status
from procrastinate.manager import JobManager
from procrastinate.testing import InMemoryConnector
from procrastinate.types import JSONDict

from portal import progress
from portal.audit import service as audit
from portal.errors import Conflict, NotFound
from portal.identity import CurrentUser
from portal.jobs import catalog, runs
from portal.settings import Settings

log = logging.getLogger("portal.jobs")

TASK_PREFIX = "portal."
# Finished queue rows (the portal keeps its own record in job_run) go after a week.
OLD_JOBS_HOURS = 7 * 24


class MemoryConnector(InMemoryConnector):
    """procrastinate's in-memory queue (embedded mode), each job keeping its own arguments.

    The periodic deferrer reuses one arguments dict for every tick of a task.
    PostgreSQL stores a copy (JSON); the in-memory queue would keep the shared
    dict, and a job still waiting would see its ``timestamp`` change under it
    at the next tick.
    """

    async def defer_periodic_job_one(
        self,
        queue: str,
        task_name: str,
        priority: int,
        args: JSONDict,
        defer_timestamp: int,
        lock: str | None,
        queueing_lock: str | None,
        periodic_id: str,
    ) -> dict[str, Any]:
        return await super().defer_periodic_job_one(
            queue=queue,
            task_name=task_name,
            priority=priority,
            args=copy.deepcopy(args),
            defer_timestamp=defer_timestamp,
            lock=lock,
            queueing_lock=queueing_lock,
            periodic_id=periodic_id,
        )


def task_name(job: str) -> str:
    return TASK_PREFIX + job


def conninfo(database_url: str) -> str:
    """psycopg's connection string from the portal's ``DATABASE_URL``."""
    if database_url.startswith("postgres://"):
        return "postgresql://" + database_url[len("postgres://") :]
    return database_url


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def build(settings: Settings, connector: Any | None = None) -> procrastinate.App:
    """A procrastinate app with every job of the catalogue as a task, on its schedule.

    Raises ``ConfigurationError`` for a schedule that is not a cron line.
    """
    catalog.check_schedules(settings)
    if connector is None:
        connector = (
            MemoryConnector()
            if settings.is_sqlite
            else procrastinate.PsycopgConnector(
                conninfo=conninfo(settings.database_url),
                kwargs={"application_name": "portal-jobs"},
                min_size=1,
                max_size=max(2, settings.worker_concurrency + 2),
            )
        )
    app = procrastinate.App(
        connector=connector,
        worker_defaults={
            "concurrency": settings.worker_concurrency,
            "update_heartbeat_interval": settings.worker_heartbeat_seconds,
            "stalled_worker_timeout": settings.job_stalled_seconds,
            "name": worker_name(),
            # The portal's own record (job_run) is what people read; the queue's
            # rows are pruned by remove_old_jobs below.
            "delete_jobs": "never",
        },
    )
    retry = procrastinate.RetryStrategy(
        max_attempts=settings.job_max_attempts,
        exponential_wait=settings.job_retry_wait_seconds,
    )
    for spec in catalog.requested():
        # One run at a time (each may be large); any number may wait.
        app.task(name=task_name(spec.name), pass_context=True, retry=retry, lock=spec.name)(
            _task_function(spec, settings)
        )
    for spec in catalog.JOBS:
        task = app.task(
            name=task_name(spec.name),
            pass_context=True,
            retry=retry,
            lock=spec.name,
            queueing_lock=spec.name,
        )(_task_function(spec, settings))
        cron = catalog.schedule_of(spec, settings)
        if cron is not None:
            app.periodic(cron=cron, periodic_id=spec.name)(task)
    _add_housekeeping(app, settings)
    return app


def _task_function(spec: catalog.JobSpec, settings: Settings) -> Any:
    async def run(
        context: procrastinate.JobContext,
        timestamp: int | None = None,
        requested_by: int | None = None,
        run_id: int | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        job = context.job
        scheduled_for = datetime.fromtimestamp(timestamp, tz=UTC) if timestamp else None
        trigger = runs.SCHEDULE if timestamp else runs.MANUAL
        call = runs.JobCall(settings=settings, trigger=trigger, scheduled_for=scheduled_for)
        if spec.due is not None and not await spec.due(call):
            return  # a tick at which nothing is due (no location at its expiry hour)
        await runs.execute(
            runs.RunRequest(
                job=spec.name,
                label=spec.label,
                trigger=trigger,
                scheduled_for=scheduled_for,
                queue_job_id=job.id,
                attempt=job.attempts + 1,
                requested_by=requested_by,
                worker=context.worker_name or "",
                run_id=run_id,
                params=params or {},
            ),
            spec.function,
            settings,
        )

    run.__name__ = spec.name
    run.__qualname__ = f"jobs.{spec.name}"
    return run


def _add_housekeeping(app: procrastinate.App, settings: Settings) -> None:
    """The queue's own upkeep: stalled jobs back to the queue, old rows removed."""

    @app.periodic(
        cron=catalog.housekeeping_schedule(catalog.RETRY_STALLED, settings),
        periodic_id="retry_stalled",
    )
    @app.task(name=TASK_PREFIX + "retry_stalled", queueing_lock="retry_stalled", pass_context=True)
    async def retry_stalled(context: procrastinate.JobContext, timestamp: int) -> None:
        stalled = await context.app.job_manager.get_stalled_jobs(
            seconds_since_heartbeat=settings.job_stalled_seconds
        )
        for job in stalled:
            await _give_back(context.app.job_manager, job)

    @app.periodic(cron="10 3 * * *", periodic_id="remove_old_jobs")
    @app.task(
        name=TASK_PREFIX + "remove_old_jobs", queueing_lock="remove_old_jobs", pass_context=True
    )
    async def remove_old_jobs(context: procrastinate.JobContext, timestamp: int) -> None:
        await context.app.job_manager.delete_old_jobs(
            nb_hours=OLD_JOBS_HOURS, include_failed=True, include_cancelled=True
        )


async def _give_back(manager: JobManager, job: Job) -> None:
    """Queue again a job whose worker stopped mid-run, unless another run of it waits.

    A scheduled job keeps at most one run waiting (its queueing lock), and the
    database refuses a second: when a tick or a "run now" was queued while the
    cut run still held the job, that waiting run does what the cut one would
    (the jobs are idempotent), so the cut one ends there, recorded as
    interrupted. Queueing it again would fail at every stalled check, and the
    cut run would keep the job's lock for ever: nothing of that job would run
    again.
    """
    assert job.id is not None  # a job read from the queue
    try:
        await manager.retry_job(job)
    except queue_errors.UniqueViolation:
        await manager.finish_job(job, status=Status.FAILED, delete_job=False)
        await runs.mark_interrupted(job.id, runs.REPLACED_ERROR)
        log.warning(
            "job %s (%s) was running on a worker that stopped; another run of it is waiting",
            job.id,
            job.task_name,
        )
        return
    log.warning(
        "job %s (%s) was running on a worker that stopped; queued again", job.id, job.task_name
    )


async def request_run(
    app: procrastinate.App,
    job: str,
    user: CurrentUser,
    address: str = "",
    params: dict[str, Any] | None = None,
) -> int:
    """Queue one run of ``job`` now (an owner's "run now", audited); the run's id.

    The run's record is written at once ("waiting to start"), so its page can
    follow it from the click on. Raises NotFound for an unknown job and
    Conflict when a run of a scheduled job is already waiting (one waiting run
    does what two would). A requested job (``catalog.requested``) takes
    ``params``, recorded in the audit row; any number of its runs may wait.
    """
    spec = catalog.find(job)
    if spec is None:
        raise NotFound("No such job.")
    scheduled = job in catalog.BY_NAME
    run_id = await runs.queue_run(job, user.id)
    try:
        queue_job_id = await app.configure_task(
            task_name(job), allow_unknown=False, queueing_lock=job if scheduled else None
        ).defer_async(
            requested_by=user.id, run_id=run_id, **({} if scheduled else {"params": params or {}})
        )
    except queue_errors.AlreadyEnqueued:
        await runs.forget_queued(run_id)
        raise Conflict(f"“{spec.label}” is already waiting to run.") from None
    except BaseException:
        await runs.forget_queued(run_id)
        raise
    await audit.record(
        user,
        "run_now",
        "job",
        job,
        after={"run_id": run_id, "queue_job_id": queue_job_id}
        | ({"params": params} if params else {}),
        address=address,
    )
    return run_id


async def run_here(
    job: str,
    settings: Settings,
    *,
    also_report_to: progress.Listener | None = None,
    params: dict[str, Any] | None = None,
) -> runs.JobResult:
    """Run ``job`` in this process now (``portal jobs run``), recorded like any run."""
    spec = catalog.find(job)
    if spec is None:
        raise NotFound("No such job.")
    return await runs.execute(
        runs.RunRequest(
            job=spec.name,
            label=spec.label,
            trigger=runs.CLI,
            worker=worker_name(),
            params=params or {},
        ),
        spec.function,
        settings,
        also_report_to=also_report_to,
    )


async def run_worker(app: procrastinate.App, *, retry_seconds: float = 2.0) -> None:
    """Run the worker until SIGINT/SIGTERM, riding out database outages.

    When PostgreSQL goes away the worker stops (its heartbeat or its next
    fetch fails); it is started again when the database answers, waiting
    longer each time (up to a minute). Nothing is lost meanwhile: the queue
    is in the database, and a job cut short is queued again by another
    worker's stalled check (or this one's, once back). A signal stops it
    gracefully: running jobs finish first.
    """
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    delay = retry_seconds
    try:
        while not stopping.is_set():
            try:
                async with app.open_async():
                    await _work_until_stopped(app, stopping)
                if stopping.is_set():
                    return
                log.warning("The worker stopped by itself (database lost?); starting again")
            except Exception as exc:
                log.warning(
                    "The job queue's database cannot be reached (%s: %s); trying again in %.0f s",
                    type(exc).__name__,
                    exc,
                    delay,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=delay)
            delay = min(delay * 2, 60.0)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _work_until_stopped(app: procrastinate.App, stopping: asyncio.Event) -> None:
    worker = asyncio.create_task(app.run_worker_async(install_signal_handlers=False))
    stop = asyncio.create_task(stopping.wait())
    await asyncio.wait({worker, stop}, return_when=asyncio.FIRST_COMPLETED)
    if stopping.is_set():
        worker.cancel()  # procrastinate stops gracefully: running jobs finish
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        return
    stop.cancel()
    worker.result()  # what stopped it, if it raised


class InProcessWorker:
    """A worker inside the server process (``JOBS_IN_PROCESS``; embedded mode's default).

    On SQLite the queue is in this process's memory; on PostgreSQL it is the
    shared one, so a server started with ``JOBS_IN_PROCESS=1`` is one more worker.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = build(settings)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.settings.is_sqlite:
            # The queue was in the memory of the process before this one:
            # whatever that one was running did not finish.
            await runs.mark_all_interrupted()
        await self.app.open_async()
        self._task = asyncio.create_task(
            self.app.run_worker_async(install_signal_handlers=False, shutdown_graceful_timeout=5),
            name="portal jobs",
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.app.close_async()
