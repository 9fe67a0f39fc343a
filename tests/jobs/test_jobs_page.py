"""The jobs page: each job's schedule, last and next run, failures, "run now" (queued
through the real queue, audited), a run's progress for htmx; the CLI verbs."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from portal import db as portal_db
from portal import progress
from portal.audit.tables import AuditLog
from portal.cli import ProgressBar
from portal.email.tables import OutboxMessage
from portal.jobs import catalog, runs
from portal.jobs.runs import MANUAL, SUCCEEDED, JobCall, JobResult, RunRequest
from portal.jobs.tables import JobRun
from portal.settings import ConfigurationError, Settings
from portal.timeutil import utcnow
from tests import factories
from tests.conftest import TEST_DATABASE_URL
from tests.jobs.conftest import empty_queue, runs_of, work

PORTAL = str(Path(sys.executable).with_name("portal"))


async def test_the_page_lists_every_job_with_its_schedule_and_last_failure(owner_client, settings):
    now = utcnow()
    await JobRun.insert(
        JobRun(job="purge", status="succeeded", started_at=now - timedelta(hours=2),
               heartbeat_at=now, duration_ms=1500, summary="Deleted 3"),
        JobRun(job="reminders", status="failed", started_at=now - timedelta(hours=1),
               heartbeat_at=now, duration_ms=200, error="SMTPException: refused"),
    ).run()  # fmt: skip
    page = await owner_client.get("/jobs")
    assert page.status_code == 200
    for spec in catalog.JOBS:
        assert spec.label in page.text
        assert f'action="/jobs/{spec.name}/run"' in page.text
    assert "<code>15 2 * * *</code>" in page.text  # the purge's default schedule
    assert "1.5 s" in page.text
    assert "SMTPException: refused" in page.text
    assert "No job worker is connected" in page.text  # this test app has no queue


async def test_run_now_queues_one_run_that_the_worker_records_and_audits(
    owner_client, app, owner, job_queue
):
    app.state.jobs_queue = job_queue
    response = await factories.post_form(owner_client, "/jobs/purge/run", {})
    assert response.status_code == 303
    [queued] = await runs_of("purge")
    assert response.headers["location"] == f"/jobs/runs/{queued['id']}"
    page = await owner_client.get(response.headers["location"])
    assert "is queued; it starts within seconds" in page.text
    assert "waiting to start" in page.text and 'hx-trigger="every 1s"' in page.text
    # A second click while the first waits adds nothing.
    again = await factories.post_form(owner_client, "/jobs/purge/run", {})
    assert again.headers["location"] == "/jobs"
    page = await owner_client.get("/jobs")
    assert "is already waiting to run" in page.text

    await work(job_queue)
    [run] = await runs_of("purge")
    assert run["id"] == queued["id"]
    assert (run["status"], run["trigger"], run["requested_by"]) == (SUCCEEDED, MANUAL, owner.id)
    assert run["queue_job_id"] is not None and run["worker"]
    [audit] = await AuditLog.select().where(AuditLog.action == "run_now").run()
    assert (audit["entity"], audit["entity_id"], audit["actor_id"]) == ("job", "purge", owner.id)
    done = await owner_client.get(f"/jobs/runs/{run['id']}")
    assert "Succeeded" in done.text and "hx-get" not in done.text


async def test_run_now_of_no_such_job_is_404(owner_client, app, job_queue):
    app.state.jobs_queue = job_queue
    response = await factories.post_form(owner_client, "/jobs/nothing/run", {})
    assert response.status_code == 404


async def test_a_running_jobs_progress_is_stored_and_served_to_htmx(owner_client, settings):
    seen: dict[str, str] = {}

    async def long_job(call: JobCall) -> JobResult:
        for done in range(3):
            await progress.report(done, 3, f"Step {done + 1}")
        [running] = await runs_of("purge")
        page = await owner_client.get(f"/jobs/runs/{running['id']}", headers={"HX-Request": "1"})
        seen["fragment"] = page.text
        seen["page"] = (await owner_client.get("/jobs")).text
        return JobResult("All done")

    request = RunRequest(job="purge", label="Purge", trigger=runs.CLI)
    await runs.execute(request, long_job, settings)
    fragment = seen["fragment"]
    assert "<html" not in fragment and 'hx-trigger="every 1s"' in fragment
    assert "Step 3 — 2 of 3" in fragment and 'value="2" max="3"' in fragment
    assert "Step 3 — 2 of 3" in seen["page"]
    [run] = await runs_of("purge")
    finished = await owner_client.get(f"/jobs/runs/{run['id']}", headers={"HX-Request": "1"})
    assert "hx-get" not in finished.text and "Succeeded" in finished.text
    assert "All done" in finished.text


async def test_a_failure_streak_emails_the_owners_once(db, settings):
    owner = await factories.make_user("owner")
    await factories.make_user("owner", active=False)
    outcomes = iter(["fail", "fail", "ok", "fail"])

    async def flaky(call: JobCall) -> JobResult:
        if next(outcomes) == "fail":
            raise RuntimeError("the mail server is away")
        return JobResult("fine")

    request = RunRequest(job="outbox", label="Deliver email", trigger=runs.CLI)
    heard: list[runs.JobOutcome] = []
    runs.add_listener(heard.append)
    try:
        for _ in range(4):
            with pytest.raises(RuntimeError) if len(heard) != 2 else contextlib.nullcontext():
                await runs.execute(request, flaky, settings)
    finally:
        runs.remove_listener(heard.append)
    assert [o.status for o in heard] == ["failed", "failed", "succeeded", "failed"]
    assert all(o.job == "outbox" and o.duration_seconds >= 0 for o in heard)
    alerts = await OutboxMessage.select().where(OutboxMessage.kind == "job_failed").run()
    assert [a["to_address"] for a in alerts] == [owner.email, owner.email]  # two streaks
    assert "the mail server is away" in alerts[0]["body_text"]
    flags = [r["alerted"] for r in await runs_of("outbox")]
    assert flags == [True, False, False, True]


def test_schedules_are_settings(settings):
    changed = dataclasses.replace(
        settings, job_schedules=(("reminders", "*/30 * * * *"), ("outbox", "off"))
    )
    assert catalog.schedule_of(catalog.BY_NAME["reminders"], changed) == "*/30 * * * *"
    assert catalog.schedule_of(catalog.BY_NAME["outbox"], changed) is None
    env = {"SECRET_KEY": "s" * 40, "JOB_SCHEDULE_PURGE": "0 1 * * *", "PACKAGE_EXPIRY_HOUR": "4"}
    from_env = Settings.from_env(env)
    assert dict(from_env.job_schedules) == {"purge": "0 1 * * *"}
    assert from_env.package_expiry_hour == 4 and from_env.jobs_in_process
    with pytest.raises(ConfigurationError, match="JOB_SCHEDULE_REMINDERS is not a cron line"):
        catalog.check_schedules(dataclasses.replace(settings, job_schedules=(("reminders", "x"),)))
    with pytest.raises(ConfigurationError, match="JOB_SCHEDULE_NOPE names no job"):
        catalog.check_schedules(
            dataclasses.replace(settings, job_schedules=(("nope", "* * * * *"),))
        )
    with pytest.raises(ConfigurationError, match="PACKAGE_EXPIRY_HOUR"):
        Settings.from_env({**env, "PACKAGE_EXPIRY_HOUR": "24"})


async def test_the_progress_bar_draws_on_one_line():
    out = io.StringIO()
    bar = ProgressBar(out)
    await bar(3, 10, "Sending reminders")
    await bar(10, 10, "Sending reminders")
    bar.close()
    lines = out.getvalue().split("\r")
    assert lines[1].startswith("[" + "#" * 9 + "." * 21 + "] 3/10 Sending reminders")
    assert lines[2].startswith("[" + "#" * 30 + "] 10/10") and out.getvalue().endswith("\n")


def _env(db) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "SMTP_", "JOB"))}
    url = f"sqlite:///{db.engine.path}" if db.kind == "sqlite" else TEST_DATABASE_URL
    env.update({"DATABASE_URL": url, "SECRET_KEY": "cli-secret-" + "e" * 40})
    return env


async def test_jobs_run_and_list_on_the_command_line(db):
    env = _env(db)
    ran = subprocess.run(
        [PORTAL, "jobs", "run", "purge"], env=env, capture_output=True, text=True, timeout=120
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("Deleted 0 expired session(s)")
    [run] = await runs_of("purge")
    assert (run["status"], run["trigger"]) == (SUCCEEDED, runs.CLI)
    listed = subprocess.run(
        [PORTAL, "jobs", "list"], env=env, capture_output=True, text=True, timeout=120
    )
    assert listed.returncode == 0, listed.stderr
    purge = next(line for line in listed.stdout.splitlines() if line.startswith("purge"))
    assert "15 2 * * *" in purge and "last: succeeded" in purge
    unknown = subprocess.run(
        [PORTAL, "jobs", "run", "nope"], env=env, capture_output=True, text=True, timeout=120
    )
    assert unknown.returncode == 2 and "no job 'nope'" in unknown.stderr
    if db.kind == "sqlite":
        worker = subprocess.run(
            [PORTAL, "worker"], env=env, capture_output=True, text=True, timeout=120
        )
        assert worker.returncode == 2 and "needs PostgreSQL" in worker.stderr


async def test_the_page_says_when_no_worker_is_running(owner_client, db):
    page = await owner_client.get("/jobs")
    if db.kind == "sqlite":
        # Embedded: the server runs the jobs itself; there is no worker to miss.
        assert "No job worker is running" not in page.text
        return
    await empty_queue(db)
    await db.engine.run_ddl(
        "INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now() - interval '1 hour')"
    )
    page = await owner_client.get("/jobs")
    assert "No job worker is running" in page.text
    assert "The last one was heard from" in page.text
    await db.engine.run_ddl("INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now())")
    page = await owner_client.get("/jobs")
    assert "No job worker is running" not in page.text and "1 worker(s) running" in page.text


async def test_times_are_shown_in_the_viewers_zone(owner_client):
    """The chain's first clinic is in Los Angeles: 17:30 UTC reads 09:30 PST, on the
    list, a run's page and its htmx part."""
    await factories.make_location(slug="la", timezone="America/Los_Angeles")
    started = datetime(2026, 1, 15, 17, 30, tzinfo=UTC)
    run_id = await portal_db.insert_row(
        JobRun(job="purge", status="succeeded", started_at=started, heartbeat_at=started,
               finished_at=started + timedelta(seconds=2), duration_ms=2000, summary="Deleted 3")
    )  # fmt: skip
    pages = [
        (await owner_client.get("/jobs")).text,
        (await owner_client.get(f"/jobs/runs/{run_id}")).text,
        (await owner_client.get(f"/jobs/runs/{run_id}", headers={"HX-Request": "1"})).text,
    ]
    for page in pages:
        assert "2026-01-15 09:30 PST" in page
        # (the time, not "17:30" alone: another run of the page may be at 17:30 PST)
        assert "2026-01-15 17:30" not in page and " UTC" not in page
