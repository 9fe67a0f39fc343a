"""Export pages: the owner's archive (ask, follow, download) and a client's own data."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath
from litestar.response import File, Template

from portal.errors import Conflict
from portal.exports import service
from portal.jobs import service as jobs
from portal.web.admin import reverse
from portal.web.deps import Address, AppSettings, SignedIn, ViewerZone
from portal.web.forms import read_form
from portal.web.guards import requires_owner, requires_role
from portal.web.responses import redirect

# The page of a running export asks for its status part this often (htmx).
POLL_SECONDS = 1


def _context(**values: Any) -> dict[str, Any]:
    return {
        "statuses": jobs.STATUS_LABELS,
        "percent": jobs.percent,
        "poll_seconds": POLL_SECONDS,
        "keep_hours": service.KEEP_HOURS,
        **values,
    }


class ExportsController(Controller):
    path = "/exports"
    guards = [requires_owner]

    @get("/", name="exports")
    async def index(self, request: Request[Any, Any, Any], user: SignedIn,
                    settings: AppSettings, viewer_zone: ViewerZone) -> Template:  # fmt: skip
        return Template(
            "exports/index.html",
            context=_context(
                tz=viewer_zone,
                exports=await service.my_exports(settings, user),
                queue_ready=request.app.state.get("jobs_queue") is not None,
            ),
        )

    @post("/", name="export_start")
    async def start(
        self, request: Request[Any, Any, Any], user: SignedIn, client_address: Address
    ) -> Response[Any]:
        values, _ = await read_form(request)
        queue = request.app.state.get("jobs_queue")
        if queue is None:
            return redirect(
                request, reverse(request, "exports"),
                "No job worker is connected to this server: start `portal worker`, or use "
                "`portal export --out FILE.zip` on the server.", "error",
            )  # fmt: skip
        try:
            run_id = await service.start(
                queue, user, notes_included=values.get("notes") == "yes", address=client_address
            )
        except Conflict as exc:
            return redirect(request, reverse(request, "exports"), exc.detail, "info")
        return redirect(
            request,
            reverse(request, "export_detail", export_id=run_id),
            "The export is queued; this page follows it.",
        )

    @get("/{export_id:int}", name="export_detail")
    async def detail(
        self, request: Request[Any, Any, Any], user: SignedIn, settings: AppSettings,
        export_id: FromPath[int], viewer_zone: ViewerZone,
    ) -> Template:  # fmt: skip
        """An export's page; htmx asks for only its status part while it runs."""
        export = await service.get_export(settings, user, export_id)
        template = (
            "exports/_status.html" if request.headers.get("hx-request") else "exports/detail.html"
        )
        return Template(template, context=_context(export=export, tz=viewer_zone))

    @get("/{export_id:int}/download", name="export_download")
    async def download(
        self, user: SignedIn, settings: AppSettings, client_address: Address,
        export_id: FromPath[int],
    ) -> File:  # fmt: skip
        path, name = await service.archive_for(settings, user, export_id, address=client_address)
        return File(path=path, filename=name, media_type="application/zip")


class ClientDataController(Controller):
    path = "/account/data"
    guards = [requires_role("client")]

    @get("/", name="account_data")
    async def download(self, user: SignedIn, client_address: Address) -> Response[bytes]:
        body = await service.client_archive(user, address=client_address)
        return Response(
            body,
            media_type="application/zip",
            headers={"Content-Disposition": 'attachment; filename="my-clinic-portal-data.zip"'},
        )


ROUTES = [ExportsController, ClientDataController]
