"""Response helpers: post/redirect/get with flash messages, session cookies."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from litestar.datastructures import Cookie
from litestar.middleware.csrf import generate_csrf_token
from litestar.response import Redirect

from portal.settings import Settings
from portal.web.middleware import CSRF_COOKIE, FLASH_COOKIE, SESSION_COOKIE, encode_flashes


def client_address(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client else ""


def portal_cookie(
    response: Response[Any],
    settings: Settings,
    key: str,
    value: str,
    *,
    path: str = "/",
    max_age: int | None = None,
) -> None:
    """Set one of the portal's cookies: HttpOnly, SameSite=Lax, Secure over https;
    ``max_age=0`` forgets it."""
    response.set_cookie(
        Cookie(
            key=key,
            value=value,
            path=path,
            httponly=True,
            samesite="lax",
            secure=settings.secure_cookies,
            max_age=max_age,
        )
    )


def redirect(
    request: Request[Any, Any, Any],
    url: str,
    message: str | None = None,
    category: str = "success",
) -> Redirect:
    response = Redirect(path=url, status_code=303)
    if message:
        settings: Settings = request.app.state.settings
        flashes = encode_flashes(settings.secret_key, [(category, message)])
        portal_cookie(response, settings, FLASH_COOKIE, flashes, max_age=60)
    return response


def new_csrf_cookie(response: Response[Any], settings: Settings) -> None:
    """A fresh CSRF token for the browser: a token read before is worthless after.

    Set whenever a session begins or ends, so a token captured (or planted)
    before sign-in does not work for the signed-in session, nor one of the
    session after sign-out.
    """
    portal_cookie(response, settings, CSRF_COOKIE, generate_csrf_token(settings.secret_key))


def set_session_cookie(response: Response[Any], settings: Settings, token: str) -> None:
    """The session's cookie, and with it a new CSRF token (:func:`new_csrf_cookie`)."""
    new_csrf_cookie(response, settings)
    max_age = settings.session_absolute_hours * 3600
    portal_cookie(response, settings, SESSION_COOKIE, token, max_age=max_age)


def clear_session_cookie(response: Response[Any], settings: Settings) -> None:
    """Forget the session cookie; a new CSRF token too (:func:`new_csrf_cookie`)."""
    new_csrf_cookie(response, settings)
    portal_cookie(response, settings, SESSION_COOKIE, "", max_age=0)


def safe_next(url: str | None, default: str = "/") -> str:
    """Only same-site relative paths are followed after sign-in."""
    if not url or not url.startswith("/") or url.startswith("//") or "\\" in url:
        return default
    return url
