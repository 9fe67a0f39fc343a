"""Treatment note pages: write, sign, amend, read; progress and its printout; the access log."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template

from portal.auth.service import CLIENT, MANAGER, OWNER, THERAPIST, CurrentUser
from portal.bookings import reading
from portal.bookings.credits import credit_label
from portal.bookings.states import STATUS_LABELS as APPOINTMENT_STATUS
from portal.clients import regions
from portal.clients import service as clients
from portal.locations.service import all_locations
from portal.notes import charts, service
from portal.notes import form as note_form
from portal.timeutil import to_local, utcnow
from portal.web.admin import history_page, reverse
from portal.web.deps import Address, LocatedParams, SignedIn, ViewerZone
from portal.web.forms import ValidationFailed, read_form
from portal.web.guards import requires_owner, requires_role
from portal.web.responses import redirect

readers = requires_role(OWNER, MANAGER, THERAPIST, CLIENT)
listers = requires_role(OWNER, MANAGER, THERAPIST)
therapists = requires_role(THERAPIST)
progress_readers = requires_role(OWNER, THERAPIST, CLIENT)
clients_only = requires_role(CLIENT)
# Earlier notes shown beside the form while writing.
PREVIOUS_SHOWN = 6


def _int(raw: str | None) -> int | None:
    try:
        return int(raw) if raw not in (None, "") else None
    except ValueError:
        return None


def _date(raw: str | None) -> date | None:
    try:
        return date.fromisoformat(raw) if raw else None
    except ValueError:
        return None


Req = Request[Any, Any, Any]
Note = dict[str, Any]


@dataclass(frozen=True)
class Reader:
    """Who reads or writes notes, and from which address: each read of a note's contents
    appends both to the access log (``service.record_read``)."""

    user: CurrentUser
    address: str


def _provide_reader(user: SignedIn, client_address: Address) -> Reader:
    return Reader(user, client_address)


async def _provide_authored(reader: ReaderOf, note_id: FromPath[int]) -> Note:
    """The note of the path, if the reader is its therapist (who alone writes, signs and
    amends it): 404 when there is none, 403 when it is not theirs."""
    note = await service.get_note(note_id)
    await service.ensure_author(reader.user, note)
    return note


READER = {"reader": Provide(_provide_reader, sync_to_thread=False)}
AUTHOR = {**READER, "authored": Provide(_provide_authored)}
# How a handler asks for them (``reader: ReaderOf``, ``authored: AuthoredNote``).
ReaderOf = NamedDependency[Reader]
AuthoredNote = NamedDependency[Note]


def _form_choices() -> dict[str, Any]:
    return {
        "region_groups": regions.grouped(),
        "regions_all": regions.REGIONS,
        "techniques": note_form.TECHNIQUES,
        "pressures": note_form.PRESSURES,
        "sides": note_form.SIDES,
        "severities": note_form.SEVERITIES,
        "labels": note_form.LABELS,
    }


async def _compose_page(
    reader: Reader,
    appointment: dict[str, Any],
    form: dict[str, Any],
    *,
    note: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    extra_rows: int = 0,
    status_code: int = 200,
) -> Template:
    """The writing page: the form, with the client's intake and earlier notes beside it.

    Every rendering that shows them (the first, one with more rows, one with a
    validation error) appends its access-log row first; a page that only says
    why no note can be written yet shows neither and logs nothing.
    """
    client_id = int(appointment["client"])
    problem = service.writable_problem(appointment) if note is None else None
    if problem is None:
        await service.record_read(
            reader.user,
            service.COMPOSE,
            client_id,
            note_id=int(note["id"]) if note else None,
            address=reader.address,
        )
    intake = await clients.current_intake(client_id)
    previous = await service.signed_notes_of(
        client_id, before=appointment["start_at"], limit=PREVIOUS_SHOWN
    )
    previous.reverse()
    series = await credit_label(appointment["sale_session"], appointment["id"])
    action = f"/notes/{note['id']}/edit" if note else f"/notes/appointment/{appointment['id']}"
    return Template(
        "notes/compose.html",
        context={
            "a": appointment,
            "note": note,
            "form": form,
            "errors": errors or {},
            "rows": note_form.trigger_rows(form, extra_rows),
            "extra_rows": extra_rows,
            "intake": clients.present_intake(intake) if intake else None,
            "previous": previous,
            "series_label": series,
            "action": action,
            "problem": problem,
            **_form_choices(),
            "labels": note_form.error_labels(errors or {}),
        },
        status_code=status_code,
    )


async def _detail_page(
    reader: Reader,
    note: dict[str, Any],
    *,
    amend_form: dict[str, str] | None = None,
    amend_errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Template:
    level = await service.note_access(reader.user, note)
    detail = service.metadata(note)
    if level == service.FULL:
        await service.record_read(
            reader.user, service.VIEW, int(note["client"]), note_id=int(note["id"]),
            address=reader.address,
        )  # fmt: skip
        detail = await service.note_detail(note)
    therapist_id = await service.therapist_id_of(reader.user)
    return Template(
        "notes/detail.html",
        context={
            "n": detail,
            "level": level,
            "is_author": therapist_id is not None and therapist_id == note["therapist"],
            "amend_form": amend_form or {},
            "amend_errors": amend_errors or {},
            "amendable": note_form.AMENDABLE,
            "numeric_fields": note_form.NUMERIC_AMENDMENTS,
            "labels": note_form.LABELS,
            "severities": note_form.SEVERITIES,
            "progress_url": (
                "/account/progress" if reader.user.role == CLIENT else f"/progress/{note['client']}"
            ),
        },
        status_code=status_code,
    )


def _chosen_location(raw: str, locations: list[dict[str, Any]]) -> int | None:
    """The location filter's id, when it is one of ``locations``; else no filter."""
    location_id = _int(raw)
    if location_id is not None and not any(loc["id"] == location_id for loc in locations):
        return None
    return location_id


async def _draft_submitted(
    request: Req,
    reader: Reader,
    appointment: dict[str, Any],
    save: Callable[[note_form.NoteInput], Awaitable[int]],
    *,
    note: dict[str, Any] | None = None,
) -> Response[Any]:
    """A draft form sent (a new note's or a draft's): more trigger rows, the form again
    with its errors, or the draft saved by ``save`` and the next step (review or read)."""
    values, multi = await read_form(request)
    submitted = note_form.form_from_submission(values, multi)
    if values.get("action") == "more_rows" and (note is None or note["status"] == service.DRAFT):
        extra = (_int(values.get("extra_rows")) or 0) + 3
        return await _compose_page(reader, appointment, submitted, note=note,
                                   extra_rows=extra)  # fmt: skip
    try:
        if note is not None and note["status"] != service.DRAFT:
            raise ValidationFailed({"form": service.SIGNED_NOTE_MESSAGE})
        note_id = await save(note_form.parse_note(values, multi))
    except ValidationFailed as exc:
        return await _compose_page(reader, appointment, submitted, note=note,
                                   errors=exc.errors, status_code=422)  # fmt: skip
    if values.get("action") == "review":
        return _to_note(request, "note_sign_review", note_id, "Draft saved. Review it and sign.")
    return _to_note(request, "note_detail", note_id, "Draft saved.")


def _to_note(
    request: Req, route: str, note_id: int, message: str, level: str = "success"
) -> Response[Any]:
    """Back to one of the note's pages (``route``) with a message."""
    return redirect(request, reverse(request, route, note_id=note_id), message, level)


class NotesController(Controller):
    path = "/notes"
    dependencies = AUTHOR

    @get("/", guards=[listers], name="notes")
    async def index(self, user: SignedIn, located_query: LocatedParams) -> Template:
        lq = located_query
        locations = await all_locations(active_only=False, visible_to=user)
        location_id = _chosen_location(lq.location, locations)
        filters = service.NoteFilters(
            status=lq.status, location_id=location_id, search=lq.search[:120]
        )
        page = await service.list_notes(user, filters, after=lq.after)
        to_write = await service.sessions_to_write(user) if user.role == THERAPIST else []
        return Template(
            "notes/list.html",
            context={
                "page": page,
                "to_write": to_write,
                "status": lq.status,
                "location": str(location_id or ""),
                "q": lq.q,
                "locations": locations if user.role != THERAPIST else [],
                "statuses": service.STATUS_LABELS,
            },
        )

    @get("/access-log", guards=[requires_owner], name="notes_access_log")
    async def access_log(
        self,
        viewer_zone: ViewerZone,
        client: Annotated[str, QueryParameter(name="client")] = "",
        actor: Annotated[str, QueryParameter(name="actor")] = "",
        action: Annotated[str, QueryParameter(name="action")] = "",
        note: Annotated[str, QueryParameter(name="note")] = "",
        day_from: Annotated[str, QueryParameter(name="from")] = "",
        day_to: Annotated[str, QueryParameter(name="to")] = "",
        after: Annotated[str | None, QueryParameter(name="after")] = None,
    ) -> Template:
        filters = service.AccessFilters(
            client=client.strip()[:120],
            actor=actor.strip()[:120],
            action=action,
            note_id=_int(note.strip()),
            day_from=_date(day_from),
            day_to=_date(day_to),
            zone=viewer_zone,
        )
        page = await service.access_log(filters, after=after)
        return Template(
            "notes/access_log.html",
            context={
                "page": page,
                "f": {"client": client, "actor": actor, "action": action, "note": note,
                      "from": day_from, "to": day_to},
                "actions": service.ACCESS_ACTIONS,
                "tz": filters.zone,
            },
        )  # fmt: skip

    # -- writing --------------------------------------------------------------------------

    @get("/appointment/{appointment_id:int}", guards=[readers], name="note_for_appointment")
    async def for_appointment(
        self, request: Req, reader: ReaderOf, appointment_id: FromPath[int]
    ) -> Response[Any]:
        """The appointment's note; for its therapist, the form to write one."""
        appointment = await reading.get_appointment_for(reader.user, appointment_id)
        note_id = await service.note_for_appointment(appointment_id)
        if note_id is not None:
            return Redirect(path=reverse(request, "note_detail", note_id=note_id), status_code=303)
        if reader.user.role == THERAPIST:
            await service.appointment_for_writing(reader.user, appointment_id)
            form = note_form.form_from_note(None)
            return await _compose_page(reader, appointment, form)
        return Template(
            "notes/none.html",
            context={"a": appointment, "labels": APPOINTMENT_STATUS},
        )

    @post("/appointment/{appointment_id:int}", guards=[therapists], name="note_create")
    async def create(
        self,
        request: Req,
        reader: ReaderOf,
        appointment_id: FromPath[int],
    ) -> Response[Any]:
        appointment = await service.appointment_for_writing(reader.user, appointment_id)

        async def start(data: note_form.NoteInput) -> int:
            return await service.start_note(
                reader.user, appointment_id, data, address=reader.address
            )

        try:
            return await _draft_submitted(request, reader, appointment, start)
        except service.NoteExists as exc:
            return _to_note(
                request, "note_edit", exc.note_id,
                "This session already has a note; it is open here. Nothing new was saved.",
                "info",
            )  # fmt: skip

    @get("/{note_id:int}", guards=[readers], name="note_detail")
    async def detail(self, reader: ReaderOf, note_id: FromPath[int]) -> Template:
        return await _detail_page(reader, await service.get_note(note_id))

    @get("/{note_id:int}/edit", guards=[therapists], name="note_edit")
    async def edit(self, request: Req, reader: ReaderOf, authored: AuthoredNote) -> Response[Any]:
        note_id = int(authored["id"])
        if authored["status"] != service.DRAFT:
            return _to_note(request, "note_detail", note_id, service.SIGNED_NOTE_MESSAGE, "info")
        detail = await service.note_detail(authored)
        appointment = await reading.get_appointment(int(authored["appointment"]))
        form = note_form.form_from_note(detail)
        return await _compose_page(reader, appointment, form, note=detail)

    @post("/{note_id:int}/edit", guards=[therapists], name="note_update")
    async def update(self, request: Req, reader: ReaderOf, authored: AuthoredNote) -> Response[Any]:
        note_id = int(authored["id"])
        appointment = await reading.get_appointment(int(authored["appointment"]))

        async def save(data: note_form.NoteInput) -> int:
            await service.save_draft(reader.user, note_id, data, address=reader.address)
            return note_id

        return await _draft_submitted(request, reader, appointment, save, note=authored)

    # -- signing and amending -------------------------------------------------------------

    @get("/{note_id:int}/sign", guards=[therapists], name="note_sign_review")
    async def sign_review(
        self, request: Req, reader: ReaderOf, authored: AuthoredNote
    ) -> Response[Any]:
        note_id = int(authored["id"])
        if authored["status"] != service.DRAFT:
            return _to_note(request, "note_detail", note_id, "This note is already signed.", "info")
        return await _sign_page(reader, authored)

    @post("/{note_id:int}/sign", guards=[therapists], name="note_sign")
    async def sign(self, request: Req, reader: ReaderOf, authored: AuthoredNote) -> Response[Any]:
        note_id = int(authored["id"])
        values, _ = await read_form(request)
        try:
            await service.sign(
                reader.user,
                note_id,
                confirmed=values.get("confirm") == "on",
                address=reader.address,
            )
        except ValidationFailed as exc:
            note = await service.get_note(note_id)
            return await _sign_page(reader, note, exc.errors, status_code=422)
        return _to_note(
            request, "note_detail", note_id,
            "Note signed. It can no longer be changed; corrections are added as amendments.",
        )  # fmt: skip

    @post("/{note_id:int}/amend", guards=[therapists], name="note_amend")
    async def amend(self, request: Req, reader: ReaderOf, authored: AuthoredNote) -> Response[Any]:
        note_id = int(authored["id"])
        values, _ = await read_form(request)
        try:
            data = note_form.parse_amendment(values)
            await service.amend(reader.user, note_id, data, address=reader.address)
        except ValidationFailed as exc:
            return await _detail_page(reader, authored, amend_form=values,
                                      amend_errors=exc.errors, status_code=422)  # fmt: skip
        path = reverse(request, "note_detail", note_id=note_id) + "#amendments"
        message = "Amendment added. The original note stays as it was signed."
        return redirect(request, path, message)

    @get("/{note_id:int}/history", guards=[requires_owner], name="note_history")
    async def history(self, note_id: FromPath[int]) -> Template:
        note = await service.get_note(note_id)
        client = note["client_name"] or note["client_email"]
        return await history_page(
            "treatment_note", note_id, title=f"History of note #{note_id} ({client})",
            back_url=f"/notes/{note_id}", tz=note["timezone"],
        )  # fmt: skip


async def _sign_page(
    reader: Reader,
    note: dict[str, Any],
    errors: dict[str, str] | None = None,
    *,
    status_code: int = 200,
) -> Template:
    """The signing review: the whole draft (a logged read) and what still stops signing."""
    detail = await service.note_detail(note)
    await service.record_read(
        reader.user,
        service.VIEW,
        int(note["client"]),
        note_id=int(note["id"]),
        address=reader.address,
    )
    return Template(
        "notes/sign.html",
        context={
            "n": detail,
            "problems": await service.sign_problems(detail),
            "errors": errors or {},
            "labels": note_form.LABELS,
        },
        status_code=status_code,
    )


# -- progress --------------------------------------------------------------------------------


async def _progress_context(reader: Reader, client_id: int, *, printout: bool) -> dict[str, Any]:
    await service.ensure_progress_access(reader.user, client_id)
    await service.record_read(
        reader.user, service.PRINT if printout else service.PROGRESS, client_id,
        address=reader.address,
    )  # fmt: skip
    data = await service.progress(client_id)
    points = [
        charts.PainPoint(
            label=(
                f"{s['series_position']}/{s['series_total']}"
                if s.get("series_position") and s.get("series_total")
                else f"#{s['index']}"
            ),
            sublabel=to_local(s["session_start"], s["timezone"]).strftime("%d %b"),
            before=s["before"],
            after=s["after"],
            corrected=bool(s["pain_before_corrected"] or s["pain_after_corrected"]),
        )
        for s in data.sessions
    ]
    intake_pain = data.baseline["pain_level"] if data.baseline else None
    own = reader.user.role == CLIENT
    base = "/account/progress" if own else f"/progress/{client_id}"
    return {
        "p": data,
        "chart": charts.pain_chart(points, intake=intake_pain) if data.sessions else "",
        "own": own,
        "base_url": base,
        "print_url": f"{base}/print",
        "prepared_at": utcnow(),
        "tz": data.client["timezone"],
        "therapists": sorted({s["therapist_name"] for s in data.sessions}),
        "locations": sorted({s["location_name"] for s in data.sessions}),
        # The printout's letterhead: each clinic's address and phone, each therapist's
        # licence, for the physician who reads it.
        "clinics": sorted(
            {
                (s["location_name"], s.get("location_address") or "", s.get("location_phone") or "")
                for s in data.sessions
            }
        ),
        "licences": sorted(
            {
                (
                    s["therapist_name"],
                    " ".join(
                        filter(None, (s.get("therapist_licence_state"), s.get("therapist_licence")))
                    ),
                )
                for s in data.sessions
            }
        ),
        "severities": note_form.SEVERITIES,
    }


class ProgressController(Controller):
    path = "/progress"
    dependencies = READER

    @get("/{progress_client_id:int}", guards=[progress_readers], name="client_progress")
    async def page(self, reader: ReaderOf, progress_client_id: FromPath[int]) -> Template:
        context = await _progress_context(reader, progress_client_id, printout=False)
        return Template("notes/progress.html", context=context)

    @get("/{progress_client_id:int}/print", guards=[progress_readers], name="client_progress_print")
    async def printout(self, reader: ReaderOf, progress_client_id: FromPath[int]) -> Template:
        context = await _progress_context(reader, progress_client_id, printout=True)
        return Template("notes/progress_print.html", context=context)


class MyProgressController(Controller):
    path = "/account/progress"
    dependencies = READER
    guards = [clients_only]

    @get("/", name="my_progress")
    async def page(self, reader: ReaderOf) -> Template:
        context = await _progress_context(reader, reader.user.id, printout=False)
        return Template("notes/progress.html", context=context)

    @get("/print", name="my_progress_print")
    async def printout(self, reader: ReaderOf) -> Template:
        context = await _progress_context(reader, reader.user.id, printout=True)
        return Template("notes/progress_print.html", context=context)


ROUTES = [NotesController, ProgressController, MyProgressController]
