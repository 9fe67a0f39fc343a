"""Job runs in the logs and the metrics: every line of a run carries its job and run ids;
every finished run is counted by job and outcome, with its duration
(``portal_job_runs_total``, ``portal_job_duration_seconds``)."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import REGISTRY

from portal.jobs import runs
from portal.jobs.runs import CLI, FAILED, SUCCEEDED, JobCall, JobResult, RunRequest
from portal.timeutil import utcnow
from tests.jobs.conftest import runs_of, tick, work
from tests.operations.helpers import captured

job_log = logging.getLogger("portal.jobs.test")


def runs_counted(job: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value("portal_job_runs_total", {"job": job, "outcome": outcome})
    return value or 0.0


def seconds_recorded(job: str) -> float:
    value = REGISTRY.get_sample_value("portal_job_duration_seconds_count", {"job": job})
    return value or 0.0


async def test_a_scheduled_run_through_the_worker_is_counted(job_queue):
    before = runs_counted("purge", SUCCEEDED)
    await tick(job_queue, utcnow().replace(hour=2, minute=15, second=1, microsecond=0))
    with captured() as log:
        await work(job_queue)
    [run] = await runs_of("purge")
    assert run["status"] == SUCCEEDED
    assert runs_counted("purge", SUCCEEDED) - before == 1
    finished = [
        line
        for line in log.json_lines()
        if "succeeded in" in line["event"] and line["job"] == "purge"
    ]
    assert [(line["job"], line["job_run_id"]) for line in finished] == [("purge", run["id"])]
    assert finished[0]["queue_job_id"] == run["queue_job_id"] is not None


async def test_a_run_logs_with_its_ids_and_a_failure_is_counted(db, settings):
    async def works(call: JobCall) -> JobResult:
        job_log.warning("halfway")
        return JobResult(summary="done")

    async def breaks(call: JobCall) -> JobResult:
        raise RuntimeError("the import file is unreadable")

    before = {o: runs_counted("test.import", o) for o in (SUCCEEDED, FAILED)}
    timed_before = seconds_recorded("test.import")
    request = RunRequest(job="test.import", label="Test import", trigger=CLI)
    with captured() as log:
        await runs.execute(request, works, settings)
        with pytest.raises(RuntimeError):
            await runs.execute(request, breaks, settings)
        job_log.warning("after the runs")
    ok, failed = await runs_of("test.import")
    assert {o: runs_counted("test.import", o) - before[o] for o in before} == {
        SUCCEEDED: 1,
        FAILED: 1,
    }
    assert seconds_recorded("test.import") - timed_before == 2
    lines = log.json_lines()
    halfway = next(line for line in lines if line["event"] == "halfway")
    assert (halfway["job"], halfway["job_run_id"]) == ("test.import", ok["id"])
    crash = next(line for line in lines if "exception" in line)
    assert crash["job_run_id"] == failed["id"]
    assert "RuntimeError: the import file is unreadable" in crash["exception"]
    assert "job" not in lines[-1]  # nothing stays bound after a run
