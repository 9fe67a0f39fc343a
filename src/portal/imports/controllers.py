"""The import wizard (owners; managers for their locations): upload → map the columns →
dry run → confirm → the batch's page with its progress, result, rejected rows and Undo.

Every step is a plain form (no JavaScript needed): the uploaded file is kept under the
var directory and named by a token the next forms carry. A confirmed import runs as the
``imports`` job on the worker; the batch page refreshes itself while it runs (htmx, or
a meta refresh without JavaScript).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from litestar import Controller, Request, get, post
from litestar.datastructures import UploadFile
from litestar.params import FromPath
from litestar.response import Redirect, Response, Template

from portal import access
from portal.errors import Conflict, Invalid
from portal.imports import reading, values
from portal.imports import service as imports
from portal.imports.layouts import LAYOUTS, guess_mapping
from portal.imports.tables import ImportMapping
from portal.locations.service import locations_for
from portal.web.admin import reverse
from portal.web.deps import Acting, Actor, AppSettings, SignedIn, ViewerZone
from portal.web.forms import read_form
from portal.web.guards import requires_role
from portal.web.responses import redirect

POLL_SECONDS = 1
KIND_LABELS = {kind: LAYOUTS[kind].title for kind in imports.KINDS}


def _directory(settings: Any) -> Path:
    return Path(settings.var_dir) / "imports"


async def _locations(user: SignedIn) -> list[dict[str, Any]]:
    rows = await locations_for(user)
    return [loc for loc in rows if access.can_write(user, int(loc["id"]))]


async def _mappings(kind: str) -> list[str]:
    rows = (
        await ImportMapping.select(ImportMapping.name)
        .where(ImportMapping.kind == kind)
        .order_by(ImportMapping.name)
        .run()
    )
    return [str(r["name"]) for r in rows]


async def _run_queued(request: Request[Any, Any, Any], user: SignedIn, batch_id: int) -> Redirect:
    """The queued batches handed to the worker (or run here when none runs); to the batch."""
    queue = request.app.state.get("jobs_queue")
    if queue is not None:
        with contextlib.suppress(Exception):  # already waiting: it takes this batch too
            await queue.configure_task("portal.imports", queueing_lock="imports").defer_async(
                requested_by=user.id
            )
    else:
        await imports.run_queued()
    return redirect(
        request,
        reverse(request, "import_batch", batch_id=batch_id),
        "The import is under way." if queue is not None else "The import has run.",
    )


class ImportsController(Controller):
    path = "/imports"
    guards = [requires_role("owner", "manager")]

    async def _start_page(
        self, user: SignedIn, form: dict[str, str], errors: dict[str, str], status: int = 200
    ) -> Template:
        return Template(
            "imports/index.html",
            context={
                "batches": await imports.batches_for(user),
                "locations": await _locations(user),
                "kinds": KIND_LABELS,
                "statuses": imports.STATUS_LABELS,
                "limit": reading.MAX_BYTES_TEXT,
                "form": form,
                "errors": errors,
            },
            status_code=status,
        )

    @get("/", name="imports")
    async def index(self, user: SignedIn) -> Template:
        return await self._start_page(user, {}, {})

    @post("/upload", name="import_upload", request_max_body_size=reading.MAX_BYTES + 65536)
    async def upload(
        self, request: Request[Any, Any, Any], user: SignedIn, settings: AppSettings
    ) -> Template:
        """Step 2: the file read, its columns mapped (guessed or a saved mapping)."""
        form = await request.form()
        fields = {k: str(form.get(k) or "") for k in ("kind", "location", "saved_mapping")}
        upload = form.get("file")
        errors: dict[str, str] = {}
        if fields["kind"] not in imports.KINDS:
            errors["kind"] = "Choose what the file holds."
        if not fields["location"].isdigit() or not access.can_write(user, int(fields["location"])):
            errors["location"] = "Choose a location you manage."
        data = await upload.read() if isinstance(upload, UploadFile) else b""
        if not data:
            named = upload.filename if isinstance(upload, UploadFile) else ""
            errors["file"] = f"{named} is empty." if named else "Choose a CSV or XLSX file."
        if errors:
            return await self._start_page(user, fields, errors, 422)
        name = upload.filename if isinstance(upload, UploadFile) else "upload"
        token = imports.stage_file(_directory(settings), name, data)
        try:
            sheet = reading.open_sheet(_directory(settings) / token, filename=name)
        except reading.FileProblem as exc:
            return await self._start_page(user, fields, {"file": str(exc)}, 422)
        return await self._map_page(user, sheet, token, name, fields, {})

    async def _map_page(
        self,
        user: SignedIn,
        sheet: reading.Sheet,
        token: str,
        name: str,
        fields: dict[str, str],
        errors: dict[str, str],
        mapping: dict[str, str] | None = None,
        status: int = 200,
    ) -> Template:
        layout = LAYOUTS[fields["kind"]]
        if mapping is None:
            mapping = guess_mapping(layout, sheet.headers)
            if fields.get("saved_mapping"):
                with contextlib.suppress(Exception):
                    mapping = await imports.saved_mapping(layout.kind, fields["saved_mapping"])
        order_needed = False
        try:
            imports.sniff_date_order(sheet, mapping, layout.kind)
        except values.AmbiguousDates:
            order_needed = True
        except ValueError as exc:
            errors.setdefault("date_order", str(exc))
        return Template(
            "imports/map.html",
            context={
                "layout": layout,
                "header_options": [(h, h) for h in sheet.headers],
                "mapping": mapping,
                "token": token,
                "filename": name,
                "fields": fields,
                "errors": errors,
                "order_needed": order_needed,
                "orders": values.DATE_ORDERS,
                "saved": await _mappings(layout.kind),
                "sheet": sheet,
            },
            status_code=status,
        )

    async def _read_step(
        self, request: Request[Any, Any, Any], user: SignedIn, settings: Any
    ) -> tuple[dict[str, str], reading.Sheet, dict[str, str]]:
        single, _ = await read_form(request)
        kind = single.get("kind", "")
        if kind not in imports.KINDS:
            raise Invalid({"kind": "Choose what the file holds."})
        location = single.get("location", "")
        if not location.isdigit():
            raise Invalid({"location": "Choose a location you manage."})
        access.ensure_write(user, int(location))
        path = imports.staged(_directory(settings), single.get("token", ""))
        sheet = reading.open_sheet(path, filename=single.get("filename", ""))
        return single, sheet, imports.parse_mapping(LAYOUTS[kind], single)

    @post("/check", name="import_check")
    async def check(
        self, request: Request[Any, Any, Any], user: SignedIn, settings: AppSettings
    ) -> Template:
        """Step 3: the dry run — counts, every failing row, the merge rule."""
        single, sheet, mapping = await self._read_step(request, user, settings)
        kind, location = single["kind"], int(single["location"])
        order = single.get("date_order") or None
        try:
            summary = await imports.run_import(
                kind, sheet, location_id=location, mapping=mapping, actor=user, order=order,
                dry_run=True, filename=single.get("filename", ""),
            )  # fmt: skip
        except Invalid as exc:
            errors = {f"map_{k}": v for k, v in exc.errors.items()}
            return await self._map_page(
                user, sheet, single["token"], single.get("filename", ""), single, errors,
                mapping, 422,
            )  # fmt: skip
        except values.AmbiguousDates as exc:
            return await self._map_page(
                user, sheet, single["token"], single.get("filename", ""), single,
                {"date_order": str(exc)}, mapping, 422,
            )  # fmt: skip
        if single.get("mapping_name"):
            await imports.save_mapping(user, kind, single["mapping_name"], mapping)
        return Template(
            "imports/check.html",
            context={
                "summary": summary,
                "layout": LAYOUTS[kind],
                "mapping": mapping,
                "fields": single,
                "kinds": KIND_LABELS,
            },
        )

    @post("/start", name="import_start")
    async def start(self, acting: Actor) -> Redirect:
        """Step 4: confirmed — queued for the worker (or run here when none runs)."""
        request, user = acting.request, acting.user
        single, sheet, mapping = await self._read_step(request, user, acting.settings)
        batch_id = await imports.queue_batch(
            user, single["kind"], sheet, location_id=int(single["location"]), mapping=mapping,
            order=single.get("date_order") or "dmy", filename=single.get("filename", ""),
            address=acting.address,
        )  # fmt: skip
        return await _run_queued(request, user, batch_id)

    @get("/{batch_id:int}", name="import_batch")
    async def batch(
        self, request: Request[Any, Any, Any], user: SignedIn, batch_id: FromPath[int],
        viewer_zone: ViewerZone,
    ) -> Template:  # fmt: skip
        batch = await imports.get_batch_for(user, batch_id)
        partial = bool(request.headers.get("hx-request"))
        return Template(
            "imports/_batch.html" if partial else "imports/batch.html",
            context={
                "batch": batch,
                "tz": viewer_zone,
                "statuses": imports.STATUS_LABELS,
                "kinds": KIND_LABELS,
                "poll_seconds": POLL_SECONDS,
                "failures": [] if partial else (await imports.rejected_rows(batch_id))[:50],
                "may_undo": access.can_write(user, int(batch["location"])),
            },
        )

    @get("/{batch_id:int}/rejected.csv", name="import_rejected")
    async def rejected(self, user: SignedIn, batch_id: FromPath[int]) -> Response[str]:
        batch = await imports.get_batch_for(user, batch_id)
        text = imports.rejected_csv(
            await imports.rejected_rows(batch_id), LAYOUTS[str(batch["kind"])]
        )
        return Response(
            text,
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="import-{batch_id}-rejected.csv"'
            },
        )

    @post("/{batch_id:int}/undo", name="import_undo")
    async def undo(self, acting: Actor, batch_id: FromPath[int]) -> Redirect:
        url = reverse(acting.request, "import_batch", batch_id=batch_id)
        refused = await _act(acting, batch_id, imports.undo)
        return refused or redirect(acting.request, url, "The import has been undone.")

    @post("/{batch_id:int}/resume", name="import_resume")
    async def resume(self, acting: Actor, batch_id: FromPath[int]) -> Redirect:
        """A batch that stopped part-way runs on from where it stopped."""
        refused = await _act(acting, batch_id, imports.resume)
        return refused or await _run_queued(acting.request, acting.user, batch_id)


async def _act(
    acting: Acting, batch_id: int, act: Callable[..., Awaitable[None]]
) -> Redirect | None:
    """Undo or resume a batch of a location the user manages; when refused, back to the
    batch's page with the reason."""
    request, user = acting.request, acting.user
    await imports.get_batch_for(user, batch_id, write=True)
    try:
        await act(user, batch_id, address=acting.address)
    except Conflict as exc:
        url = reverse(request, "import_batch", batch_id=batch_id)
        return redirect(request, url, exc.detail, "error")
    return None


ROUTES = [ImportsController]
