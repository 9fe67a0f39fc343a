"""Importing a file of clients or remaining balances into one location.

A run reads the file (``imports.reading``) in chunks of :data:`CHUNK_ROWS` rows;
each chunk is prepared (mapped, fingerprinted, parsed) while the previous one is
written, then looked up in one query per key, written in one transaction with
the record of what became of each row (``import_row``), and reported to
``portal.progress``. A dry run does the same lookups and writes nothing.

* Idempotent: every row has a fingerprint (its mapped values, kind and
  location); a row whose fingerprint an earlier batch imported (and did not
  undo) is *matched*, nothing new. The same file run again resumes its
  unfinished batch at the first line it has no record of.
* Clients match an existing client by email, then phone, then name + date of
  birth (:data:`MERGE_RULE`); a second row of the file for the same person is
  matched to the first.
* Balances become open session credits through ``portal.sales`` and, when the
  batch ends, one journal entry per location and currency against the
  opening-balance account.
* Undo (:func:`undo`) takes a whole batch back while none of its clients or
  credits has been used; audited.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import secrets
from collections import Counter
from collections.abc import AsyncGenerator
from contextlib import aclosing, nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from piccolo.engine.postgres import PostgresEngine
from piccolo.table import Table

from portal import access, db, progress, records
from portal.audit import service as audit
from portal.auth.service import CLIENT, CurrentUser, is_valid_email, normalize_email
from portal.auth.tables import User
from portal.catalog.tables import Package, Service
from portal.clients.phones import phone_digits
from portal.clients.tables import ClientProfile
from portal.errors import Conflict, Invalid, NotFound
from portal.imports.layouts import LAYOUTS, Layout, unescaped
from portal.imports.reading import FileProblem, Sheet, open_sheet
from portal.imports.tables import ImportBatch, ImportMapping, ImportRow
from portal.imports.values import (
    BadValue,
    country_of_zone,
    date_order,
    normalise_phone,
    parse_cents,
    parse_count,
    parse_date,
    parse_datetime,
    parse_yes_no,
)
from portal.locations.tables import Location
from portal.rooms.tables import Room
from portal.sales import service as sales
from portal.staff.tables import Therapist, TherapistLocation
from portal.timeutil import utcnow

if TYPE_CHECKING:
    from portal.bookings.availability import BookingContext

# Rows read, looked up and written together (IMPORT_CHUNK_ROWS overrides, for tests).
CHUNK_ROWS = int(os.environ.get("IMPORT_CHUNK_ROWS", "500"))
# While a chunk is written, the next one is prepared in steps of this many rows.
YIELD_EVERY_ROWS = 8
# A large file's lookups stay on their indexes: statistics refreshed after the first
# chunk, when the rows done reach this many, then each time they double (the tables grow
# by a like share each time, and an ANALYZE of large tables costs more than the lookups
# it keeps planned).
ANALYZE_FIRST_ROWS = 20_000
# A running batch writes its progress after every chunk; one silent this long has
# stopped (its process was killed) and may be resumed or undone.
STALLED_AFTER = timedelta(minutes=5)
QUEUED = "queued"  # confirmed in the wizard, waiting for the job worker
RUNNING = "running"
COMPLETE = "complete"
INCOMPLETE = "incomplete"
UNDONE = "undone"
CREATED = "created"
MATCHED = "matched"
REJECTED = "rejected"
KINDS = ("clients", "balances", "therapists", "appointments")
ENTITY = {
    "clients": "client",
    "balances": "sale",
    "therapists": "therapist",
    "appointments": "appointment",
}

MERGE_RULE = (
    "A row matches an existing client by email, then by phone, then by name and date of "
    "birth; a matched client keeps what the portal already holds and nothing is created. "
    "A later row of the same file for the same client is matched to the first."
)


@dataclass
class RowResult:
    line: int
    outcome: str
    reason: str = ""
    entity_id: int | None = None
    data: dict[str, str] = field(default_factory=dict)


@dataclass
class Prepared:
    """A row read ahead of its chunk's lookups: its values, fingerprint and, for the
    importers that parse without the database, what they read (else why they could not)."""

    line: int
    values: dict[str, str]
    fp: str
    at: datetime  # the chunk's time
    parsed: Any = None
    problem: str = ""


@dataclass
class Summary:
    kind: str
    batch_id: int | None
    dry_run: bool
    total: int = 0
    created: int = 0
    matched: int = 0
    rejected: int = 0
    date_order: str = ""
    status: str = ""
    failures: list[RowResult] = field(default_factory=list)
    merge_rule: str = MERGE_RULE
    columns: list[str] = field(default_factory=list)  # the mapped layout columns

    def count(self, result: RowResult) -> None:
        self.total += 1
        setattr(self, result.outcome, getattr(self, result.outcome) + 1)
        if result.outcome == REJECTED:
            self.failures.append(result)


def layout_of(kind: str) -> Layout:
    if kind not in KINDS:
        raise Invalid({"kind": f"Files of {kind!r} cannot be imported yet."})
    return LAYOUTS[kind]


def check_mapping(layout: Layout, mapping: dict[str, str], headers: list[str]) -> None:
    """Every required column mapped to a header the file has."""
    errors = {}
    for column in layout.columns:
        header = mapping.get(column.name, "")
        if header and header not in headers:
            errors[column.name] = f"The file has no column {header!r}."
        elif column.required and not header:
            errors[column.name] = "Choose the file's column for this."
    if errors:
        raise Invalid(errors)


def mapped(record: dict[str, str], mapping: dict[str, str]) -> dict[str, str]:
    """A row's values by layout column: trimmed, and without the apostrophe an export puts
    before text that looks like a formula (``layouts.unescaped``)."""
    return {
        column: unescaped((record.get(header) or "").strip()) for column, header in mapping.items()
    }


# json.dumps(..., ensure_ascii=False) builds this encoder on every call; the same text.
_FINGERPRINT_TEXT = json.JSONEncoder(ensure_ascii=False).encode


def fingerprint(kind: str, location_id: int, values: dict[str, str]) -> str:
    text = _FINGERPRINT_TEXT([kind, location_id, sorted(values.items())])
    return hashlib.sha256(text.encode()).hexdigest()


def file_hash(path: Any, kind: str, location_id: int, mapping: dict[str, str]) -> str:
    digest = hashlib.sha256(json.dumps([kind, location_id, sorted(mapping.items())]).encode())
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def sniff_date_order(sheet: Sheet, mapping: dict[str, str], kind: str) -> str | None:
    """The day/month order of the file's date columns (``values.date_order``)."""
    columns = [mapping[c] for c in ("date_of_birth", "purchased_on", "expires_on") if c in mapping]
    return date_order(
        record[header] for _, record in islice(sheet.records(), 20000) for header in columns
    )


# -- saved mappings ---------------------------------------------------------------


async def save_mapping(actor: CurrentUser, kind: str, name: str, mapping: dict[str, str]) -> int:
    name = name.strip()
    if not name:
        raise Invalid({"mapping_name": "Name the mapping."})
    async with db.transaction():
        await (
            ImportMapping.delete()
            .where((ImportMapping.kind == kind) & (ImportMapping.name == name))
            .run()
        )
        return await db.insert_row(
            ImportMapping(
                name=name[:80], kind=kind, mapping=json.dumps(mapping),
                created_by=actor.id, created_at=utcnow(),
            )
        )  # fmt: skip


async def saved_mapping(kind: str, name: str) -> dict[str, str]:
    row = await records.first(
        ImportMapping.select(ImportMapping.mapping).where(
            (ImportMapping.kind == kind) & (ImportMapping.name == name)
        ),
        f"No saved mapping {name!r} for {kind}.",
    )
    return dict(json.loads(row["mapping"]))


# -- a run --------------------------------------------------------------------------


async def run_import(
    kind: str,
    sheet: Sheet,
    *,
    location_id: int,
    mapping: dict[str, str],
    actor: CurrentUser | None,
    order: str | None = None,
    dry_run: bool = False,
    filename: str = "",
    batch_id: int | None = None,
) -> Summary:
    """Import (or, ``dry_run``, classify) every row of ``sheet``; ``batch_id``: run that
    queued or resumed batch, after the last line it recorded. Raises ``Invalid`` for a
    mapping that misses a required column and ``values.AmbiguousDates`` when the dates
    read both ways and ``order`` does not say which."""
    layout = layout_of(kind)
    check_mapping(layout, mapping, sheet.headers)
    location = await records.get(Location, location_id, "No such location.")
    order = order or sniff_date_order(sheet, mapping, kind) or "dmy"
    importer = _IMPORTERS[kind](location, order, dry_run)
    importer.actor = actor
    summary = Summary(
        kind=kind, batch_id=None, dry_run=dry_run, date_order=order,
        columns=[c for c in layout.headers if c in mapping],
    )  # fmt: skip
    total = sum(1 for _ in sheet.rows())
    done_lines = set[int]()
    if not dry_run:
        batch_id, done_lines, importer.resumed = await _open_batch(
            kind, location_id, sheet, mapping, order, actor, filename, total, batch_id
        )
        summary.batch_id = batch_id
    try:
        await _run_chunks(importer, summary, sheet, mapping, batch_id, done_lines, total, layout)
    except BaseException:
        if batch_id is not None:
            await mark_incomplete(batch_id)
        raise
    if batch_id is not None:
        await importer.finish(batch_id)
        summary = await _close_batch(batch_id, summary, actor)
    return summary


async def _run_chunks(
    importer: _Importer,
    summary: Summary,
    sheet: Sheet,
    mapping: dict[str, str],
    batch_id: int | None,
    done_lines: set[int],
    total: int,
    layout: Layout,
) -> None:
    """The file chunk by chunk. Each chunk is read and prepared (mapped, fingerprinted,
    parsed: no database) while the previous one is looked up and written, so this
    process's work and the database's overlap; the chunks are written one after the
    other, in the file's order."""
    step = f"Importing {layout.title.lower()}"
    await progress.report(0, total, step)
    await importer.setup()
    done = 0
    writing: asyncio.Task[None] | None = None
    try:
        async with aclosing(_prepared_chunks(importer, sheet, mapping, done_lines)) as chunks:
            async for size, todo in chunks:
                if writing is not None:
                    await writing
                done += size
                writing = asyncio.create_task(
                    _write_chunk(importer, summary, todo, batch_id, done, size, total, step)
                )
        if writing is not None:
            await writing
    except Exception:
        await _settle(writing, cancel=False)  # the chunk being written is kept
        raise
    except BaseException:
        await _settle(writing, cancel=True)
        raise


async def _settle(task: asyncio.Task[None] | None, *, cancel: bool) -> None:
    """Let the chunk being written finish (or, ``cancel``, roll back) before the error
    that stopped the run goes on; an error of its own is the lesser one."""
    if task is None:
        return
    if cancel:
        task.cancel()
    await asyncio.wait([task])
    if not task.cancelled():
        task.exception()  # retrieved, so not reported again as never retrieved


async def _prepared_chunks(
    importer: _Importer, sheet: Sheet, mapping: dict[str, str], done_lines: set[int]
) -> AsyncGenerator[tuple[int, list[Prepared]], None]:
    """The file's chunks: how many lines each holds, and its rows not yet recorded,
    prepared. Gives way to the chunk being written every few rows (its next query is
    sent as soon as the last one answers)."""
    size, todo, at = 0, list[Prepared](), utcnow()
    for line, record in sheet.records():
        size += 1
        if line not in done_lines:
            todo.append(importer.prepare(line, mapped(record, mapping), at))
        if size == CHUNK_ROWS:
            yield size, todo
            size, todo, at = 0, [], utcnow()
        elif size % YIELD_EVERY_ROWS == 0:
            await asyncio.sleep(0)
    if size:
        yield size, todo


def _analyze_at(done: int, size: int) -> bool:
    """Whether the chunk that brought the rows done to ``done`` is the first (the plans
    the lookups keep are made after it, on statistics of tables that are not empty) or
    crossed :data:`ANALYZE_FIRST_ROWS` or one of its doublings."""
    if done == size:
        return True
    mark = ANALYZE_FIRST_ROWS
    while mark <= done:
        if mark > done - size:
            return True
        mark *= 2
    return False


async def _write_chunk(
    importer: _Importer,
    summary: Summary,
    todo: list[Prepared],
    batch_id: int | None,
    done: int,
    size: int,
    total: int,
    step: str,
) -> None:
    if batch_id is not None and _analyze_at(done, size):
        await db.analyze(*importer.looked_up)
    # Clients and balances: a chunk's lookups and writes on one connection, in one
    # transaction (appointments book each row in its own, through the bookings rules).
    whole = batch_id is not None and importer.chunk_in_one_transaction
    async with db.transaction() if whole else nullcontext():
        for result in await importer.chunk(todo, batch_id):
            summary.count(result)
        if batch_id is not None:
            await (
                ImportBatch.update({ImportBatch.rows_done: done, ImportBatch.progress_at: utcnow()})
                .where(ImportBatch.id == batch_id)
                .run()
            )
    await progress.report(done, total, step)


async def _open_batch(
    kind: str,
    location_id: int,
    sheet: Sheet,
    mapping: dict[str, str],
    order: str,
    actor: CurrentUser | None,
    filename: str,
    total: int,
    batch_id: int | None,
) -> tuple[int, set[int], bool]:
    """The batch ``batch_id`` (queued or resumed), else the unfinished one of the same file,
    else a new one; with the lines it has already recorded (the run goes on after them)
    and whether an earlier run of it had started."""
    if batch_id is None:
        await mark_stalled()
        digest = file_hash(sheet.path, kind, location_id, mapping)
        earlier = (
            await ImportBatch.select(ImportBatch.id)
            .where(
                (ImportBatch.file_hash == digest)
                & ImportBatch.status.is_in([QUEUED, RUNNING, INCOMPLETE])
            )
            .order_by(ImportBatch.id, ascending=False)
            .first()
            .run()
        )
        batch_id = None if earlier is None else int(earlier["id"])
    if batch_id is not None:
        # A queued batch has no progress time until its first run starts.
        ran = await (
            ImportBatch.exists()
            .where((ImportBatch.id == batch_id) & ImportBatch.progress_at.is_not_null())
            .run()
        )
        await (
            ImportBatch.update({ImportBatch.status: RUNNING, ImportBatch.progress_at: utcnow()})
            .where(ImportBatch.id == batch_id)
            .run()
        )
        lines = await ImportRow.select(ImportRow.line).where(ImportRow.batch == batch_id).run()
        return batch_id, {int(r["line"]) for r in lines}, ran
    async with db.transaction():
        batch_id = await db.insert_row(
            ImportBatch(
                kind=kind, location=location_id, filename=(filename or sheet.path.name)[:255],
                file_hash=digest, mapping=json.dumps(mapping), date_order=order,
                status=RUNNING, rows_total=total, created_by=actor.id if actor else None,
                created_at=utcnow(), progress_at=utcnow(),
            )
        )  # fmt: skip
        await audit.record(actor, "import.start", "import_batch", batch_id, after={"kind": kind})
    return batch_id, set(), False


async def _close_batch(batch_id: int, summary: Summary, actor: CurrentUser | None) -> Summary:
    counts = await ImportRow.raw(
        "SELECT outcome, COUNT(*) AS n FROM import_row WHERE batch = {} GROUP BY outcome",
        batch_id,
    ).run()
    figures = {str(r["outcome"]): int(r["n"]) for r in counts}
    async with db.transaction():
        await (
            ImportBatch.update(
                {
                    ImportBatch.status: COMPLETE,
                    ImportBatch.finished_at: utcnow(),
                    ImportBatch.counts: json.dumps(figures),
                }
            )
            .where(ImportBatch.id == batch_id)
            .run()
        )
        await audit.record(actor, "import.complete", "import_batch", batch_id, after=figures)
    summary.created = figures.get(CREATED, 0)
    summary.matched = figures.get(MATCHED, 0)
    summary.rejected = figures.get(REJECTED, 0)
    summary.total = sum(figures.values())
    summary.status = COMPLETE
    summary.failures = [
        RowResult(
            line=int(r["line"]), outcome=REJECTED, reason=r["reason"], data=json.loads(r["data"])
        )
        for r in await rejected_rows(batch_id)
    ]
    return summary


async def mark_incomplete(batch_id: int) -> None:
    """A run that stopped part-way (its process died, an error): resumable, undoable."""
    await (
        ImportBatch.update({ImportBatch.status: INCOMPLETE})
        .where((ImportBatch.id == batch_id) & (ImportBatch.status == RUNNING))
        .run()
    )


def stalled(batch: dict[str, Any]) -> bool:
    """Whether a batch is running without having written progress for :data:`STALLED_AFTER`."""
    last = batch["progress_at"] or batch["created_at"]
    return batch["status"] == RUNNING and last < utcnow() - STALLED_AFTER


async def mark_stalled() -> None:
    """Running batches that have written no progress for :data:`STALLED_AFTER` (their
    process was killed: nothing else marked them) are incomplete."""
    cutoff = utcnow() - STALLED_AFTER
    await (
        ImportBatch.update({ImportBatch.status: INCOMPLETE})
        .where(
            (ImportBatch.status == RUNNING)
            & (
                (ImportBatch.progress_at < cutoff)
                | (ImportBatch.progress_at.is_null() & (ImportBatch.created_at < cutoff))
            )
        )
        .run()
    )


async def _already_imported(fingerprints: list[str]) -> dict[str, int | None]:
    """Fingerprint → record of rows a batch not undone created or matched."""
    if not fingerprints:
        return {}
    rows = await _kept_rows("fingerprint", fingerprints, f"r.outcome IN ('{CREATED}', '{MATCHED}')")
    return {str(r["key"]): r["entity_id"] for r in rows}


async def _kept_rows(column: str, values: list[str], condition: str) -> list[dict[str, Any]]:
    """(key, entity_id) of the import rows of batches not undone whose ``column`` is one
    of ``values`` and that meet ``condition`` (SQL on ``r``, the import row)."""
    match, arg = db.one_of(f"r.{column}", values)
    return await ImportRow.raw(
        f'SELECT r.{column} AS "key", r.entity_id AS entity_id FROM import_row r '
        f"JOIN import_batch b ON b.id = r.batch WHERE {match} AND {condition} "
        f"AND b.status <> '{UNDONE}'",
        arg,
    ).run()


async def _record(
    batch_id: int | None,
    kind: str,
    location_id: int,
    rows: list[tuple[str, RowResult]],
    extra: dict[int, dict[str, Any]] | None = None,
) -> None:
    if batch_id is None or not rows:
        return
    extra = extra or {}
    blank = {"external_id": "", "marketing_consent": "", "staff_notes": ""}  # on the profile
    await db.insert_rows(
        ImportRow,
        [
            {
                "batch": batch_id, "line": r.line, "fingerprint": fp, "outcome": r.outcome,
                "reason": r.reason, "entity": ENTITY[kind], "entity_id": r.entity_id,
                # The row itself only for the rejected rows' report.
                "data": json.dumps(r.data, ensure_ascii=False) if r.outcome == REJECTED else "{}",
                **blank, **extra.get(r.line, {}),
            }
            for fp, r in rows
        ],
    )  # fmt: skip


class _Importer:
    kind = ""
    actor: CurrentUser | None = None
    resumed = False  # the run goes on after the lines an earlier run of its batch recorded
    chunk_in_one_transaction = False
    # The tables a chunk's lookups read, whose statistics a large file makes stale.
    looked_up: tuple[type[Table], ...] = (ImportRow,)

    def __init__(self, location: dict[str, Any], order: str, dry_run: bool) -> None:
        self.location = location
        self.location_id = int(location["id"])
        self.order = order
        self.dry_run = dry_run
        self.country = country_of_zone(str(location["timezone"]), "GB")

    async def setup(self) -> None:
        """What :meth:`prepare` needs from the database, read once before the first row."""
        return None

    def prepare(self, line: int, values: dict[str, str], at: datetime) -> Prepared:
        """The row's fingerprint (and the importer's reading of it): no database."""
        return Prepared(line, values, fingerprint(self.kind, self.location_id, values), at)

    async def chunk(self, rows: list[Prepared], batch_id: int | None) -> list[RowResult]:
        raise NotImplementedError

    async def finish(self, batch_id: int) -> None:
        return None


# -- clients ------------------------------------------------------------------------


@dataclass
class ClientRow:
    email: str
    name: str
    phone: str
    date_of_birth: Any
    address: str
    emergency_contact_name: str
    emergency_contact_phone: str
    marketing_consent: bool
    staff_notes: str
    external_id: str
    placeholder_email: bool


class _Clients(_Importer):
    kind = "clients"
    chunk_in_one_transaction = True
    looked_up = (ImportRow, User, ClientProfile)

    def __init__(self, location: dict[str, Any], order: str, dry_run: bool) -> None:
        super().__init__(location, order, dry_run)
        # Keys of the rows seen so far → the line that has them (as the keys' hashes).
        # A dry run keeps the whole file's (it writes nothing the next chunk could
        # find); a run only its chunk's: the clients of earlier chunks are in the
        # database by then, so memory stays flat however long the file.
        self.seen: dict[int, int] = {}

    def parse(self, values: dict[str, str], fp: str) -> ClientRow:
        email = normalize_email(values.get("email", ""))
        if email and not is_valid_email(email):
            raise BadValue(f"{values.get('email')!r} is not an email address")
        first, last = values.get("first_name", ""), values.get("last_name", "")
        if not (first or last):
            raise BadValue("the client has no name")
        return ClientRow(
            email=email or f"imported-{fp[:20]}@clients.invalid",
            name=f"{first} {last}".strip()[:120],
            phone=normalise_phone(values.get("phone", ""), self.country),
            date_of_birth=parse_date(values.get("date_of_birth", ""), self.order),
            address=values.get("address", ""),
            emergency_contact_name=values.get("emergency_contact_name", "")[:120],
            emergency_contact_phone=normalise_phone(
                values.get("emergency_contact_phone", ""), self.country
            ),
            marketing_consent=parse_yes_no(values.get("marketing_consent", ""), "Consent"),
            staff_notes=values.get("staff_notes", ""),
            external_id=values.get("external_id", "")[:120],
            placeholder_email=not email,
        )

    def prepare(self, line: int, values: dict[str, str], at: datetime) -> Prepared:
        row = super().prepare(line, values, at)
        try:
            row.parsed = self.parse(values, row.fp)
        except BadValue as exc:
            row.problem = str(exc)
        return row

    @staticmethod
    def keys(row: ClientRow) -> list[str]:
        keys = [] if row.placeholder_email else [f"email:{row.email}"]
        if row.phone:
            keys.append(f"phone:{row.phone}")
        if row.date_of_birth:
            keys.append(f"name:{row.name.lower()}|{row.date_of_birth.isoformat()}")
        return keys

    async def existing(self, parsed: list[ClientRow]) -> dict[str, int]:
        """Key → client id of the portal's clients matching any row of the chunk (one query
        per key, each value list passed as one parameter)."""
        found: dict[str, int] = {}
        emails = [r.email for r in parsed if not r.placeholder_email]
        if emails:
            match, arg = db.one_of("email", emails)
            for r in await User.raw(f"SELECT id, email FROM app_user WHERE {match}", arg).run():
                found[f"email:{r['email']}"] = int(r["id"])
        phones = [r.phone for r in parsed if r.phone]
        if phones:
            match, arg = db.one_of("phone", phones)
            sql = f'SELECT "user" AS "user", phone FROM client_profile WHERE {match}'
            for r in await ClientProfile.raw(sql, arg).run():
                found.setdefault(f"phone:{r['phone']}", int(r["user"]))
        for r in await _same_name_and_birth({(r.name, r.date_of_birth) for r in parsed}):
            born = r["date_of_birth"]
            born = born.isoformat() if isinstance(born, date) else str(born)
            found.setdefault(f"name:{str(r['name']).lower()}|{born}", int(r["user"]))
        return found

    async def chunk(self, rows: list[Prepared], batch_id: int | None) -> list[RowResult]:
        await db.plan_with_values()  # the lookups; the writes after them are planned as ever
        before = await _already_imported([p.fp for p in rows])
        parsed: list[tuple[str, RowResult, ClientRow | None]] = []
        for p in rows:
            result = RowResult(line=p.line, outcome=MATCHED, data=p.values)
            row = None
            if p.fp in before:
                result.entity_id = before[p.fp]
                result.reason = "imported before"
            elif p.parsed is None:
                result.outcome, result.reason = REJECTED, p.problem
            else:
                row = p.parsed
            parsed.append((p.fp, result, row))
        found = await self.existing([row for _, _, row in parsed if row is not None])
        if batch_id is not None:
            self.seen = {}
        lines = await _lines_created(batch_id, set(found.values()))
        await db.plan_with_values(False)
        new: list[tuple[str, RowResult, ClientRow]] = []
        for _fp, result, row in parsed:
            if row is None:
                continue
            keys = self.keys(row)
            match = next(((k, found[k]) for k in keys if k in found), None)
            first = next((self.seen[hash(k)] for k in keys if hash(k) in self.seen), None)
            if match is not None:
                result.entity_id = match[1]
                result.reason = (
                    f"same client as line {lines[match[1]]}"
                    if match[1] in lines
                    else f"existing client (same {match[0].split(':')[0]})"
                )
            elif first is not None:
                result.reason = f"same client as line {first}"
            else:
                result.outcome = CREATED
                new.append((_fp, result, row))
            for key in keys:
                self.seen.setdefault(hash(key), result.line)
        if not self.dry_run and batch_id is not None:
            async with db.transaction():
                await self.create(new)
                await _record(
                    batch_id,
                    self.kind,
                    self.location_id,
                    [(fp, r) for fp, r, _ in parsed],
                    {r.line: {"external_id": row.external_id} for _, r, row in parsed if row},
                )
        return [r for _, r, _ in parsed]

    async def create(self, new: list[tuple[str, RowResult, ClientRow]]) -> None:
        if not new:
            return
        now = utcnow()
        ids = await db.insert_rows(
            User,
            [
                {
                    "email": row.email, "name": row.name, "role": CLIENT, "password_hash": "",
                    "active": True, "created_at": now, "password_changed_at": now,
                }
                for _, _, row in new
            ],
            returning=True,
        )  # fmt: skip
        for (_, result, _), user_id in zip(new, ids, strict=True):
            result.entity_id = user_id
        await db.insert_rows(
            ClientProfile,
            [
                {
                    "user": result.entity_id, "phone": row.phone,
                    "phone_national": phone_digits(row.phone),
                    "date_of_birth": row.date_of_birth, "address": row.address,
                    "emergency_contact_name": row.emergency_contact_name,
                    "emergency_contact_phone": row.emergency_contact_phone,
                    "email_reminders": not row.placeholder_email,
                    "marketing_consent": row.marketing_consent, "staff_notes": row.staff_notes,
                    "preferred_location": self.location_id, "terms_accepted_at": None,
                    "created_at": now, "updated_at": now,
                }
                for _, result, row in new
            ],
        )  # fmt: skip


async def _same_name_and_birth(people: set[tuple[str, Any]]) -> list[dict[str, Any]]:
    """The clients (user, name, date_of_birth) who may have one of these names and dates
    of birth; the caller compares the names as Python lowers them. PostgreSQL: the pairs
    themselves, joined in one query (a birth date alone would read back every client
    born that day); SQLite: every client born on one of the dates (its ``lower`` knows
    only ASCII)."""
    people = {(name, born) for name, born in people if born}
    if not people:
        return []
    columns = 'SELECT p."user" AS "user", u.name AS name, p.date_of_birth AS date_of_birth '
    joined = 'FROM client_profile p JOIN app_user u ON u.id = p."user" '
    if isinstance(db.current_engine(), PostgresEngine):
        names, births = zip(*sorted(people), strict=True)
        # Each pair looked up on its own (OFFSET 0 keeps the subquery apart): by the
        # birth-date index, never by hashing every profile for a chunk's pairs.
        sql = (
            'SELECT c."user" AS "user", c.name AS name, c.date_of_birth AS date_of_birth '
            "FROM unnest({}::text[], {}::date[]) AS k(name, born) CROSS JOIN LATERAL ("
            + columns
            + joined
            + "WHERE p.date_of_birth = k.born "
            "AND (lower(u.name) = lower(k.name) OR upper(u.name) = upper(k.name)) OFFSET 0"
            ") AS c"
        )
        return await ClientProfile.raw(sql, list(names), list(births)).run()
    match, arg = db.one_of("p.date_of_birth", sorted({born for _, born in people}), "date")
    return await ClientProfile.raw(columns + joined + f"WHERE {match}", arg).run()


async def _lines_created(batch_id: int | None, entity_ids: set[int]) -> dict[int, int]:
    """Record → the line of this batch's file that created it, among ``entity_ids``."""
    if batch_id is None or not entity_ids:
        return {}
    match, arg = db.one_of("entity_id", sorted(entity_ids), "int")
    rows = await ImportRow.raw(
        f"SELECT entity_id, line FROM import_row WHERE batch = {{}} AND outcome = '{CREATED}' "
        f"AND {match}",
        batch_id, arg,
    ).run()  # fmt: skip
    return {int(r["entity_id"]): int(r["line"]) for r in rows}


# -- balances -----------------------------------------------------------------------


class _Balances(_Importer):
    kind = "balances"
    chunk_in_one_transaction = True
    looked_up = (ImportRow, User)

    def __init__(self, location: dict[str, Any], order: str, dry_run: bool) -> None:
        super().__init__(location, order, dry_run)
        self.locations: dict[str, dict[str, Any]] = {}
        self.packages: dict[str, dict[str, Any]] | None = None
        self.services: dict[str, dict[str, Any]] = {}

    async def setup(self) -> None:
        await self.catalog()

    async def catalog(self) -> None:
        if self.packages is not None:
            return
        rows = await Package.select(
            Package.id, Package.name, Package.service, Package.service.name.as_alias("service_name")
        ).run()
        self.packages = {str(r["name"]).strip().lower(): r for r in rows}
        services = await Service.select(Service.id, Service.name).run()
        self.services = {str(r["name"]).strip().lower(): r for r in services}
        for loc in await Location.select(
            Location.id, Location.slug, Location.currency, Location.timezone
        ).run():
            self.locations[str(loc["slug"])] = loc

    def prepare(self, line: int, values: dict[str, str], at: datetime) -> Prepared:
        row = super().prepare(line, values, at)
        try:
            row.parsed = self.parse(values, row.fp, at)
        except BadValue as exc:
            row.problem = str(exc)
        return row

    def parse(self, values: dict[str, str], fp: str, at: datetime) -> sales.ImportedBalance:
        """The balance a row gives, but for its client (``chunk`` looks the clients up)."""
        assert self.packages is not None
        slug = values.get("location", "")
        location = self.locations.get(slug) if slug else self.location
        if location is None:
            raise BadValue(f"no location {slug!r}")
        name = values.get("package", "")
        package = self.packages.get(name.lower())
        service = self.services.get(name.lower())
        if package is None and service is None:
            raise BadValue(f"{name!r} is neither a package nor a service of the catalog")
        left = parse_count(values.get("sessions_left", ""), "Sessions left")
        if left <= 0:
            raise BadValue("no sessions left")
        total = parse_count(values.get("sessions_total") or str(left), "Total sessions")
        value = parse_cents(values.get("value_left", ""))
        paid = parse_cents(values.get("price_paid", ""))
        if value is None:
            if paid is None:
                raise BadValue("neither the value left nor the price paid is given")
            value = paid * left // max(total, left)
        currency = (values.get("currency") or str(location["currency"])).upper()
        if currency != str(location["currency"]).upper():
            raise BadValue(f"the currency {currency} is not the location's {location['currency']}")
        zone = ZoneInfo(str(location["timezone"]))
        purchased = parse_date(values.get("purchased_on", ""), self.order)
        expires = parse_date(values.get("expires_on", ""), self.order)
        valid_until = (
            datetime.combine(expires, time(23, 59), zone).astimezone(UTC) if expires else None
        )
        if valid_until is not None and valid_until <= at:
            raise BadValue(f"expired on {expires.isoformat() if expires else ''}")
        return sales.ImportedBalance(
            client_id=0,
            location_id=int(location["id"]),
            currency=currency,
            item_name=name,
            package_id=int(package["id"]) if package else 0,
            service_id=int(package["service"]) if package else int(service["id"]),  # type: ignore[index]
            service_name=str(package["service_name"]) if package else str(service["name"]),  # type: ignore[index]
            session_values=sales.split_value(value, left),
            sessions_total=max(total, left),
            price_paid=paid,
            purchased_at=datetime.combine(purchased, time(12), zone).astimezone(UTC)
            if purchased
            else at,
            valid_until=valid_until,
            request_key=fp,
        )

    async def chunk(self, rows: list[Prepared], batch_id: int | None) -> list[RowResult]:
        if not rows:
            return []
        await self.catalog()
        at = rows[0].at
        await db.plan_with_values()  # the lookups; the writes after them are planned as ever
        before = await _already_imported([p.fp for p in rows])
        clients = await _clients_by([p.values for p in rows])
        await db.plan_with_values(False)
        results: list[tuple[str, RowResult]] = []
        new: list[tuple[RowResult, sales.ImportedBalance]] = []
        seen: set[str] = set()
        for p in rows:
            fp = p.fp
            result = RowResult(line=p.line, outcome=MATCHED, data=p.values)
            if fp in before:
                result.entity_id, result.reason = before[fp], "imported before"
            elif fp in seen:
                result.reason = "the same balance appears earlier in the file"
            else:
                try:
                    client_id = _client_of(p.values, clients)
                    if p.parsed is None:
                        raise BadValue(p.problem)
                    new.append((result, replace(p.parsed, client_id=client_id)))
                    result.outcome = CREATED
                except BadValue as exc:
                    result.outcome, result.reason = REJECTED, str(exc)
            seen.add(fp)
            results.append((fp, result))
        if not self.dry_run and batch_id is not None:
            async with db.transaction():
                ids = await sales.open_imported([b for _, b in new], at)
                for (result, _), sale_id in zip(new, ids, strict=True):
                    result.entity_id = sale_id
                await _record(batch_id, self.kind, self.location_id, results)
        return [r for _, r in results]

    async def finish(self, batch_id: int) -> None:
        await journal_batch(batch_id)


async def journal_batch(batch_id: int) -> None:
    """One journal entry per location and currency for a batch's balances (keyed by
    the batch: written once, however often the batch is finished)."""
    rows = await ImportRow.raw(
        "SELECT s.location AS location, s.currency AS currency, SUM(c.value_cents) AS cents "
        "FROM import_row r JOIN sale s ON s.id = r.entity_id "
        "JOIN sale_session c ON c.sale = s.id "
        "WHERE r.batch = {} AND r.outcome = 'created' GROUP BY 1, 2",
        batch_id,
    ).run()
    async with db.transaction():
        for row in rows:
            await sales.journal_opening_balance(
                f"import:{batch_id}:{row['location']}:{row['currency']}",
                location_id=int(row["location"]), currency=str(row["currency"]),
                cents=int(row["cents"]), memo=f"Balances imported (batch {batch_id})",
                at=utcnow(),
            )  # fmt: skip


# -- therapists -----------------------------------------------------------------------


class _Therapists(_Importer):
    """Therapists by email: an existing one (same email) is matched; a new one works at
    the locations the row names (slugs separated by |), else at the batch's."""

    kind = "therapists"

    async def chunk(self, prepared: list[Prepared], batch_id: int | None) -> list[RowResult]:
        rows, fps = [(p.line, p.values) for p in prepared], [p.fp for p in prepared]
        before = await _already_imported(fps)
        slugs = {
            str(r["slug"]): int(r["id"])
            for r in await Location.select(Location.id, Location.slug).run()
        }
        existing = await _therapists_by_email()
        results: list[tuple[str, RowResult]] = []
        async with db.transaction():
            for (line, values), fp in zip(rows, fps, strict=True):
                result = RowResult(line=line, outcome=MATCHED, data=values)
                results.append((fp, result))
                email = normalize_email(values.get("email", ""))
                wanted = [s.strip() for s in values.get("locations", "").split("|") if s.strip()]
                unknown = [s for s in wanted if s not in slugs]
                if fp in before:
                    result.entity_id, result.reason = before[fp], "imported before"
                elif not is_valid_email(email):
                    result.outcome = REJECTED
                    result.reason = f"{values.get('email')!r} is not an email address"
                elif not values.get("name"):
                    result.outcome, result.reason = REJECTED, "the therapist has no name"
                elif unknown:
                    result.outcome, result.reason = REJECTED, f"no location {unknown[0]!r}"
                elif email in existing:
                    result.entity_id = existing[email]
                    result.reason = "existing therapist (same email)"
                else:
                    result.outcome = CREATED
                    if not self.dry_run:
                        result.entity_id = await _create_therapist(
                            values["name"], email, [slugs[s] for s in wanted] or [self.location_id]
                        )
                    existing[email] = result.entity_id or 0
            if not self.dry_run:
                await _record(batch_id, self.kind, self.location_id, results)
        return [r for _, r in results]


async def _therapists_by_email() -> dict[str, int]:
    rows = await Therapist.select(Therapist.id, Therapist.email).where(Therapist.email != "").run()
    return {str(r["email"]).lower(): int(r["id"]) for r in rows}


async def _create_therapist(name: str, email: str, location_ids: list[int]) -> int:
    now = utcnow()
    therapist_id = await db.insert_row(
        Therapist(name=name[:120], email=email, active=True, created_at=now, updated_at=now)
    )
    await TherapistLocation.insert(
        *[
            TherapistLocation(therapist=therapist_id, location=loc)
            for loc in sorted(set(location_ids))
        ]
    ).run()
    return therapist_id


# -- appointments ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Booking:
    """An appointment row resolved to the portal's records (before any booking)."""

    client_id: int
    therapist_id: int
    service_id: int
    location_id: int
    start: datetime
    room_id: int | None


@dataclass(frozen=True)
class _Planned:
    """An appointment a dry run would book: what the file's later rows meet."""

    line: int
    therapist_id: int
    room_id: int
    start: datetime
    until: datetime


class _Appointments(_Importer):
    """Upcoming appointments, booked through the bookings rules: the therapist must give
    the service here, the client must hold a credit for it (import the balances first),
    the room, when the row names one, is that room of the location, and a clash with
    another booking is a rejected row with its reason. A dry run checks the same clashes
    without booking: with the portal's appointments and with the file's earlier rows."""

    kind = "appointments"

    def __init__(self, location: dict[str, Any], order: str, dry_run: bool) -> None:
        super().__init__(location, order, dry_run)
        # Dry run: the rows that would be booked, by the UTC day they start.
        self.planned: dict[date, list[_Planned]] = {}
        self.sessions_planned: Counter[tuple[int, int]] = Counter()
        self.contexts: dict[tuple[int, int], BookingContext] = {}

    async def chunk(self, prepared: list[Prepared], batch_id: int | None) -> list[RowResult]:
        rows, fps = [(p.line, p.values) for p in prepared], [p.fp for p in prepared]
        before = await _already_imported(fps)
        self.clients = await _clients_by([v for _, v in rows])
        self.therapists = await _therapists_by_email()
        self.services = {
            str(r["name"]).strip().lower(): int(r["id"])
            for r in await Service.select(Service.id, Service.name).run()
        }
        self.slugs = {str(r["slug"]): r for r in await Location.select().run()}
        self.rooms = {
            (int(r["location"]), str(r["name"]).strip().lower()): int(r["id"])
            for r in await Room.select(Room.id, Room.location, Room.name).run()
        }
        results: list[tuple[str, RowResult]] = []
        for (line, values), fp in zip(rows, fps, strict=True):
            result = RowResult(line=line, outcome=MATCHED, data=values)
            results.append((fp, result))
            if fp in before:
                result.entity_id, result.reason = before[fp], "imported before"
                continue
            try:
                booking = self.resolve(values)
                if self.dry_run:
                    await self.rehearse(line, booking)
                else:
                    result.entity_id = await self.book(booking)
                result.outcome = CREATED
            except BadValue as exc:
                result.outcome, result.reason = REJECTED, str(exc)
        if not self.dry_run:
            await _record(batch_id, self.kind, self.location_id, results)
        return [r for _, r in results]

    def resolve(self, values: dict[str, str]) -> _Booking:
        """The row's client, therapist, service, location, start and room; ``BadValue``
        says which the portal does not have."""
        client_id = _client_of(values, self.clients)
        therapist_id = self.therapists.get(normalize_email(values.get("therapist_email", "")))
        if therapist_id is None:
            raise BadValue(
                f"no therapist {values.get('therapist_email')!r}: import the therapists first"
            )
        service_id = self.services.get(values.get("service", "").lower())
        if service_id is None:
            raise BadValue(f"no service {values.get('service')!r} in the catalog")
        location = self.slugs.get(values["location"]) if values.get("location") else self.location
        if location is None:
            raise BadValue(f"no location {values.get('location')!r}")
        local = parse_datetime(values.get("starts_at", ""), self.order)
        if local is None:
            raise BadValue("no start time")
        start = local.replace(tzinfo=ZoneInfo(str(location["timezone"]))).astimezone(UTC)
        if start <= utcnow():
            raise BadValue(f"{values.get('starts_at')} is not in the future")
        room_id = None
        if values.get("room"):
            room_id = self.rooms.get((int(location["id"]), values["room"].lower()))
            if room_id is None:
                raise BadValue(f"no room {values['room']!r} at {location['slug']}")
        return _Booking(
            client_id=client_id, therapist_id=therapist_id, service_id=service_id,
            location_id=int(location["id"]), start=start, room_id=room_id,
        )  # fmt: skip

    async def rehearse(self, line: int, b: _Booking) -> None:
        """What booking would answer, without booking: the client holds a session left by
        the file's earlier rows, the therapist may give the service then (hours, time off,
        credentials), and neither the therapist nor a room (the row's, or any that suits)
        is held then by the portal's appointments or the file's earlier rows."""
        from portal.bookings import availability
        from portal.bookings.booking import ROOM_UNSUITED, room_name
        from portal.bookings.credits import credits_for
        from portal.staff.bookability import is_bookable

        key = (b.location_id, b.service_id)
        if key not in self.contexts:
            try:
                self.contexts[key] = await availability.booking_context(*key)
            except NotFound as exc:
                raise BadValue(str(exc)) from None
        ctx = self.contexts[key]
        until = b.start + ctx.duration + ctx.buffer
        if b.room_id is not None and all(int(r["id"]) != b.room_id for r in ctx.rooms):
            raise BadValue(ROOM_UNSUITED)
        credits = await credits_for(b.client_id, b.service_id, b.start, b.location_id)
        if len(credits) <= self.sessions_planned[(b.client_id, b.service_id)]:
            raise BadValue("the client holds no session of this service: import balances first")
        verdict = await is_bookable(
            b.therapist_id, b.location_id, b.start, b.start + ctx.duration, b.service_id
        )
        if not verdict:
            raise BadValue(" ".join(verdict.reasons))
        days = (until.date() - b.start.date()).days + 2
        earlier = [
            p
            for day in (b.start.date() + timedelta(days=n - 1) for n in range(days))
            for p in self.planned.get(day, [])
            if p.start < until and b.start < p.until
        ]
        therapist = next((p for p in earlier if p.therapist_id == b.therapist_id), None)
        if therapist is not None or await availability.therapist_busy(
            b.therapist_id, b.start, until
        ):
            row = await Therapist.select(Therapist.name).where(Therapist.id == b.therapist_id).run()
            held = f" by line {therapist.line} of the file" if therapist else ""
            raise BadValue(f"clash: {row[0]['name']} is already booked then{held}")
        taken = {p.room_id: p.line for p in earlier}
        free = [
            int(r["id"])
            for r in await availability.free_rooms(ctx, b.start, until)
            if int(r["id"]) not in taken
        ]
        if b.room_id is not None and b.room_id not in free:
            held = f" by line {taken[b.room_id]} of the file" if b.room_id in taken else ""
            raise BadValue(
                f"clash: {room_name(ctx, b.room_id)} is taken or out of service then{held}"
            )
        if not free:
            raise BadValue("clash: no treatment room is free then")
        self.sessions_planned[(b.client_id, b.service_id)] += 1
        self.planned.setdefault(b.start.date(), []).append(
            _Planned(line, b.therapist_id, b.room_id or free[0], b.start, until)
        )

    async def booked_before(self, b: _Booking) -> int | None:
        """The appointment an earlier run of this batch booked for this row and stopped
        before recording (each row is booked in its own transaction): the same client,
        therapist and start, booked by the same member of staff, that no import row
        names. Resuming takes it as the row's instead of booking it again."""
        from portal.bookings.states import BOOKED
        from portal.bookings.tables import Appointment

        assert self.actor is not None
        rows = (
            await Appointment.select(Appointment.id)
            .where(
                (Appointment.client == b.client_id)
                & (Appointment.therapist == b.therapist_id)
                & (Appointment.location == b.location_id)
                & (Appointment.start_at == b.start)
                & (Appointment.status == BOOKED)
                & (Appointment.booked_by == self.actor.id)
            )
            .run()
        )
        for row in rows:
            recorded = (
                await ImportRow.exists()
                .where((ImportRow.entity == "appointment") & (ImportRow.entity_id == row["id"]))
                .run()
            )
            if not recorded:
                return int(row["id"])
        return None

    async def book(self, b: _Booking) -> int:
        """The appointment booked; ``BadValue`` says why not."""
        from portal.bookings.booking import SlotTaken, book
        from portal.bookings.credits import NoCredit

        if self.actor is None:
            raise BadValue("appointments are booked in the name of a member of staff")
        if self.resumed and (earlier := await self.booked_before(b)) is not None:
            return earlier
        try:
            return await book(
                self.actor, client_id=b.client_id, location_id=b.location_id,
                service_id=b.service_id, start_at=b.start, therapist_id=b.therapist_id,
                room_id=b.room_id, notify_client=False,
            )  # fmt: skip
        except Invalid as exc:
            raise BadValue(" ".join(exc.errors.values())) from None
        except NotFound as exc:
            raise BadValue(str(exc)) from None
        except NoCredit as exc:
            raise BadValue(str(exc) or "the client holds no session of this service") from None
        except SlotTaken as exc:
            raise BadValue(
                f"clash: {exc.message or 'the therapist or every room is booked then'}"
            ) from None


async def _clients_by(values: list[dict[str, str]]) -> dict[str, int]:
    """ "email:…" / "external:…" → client id, for the rows' client columns."""
    found: dict[str, int] = {}
    emails = [normalize_email(v.get("client_email", "")) for v in values]
    emails = [e for e in emails if e]
    if emails:
        match, arg = db.one_of("email", emails)
        rows = await User.raw(
            f"SELECT id, email FROM app_user WHERE {match} AND role = {{}}", arg, CLIENT
        ).run()
        found.update({f"email:{r['email']}": int(r["id"]) for r in rows})
    externals = [v.get("client_external_id", "") for v in values if v.get("client_external_id")]
    if externals:
        rows = await _kept_rows(
            "external_id", externals, "r.entity = 'client' AND r.entity_id IS NOT NULL"
        )
        found.update({f"external:{r['key']}": int(r["entity_id"]) for r in rows})
    return found


def _client_of(values: dict[str, str], clients: dict[str, int]) -> int:
    email = normalize_email(values.get("client_email", ""))
    external = values.get("client_external_id", "")
    client_id = clients.get(f"email:{email}") or clients.get(f"external:{external}")
    if client_id is None:
        who = email or external or "(no email or client id)"
        raise BadValue(f"no client {who}: import the clients first")
    return client_id


_IMPORTERS: dict[str, type[_Importer]] = {
    "clients": _Clients,
    "balances": _Balances,
    "therapists": _Therapists,
    "appointments": _Appointments,
}


# -- batches: read, undo --------------------------------------------------------------


def write_rejected(path: Any, failures: list[RowResult], headers: list[str]) -> None:
    """The rejected rows as CSV: their line, the reason, then the row under the layout's
    headers (so the file, corrected, imports again as it is)."""
    import csv

    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["line", "reason", *headers])
        for row in failures:
            writer.writerow([row.line, row.reason, *(row.data.get(h, "") for h in headers)])


async def get_batch(batch_id: int) -> dict[str, Any]:
    return await records.get(ImportBatch, batch_id, "No such import.")


async def rejected_rows(batch_id: int) -> list[dict[str, Any]]:
    return (
        await ImportRow.select(ImportRow.line, ImportRow.reason, ImportRow.data)
        .where((ImportRow.batch == batch_id) & (ImportRow.outcome == REJECTED))
        .order_by(ImportRow.line)
        .run()
    )


async def _created(batch_id: int) -> list[int]:
    rows = (
        await ImportRow.select(ImportRow.entity_id)
        .where((ImportRow.batch == batch_id) & (ImportRow.outcome == CREATED))
        .run()
    )
    return [int(r["entity_id"]) for r in rows if r["entity_id"] is not None]


async def _clients_used(client_ids: list[int], batch_id: int) -> bool:
    """Whether any of these clients has since bought, booked or been given anything
    beyond what this batch brought."""
    for start in range(0, len(client_ids), 1000):
        chunk = ", ".join(str(int(i)) for i in client_ids[start : start + 1000])
        rows = await ImportRow.raw(
            f"SELECT 1 AS used FROM sale WHERE client IN ({chunk}) "
            f"UNION ALL SELECT 1 FROM appointment WHERE client IN ({chunk}) "
            f"UNION ALL SELECT 1 FROM client_intake WHERE client IN ({chunk}) LIMIT 1"
        ).run()
        if rows:
            return True
    return False


async def _undo_clients(actor: CurrentUser | None, batch_id: int, created: list[int]) -> None:
    if await _clients_used(created, batch_id):
        raise Conflict(
            "Some clients of this import have bought, booked or filled in an intake "
            "since; it can no longer be undone as a whole."
        )
    for start in range(0, len(created), 1000):
        await User.delete().where(User.id.is_in(created[start : start + 1000])).run()


async def _undo_balances(actor: CurrentUser | None, batch_id: int, created: list[int]) -> None:
    if not await sales.imported_unused(created):
        raise Conflict(
            "Some sessions of this import have been booked or used since; it can no "
            "longer be undone as a whole."
        )
    await journal_batch(batch_id)  # an incomplete batch: its entry first
    taken = await sales.remove_imported(created)
    for (location_id, currency), cents in sorted(taken.items()):
        await sales.journal_opening_balance(
            f"import:{batch_id}:{location_id}:{currency}:undone",
            location_id=location_id, currency=currency, cents=cents,
            memo=f"Balances import undone (batch {batch_id})", at=utcnow(), reverse=True,
        )  # fmt: skip


async def _undo_therapists(actor: CurrentUser | None, batch_id: int, created: list[int]) -> None:
    from portal.bookings.tables import Appointment

    if created and (
        await Appointment.exists().where(Appointment.therapist.is_in(created)).run()
        or await Therapist.exists()
        .where(Therapist.id.is_in(created) & Therapist.account.is_not_null())
        .run()
    ):
        raise Conflict(
            "Some therapists of this import have appointments or a sign-in since; it can "
            "no longer be undone as a whole."
        )
    if created:
        await Therapist.delete().where(Therapist.id.is_in(created)).run()


async def _undo_appointments(actor: CurrentUser | None, batch_id: int, created: list[int]) -> None:
    from portal.bookings.outcomes import cancel
    from portal.bookings.states import BOOKED
    from portal.bookings.tables import Appointment

    if not created:
        return
    if actor is None:
        raise Conflict("Imported appointments are cancelled in the name of a member of staff.")
    moved = (
        await Appointment.exists()
        .where(
            Appointment.id.is_in(created)
            & ((Appointment.status != BOOKED) | (Appointment.start_at <= utcnow()))
        )
        .run()
    )
    if moved:
        raise Conflict(
            "Some appointments of this import have taken place, been cancelled or started "
            "since; it can no longer be undone as a whole."
        )
    for appointment_id in created:
        await cancel(
            actor, appointment_id, reason="Import undone", waive=True,
            waive_reason="Import undone", notify_client=False,
        )  # fmt: skip


_UNDO = {
    "clients": _undo_clients,
    "balances": _undo_balances,
    "therapists": _undo_therapists,
    "appointments": _undo_appointments,
}


async def undo(actor: CurrentUser | None, batch_id: int, *, address: str = "") -> None:
    """Take a whole batch back: its new clients and therapists deleted, its credits and
    sales taken back through ``portal.sales`` with their journal entries reversed, its
    appointments cancelled (the credits they held come back). Refused (``Conflict``)
    once any of them has been used."""
    await mark_stalled()
    async with db.transaction():
        await db.lock_row(ImportBatch, batch_id)
        batch = await get_batch(batch_id)
        if batch["status"] == UNDONE:
            raise Conflict("This import has already been undone.")
        if batch["status"] == RUNNING:
            raise Conflict("This import is still running; undo it when it has stopped.")
        created = await _created(batch_id)
        await _UNDO[str(batch["kind"])](actor, batch_id, created)
        await (
            ImportBatch.update(
                {
                    ImportBatch.status: UNDONE,
                    ImportBatch.undone_at: utcnow(),
                    ImportBatch.undone_by: actor.id if actor else None,
                }
            )
            .where(ImportBatch.id == batch_id)
            .run()
        )
        await audit.record(
            actor, "import.undo", "import_batch", batch_id,
            before={"status": batch["status"], "created": len(created)},
            after={"status": UNDONE}, address=address,
        )  # fmt: skip


async def resume(actor: CurrentUser, batch_id: int, *, address: str = "") -> None:
    """Queue a batch that stopped part-way to run again from where it stopped (the lines
    it recorded are not read again, so nothing is imported twice); audited. Refused
    (``Conflict``) unless it stopped, or when its file is no longer kept."""
    await mark_stalled()
    async with db.transaction():
        await db.lock_row(ImportBatch, batch_id)
        batch = await get_batch(batch_id)
        access.ensure_write(actor, int(batch["location"]))
        if batch["status"] != INCOMPLETE:
            raise Conflict("Only an import that stopped part-way can be resumed.")
        if not resumable(batch):
            raise Conflict(
                "The file of this import is no longer kept: undo it, or import the file "
                "again (the rows already imported are matched, not imported twice)."
            )
        await (
            ImportBatch.update({ImportBatch.status: QUEUED}).where(ImportBatch.id == batch_id).run()
        )
        await audit.record(
            actor, "import.resume", "import_batch", batch_id,
            before={"status": INCOMPLETE, "rows_done": batch["rows_done"]},
            after={"status": QUEUED}, address=address,
        )  # fmt: skip


def resumable(batch: dict[str, Any]) -> bool:
    """Whether a stopped batch can run again: its uploaded file is still kept."""
    return (
        batch["status"] == INCOMPLETE
        and bool(batch["stored_path"])
        and (Path(str(batch["stored_path"])).is_file())
    )


# -- the wizard's files and queued batches ---------------------------------------------

STATUS_LABELS = {
    QUEUED: "Waiting to start",
    RUNNING: "Running",
    COMPLETE: "Complete",
    INCOMPLETE: "Stopped part-way (resume or undo)",
    UNDONE: "Undone",
}
_TOKEN = re.compile(r"^[0-9a-f]{32}\.(csv|xlsx|txt)$")


def stage_file(directory: Path, filename: str, data: bytes) -> str:
    """Keep an uploaded file for the wizard's next steps; its token (name in ``directory``)."""
    suffix = Path(filename).suffix.lower().lstrip(".")
    token = f"{secrets.token_hex(16)}.{suffix if suffix in ('csv', 'xlsx') else 'txt'}"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / token).write_bytes(data)
    return token


def staged(directory: Path, token: str) -> Path:
    """The staged file a form names; ``NotFound`` for a token that is not one of ours."""
    if not _TOKEN.match(token or "") or not (directory / token).is_file():
        raise NotFound("That upload is no longer here; upload the file again.")
    return directory / token


def parse_mapping(layout: Layout, values: dict[str, str]) -> dict[str, str]:
    """The mapping a form gives (``map_<column>`` → header; empty: not imported)."""
    return {c.name: values[f"map_{c.name}"] for c in layout.columns if values.get(f"map_{c.name}")}


async def queue_batch(
    actor: CurrentUser,
    kind: str,
    sheet: Sheet,
    *,
    location_id: int,
    mapping: dict[str, str],
    order: str,
    filename: str,
    address: str = "",
) -> int:
    """A confirmed import waiting for the worker (audited); its batch id. The same file
    confirmed twice is one batch."""
    access.ensure_write(actor, location_id)
    layout = layout_of(kind)
    check_mapping(layout, mapping, sheet.headers)
    digest = file_hash(sheet.path, kind, location_id, mapping)
    earlier = (
        await ImportBatch.select(ImportBatch.id)
        .where((ImportBatch.file_hash == digest) & ImportBatch.status.is_in([QUEUED, RUNNING]))
        .first()
        .run()
    )
    if earlier is not None:
        return int(earlier["id"])
    async with db.transaction():
        batch_id = await db.insert_row(
            ImportBatch(
                kind=kind, location=location_id, filename=filename[:255], file_hash=digest,
                mapping=json.dumps(mapping), date_order=order, status=QUEUED,
                stored_path=str(sheet.path), rows_total=sum(1 for _ in sheet.rows()),
                created_by=actor.id, created_at=utcnow(),
            )
        )  # fmt: skip
        await audit.record(
            actor, "import.queue", "import_batch", batch_id,
            after={"kind": kind, "file": filename, "location": location_id}, address=address,
        )  # fmt: skip
    return batch_id


async def run_queued() -> list[Summary]:
    """Run every queued batch (the imports job): each as :func:`run_import` in the name of
    whoever confirmed it. A batch whose file cannot be read any more is marked incomplete."""
    from portal.auth.service import actor_of

    done: list[Summary] = []
    while True:
        batch = (
            await ImportBatch.select()
            .where(ImportBatch.status == QUEUED)
            .order_by(ImportBatch.id)
            .first()
            .run()
        )
        if batch is None:
            return done
        user = (
            await User.select(User.id.as_alias("user_id"), User.email, User.name, User.role)
            .where(User.id == batch["created_by"])
            .first()
            .run()
        )
        actor = await actor_of(user) if user is not None else None
        try:
            sheet = open_sheet(batch["stored_path"], filename=batch["filename"])
        except (OSError, FileProblem):
            await (
                ImportBatch.update({ImportBatch.status: INCOMPLETE})
                .where(ImportBatch.id == batch["id"])
                .run()
            )
            continue
        done.append(
            await run_import(
                str(batch["kind"]), sheet, location_id=int(batch["location"]),
                mapping=json.loads(batch["mapping"]), actor=actor,
                order=str(batch["date_order"]) or None, filename=str(batch["filename"]),
                batch_id=int(batch["id"]),
            )
        )  # fmt: skip


async def batches_for(actor: CurrentUser, limit: int = 30) -> list[dict[str, Any]]:
    """The latest batches of the locations ``actor`` may read, newest first."""
    query = ImportBatch.select(
        *ImportBatch.all_columns(), ImportBatch.location.name.as_alias("location_name")
    )
    scope = access.visible_locations(actor)
    if scope is not None:
        query = query.where(ImportBatch.location.is_in(list(scope) or [-1]))
    rows: list[dict[str, Any]] = (
        await query.order_by(ImportBatch.id, ascending=False).limit(limit).run()
    )
    if any(stalled(r) for r in rows):
        await mark_stalled()
        return await batches_for(actor, limit)
    return rows


async def get_batch_for(
    actor: CurrentUser, batch_id: int, *, write: bool = False
) -> dict[str, Any]:
    batch = await get_batch(batch_id)
    access.ensure(actor, int(batch["location"]), write=write)
    if stalled(batch):
        await mark_stalled()
        batch = await get_batch(batch_id)
    batch["resumable"] = resumable(batch)
    batch["counts"] = json.loads(batch["counts"] or "{}")
    batch["seconds_left"] = seconds_left(batch)
    return batch


def seconds_left(batch: dict[str, Any]) -> int | None:
    """The time a running batch still needs at its pace so far (None before any row)."""
    done, total = int(batch["rows_done"] or 0), int(batch["rows_total"] or 0)
    if batch["status"] != RUNNING or done <= 0 or total <= done:
        return None
    elapsed = (utcnow() - batch["created_at"]).total_seconds()
    return max(1, round(elapsed * (total - done) / done))


def rejected_csv(rows: list[dict[str, Any]], layout: Layout) -> str:
    """The rejected rows of a batch as CSV text (line, reason, the layout's columns)."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["line", "reason", *layout.headers])
    for row in rows:
        data = json.loads(row["data"] or "{}")
        writer.writerow([row["line"], row["reason"], *(data.get(h, "") for h in layout.headers)])
    return out.getvalue()
