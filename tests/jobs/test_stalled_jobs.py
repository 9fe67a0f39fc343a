"""A job whose worker stopped mid-run, given back by the ``retry_stalled`` check.

The run is cut (its worker's heartbeat is old) while the job's ``lock`` is
still its own. Queued again, it runs again; but when another run of the same
scheduled job was queued meanwhile (a tick, a "run now" — at most one waits,
by its queueing lock), the database refuses a second waiting run, and the
waiting one must be the one that runs: before, the check failed at every
tick and the cut run kept the job's lock, so nothing of that job ran again
(a worker back from a database outage never ran what was queued during it).

PostgreSQL only: a stalled job needs a worker that stopped while the queue
lives on, and in embedded mode (SQLite) the queue is the stopped process's
memory.
"""

from __future__ import annotations

from typing import Any

import procrastinate
import pytest

from portal.jobs import queue
from portal.jobs.runs import INTERRUPTED, MANUAL, REPLACED_ERROR, RUNNING, SUCCEEDED
from portal.jobs.tables import JobRun
from portal.timeutil import utcnow
from tests.jobs.conftest import runs_of, work

pytestmark = pytest.mark.parametrize("database", ["postgres"], indirect=True)


async def _cut_run(app: procrastinate.App) -> int:
    """A manual run of ``purge`` taken by a worker that then went silent; its queue id."""
    await app.configure_task(queue.task_name("purge"), queueing_lock="purge").defer_async()
    worker_id = await app.job_manager.register_worker()
    job = await app.job_manager.fetch_job(queues=None, worker_id=worker_id)
    assert job is not None and job.id is not None
    await JobRun.insert(
        JobRun(
            job="purge",
            trigger=MANUAL,
            status=RUNNING,
            queue_job_id=job.id,
            attempt=1,
            worker="gone:1",
            started_at=utcnow(),
            heartbeat_at=utcnow(),
        )
    ).run()
    await JobRun.raw(
        "UPDATE procrastinate_workers SET last_heartbeat = now() - interval '1 hour' WHERE id = {}",
        worker_id,
    ).run()
    return job.id


async def _check_stalled(app: procrastinate.App) -> None:
    await app.configure_task(queue.task_name("retry_stalled")).defer_async(
        timestamp=int(utcnow().timestamp())
    )
    await work(app)
    await work(app)  # what the check gave back (a worker started now would find it)


async def _queue_status(app: procrastinate.App, job_id: int) -> Any:
    return (await app.job_manager.get_job_status_async(job_id)).value


async def test_a_cut_run_is_queued_again_and_runs(job_queue):
    cut = await _cut_run(job_queue)
    await _check_stalled(job_queue)
    first, second = await runs_of("purge")
    assert (first["status"], first["queue_job_id"]) == (INTERRUPTED, cut)
    assert (second["status"], second["queue_job_id"], second["attempt"]) == (SUCCEEDED, cut, 2)
    assert await _queue_status(job_queue, cut) == "succeeded"


async def test_a_cut_run_gives_way_to_the_run_waiting_behind_it(job_queue):
    cut = await _cut_run(job_queue)
    # A "run now" (or a tick) queued while the cut run still holds the job.
    waiting = await job_queue.configure_task(
        queue.task_name("purge"), queueing_lock="purge"
    ).defer_async()
    await _check_stalled(job_queue)
    first, second = await runs_of("purge")
    assert (first["status"], first["queue_job_id"], first["error"]) == (
        INTERRUPTED,
        cut,
        REPLACED_ERROR,
    )
    assert (second["status"], second["queue_job_id"]) == (SUCCEEDED, waiting)
    assert await _queue_status(job_queue, cut) == "failed"
    assert await _queue_status(job_queue, waiting) == "succeeded"
    # The check itself ran clean (it failed at every tick before).
    stalled_checks = await job_queue.job_manager.list_jobs_async(
        task=queue.task_name("retry_stalled")
    )
    assert [job.status for job in stalled_checks] == ["succeeded"]
