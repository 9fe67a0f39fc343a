"""The jobs page (owners): schedules, last and next runs, failures, "run now", live progress."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import FromPath
from litestar.response import Redirect, Template

from portal.errors import Conflict
from portal.jobs import queue, service
from portal.web.deps import ViewerZone
from portal.web.guards import current_user, requires_owner
from portal.web.responses import client_address, redirect

# A running job's part of the page asks again this often (htmx).
POLL_SECONDS = 1


def _queue(request: Request[Any, Any, Any]) -> Any:
    """The process's job queue, set up by the app's lifespan (absent: none here)."""
    return request.app.state.get("jobs_queue")


def _context(**values: Any) -> dict[str, Any]:
    return {
        "statuses": service.STATUS_LABELS,
        "triggers": service.TRIGGER_LABELS,
        "percent": service.percent,
        "label_of": service.label_of,
        "poll_seconds": POLL_SECONDS,
        **values,
    }


class JobsController(Controller):
    path = "/jobs"
    guards = [requires_owner]

    @get("/", name="jobs")
    async def index(self, request: Request[Any, Any, Any], viewer_zone: ViewerZone) -> Template:
        settings = request.app.state.settings
        return Template(
            "jobs/index.html",
            context=_context(
                tz=viewer_zone,
                jobs=await service.overview(settings),
                runs=await service.recent_runs(),
                queue_ready=_queue(request) is not None,
                workers=await service.workers(settings),
            ),
        )

    @post("/{job:str}/run", name="job_run_now")
    async def run_now(self, request: Request[Any, Any, Any], job: FromPath[str]) -> Redirect:
        app = _queue(request)
        if app is None:
            return redirect(
                request,
                "/jobs",
                "No job queue is running in this server process; start `portal worker` "
                "and the server with DATABASE_URL set.",
                "error",
            )
        try:
            run_id = await queue.request_run(
                app, job, current_user(request), client_address(request)
            )
        except Conflict as exc:
            return redirect(request, "/jobs", exc.detail, "info")
        return redirect(
            request,
            f"/jobs/runs/{run_id}",
            f"“{service.label_of(job)}” is queued; it starts within seconds.",
        )

    @get("/runs/{run_id:int}", name="job_run")
    async def run(
        self, request: Request[Any, Any, Any], run_id: FromPath[int], viewer_zone: ViewerZone
    ) -> Template:
        """A run's page; htmx asks for only its progress part while it runs."""
        run = await service.get_run(run_id)
        template = "jobs/_run.html" if request.headers.get("hx-request") else "jobs/run.html"
        return Template(template, context=_context(run=run, tz=viewer_zone))


ROUTES = [JobsController]
