"""One ASGI middleware for what every request needs.

* resolves the session cookie to the signed-in user (``scope["user"]``);
* reads flash messages from their cookie and clears it once a page shows them;
* (with ``add_security_headers``) adds the security headers to every response.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

from litestar.datastructures import Cookie, MutableScopeHeaders
from litestar.exceptions import ClientException
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from portal.identity import CurrentUser
from portal.settings import Settings

# How a session cookie and an API token become a user: auth's services, handed in by
# ``create_app`` so that this plumbing does not import the auth context (which imports it).
SessionLoader = Callable[[Settings, str], Awaitable[CurrentUser | None]]
TokenAuthenticator = Callable[[str], Awaitable[CurrentUser | None]]

SESSION_COOKIE = "portal_session"
FLASH_COOKIE = "portal_flash"
# Litestar's CSRF middleware (double submit); renewed when a session begins or ends.
CSRF_COOKIE = "portal_csrf"

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self' https://checkout.stripe.com; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
    "cross-origin-opener-policy": "same-origin",
}


def _sign(secret: str, payload: bytes) -> str:
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()[:32]


def encode_flashes(secret: str, messages: list[tuple[str, str]]) -> str:
    # No padding: "=" would make the cookie value need quoting.
    payload = base64.urlsafe_b64encode(json.dumps(messages).encode()).rstrip(b"=")
    return f"{payload.decode()}.{_sign(secret, payload)}"


def decode_flashes(secret: str, value: str | None) -> list[tuple[str, str]]:
    if not value or "." not in value:
        return []
    payload, signature = value.strip('"').rsplit(".", 1)
    if not hmac.compare_digest(signature, _sign(secret, payload.encode())):
        return []
    try:
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, binascii.Error):
        return []
    return [(str(c), str(m)) for c, m in data if isinstance(m, str)][:10]


def _cookies(scope: Scope) -> dict[str, str]:
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            out: dict[str, str] = {}
            for part in value.decode("latin-1").split(";"):
                if "=" in part:
                    k, v = part.strip().split("=", 1)
                    out.setdefault(k, v)
            return out
    return {}


def _has_nul(scope: Scope) -> bool:
    query: bytes = scope.get("query_string", b"")
    return "\x00" in scope.get("path", "") or b"\x00" in query or b"%00" in query


# A year, as browsers' preload lists expect; sent only when the portal is served over https.
HSTS = "max-age=31536000; includeSubDomains"


async def add_security_headers(message: Message, scope: Scope) -> None:
    """App-level ``before_send`` hook: runs for every response, 404s included
    (route middleware does not run for paths that match no route).

    Besides the fixed headers: ``Cache-Control: no-store`` on everything but
    static files and responses that chose their own caching (a therapist's
    photo), so a page or download seen while signed in (a treatment
    note, a report) is not kept by the browser and shown again by Back after
    sign-out; and ``Strict-Transport-Security`` when ``BASE_URL`` is https.
    """
    if message["type"] == "http.response.start":
        headers = MutableScopeHeaders.from_message(message)
        for name, value in SECURITY_HEADERS.items():
            if name not in headers:
                headers[name] = value
        path = str(scope.get("path", ""))
        if "cache-control" not in headers and not path.startswith("/static/"):
            headers["cache-control"] = "no-store"
        app = scope.get("app")
        settings = getattr(getattr(app, "state", None), "settings", None)
        if settings is not None and str(settings.base_url).startswith("https://"):
            headers["strict-transport-security"] = HSTS


def _bearer(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            text = value.decode("latin-1")
            if text.lower().startswith("bearer "):
                return text[7:].strip()
    return ""


async def _json_response(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"status_code": status, "detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
    start: Any = {"type": "http.response.start", "status": status, "headers": headers}
    await send(start)
    end: Any = {"type": "http.response.body", "body": body}
    await send(end)


class PortalMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        settings: Settings,
        load_session: SessionLoader,
        authenticate_token: TokenAuthenticator,
    ) -> None:
        self.app = app
        self.settings = settings
        self.load_session = load_session
        self.authenticate_token = authenticate_token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if _has_nul(scope):
            # Never text a person typed, and PostgreSQL refuses it in a string.
            raise ClientException("The request could not be understood.")
        state: dict[str, Any] = scope.setdefault("state", {})
        cookies = _cookies(scope)
        flashes: list[tuple[str, str]] = []
        bearer = _bearer(scope) if path.startswith("/api/") else ""
        if path.startswith("/static/") or path == "/healthz":
            # Health checks must answer even when the session store cannot.
            scope["user"] = None
        elif bearer:
            # A personal API token: read-only, whatever the user's role allows.
            if scope.get("method") not in ("GET", "HEAD"):
                await _json_response(send, 403, "API tokens can only read.")
                return
            user = await self.authenticate_token(bearer)
            if user is None:
                await _json_response(send, 401, "Unknown or revoked API token.")
                return
            if user.must_enrol:
                await _json_response(
                    send,
                    403,
                    "Your role requires two-step sign-in: set up a passkey or an "
                    "authenticator app before using API tokens.",
                )
                return
            scope["user"] = user
            state["session_token"] = ""
        else:
            token = cookies.get(SESSION_COOKIE, "")
            scope["user"] = await self.load_session(self.settings, token) if token else None
            state["session_token"] = token
            flashes = decode_flashes(self.settings.secret_key, cookies.get(FLASH_COOKIE))
        state["flashes"] = flashes
        had_flash_cookie = FLASH_COOKIE in cookies

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableScopeHeaders.from_message(message)
                status = message["status"]
                # Clear shown flashes; a redirect carries them on to the next page.
                if had_flash_cookie and not 300 <= status < 400 and not state.get("flash_set"):
                    expired = Cookie(
                        key=FLASH_COOKIE,
                        value="",
                        max_age=0,
                        path="/",
                        httponly=True,
                        samesite="lax",
                        secure=self.settings.secure_cookies,
                    )
                    headers.add("set-cookie", expired.to_header(header=""))
            await send(message)

        await self.app(scope, receive, send_wrapper)
