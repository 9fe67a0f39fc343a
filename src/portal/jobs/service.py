"""What the jobs page shows: each job's schedule, last run, next run, running progress."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from portal import db, records
from portal.jobs import catalog
from portal.jobs.runs import (
    FAILED,
    QUEUED,
    RUNNING,
    STATUS_LABELS,
    SUCCEEDED,
    TRIGGER_LABELS,
)
from portal.jobs.tables import JobRun
from portal.settings import Settings
from portal.timeutil import utcnow

# Re-exported for the page.
__all__ = [
    "STATUS_LABELS",
    "TRIGGER_LABELS",
    "JobStatus",
    "Workers",
    "get_run",
    "overview",
    "recent_runs",
    "workers",
]

RUN_COLUMNS = (
    JobRun.id,
    JobRun.job,
    JobRun.trigger,
    JobRun.status,
    JobRun.scheduled_for,
    JobRun.attempt,
    JobRun.worker,
    JobRun.started_at,
    JobRun.finished_at,
    JobRun.duration_ms,
    JobRun.done,
    JobRun.total,
    JobRun.step,
    JobRun.summary,
    JobRun.error,
)


@dataclass(frozen=True)
class JobStatus:
    name: str
    label: str
    description: str
    schedule: str | None  # cron line in UTC; None: switched off
    next_run: datetime | None
    last: dict[str, Any] | None  # the latest finished run
    running: dict[str, Any] | None  # a run under way, with its progress
    last_failure: dict[str, Any] | None  # the latest failed run, if after the last success


def percent(run: dict[str, Any]) -> int | None:
    """How far a running run is, when it said (None: no total reported yet)."""
    if not run["total"]:
        return None
    return min(100, int(100 * run["done"] / run["total"]))


async def _latest(job: str, statuses: list[str]) -> dict[str, Any] | None:
    row: dict[str, Any] | None = (
        await JobRun.select(*RUN_COLUMNS)
        .where((JobRun.job == job) & JobRun.status.is_in(statuses))
        .order_by(JobRun.id, ascending=False)
        .first()
        .run()
    )
    return row


async def overview(settings: Settings, now: datetime | None = None) -> list[JobStatus]:
    now = now or utcnow()
    out: list[JobStatus] = []
    for spec in catalog.JOBS:
        last = await _latest(spec.name, [SUCCEEDED, FAILED])
        failure = await _latest(spec.name, [FAILED])
        success = await _latest(spec.name, [SUCCEEDED])
        if failure is not None and success is not None and success["id"] > failure["id"]:
            failure = None
        out.append(
            JobStatus(
                name=spec.name,
                label=spec.label,
                description=spec.description,
                schedule=catalog.schedule_of(spec, settings),
                next_run=await catalog.next_run(spec, settings, now),
                last=last,
                running=await _latest(spec.name, [RUNNING, QUEUED]),
                last_failure=failure,
            )
        )
    return out


async def recent_runs(limit: int = 30) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = (
        await JobRun.select(*RUN_COLUMNS).order_by(JobRun.id, ascending=False).limit(limit).run()
    )
    return rows


async def get_run(run_id: int) -> dict[str, Any]:
    return await records.first(
        JobRun.select(*RUN_COLUMNS).where(JobRun.id == run_id), "No such run."
    )


@dataclass(frozen=True)
class Workers:
    """PostgreSQL: the workers whose heartbeat is recent, and the latest heartbeat of any."""

    alive: int
    last_heartbeat: datetime | None


async def workers(settings: Settings, now: datetime | None = None) -> Workers | None:
    """Who is working the shared queue (None in embedded mode: the server itself is).

    A worker writes a heartbeat every ``WORKER_HEARTBEAT_SECONDS``; one silent
    for ``JOB_STALLED_SECONDS`` is gone (killed, or cut off from the database).
    With none alive, scheduled jobs wait: the page says so.
    """
    if db.is_sqlite(JobRun._meta.db):
        return None
    now = now or utcnow()
    rows = await JobRun.raw(
        "SELECT count(*) FILTER (WHERE last_heartbeat >= {}) AS alive, "
        "max(last_heartbeat) AS last FROM procrastinate_workers",
        now - timedelta(seconds=settings.job_stalled_seconds),
    ).run()
    return Workers(alive=int(rows[0]["alive"] or 0), last_heartbeat=rows[0]["last"])


def label_of(job: str) -> str:
    spec = catalog.find(job)
    return spec.label if spec is not None else job
