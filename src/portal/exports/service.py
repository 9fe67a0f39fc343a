"""Data exports: the owner's archive of the whole chain, and a client's own data.

The owner's archive is a requested job (``exports.jobs``): the owner asks
(``start``, audited with the notes choice), a worker writes the ZIP under
``<var>/exports/`` with progress, and only that owner downloads it
(``archive_for``, each download audited) until it expires ``KEEP_HOURS``
after it was written; each new export removes the expired ones
(``purge_expired``). Owners only:
managers see the clients tied to their locations, but an archive that left
out the others' packages and therapists would not import into a new portal
as the chain, and one that put them in would show a manager the other
clinics' clients.

A client's own archive (``client_archive``) is written at once, in memory:
their profile, intakes, purchases, credits left, appointments, and their
signed treatment notes (a draft shows only that it is being written), as the
notes' privacy rules give them; reading the notes is logged like any other
read of note contents.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from portal import records
from portal.audit import service as audit
from portal.auth.service import CLIENT, OWNER, CurrentUser
from portal.errors import Forbidden, NotFound
from portal.exports import archive
from portal.jobs import queue as job_queue
from portal.jobs import service as jobs
from portal.jobs.runs import JobCall, JobResult
from portal.jobs.tables import JobRun
from portal.notes import service as notes
from portal.settings import Settings
from portal.timeutil import utcnow

JOB = "export"
KEEP_HOURS = 24
NOTES_ACTION = notes.EXPORT  # in the notes' access log


def directory(settings: Settings) -> Path:
    return settings.var_dir / "exports"


def archive_path(settings: Settings, run_id: int) -> Path:
    return directory(settings) / f"chain-export-{run_id}.zip"


def download_name(run: dict[str, Any]) -> str:
    finished = run["finished_at"] or run["started_at"]
    return f"clinic-portal-export-{finished:%Y-%m-%d}-{run['id']}.zip"


async def _log_note_reads(actor: CurrentUser | None, client_ids: list[int], address: str) -> None:
    """One access-log row per client whose notes an archive holds, before it is written."""
    if actor is None:
        return
    for client_id in client_ids:
        await notes.record_read(actor, NOTES_ACTION, client_id, address=address)


async def _clients_with_notes(client_id: int | None = None) -> list[int]:
    from portal.notes.tables import TreatmentNote

    query = TreatmentNote.select(TreatmentNote.client).distinct()
    if client_id is not None:
        query = query.where(TreatmentNote.client == client_id)
    return sorted(int(r["client"]) for r in await query.run())


async def write_chain_archive(
    settings: Settings, path: Path, *, notes_included: bool
) -> archive.Written:
    """The whole chain's archive at ``path`` (written beside it, renamed in when complete)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.part")
    try:
        with partial.open("wb") as target:
            written = await archive.write(target, archive.Scope(notes=notes_included))
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return written


def summary(written: archive.Written, notes_included: bool) -> str:
    files = ", ".join(f"{name} {count:,}" for name, count in written.rows.items())
    notes_line = "Treatment notes included." if notes_included else "Treatment notes not included."
    return f"{written.total:,} rows in {len(written.rows)} files ({files}). {notes_line}"


async def run_export(call: JobCall) -> JobResult:
    """The job: write the archive the owner asked for, under the run's id."""
    if call.run_id is None:
        raise RuntimeError("an export runs as a recorded job")
    notes_included = bool(call.params.get("notes"))
    purge_expired(call.settings)  # each new export clears away the expired ones
    if notes_included and call.requested_by is not None:
        actor = await _owner(call.requested_by)
        address = str(call.params.get("address", ""))
        await _log_note_reads(actor, await _clients_with_notes(), address)
    written = await write_chain_archive(
        call.settings, archive_path(call.settings, call.run_id), notes_included=notes_included
    )
    return JobResult(summary(written, notes_included))


async def _owner(user_id: int) -> CurrentUser | None:
    from portal.auth.tables import User

    row = (
        await User.select(User.id, User.email, User.name, User.role)
        .where(User.id == user_id)
        .first()
        .run()
    )
    if row is None:
        return None
    return CurrentUser(
        id=int(row["id"]), email=str(row["email"]), name=str(row["name"]), role=str(row["role"]),
        location_ids=frozenset(),
    )  # fmt: skip


# -- the owner's archives ------------------------------------------------------------------


async def start(queue: Any, user: CurrentUser, *, notes_included: bool, address: str = "") -> int:
    """Queue the chain's archive for ``user`` (an owner); the run's id. Audited with the
    notes choice."""
    if user.role != OWNER:
        raise Forbidden("Only owners export the chain's data.")
    run_id = await job_queue.request_run(
        queue, JOB, user, address, params={"notes": notes_included, "address": address}
    )
    await audit.record(
        user, "request", "export", run_id, after={"notes": notes_included}, address=address
    )
    return run_id


@dataclass(frozen=True)
class ExportRun:
    """One of an owner's archives: its run (status, progress) and whether it can be downloaded."""

    run: dict[str, Any]
    expires_at: datetime | None
    available: bool


def _expires(run: dict[str, Any]) -> datetime | None:
    finished = run.get("finished_at")
    return finished + timedelta(hours=KEEP_HOURS) if finished else None


async def _present(settings: Settings, run: dict[str, Any]) -> ExportRun:
    expires_at = _expires(run)
    available = (
        run["status"] == "succeeded"
        and expires_at is not None
        and expires_at > utcnow()
        and archive_path(settings, int(run["id"])).exists()
    )
    return ExportRun(run=run, expires_at=expires_at, available=available)


async def get_export(settings: Settings, user: CurrentUser, run_id: int) -> ExportRun:
    """One archive's run, for the owner who asked for it (403 for anyone else)."""
    row = await records.first(
        JobRun.select(JobRun.requested_by).where((JobRun.id == run_id) & (JobRun.job == JOB)),
        "No such export.",
    )
    if user.role != OWNER or row["requested_by"] != user.id:
        raise Forbidden("Only the owner who asked for this export may see or download it.")
    return await _present(settings, await jobs.get_run(run_id))


async def my_exports(settings: Settings, user: CurrentUser, limit: int = 10) -> list[ExportRun]:
    rows = (
        await JobRun.select(JobRun.id)
        .where((JobRun.job == JOB) & (JobRun.requested_by == user.id))
        .order_by(JobRun.id, ascending=False)
        .limit(limit)
        .run()
    )
    return [await _present(settings, await jobs.get_run(int(r["id"]))) for r in rows]


async def archive_for(
    settings: Settings, user: CurrentUser, run_id: int, *, address: str = ""
) -> tuple[Path, str]:
    """The archive's file and download name, audited; 404 once it has expired."""
    export = await get_export(settings, user, run_id)
    if not export.available:
        raise NotFound("This export is not ready, or it has expired; ask for a new one.")
    await audit.record(
        user, "download", "export", run_id, after={"file": download_name(export.run)},
        address=address,
    )  # fmt: skip
    return archive_path(settings, run_id), download_name(export.run)


def purge_expired(settings: Settings, now: datetime | None = None) -> int:
    """Delete archives older than ``KEEP_HOURS`` (and any partial file left by a crash)."""
    folder = directory(settings)
    if not folder.exists():
        return 0
    cutoff = (now or utcnow()).timestamp() - KEEP_HOURS * 3600
    removed = 0
    for path in folder.iterdir():
        if path.is_file() and path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


# -- the command line ----------------------------------------------------------------------


async def export_to(settings: Settings, path: Path, *, notes_included: bool) -> archive.Written:
    """``portal export --out FILE``: the chain's archive written here, audited as the system."""
    await audit.record(
        None, "export", "export", path.name, after={"notes": notes_included, "via": "cli"}
    )
    return await write_chain_archive(settings, path, notes_included=notes_included)


# -- a client's own data --------------------------------------------------------------------


async def client_archive(user: CurrentUser, *, address: str = "") -> bytes:
    """The signed-in client's own data as a ZIP of CSV files (only theirs)."""
    if user.role != CLIENT:
        raise Forbidden("This download is a client's own data.")
    await audit.record(user, "download", "client_data", user.id, address=address)
    if await _clients_with_notes(user.id):
        await notes.record_read(user, NOTES_ACTION, user.id, address=address)
    target = io.BytesIO()
    await archive.write(target, archive.Scope(client_id=user.id, notes=True, own=True))
    return target.getvalue()
