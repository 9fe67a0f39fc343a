"""Running one job and keeping its record: start, progress, outcome, the owners' alert.

Every run goes through :func:`execute`, whoever started it: the worker (a
schedule's tick or an owner's "run now"), the embedded worker in the server
process, or ``portal jobs run`` on a terminal. It writes a ``job_run`` row,
stores the progress the job reports (``portal.progress.report``), records how
the run ended, emails the owners when a failure starts a streak, and tells
the listeners (:func:`add_listener`: metrics, say) each outcome.

A job ends in one of three ways: it returns a :class:`JobResult` (succeeded),
it returns one with ``attention`` set (failed: a person must look — a payout
that does not add up — trying again would change nothing, so it is not
retried), or it raises (failed; the worker tries again with back-off).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from portal import db, logs, metrics, progress, records
from portal.auth.tables import User
from portal.email import messages
from portal.identity import OWNER
from portal.jobs.tables import JobRun
from portal.settings import Settings
from portal.timeutil import utcnow

log = logging.getLogger("portal.jobs")

QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
INTERRUPTED = "interrupted"
STATUS_LABELS = {
    QUEUED: "Waiting to start",
    RUNNING: "Running",
    SUCCEEDED: "Succeeded",
    FAILED: "Failed",
    INTERRUPTED: "Interrupted",
}
SCHEDULE = "schedule"
MANUAL = "manual"
CLI = "cli"
TRIGGER_LABELS = {SCHEDULE: "Schedule", MANUAL: "Run now", CLI: "Command line"}

# Progress is written at most this often (plus every change of step and the
# last item), so a job over many rows does not write a row per row.
PROGRESS_WRITE_SECONDS = 0.5


@dataclass(frozen=True)
class JobCall:
    """What a job is given: the settings, why it runs, and the schedule tick it is for.

    A requested job (``catalog.requested``) also gets its run's id, who asked and
    the parameters they chose.
    """

    settings: Settings
    trigger: str
    scheduled_for: datetime | None = None
    run_id: int | None = None
    requested_by: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobResult:
    summary: str
    attention: str = ""  # non-empty: the run failed for a person to settle; not retried


@dataclass(frozen=True)
class JobOutcome:
    """What listeners are told after every run."""

    job: str
    run_id: int
    status: str
    trigger: str
    duration_seconds: float
    error: str


JobFunction = Callable[[JobCall], Awaitable[JobResult]]
Listener = Callable[[JobOutcome], None]

_listeners: list[Listener] = []


def add_listener(listener: Listener) -> None:
    """Call ``listener`` after every run in this process (job, outcome, duration)."""
    _listeners.append(listener)


def remove_listener(listener: Listener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


@dataclass(frozen=True)
class RunRequest:
    job: str
    label: str
    trigger: str
    scheduled_for: datetime | None = None
    queue_job_id: int | None = None
    attempt: int = 1
    requested_by: int | None = None
    worker: str = ""
    run_id: int | None = None  # the run's row, written when it was queued ("run now")
    params: Mapping[str, Any] = field(default_factory=dict)  # a requested job's parameters


async def execute(
    request: RunRequest,
    function: JobFunction,
    settings: Settings,
    *,
    also_report_to: progress.Listener | None = None,
) -> JobResult:
    """Run ``function`` as one recorded run; re-raises what it raised, after recording it."""
    run_id = await _start(request)
    # Every line logged during the run (the job's own, the services', a
    # traceback) names the job, its run and its queue job (``portal.logs``).
    with logs.bound(job=request.job, job_run_id=run_id, queue_job_id=request.queue_job_id):
        return await _execute(request, run_id, function, settings, also_report_to)


async def _execute(
    request: RunRequest,
    run_id: int,
    function: JobFunction,
    settings: Settings,
    also_report_to: progress.Listener | None,
) -> JobResult:
    started = time.monotonic()
    writer = _ProgressWriter(run_id)
    call = JobCall(
        settings=settings,
        trigger=request.trigger,
        scheduled_for=request.scheduled_for,
        run_id=run_id,
        requested_by=request.requested_by,
        params=request.params,
    )
    log.info("job %s run %s started (%s)", request.job, run_id, request.trigger)
    try:
        with progress.listening(writer.write):
            if also_report_to is not None:
                with progress.listening(also_report_to):
                    result = await function(call)
            else:
                result = await function(call)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"[:2000]
        log.exception("job %s run %s failed", request.job, run_id)
        await _finish(request, run_id, started, FAILED, summary="", error=error, settings=settings)
        raise
    status = FAILED if result.attention else SUCCEEDED
    await _finish(
        request,
        run_id,
        started,
        status,
        summary=result.summary,
        error=result.attention,
        settings=settings,
    )
    return result


async def mark_interrupted(queue_job_id: int, error: str) -> None:
    """The record of the queue's job ``queue_job_id``, if still running: its worker stopped."""
    await (
        JobRun.update(
            {JobRun.status: INTERRUPTED, JobRun.finished_at: utcnow(), JobRun.error: error}
        )
        .where((JobRun.queue_job_id == queue_job_id) & (JobRun.status == RUNNING))
        .run()
    )


async def _start(request: RunRequest) -> int:
    now = utcnow()
    if request.queue_job_id is not None:
        # The queue gave this job again: its earlier run's worker stopped mid-run.
        await mark_interrupted(request.queue_job_id, INTERRUPTED_ERROR)
    if request.run_id is not None:
        claimed = (
            await JobRun.update(
                {
                    JobRun.status: RUNNING,
                    JobRun.started_at: now,
                    JobRun.heartbeat_at: now,
                    JobRun.queue_job_id: request.queue_job_id,
                    JobRun.attempt: request.attempt,
                    JobRun.worker: request.worker[:100],
                }
            )
            .where((JobRun.id == request.run_id) & (JobRun.status == QUEUED))
            .returning(JobRun.id)
            .run()
        )
        if claimed:
            return int(claimed[0]["id"])
        # A retry: the queued row is the first attempt's record; this one gets its own.
    rows = (
        await JobRun.insert(
            JobRun(
                job=request.job,
                trigger=request.trigger,
                status=RUNNING,
                scheduled_for=request.scheduled_for,
                queue_job_id=request.queue_job_id,
                attempt=request.attempt,
                requested_by=request.requested_by,
                worker=request.worker[:100],
                started_at=now,
                heartbeat_at=now,
            )
        )
        .returning(JobRun.id)
        .run()
    )
    return int(rows[0]["id"])


INTERRUPTED_ERROR = "The worker running it stopped; the job was run again."
REPLACED_ERROR = "The worker running it stopped; a run of the same job waiting then took its place."


async def queue_run(job: str, requested_by: int | None) -> int:
    """The record of a run asked for now and not yet started; its id."""
    now = utcnow()
    return await records.insert(
        JobRun,
        job=job,
        trigger=MANUAL,
        status=QUEUED,
        requested_by=requested_by,
        started_at=now,
        heartbeat_at=now,
    )


async def forget_queued(run_id: int) -> None:
    await JobRun.delete().where((JobRun.id == run_id) & (JobRun.status == QUEUED)).run()


async def mark_all_interrupted() -> int:
    """Embedded mode at start: runs left "running" (or waiting) by the previous server process."""
    rows = (
        await JobRun.update(
            {
                JobRun.status: INTERRUPTED,
                JobRun.finished_at: utcnow(),
                JobRun.error: "The server stopped while it ran.",
            }
        )
        .where(JobRun.status.is_in([RUNNING, QUEUED]))
        .returning(JobRun.id)
        .run()
    )
    return len(rows)


class _ProgressWriter:
    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        self.last_write = 0.0
        self.last_step = ""

    async def write(self, done: int, total: int, step: str) -> None:
        now = time.monotonic()
        if (
            now - self.last_write < PROGRESS_WRITE_SECONDS
            and step == self.last_step
            and done < total
        ):
            return
        self.last_write = now
        self.last_step = step
        await (
            JobRun.update(
                {
                    JobRun.done: done,
                    JobRun.total: total,
                    JobRun.step: step,
                    JobRun.heartbeat_at: utcnow(),
                }
            )
            .where((JobRun.id == self.run_id) & (JobRun.status == RUNNING))
            .run()
        )


async def _finish(
    request: RunRequest,
    run_id: int,
    started: float,
    status: str,
    *,
    summary: str,
    error: str,
    settings: Settings,
) -> None:
    duration = time.monotonic() - started
    await (
        JobRun.update(
            {
                JobRun.status: status,
                JobRun.finished_at: utcnow(),
                JobRun.duration_ms: round(duration * 1000),
                JobRun.summary: summary,
                JobRun.error: error,
            }
        )
        .where(JobRun.id == run_id)
        .run()
    )
    log.info("job %s run %s %s in %.1f s", request.job, run_id, status, duration)
    metrics.record_job_run(request.job, status, duration)
    if status == FAILED:
        try:
            await _alert_owners(request, run_id, error, settings)
        except Exception:
            log.exception("Could not email the owners about job %s run %s", request.job, run_id)
    outcome = JobOutcome(
        job=request.job,
        run_id=run_id,
        status=status,
        trigger=request.trigger,
        duration_seconds=duration,
        error=error,
    )
    for listener in list(_listeners):
        try:
            listener(outcome)
        except Exception:
            log.exception("A job listener failed")


async def _alert_owners(request: RunRequest, run_id: int, error: str, settings: Settings) -> None:
    """Email every active owner, once per failure streak.

    A streak begins with a failure whose previous finished run (interrupted
    runs do not count) succeeded, or that is the job's first. The run is
    marked ``alerted`` with a compare-and-set, so two workers failing the same
    job at once send one message; the outbox's deduplication key per run and
    owner makes a retried alert send nothing twice.
    """
    previous = (
        await JobRun.select(JobRun.status)
        .where(
            (JobRun.job == request.job)
            & (JobRun.id < run_id)
            & JobRun.status.is_in([SUCCEEDED, FAILED])
        )
        .order_by(JobRun.id, ascending=False)
        .first()
        .run()
    )
    if previous is not None and previous["status"] == FAILED:
        return
    async with db.transaction():
        claimed = await db.update_where(
            JobRun,
            {JobRun.alerted: True},
            (JobRun.id == run_id) & (JobRun.alerted == False),  # noqa: E712
        )
    if not claimed:
        return
    owners = (
        await User.select(User.email, User.name)
        .where((User.role == OWNER) & (User.active == True))  # noqa: E712
        .order_by(User.id)
        .run()
    )
    for owner in owners:
        await messages.send_job_failed(
            str(owner["email"]),
            name=str(owner["name"] or owner["email"]),
            job_label=request.label,
            error=error,
            jobs_url=f"{settings.base_url}/jobs",
            run_id=run_id,
            settings=settings,
        )
