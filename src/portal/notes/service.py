"""Treatment notes: writing, signing, amending, reading with a record of every read.

Rules:

* One note per appointment, written by the appointment's therapist (the
  therapist profile linked to the signed-in account), once the session has
  begun. A draft may be incomplete; what it holds must be valid.
* Signing needs a completed session and a complete note, and is for ever:
  the service refuses to change a signed note, and the database refuses it
  too (triggers on both engines). A correction is an amendment with a
  reason; the original stays readable and the amendment is shown with it.
* Who reads what: note contents are for the client, therapists who have
  treated the client, and owners. Managers see that a note exists and its
  status, for their locations. Accountants see nothing of notes. Drafts are
  read only by their author and owners; others see that one is in progress.
* Every read of note contents (a note, a client's progress, its printout,
  the writing page with the earlier notes) appends a row to
  ``note_access_log`` before the page is rendered.
* The audit trail records creating, saving, signing and amending with ids
  and status only: no clinical contents in ``audit_log``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from portal import access, db, records
from portal.audit import service as audit
from portal.auth.service import CLIENT, MANAGER, OWNER, THERAPIST, CurrentUser
from portal.auth.tables import User
from portal.bookings import credits, reading, states
from portal.bookings.tables import Appointment
from portal.clients import regions
from portal.clients import service as clients
from portal.errors import Forbidden, Invalid, NotFound
from portal.notes import form as note_form
from portal.notes.tables import NoteAccessLog, NoteAmendment, NoteTriggerPoint, TreatmentNote
from portal.pagination import Page, keyset_page
from portal.sales import service as sales
from portal.staff.tables import Therapist
from portal.timeutil import utcnow

DRAFT = "draft"
SIGNED = "signed"
STATUS_LABELS = {DRAFT: "Draft", SIGNED: "Signed"}

# How much of a note a reader may see.
FULL = "full"  # the contents
PENDING = "pending"  # a draft by someone else: that it is being written
META = "meta"  # that it exists, its status (managers)

# Kinds of read in the access log.
VIEW = "view"
COMPOSE = "compose"
PROGRESS = "progress"
PRINT = "print"
EXPORT = "export"  # a data export holding the client's notes (no note id: every one)
ACCESS_ACTIONS = {
    VIEW: "Read a note",
    COMPOSE: "Writing page (earlier notes)",
    PROGRESS: "Progress page",
    PRINT: "Progress printout",
    EXPORT: "Data export",
}

SIGNED_NOTE_MESSAGE = (
    "This note is signed and can no longer be changed. To correct it, add an amendment "
    "with the reason; the original stays readable."
)
# Sessions in this window without a note are listed for their therapist.
TO_WRITE_DAYS = 60


class NoteExists(Exception):
    """The appointment already has a note (another tab or a double submit)."""

    def __init__(self, note_id: int) -> None:
        super().__init__(f"note {note_id} exists")
        self.note_id = note_id


# -- who may do what -----------------------------------------------------------------------


async def therapist_id_of(user: CurrentUser) -> int | None:
    """The therapist profile linked to a therapist's sign-in, if any."""
    if user.role != THERAPIST:
        return None
    row = await Therapist.select(Therapist.id).where(Therapist.account == user.id).first().run()
    return int(row["id"]) if row else None


async def has_treated(therapist_id: int, client_id: int, *, now: datetime | None = None) -> bool:
    """Whether the therapist has given (or is giving) the client a session, or written a note."""
    now = now or utcnow()
    given = await (
        Appointment.exists()
        .where(
            (Appointment.therapist == therapist_id)
            & (Appointment.client == client_id)
            & (
                (Appointment.status == states.COMPLETED)
                | ((Appointment.status == states.BOOKED) & (Appointment.start_at <= now))
            )
        )
        .run()
    )
    if given:
        return True
    return bool(
        await TreatmentNote.exists()
        .where((TreatmentNote.therapist == therapist_id) & (TreatmentNote.client == client_id))
        .run()
    )


async def note_access(user: CurrentUser, note: dict[str, Any]) -> str:
    """FULL, PENDING or META for ``user`` on ``note``; 403 when nothing at all."""
    signed = note["status"] == SIGNED
    if user.role == OWNER:
        return FULL
    if user.role == CLIENT:
        if note["client"] != user.id:
            raise Forbidden("This is not your note.")
        return FULL if signed else PENDING
    if user.role == THERAPIST:
        therapist_id = await therapist_id_of(user)
        if therapist_id is not None:
            if note["therapist"] == therapist_id:
                return FULL
            if await has_treated(therapist_id, int(note["client"])):
                return FULL if signed else PENDING
        raise Forbidden("Only therapists who have treated this client read notes.")
    if user.role == MANAGER:
        access.ensure_read(user, int(note["location"]))
        return META
    raise Forbidden("Your role gives no access to treatment notes.")


async def ensure_progress_access(user: CurrentUser, client_id: int) -> None:
    """The client, therapists who have treated them, owners. 404 for no such client."""
    exists = await User.exists().where((User.id == client_id) & (User.role == CLIENT)).run()
    if not exists:
        raise NotFound("No such client.")
    if user.role == OWNER:
        return
    if user.role == CLIENT and user.id == client_id:
        return
    if user.role == THERAPIST:
        therapist_id = await therapist_id_of(user)
        if therapist_id is not None and await has_treated(therapist_id, client_id):
            return
        raise Forbidden("Only therapists who have treated this client see it.")
    raise Forbidden("Treatment progress is for the client, their therapists "
                                    "and owners.")  # fmt: skip


async def ensure_author(user: CurrentUser, note: dict[str, Any]) -> None:
    """Only the note's therapist writes, signs and amends it."""
    therapist_id = await therapist_id_of(user)
    if therapist_id is None or note["therapist"] != therapist_id:
        raise Forbidden("Only the therapist of this session writes its note.")


async def appointment_for_writing(user: CurrentUser, appointment_id: int) -> dict[str, Any]:
    """The appointment, if ``user`` is its therapist (404 if none, 403 if not theirs)."""
    appointment = await reading.get_appointment(appointment_id)
    therapist_id = await therapist_id_of(user)
    if therapist_id is None or appointment["therapist"] != therapist_id:
        raise Forbidden("This is not your appointment.")
    return appointment


def writable_problem(appointment: dict[str, Any], now: datetime | None = None) -> str | None:
    """Why no note can be written for this appointment now, or None."""
    now = now or utcnow()
    status = appointment["status"]
    if status not in (states.BOOKED, states.COMPLETED):
        label = states.STATUS_LABELS.get(status, status).lower()
        return f"This appointment is {label}: there is no session to write a note about."
    if appointment["start_at"] > now:
        return "A note can be started once the session has begun."
    return None


# -- access log -----------------------------------------------------------------------------


async def record_read(
    actor: CurrentUser,
    action: str,
    client_id: int,
    *,
    note_id: int | None = None,
    address: str = "",
) -> None:
    """Append one row to the access log. Call before showing the contents."""
    await NoteAccessLog.insert(
        NoteAccessLog(
            at=utcnow(),
            actor_id=actor.id,
            actor_email=actor.email,
            actor_role=actor.role,
            action=action,
            client_id=client_id,
            note_id=note_id,
            address=address[:64],
        )
    ).run()


@dataclass(frozen=True)
class AccessFilters:
    client: str = ""  # name or email, contains
    actor: str = ""  # email, contains
    action: str = ""
    note_id: int | None = None
    day_from: date | None = None
    day_to: date | None = None
    zone: str = "UTC"  # the days are the reader's local days


async def access_log(filters: AccessFilters, *, after: str | None, limit: int = 50) -> Page:
    """The access log, newest first (keyset on id), with client names for the page."""
    query = NoteAccessLog.select()
    if filters.action in ACCESS_ACTIONS:
        query = query.where(NoteAccessLog.action == filters.action)
    if filters.actor:
        query = query.where(NoteAccessLog.actor_email.ilike(f"%{filters.actor}%"))
    if filters.note_id is not None:
        query = query.where(NoteAccessLog.note_id == filters.note_id)
    if filters.client:
        pattern = f"%{filters.client}%"
        query = query.where(
            NoteAccessLog.client_id.is_in(
                User.select(User.id).where(
                    (User.role == CLIENT) & (User.email.ilike(pattern) | User.name.ilike(pattern))
                )
            )
        )
    if filters.day_from is not None:
        start = datetime.combine(filters.day_from, time(), ZoneInfo(filters.zone))
        query = query.where(NoteAccessLog.at >= start.astimezone(UTC))
    if filters.day_to is not None:
        end = datetime.combine(filters.day_to + timedelta(days=1), time(), ZoneInfo(filters.zone))
        end = end.astimezone(UTC)
        query = query.where(NoteAccessLog.at < end)
    page = await keyset_page(
        query, NoteAccessLog.id, NoteAccessLog.id, after=after, limit=limit, descending=True
    )
    ids = {int(r["client_id"]) for r in page.rows}
    ids |= {int(r["actor_id"]) for r in page.rows if r["actor_id"]}
    names: dict[int, dict[str, Any]] = {}
    if ids:
        names = {
            int(r["id"]): r
            for r in await User.select(User.id, User.name, User.email)
            .where(User.id.is_in(list(ids)))
            .run()
        }
    for row in page.rows:
        client = names.get(int(row["client_id"]), {})
        row["client_name"] = client.get("name") or client.get("email") or f"#{row['client_id']}"
        row["action_label"] = ACCESS_ACTIONS.get(row["action"], row["action"])
        row["actor_name"] = names.get(int(row["actor_id"] or 0), {}).get("name") or ""
    return page


# -- reading notes --------------------------------------------------------------------------


def _joined(*path: str) -> Any:
    """A column reached through the appointment's foreign keys (typed loosely for mypy)."""
    column: Any = TreatmentNote.appointment
    for name in path:
        column = getattr(column, name)
    return column


_NOTE_COLUMNS = (
    TreatmentNote.appointment.start_at.as_alias("session_start"),
    TreatmentNote.appointment.end_at.as_alias("session_end"),
    TreatmentNote.appointment.status.as_alias("appointment_status"),
    _joined("service", "name").as_alias("service_name"),
    _joined("sale_session", "position").as_alias("series_position"),
    _joined("sale_session", "sale").as_alias("series_id"),
    _joined("sale_session", "sale", "sessions_total").as_alias("series_total"),
    _joined("sale_session", "sale", "item_name").as_alias("series_name"),
    TreatmentNote.location.name.as_alias("location_name"),
    TreatmentNote.location.timezone.as_alias("timezone"),
    TreatmentNote.therapist.name.as_alias("therapist_name"),
    TreatmentNote.location.address.as_alias("location_address"),
    TreatmentNote.location.phone.as_alias("location_phone"),
    TreatmentNote.therapist.licence_number.as_alias("therapist_licence"),
    TreatmentNote.therapist.licence_state.as_alias("therapist_licence_state"),
    TreatmentNote.client.name.as_alias("client_name"),
    TreatmentNote.client.email.as_alias("client_email"),
    TreatmentNote.author.email.as_alias("author_email"),
)


# What a reader without access to the contents may be shown of a note.
_METADATA = (
    "id", "appointment", "client", "therapist", "location", "status", "created_at",
    "updated_at", "signed_at", "session_start", "session_end", "appointment_status",
    "service_name", "series_position", "series_id", "series_total", "series_name",
    "location_name", "timezone", "therapist_name", "client_name", "client_email",
)  # fmt: skip


def metadata(note: dict[str, Any]) -> dict[str, Any]:
    """A note without its clinical contents (for managers, and drafts of others)."""
    out = {key: note.get(key) for key in _METADATA}
    out["session_label"] = session_label(out)
    out["status_label"] = STATUS_LABELS.get(str(out["status"]), str(out["status"]))
    return out


def _loads(raw: str | None) -> list[str]:
    try:
        value = json.loads(raw or "[]")
    except ValueError:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


def session_label(row: dict[str, Any]) -> str:
    """ "Session k of N" of the package the appointment used, k in the order given."""
    if row.get("series_position") and row.get("series_total"):
        return f"Session {row['series_position']} of {row['series_total']}"
    return "Single session"


async def _numbered(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with their session numbers in the order given (credits.positions_given)."""
    positions = await credits.positions_given(
        [int(r["appointment"]) for r in rows if r.get("series_id")]
    )
    for row in rows:
        if row.get("series_id"):
            row["series_position"] = positions.get(int(row["appointment"]))
        row["session_label"] = session_label(row)
    return rows


async def get_note(note_id: int) -> dict[str, Any]:
    row = await records.first(
        TreatmentNote.select(*TreatmentNote.all_columns(), *_NOTE_COLUMNS).where(
            TreatmentNote.id == note_id
        ),
        "No such note.",
    )
    return (await _numbered([row]))[0]


async def note_for_appointment(appointment_id: int) -> int | None:
    note_id = await db.value_where(TreatmentNote.id, TreatmentNote.appointment == appointment_id)
    return int(note_id) if note_id is not None else None


async def _trigger_points(note_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {i: [] for i in note_ids}
    if not note_ids:
        return out
    rows = (
        await NoteTriggerPoint.select()
        .where(NoteTriggerPoint.note.is_in(note_ids))
        .order_by(NoteTriggerPoint.note)
        .order_by(NoteTriggerPoint.position)
        .run()
    )
    for row in rows:
        row["region_label"] = regions.label(row["region"])
        row["side_label"] = note_form.SIDES.get(row["side"], row["side"])
        row["severity_label"] = note_form.SEVERITIES.get(row["severity"], str(row["severity"]))
        out[int(row["note"])].append(row)
    return out


async def _amendments(note_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {i: [] for i in note_ids}
    if not note_ids:
        return out
    rows = (
        await NoteAmendment.select(
            *NoteAmendment.all_columns(),
            NoteAmendment.author.name.as_alias("author_name"),
            NoteAmendment.author.email.as_alias("author_email"),
        )
        .where(NoteAmendment.note.is_in(note_ids))
        .order_by(NoteAmendment.id)
        .run()
    )
    for row in rows:
        row["field_label"] = note_form.AMENDABLE.get(row["field"], row["field"])
        out[int(row["note"])].append(row)
    return out


def _present(
    note: dict[str, Any], points: list[dict[str, Any]], amendments: list[dict[str, Any]]
) -> dict[str, Any]:
    note = dict(note)
    note["regions"] = _loads(note.get("regions"))
    note["techniques"] = _loads(note.get("techniques"))
    note["region_labels"] = [regions.label(r) for r in note["regions"]]
    note["technique_labels"] = [note_form.TECHNIQUES.get(t, t) for t in note["techniques"]]
    note["pressure_label"] = note_form.PRESSURES.get(note.get("pressure") or "", "")
    note["trigger_points"] = points
    note["amendments"] = amendments
    note["status_label"] = STATUS_LABELS.get(note["status"], note["status"])
    note["session_label"] = session_label(note)
    # Pain scores as corrected by the latest amendment, for figures.
    for name in note_form.NUMERIC_AMENDMENTS:
        corrected = [a for a in amendments if a["field"] == name and a["value"] is not None]
        note[f"{name}_effective"] = corrected[-1]["value"] if corrected else note.get(name)
        note[f"{name}_corrected"] = bool(corrected)
    return note


async def present_notes(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ids = [int(r["id"]) for r in rows]
    points = await _trigger_points(ids)
    amendments = await _amendments(ids)
    return [_present(r, points[int(r["id"])], amendments[int(r["id"])]) for r in rows]


async def note_detail(note: dict[str, Any]) -> dict[str, Any]:
    return (await present_notes([note]))[0]


async def signed_notes_of(
    client_id: int, *, before: datetime | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """The client's signed notes, presented, oldest session first."""
    query = TreatmentNote.select(*TreatmentNote.all_columns(), *_NOTE_COLUMNS).where(
        (TreatmentNote.client == client_id) & (TreatmentNote.status == SIGNED)
    )
    if before is not None:
        query = query.where(TreatmentNote.appointment.start_at < before)
    rows = await query.order_by(TreatmentNote.appointment.start_at).run()
    if limit is not None:
        rows = rows[-limit:]
    return await present_notes(await _numbered(rows))


# -- writing ---------------------------------------------------------------------------------


def _columns(data: note_form.NoteInput) -> dict[Any, Any]:
    values = data.columns()
    values["regions"] = json.dumps(values["regions"])
    values["techniques"] = json.dumps(values["techniques"])
    return {getattr(TreatmentNote, k): v for k, v in values.items()}


async def _insert_points(note_id: int, points: list[note_form.TriggerPointInput]) -> None:
    if not points:
        return
    await NoteTriggerPoint.insert(
        *[
            NoteTriggerPoint(
                note=note_id,
                position=i + 1,
                region=p.region,
                side=p.side,
                severity=p.severity,
                reproduced=p.reproduced,
                referral=p.referral,
            )
            for i, p in enumerate(points)
        ]
    ).run()


async def start_note(
    actor: CurrentUser,
    appointment_id: int,
    data: note_form.NoteInput,
    *,
    address: str = "",
    now: datetime | None = None,
) -> int:
    """Create the draft note of an appointment; returns its id.

    403 unless ``actor`` is the appointment's therapist; ``NoteExists`` when
    it has a note already; ``Invalid`` when the session is not one
    a note can be written about.
    """
    appointment = await appointment_for_writing(actor, appointment_id)
    existing = await note_for_appointment(appointment_id)
    if existing is not None:
        raise NoteExists(existing)
    now = now or utcnow()
    problem = writable_problem(appointment, now)
    if problem:
        raise Invalid({"form": problem})
    try:
        async with db.transaction():
            values = data.columns()
            values["regions"] = json.dumps(values["regions"])
            values["techniques"] = json.dumps(values["techniques"])
            note_id = await db.insert_row(
                TreatmentNote(
                    appointment=appointment_id,
                    client=appointment["client"],
                    therapist=appointment["therapist"],
                    location=appointment["location"],
                    author=actor.id,
                    status=DRAFT,
                    created_at=now,
                    updated_at=now,
                    **values,
                )
            )
            await _insert_points(note_id, data.trigger_points)
            await audit.record(
                actor, "note_create", "treatment_note", note_id,
                after={"status": DRAFT, "appointment_id": appointment_id,
                       "client_id": appointment["client"]},
                address=address,
            )  # fmt: skip
    except Exception as exc:
        if db.is_unique_violation(exc):
            existing = await note_for_appointment(appointment_id)
            if existing is not None:
                raise NoteExists(existing) from exc
        raise
    return note_id


async def _authored_note(
    actor: CurrentUser, note_id: int, status: str, refusal: str
) -> dict[str, Any]:
    """The note, once ``actor`` wrote it and it is ``status``; otherwise ``refusal`` at the form.

    Only a note's author edits, signs or amends it; the status says which of these applies.
    """
    note = await get_note(note_id)
    await ensure_author(actor, note)
    if note["status"] != status:
        raise Invalid({"form": refusal})
    return note


async def _update_draft(note_id: int, values: dict[Any, Any], refusal: str) -> None:
    """Write ``values`` to the note only while it is a draft.

    The status is checked again in the UPDATE itself: of an edit and a signature racing,
    the signature wins and the edit is refused with ``refusal`` instead of changing a
    signed note.
    """
    condition = (TreatmentNote.id == note_id) & (TreatmentNote.status == DRAFT)
    if not await db.update_where(TreatmentNote, values, condition):
        raise Invalid({"form": refusal})


async def save_draft(
    actor: CurrentUser, note_id: int, data: note_form.NoteInput, *, address: str = ""
) -> None:
    """Replace a draft's contents. A signed note is refused and left as it is."""
    await _authored_note(actor, note_id, DRAFT, SIGNED_NOTE_MESSAGE)
    async with db.transaction():
        update = _columns(data)
        update[TreatmentNote.updated_at] = utcnow()
        await _update_draft(note_id, update, SIGNED_NOTE_MESSAGE)
        await NoteTriggerPoint.delete().where(NoteTriggerPoint.note == note_id).run()
        await _insert_points(note_id, data.trigger_points)
        await audit.record(
            actor, "note_update", "treatment_note", note_id,
            before={"status": DRAFT}, after={"status": DRAFT}, address=address,
        )  # fmt: skip


async def sign_problems(note: dict[str, Any]) -> dict[str, str]:
    """Why the (presented) note cannot be signed yet; empty when it can."""
    problems: dict[str, str] = {}
    if note["status"] == SIGNED:
        return {"form": "This note is already signed."}
    if note["appointment_status"] != states.COMPLETED:
        problems["form"] = "Mark the session completed before signing its note."
    problems.update(note_form.missing_for_signing(note))
    return problems


async def sign(
    actor: CurrentUser,
    note_id: int,
    *,
    confirmed: bool,
    address: str = "",
    now: datetime | None = None,
) -> None:
    """Sign a complete draft of a completed session. From now on it never changes."""
    note = await note_detail(await get_note(note_id))
    await ensure_author(actor, note)
    if note["status"] == SIGNED:
        raise Invalid({"form": "This note is already signed."})
    problems = await sign_problems(note)
    if not confirmed:  # with every other problem, not after they are fixed
        problems["confirm"] = "Tick the box to confirm the note is accurate and complete."
    if problems:
        raise Invalid(problems)
    now = now or utcnow()
    async with db.transaction():
        signed = {TreatmentNote.status: SIGNED, TreatmentNote.signed_at: now}
        await _update_draft(
            note_id, {**signed, TreatmentNote.updated_at: now}, "This note is already signed."
        )
        await audit.record(
            actor, "note_sign", "treatment_note", note_id,
            before={"status": DRAFT}, after={"status": SIGNED, "signed_at": now},
            address=address,
        )  # fmt: skip


async def amend(
    actor: CurrentUser, note_id: int, data: note_form.AmendmentInput, *, address: str = ""
) -> int:
    """Append a correction to a signed note; returns the amendment's id."""
    await _authored_note(
        actor, note_id, SIGNED, "A draft is corrected by editing it; sign it first."
    )
    async with db.transaction():
        amendment_id = await db.insert_row(
            NoteAmendment(
                note=note_id,
                author=actor.id,
                at=utcnow(),
                field=data.field,
                value=data.value,
                text=data.text,
                reason=data.reason,
            )
        )
        await audit.record(
            actor, "note_amend", "treatment_note", note_id,
            after={"status": SIGNED, "amendment_id": amendment_id}, address=address,
        )  # fmt: skip
    return amendment_id


# -- lists ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoteFilters:
    status: str = ""
    location_id: int | None = None
    search: str = ""  # client name or email
    client_id: int | None = None


async def list_notes(
    actor: CurrentUser, filters: NoteFilters, *, after: str | None, limit: int = 50
) -> Page:
    """Notes the actor may know of, newest first: metadata only (no contents)."""
    query = TreatmentNote.select(
        TreatmentNote.id,
        TreatmentNote.status,
        TreatmentNote.client,
        TreatmentNote.location,
        TreatmentNote.appointment,
        TreatmentNote.signed_at,
        TreatmentNote.updated_at,
        *_NOTE_COLUMNS,
    )
    if actor.role == THERAPIST:
        therapist_id = await therapist_id_of(actor)
        query = query.where(TreatmentNote.therapist == (therapist_id or 0))
    elif actor.role == MANAGER:
        visible = access.visible_locations(actor) or frozenset()
        query = query.where(TreatmentNote.location.is_in(sorted(visible) or [0]))
    elif actor.role != OWNER:
        raise Forbidden("Your role gives no access to treatment notes.")
    if filters.status in STATUS_LABELS:
        query = query.where(TreatmentNote.status == filters.status)
    if filters.location_id is not None:
        if actor.role != THERAPIST:  # a therapist's list is their own notes, wherever
            access.ensure_read(actor, filters.location_id)
        query = query.where(TreatmentNote.location == filters.location_id)
    if filters.client_id is not None:
        query = query.where(TreatmentNote.client == filters.client_id)
    if filters.search:
        pattern = f"%{filters.search}%"
        query = query.where(
            TreatmentNote.client.email.ilike(pattern) | TreatmentNote.client.name.ilike(pattern)
        )
    page = await keyset_page(
        query, TreatmentNote.id, TreatmentNote.id, after=after, limit=limit, descending=True
    )
    await _numbered(page.rows)
    for row in page.rows:
        row["status_label"] = STATUS_LABELS.get(row["status"], row["status"])
    return page


async def sessions_to_write(
    actor: CurrentUser, *, now: datetime | None = None
) -> list[dict[str, Any]]:
    """The therapist's recent sessions (begun or completed) that have no note yet."""
    now = now or utcnow()
    therapist_id = await therapist_id_of(actor)
    if therapist_id is None:
        return []
    rows: list[dict[str, Any]] = (
        await Appointment.select(
            Appointment.id,
            Appointment.start_at,
            Appointment.status,
            *reading.joined("client_name", "client_email", "service_name", "timezone"),
        )
        .where(
            (Appointment.therapist == therapist_id)
            & Appointment.status.is_in([states.BOOKED, states.COMPLETED])
            & (Appointment.start_at <= now)
            & (Appointment.start_at >= now - timedelta(days=TO_WRITE_DAYS))
            & Appointment.id.not_in(TreatmentNote.select(TreatmentNote.appointment))
        )
        .order_by(Appointment.start_at, ascending=False)
        .limit(50)
        .run()
    )
    return rows


# -- progress -------------------------------------------------------------------------------


def _one_decimal(total: int, count: int) -> Decimal:
    return (Decimal(total) / Decimal(count)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


async def _baseline_intake(client_id: int, first_session: datetime | None) -> dict[str, Any] | None:
    """The intake the series started from: the last version saved before the first
    signed session (the first version if all came later)."""
    versions = sorted(await clients.intake_versions(client_id), key=lambda v: v["version"])
    if not versions:
        return None
    if first_session is None:
        return versions[-1]
    before = [v for v in versions if v["created_at"] <= first_session]
    return before[-1] if before else versions[0]


@dataclass(frozen=True)
class TriggerCell:
    count: int
    average: Decimal  # severity, one decimal

    @property
    def level(self) -> int:
        """The average rounded half up to 1, 2 or 3 (for shading)."""
        return int(self.average.quantize(Decimal("1"), rounding=ROUND_HALF_UP))


@dataclass
class RegionRow:
    code: str
    label: str
    # One cell per session (same order as Progress.sessions), None where none was found.
    cells: list[TriggerCell | None] = field(default_factory=list)


@dataclass
class Progress:
    client: dict[str, Any]
    intake: dict[str, Any] | None  # the current version: goals, concerns
    baseline: dict[str, Any] | None  # the version in effect before the first session
    sessions: list[dict[str, Any]]
    series: list[dict[str, Any]]
    regions: list[RegionRow]
    summary: dict[str, Any]


async def progress(client_id: int) -> Progress:
    """Figures from the client's signed notes (amended pain scores where corrected).

    Per session: "session k of N" from the package credit the appointment
    used, pain before and after, the change, symptom frequency, trigger
    points (count and average severity, per region too).
    """
    client = await clients.get_client(client_id)
    intake = await clients.current_intake(client_id)
    notes = await signed_notes_of(client_id)
    sessions: list[dict[str, Any]] = []
    for index, note in enumerate(notes, start=1):
        points = note["trigger_points"]
        before = note["pain_before_effective"]
        after = note["pain_after_effective"]
        sessions.append(
            {
                **note,
                "index": index,
                "before": before,
                "after": after,
                "change": (after - before) if before is not None and after is not None else None,
                "tp_count": len(points),
                "tp_average": (
                    _one_decimal(sum(int(p["severity"]) for p in points), len(points))
                    if points
                    else None
                ),
                "tp_reproduced": sum(1 for p in points if p["reproduced"]),
            }
        )
    codes: list[str] = []
    for session in sessions:
        for point in session["trigger_points"]:
            if point["region"] not in codes:
                codes.append(point["region"])
    order = {r.code: i for i, r in enumerate(regions.REGIONS)}
    codes.sort(key=lambda c: order.get(c, len(order)))
    rows: list[RegionRow] = []
    for code in codes:
        row = RegionRow(code=code, label=regions.label(code))
        for session in sessions:
            severities = [int(p["severity"]) for p in session["trigger_points"]
                          if p["region"] == code]  # fmt: skip
            row.cells.append(
                TriggerCell(len(severities), _one_decimal(sum(severities), len(severities)))
                if severities
                else None
            )
        rows.append(row)
    series = [
        s
        for s in await sales.client_sales(client_id)
        if s["status"] in (sales.ACTIVE, sales.REFUNDED)
        and (s["status"] == sales.ACTIVE or any(n.get("series_id") == s["id"] for n in sessions))
    ]
    for sale in series:
        sale["noted"] = sum(1 for n in sessions if n.get("series_id") == sale["id"])
    summary: dict[str, Any] = {"count": len(sessions)}
    if sessions:
        first, last = sessions[0], sessions[-1]
        summary.update(
            first_before=first["before"],
            last_before=last["before"],
            last_after=last["after"],
            first_tp=first["tp_count"],
            last_tp=last["tp_count"],
            average_relief=_one_decimal(sum(-(s["change"] or 0) for s in sessions), len(sessions)),
        )
    baseline = await _baseline_intake(client_id, sessions[0]["session_start"] if sessions else None)
    return Progress(
        client=client,
        intake=clients.present_intake(intake) if intake else None,
        baseline=baseline,
        sessions=sessions,
        series=series,
        regions=rows,
        summary=summary,
    )
