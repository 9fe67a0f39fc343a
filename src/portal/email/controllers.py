from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, MediaType, Response, get
from litestar.background_tasks import BackgroundTask
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, QueryParameter
from litestar.response import Template

from portal.email import service
from portal.email.messages import KINDS
from portal.settings import Settings
from portal.web.deps import ListParams, ViewerZone
from portal.web.guards import requires_owner

# The stored HTML of a message is shown in a sandboxed frame: no scripts, no
# requests, its own origin; inline styles only (mail HTML has nothing else).
HTML_PREVIEW_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'; sandbox"
)


def deliver_later(response: Response[Any], settings: Settings, message_id: int | None) -> None:
    """Send the stored message after the answer has gone out (SMTP only): a page answers
    at the same speed whether or not a message went out."""
    if message_id is not None and settings.smtp_host:
        response.background = BackgroundTask(service.deliver, message_id, settings=settings)


class OutboxController(Controller):
    path = "/outbox"
    guards = [requires_owner]

    @get("/", name="outbox")
    async def index(
        self,
        list_query: ListParams,
        viewer_zone: ViewerZone,
        kind: Annotated[str, QueryParameter(name="kind")] = "",
    ) -> Template:
        lq = list_query
        page = await service.list_messages(
            search=lq.search[:254], status=lq.status, kind=kind[:40], after=lq.after
        )
        return Template(
            "email/outbox/list.html",
            context={
                "page": page,
                "q": lq.q,
                "status": lq.status,
                "kind": kind,
                "statuses": service.STATUS_LABELS,
                "kinds": KINDS,
                "tz": viewer_zone,
            },
        )

    @get("/{message_id:int}", name="outbox_message")
    async def detail(self, message_id: FromPath[int], viewer_zone: ViewerZone) -> Template:
        message = await service.read_message(message_id)
        return Template(
            "email/outbox/message.html",
            context={
                "message": message,
                "statuses": service.STATUS_LABELS,
                "kinds": KINDS,
                "tz": viewer_zone,
            },
        )

    @get("/{message_id:int}/html", name="outbox_message_html", media_type=MediaType.HTML)
    async def html(self, message_id: FromPath[int]) -> Response[str]:
        message = await service.read_message(message_id)
        if not message["body_html"]:
            raise NotFoundException("This message has no HTML version.")
        return Response(
            message["body_html"],
            media_type=MediaType.HTML,
            headers={
                "content-security-policy": HTML_PREVIEW_POLICY,
                "x-frame-options": "SAMEORIGIN",
                "cache-control": "no-store",
            },
        )


ROUTES = [OutboxController]
