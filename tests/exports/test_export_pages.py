"""The owner's export as a job (progress, audit, the notes choice, who may download) and a
client's own download, on both engines."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from portal.audit.tables import AuditLog
from portal.exports import service as exports
from portal.jobs import queue
from portal.jobs.tables import JobRun
from portal.notes.tables import NoteAccessLog
from tests import factories
from tests.exports.conftest import World, read_zip, rows
from tests.jobs.conftest import connector_for, empty_queue, work


@pytest.fixture
async def job_queue(db: Any, export_app: Any) -> AsyncIterator[Any]:
    """The job queue on the engine under test, with the app's (test-own) var directory."""
    await empty_queue(db)
    app = queue.build(export_app.state.settings, connector=connector_for(db))
    async with app.open_async():
        yield app


async def _audits(entity: str) -> list[dict[str, Any]]:
    return await AuditLog.select().where(AuditLog.entity == entity).order_by(AuditLog.id).run()


async def test_owner_export_runs_as_a_job_and_only_its_owner_downloads_it(
    export_app: Any, world: World, job_queue: Any
) -> None:
    export_app.state.jobs_queue = job_queue
    async with factories.make_client(export_app) as http:
        await factories.login(http, world.owner)
        page = await http.get("/exports/")
        assert page.status_code == 200 and 'name="notes"' in page.text
        started = await factories.post_form(http, "/exports/", {"notes": "yes"})
        assert started.status_code == 303
        run_id = int(started.headers["location"].rsplit("/", 1)[1])
        waiting = await http.get(f"/exports/{run_id}")
        assert "Waiting to start" in waiting.text and "hx-get" in waiting.text
        await work(job_queue)
        run = await JobRun.select().where(JobRun.id == run_id).first().run()
        assert run["status"] == "succeeded", run["error"]
        # Progress reached the end: every row of every file.
        assert run["done"] == run["total"] > 0
        assert "Treatment notes included." in run["summary"]
        done = await http.get(f"/exports/{run_id}", headers={"hx-request": "true"})
        assert "hx-get" not in done.text and f"/exports/{run_id}/download" in done.text
        download = await http.get(f"/exports/{run_id}/download")
        assert download.status_code == 200
        assert download.headers["content-type"] == "application/zip"
        files = read_zip(download.content)
        assert "notes.csv" in files
        assert len(rows(files["balances.csv"])) == 2
    # The request (with the notes choice) and the download are audited.
    audits = await _audits("export")
    assert [(a["action"], a["actor_id"]) for a in audits] == [
        ("request", world.owner.id), ("download", world.owner.id),
    ]  # fmt: skip
    assert '"notes": true' in audits[0]["after"]
    # The notes read for the archive are in the notes' access log.
    logged = await NoteAccessLog.select().where(NoteAccessLog.action == "export").run()
    assert [(r["actor_id"], r["client_id"]) for r in logged] == [
        (world.owner.id, world.clinic.client.id)
    ]
    # Another owner may neither follow nor download it.
    other_owner = await factories.make_user("owner")
    async with factories.make_client(export_app) as http:
        await factories.login(http, other_owner)
        assert (await http.get(f"/exports/{run_id}")).status_code == 403
        assert (await http.get(f"/exports/{run_id}/download")).status_code == 403
    # Managers do not export at all.
    async with factories.make_client(export_app) as http:
        await factories.login(http, world.clinic.manager)
        assert (await http.get("/exports/")).status_code == 403
        assert (await factories.post_form(http, "/exports/", {})).status_code == 403


async def test_without_the_choice_no_notes_and_no_access_log(
    export_app: Any, world: World, job_queue: Any
) -> None:
    run_id = await exports.start(job_queue, world.owner_user(), notes_included=False)
    await work(job_queue)
    settings = export_app.state.settings
    path, name = await exports.archive_for(settings, world.owner_user(), run_id)
    assert name.endswith(f"-{run_id}.zip")
    assert "notes.csv" not in read_zip(path.read_bytes())
    assert not await NoteAccessLog.select().where(NoteAccessLog.action == "export").run()
    assert '"notes": false' in (await _audits("export"))[0]["after"]


async def test_expired_archives_are_gone(export_app: Any, world: World, job_queue: Any) -> None:
    from datetime import timedelta

    from portal.timeutil import utcnow

    run_id = await exports.start(job_queue, world.owner_user(), notes_included=False)
    await work(job_queue)
    settings = export_app.state.settings
    await (
        JobRun.update({JobRun.finished_at: utcnow() - timedelta(hours=25)})
        .where(JobRun.id == run_id)
        .run()
    )
    async with factories.make_client(export_app) as http:
        await factories.login(http, world.owner)
        assert (await http.get(f"/exports/{run_id}/download")).status_code == 404
    later = utcnow() + timedelta(hours=exports.KEEP_HOURS + 1)
    assert exports.purge_expired(settings, now=later) == 1
    assert not exports.archive_path(settings, run_id).exists()


async def test_a_client_downloads_their_own_data_only(export_app: Any, world: World) -> None:
    async with factories.make_client(export_app) as http:
        await factories.login(http, world.clinic.client)
        account = await http.get("/account/")
        assert 'href="/account/data"' in account.text
        response = await http.get("/account/data")
        assert response.status_code == 200
        files = read_zip(response.content)
    assert [r[0] for r in rows(files["clients.csv"])[1:]] == [world.clinic.client.email]
    assert "Draft secret words" not in files["notes.csv"]
    async with factories.make_client(export_app) as http:
        await factories.login(http, world.other)
        theirs = read_zip((await http.get("/account/data")).content)
    assert world.clinic.client.email not in "".join(theirs.values())
    assert "Neck stiff" not in "".join(theirs.values())
    audits = await _audits("client_data")
    assert [a["actor_id"] for a in audits] == [world.clinic.client.id, world.other.id]
    # Reading their own notes is logged like any read of note contents; the other had none.
    logged = await NoteAccessLog.select().where(NoteAccessLog.action == "export").run()
    assert [r["client_id"] for r in logged] == [world.clinic.client.id]
