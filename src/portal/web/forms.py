"""Form handling shared by every context: parse, validate in the service, re-render."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Request, Response

from portal.errors import Invalid
from portal.fields import MAX_ID, checked, optional_text, parse_id, parse_int, require_text
from portal.web.responses import redirect

# A flash message: its text, or (text, level) for "warning", "info", "error".
Flash = str | tuple[str, str]
Values = dict[str, str]
Lists = dict[str, list[str]]

# Services raise ``portal.errors.Invalid``; this older name stays for the code that used it.
ValidationFailed = Invalid


async def read_form(request: Request[Any, Any, Any]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The submitted form as single values (stripped) and as lists (checkboxes)."""
    form = await request.form()
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for key in form:
        if key == "_csrf_token":
            continue
        # NUL is never text a person typed, and PostgreSQL refuses it in text.
        values = [v.replace("\x00", "") for v in form.getall(key) if isinstance(v, str)]
        multi[key] = values
        single[key] = values[-1].strip() if values else ""
    return single, multi


async def submit(
    request: Request[Any, Any, Any],
    save: Callable[[Values, Lists], Awaitable[tuple[str, Flash]]],
    refused: Callable[[Values, Lists, dict[str, str]], Awaitable[Response[Any]]],
) -> Response[Any]:
    """Post/redirect/get, written once: ``save`` parses the form and saves
    (raising ``Invalid`` for bad input, so nothing is half-saved) and returns
    where to go and what to say; ``refused`` renders the page again with the
    errors beside their fields and what was typed kept (status 422)."""
    values, lists = await read_form(request)
    try:
        url, message = await save(values, lists)
    except Invalid as exc:
        return await refused(values, lists, exc.errors)
    text, level = message if isinstance(message, tuple) else (message, "success")
    return redirect(request, url, text, level)


__all__ = [
    "MAX_ID",
    "Flash",
    "Invalid",
    "ValidationFailed",
    "checked",
    "optional_text",
    "parse_id",
    "parse_int",
    "read_form",
    "require_text",
    "submit",
]
