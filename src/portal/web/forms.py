"""Form handling shared by every context: parse, validate in the service, re-render."""

from __future__ import annotations

from typing import Any

from litestar import Request

from portal.errors import Invalid
from portal.fields import MAX_ID, optional_text, parse_id, parse_int, require_text

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


__all__ = [
    "MAX_ID",
    "Invalid",
    "ValidationFailed",
    "optional_text",
    "parse_id",
    "parse_int",
    "read_form",
    "require_text",
]
