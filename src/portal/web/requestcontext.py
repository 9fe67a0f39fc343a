"""Every request's id, its log line and its metrics; the trusted proxy's headers.

:class:`RequestContext` is the outermost layer of the app (``create_app``
installs it around Litestar's own handler, so paths that match no route — the
404 page — pass through it too; route middleware would miss them). For each
HTTP request it:

1. takes the request id from ``X-Request-ID`` when the connection's peer is one
   of the trusted proxies (``FORWARDED_ALLOW_IPS``) and the value is a sane
   token, and makes a new one otherwise — a visitor cannot plant an id that
   would tie their request to someone else's lines;
2. believes ``X-Forwarded-For`` / ``-Proto`` from those same proxies only
   (uvicorn's ``ProxyHeadersMiddleware``, applied here rather than by the
   server so that step 1 still sees the real peer);
3. binds the id to the logging context (``portal.logs.bound``) for the whole
   request, keeps it in ``scope["state"]`` for the error pages ("quote this
   reference") and sends it back in the ``X-Request-ID`` response header;
4. writes one line per request to the ``portal.request`` logger — id, user id,
   method, route template, status, duration, client address — and records the
   request in the Prometheus metrics by route template.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import secrets
import time
from typing import Any

from litestar.datastructures import MutableScopeHeaders
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from portal import logs, metrics
from portal.identity import CurrentUser

REQUEST_ID_HEADER = "x-request-id"
# Ids a proxy may hand in: a token of common id characters (UUIDs, hex, AWS
# trace ids), nothing that could break a log line or a header.
INCOMING_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:=+/-]{0,127}")
# The route label of a request no route answered (404, 405): one series, not one per path.
UNMATCHED_ROUTE = "unmatched"

request_log = logging.getLogger("portal.request")

# The path of a password-reset or sign-up confirmation link is its secret. The
# request line names the route template, so a matched link never shows its
# token; an unmatched path is logged with these hidden all the same.
SECRET_PATH_RES = (
    (re.compile(r"/password/reset/[^\s?#\"]+"), "/password/reset/[hidden]"),
    (re.compile(r"/signup/confirm/[^\s?#\"]+"), "/signup/confirm/[hidden]"),
)


def hide_secret_paths(text: str) -> str:
    for pattern, replacement in SECRET_PATH_RES:
        text = pattern.sub(replacement, text)
    return text


class AddressSet:
    """Addresses and networks from a comma-separated setting (``10.0.0.5, 10.1.0.0/16``).

    ``*`` admits every peer; a name that is not an address (a Unix socket's,
    a test client's) is compared as it is. Empty admits none.
    """

    def __init__(self, spec: str) -> None:
        self.spec = spec.strip()
        items = [item.strip() for item in self.spec.split(",") if item.strip()]
        self.everyone = "*" in items
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.names: set[str] = set()
        for item in items:
            try:
                self.networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                self.names.add(item)

    def __bool__(self) -> bool:
        return bool(self.spec)

    def __contains__(self, host: object) -> bool:
        if not isinstance(host, str) or not host:
            return False
        if self.everyone or host in self.names:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.networks)


def peer_host(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""


def new_request_id() -> str:
    """16 hex digits: unique enough to find one request's lines, short enough to read out."""
    return secrets.token_hex(8)


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1")).strip()
    return ""


def choose_request_id(scope: Scope, trusted: AddressSet) -> str:
    """The proxy's id when the peer is a trusted proxy and the id is sane; else a new one."""
    if peer_host(scope) in trusted:
        incoming = _header(scope, REQUEST_ID_HEADER.encode())
        if INCOMING_ID_RE.fullmatch(incoming):
            return incoming
    return new_request_id()


def request_id_of(scope: Any) -> str:
    """The id :class:`RequestContext` gave this request ("" outside one)."""
    state = scope.get("state") or {}
    return str(state.get("request_id", ""))


class RequestContext:
    """ASGI middleware around the whole app; see the module's docstring."""

    def __init__(self, app: ASGIApp, *, forwarded_allow_ips: str) -> None:
        self.trusted = AddressSet(forwarded_allow_ips)
        # Only a named proxy's forwarded headers are believed; none named, none.
        self.app: ASGIApp = app
        if self.trusted:
            proxied: Any = ProxyHeadersMiddleware(app, trusted_hosts=self.trusted.spec)  # type: ignore[arg-type]
            self.app = proxied

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = choose_request_id(scope, self.trusted)
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500  # unless a response starts: an error escaped every handler
        finished: float | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status, finished
            if message["type"] == "http.response.start":
                status = int(message["status"])
                MutableScopeHeaders.from_message(message)[REQUEST_ID_HEADER] = request_id
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                finished = time.perf_counter()
            await send(message)

        with logs.bound(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                seconds = (finished or time.perf_counter()) - started
                self._record(scope, status, seconds)

    @staticmethod
    def _record(scope: Scope, status: int, seconds: float) -> None:
        template = scope.get("path_template")
        route = str(template) if template else UNMATCHED_ROUTE
        method = str(scope.get("method", ""))
        metrics.record_request(method, route, status, seconds)
        metrics.update_pool_usage()
        user = scope.get("user")
        fields: dict[str, Any] = {
            "method": method,
            "route": route,
            "status": status,
            "duration_ms": round(seconds * 1000, 1),
            "user_id": user.id if isinstance(user, CurrentUser) else None,
            "client": peer_host(scope),
        }
        if not template:
            fields["path"] = hide_secret_paths(str(scope.get("path", "")))
        request_log.log(logging.ERROR if status >= 500 else logging.INFO, "request", extra=fields)
