"""Error pages: HTML for people, JSON under /api/. Never a stack trace."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from litestar import MediaType, Request, Response
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
)
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR, HTTP_503_SERVICE_UNAVAILABLE

from portal import db
from portal.errors import Conflict, DomainError, Forbidden, Invalid, NotFound
from portal.web.guards import ENROL_PATH, EnrolmentRequired
from portal.web.requestcontext import request_id_of

logger = logging.getLogger("portal.errors")

TITLES = {
    400: "Bad request",
    401: "Please sign in",
    403: "Access denied",
    404: "Page not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request too large",
    422: "Please check the form",
    429: "Too many requests",
    500: "Something went wrong",
    503: "Temporarily unavailable",
}
EXPLANATIONS = {
    403: "You do not have access to this page. If you think you should, ask an owner.",
    404: "The page you asked for does not exist, or it was moved.",
    500: "The error has been logged. Please try again; if it happens again, tell an owner.",
    503: "It usually comes back by itself within a minute. If you were saving a form, "
    "check whether it was saved before sending it again.",
}
# Seconds a client (or a proxy) is asked to wait before trying again when the
# database cannot be reached.
RETRY_AFTER_SECONDS = 10
UNAVAILABLE_DETAIL = "The portal cannot reach its database right now. Please try again in a moment."


def _wants_json(request: Request[Any, Any, Any]) -> bool:
    return request.url.path.startswith("/api/") or request.url.path in ("/healthz",)


def _render(request: Request[Any, Any, Any], status: int, detail: str) -> Response[Any]:
    title = TITLES.get(status, "Error")
    # Paths that match no route never pass through the portal's middleware.
    request.scope.setdefault("user", None)
    # The request's id, which its log lines carry: someone reporting the error
    # quotes it and the lines are found.
    reference = request_id_of(request.scope)
    if _wants_json(request):
        return Response(
            content={
                "status_code": status,
                "error": title,
                "detail": detail,
                "reference": reference,
            },
            status_code=status,
            media_type=MediaType.JSON,
        )
    return Template(
        template_name="errors/error.html",
        context={
            "status": status,
            "title": title,
            "detail": detail,
            "explanation": EXPLANATIONS.get(status, ""),
            "reference": reference,
        },
        status_code=status,
    )


def http_exception_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    if status >= 500:
        logger.error("HTTP %s on %s: %s", status, request.url.path, exc.detail)
        return _render(request, status, "")
    detail = exc.detail if isinstance(exc.detail, str) else ""
    # Litestar's own messages for bad parameters are technical; keep them short.
    if status == 400 and not detail:
        detail = "The request could not be understood."
    response = _render(request, status, detail)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def not_authorized_handler(
    request: Request[Any, Any, Any], exc: NotAuthorizedException
) -> Response[Any]:
    if _wants_json(request):
        return _render(request, 401, "Authentication required.")
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    if request.method != "GET":
        target = "/"
    return Redirect(path=f"/login?next={quote(target, safe='/')}", status_code=303)


def permission_denied_handler(
    request: Request[Any, Any, Any], exc: PermissionDeniedException
) -> Response[Any]:
    detail = exc.detail if isinstance(exc.detail, str) else ""
    if "CSRF" in detail:
        detail = "Your form has expired. Go back, reload the page and try again."
    return _render(request, 403, detail)


def enrolment_required_handler(
    request: Request[Any, Any, Any], exc: EnrolmentRequired
) -> Response[Any]:
    """Staff whose role requires two-step sign-in enrol before anything else."""
    if _wants_json(request):
        return _render(request, 403, str(exc.detail))
    return Redirect(path=ENROL_PATH, status_code=303)


def not_found_handler(request: Request[Any, Any, Any], exc: NotFoundException) -> Response[Any]:
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != "Not Found" else ""
    return _render(request, 404, detail)


# What each domain error (``portal.errors``) is at the edge.
DOMAIN_STATUS: dict[type[DomainError], int] = {
    NotFound: 404,
    Forbidden: 403,
    Conflict: 409,
    Invalid: 422,
}


def domain_error_handler(request: Request[Any, Any, Any], exc: DomainError) -> Response[Any]:
    """A service refused: the same page (or JSON) as the HTTP exception it stands for.

    Controllers catch :class:`Invalid` to re-render their form; one that reaches
    here is a 422 with the field messages.
    """
    status = next((code for cls, code in DOMAIN_STATUS.items() if isinstance(exc, cls)), 400)
    return _render(request, status, exc.detail)


def database_unavailable(request: Request[Any, Any, Any]) -> Response[Any]:
    """503 with Retry-After: the database is down, restarting or cut off."""
    response = _render(request, HTTP_503_SERVICE_UNAVAILABLE, UNAVAILABLE_DETAIL)
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response.headers["Cache-Control"] = "no-store"
    return response


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if db.is_unreachable(exc):
        # An outage, not a bug: one line in the log, no traceback.
        logger.warning(
            "Database unreachable on %s %s: %s: %s",
            request.method,
            request.url.path,
            type(exc).__name__,
            exc,
        )
        return database_unavailable(request)
    if _is_out_of_domain(exc):
        # A number too large for the column, or text the database cannot store:
        # the request was bad (an id typed into a URL), nothing went wrong here.
        logger.warning("Refused a value the database cannot hold on %s: %s", request.url.path, exc)
        return _render(request, 400, "The request could not be understood.")
    logger.exception("Unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _render(request, HTTP_500_INTERNAL_SERVER_ERROR, "")


def _is_out_of_domain(exc: Exception) -> bool:
    """Errors the database drivers raise for a query argument the column cannot hold."""
    message = str(exc)
    if isinstance(exc, OverflowError):
        return "too large to convert to SQLite" in message
    try:
        from asyncpg.exceptions import (
            CharacterNotInRepertoireError,
            DataError,
            NumericValueOutOfRangeError,
        )
    except ImportError:  # pragma: no cover - asyncpg is installed with piccolo[postgres]
        return False
    if isinstance(exc, (CharacterNotInRepertoireError, NumericValueOutOfRangeError)):
        return True
    return isinstance(exc, DataError) and message.startswith("invalid input for query argument")


EXCEPTION_HANDLERS: dict[Any, Any] = {
    DomainError: domain_error_handler,
    NotAuthorizedException: not_authorized_handler,
    EnrolmentRequired: enrolment_required_handler,
    PermissionDeniedException: permission_denied_handler,
    NotFoundException: not_found_handler,
    HTTPException: http_exception_handler,
    Exception: internal_error_handler,
}
