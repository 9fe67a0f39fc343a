"""What the jobs page shows: each job's schedule, last run, next run, running progress."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from portal.errors import NotFound
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
__all__ = ["STATUS_LABELS", "TRIGGER_LABELS", "JobStatus", "get_run", "overview", "recent_runs"]

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
    row: dict[str, Any] | None = (
        await JobRun.select(*RUN_COLUMNS).where(JobRun.id == run_id).first().run()
    )
    if row is None:
        raise NotFound("No such run.")
    return row


def label_of(job: str) -> str:
    spec = catalog.find(job)
    return spec.label if spec is not None else job
