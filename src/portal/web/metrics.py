"""``GET /metrics``: the Prometheus exposition, for the monitoring system only.

A public route as far as the session guards go (Prometheus has no account),
with its own rule: a request bearing ``Authorization: Bearer <METRICS_TOKEN>``,
or one from an address in ``METRICS_ALLOW_IPS`` (the client's address as the
portal sees it: the peer, or a trusted proxy's ``X-Forwarded-For``). Anyone
else gets the ordinary 404 page, as if there were nothing here; with neither
setting, everyone does.
"""

from __future__ import annotations

import hmac
from typing import Any

from litestar import Request, Response, get
from litestar.exceptions import NotFoundException

from portal import metrics
from portal.settings import Settings
from portal.web.requestcontext import AddressSet, peer_host

METRICS_PATH = "/metrics"


def _bearer(request: Request[Any, Any, Any]) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def may_read_metrics(settings: Settings, request: Request[Any, Any, Any]) -> bool:
    token = _bearer(request)
    if settings.metrics_token and token:
        return hmac.compare_digest(token.encode(), settings.metrics_token.encode())
    return peer_host(request.scope) in AddressSet(settings.metrics_allow_ips)


@get(METRICS_PATH, opt={"public": True}, name="metrics", include_in_schema=False)
async def metrics_endpoint(request: Request[Any, Any, Any]) -> Response[bytes]:
    if not may_read_metrics(request.app.state.settings, request):
        raise NotFoundException()
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)
