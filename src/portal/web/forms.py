"""Form handling shared by every context: parse, validate in the service, re-render."""

from __future__ import annotations

from typing import Any

from litestar import Request


class ValidationFailed(Exception):
    """Raised by services: a message per field; nothing has been saved."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


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


# Every table's id is a 32-bit integer (Piccolo ``Serial``).
MAX_ID = 2**31 - 1


def parse_id(raw: object) -> int | None:
    """An id chosen in a form or a filter: ASCII digits that fit an id column.

    Anything else (``²`` passes ``str.isdigit`` but not ``int``; 25 digits
    overflow the column) is None, so it reads as "nothing chosen" instead of
    reaching the database.
    """
    text = str(raw).strip()
    if not text or len(text) > 10 or not (text.isascii() and text.isdigit()):
        return None
    number = int(text)
    return number if number <= MAX_ID else None


def parse_int(
    values: dict[str, str],
    errors: dict[str, str],
    name: str,
    *,
    label: str,
    minimum: int | None = None,
    maximum: int | None = None,
    required: bool = True,
) -> int | None:
    raw = values.get(name, "").strip()
    if raw == "":
        if required:
            errors[name] = f"{label} is required."
        return None
    try:
        number = int(raw)
    except ValueError:
        errors[name] = f"{label} must be a whole number."
        return None
    if minimum is not None and number < minimum:
        errors[name] = f"{label} must be at least {minimum}."
    elif maximum is not None and number > maximum:
        errors[name] = f"{label} must be at most {maximum}."
    return number


def require_text(
    values: dict[str, str], errors: dict[str, str], name: str, *, label: str, max_length: int
) -> str:
    text = values.get(name, "").strip()
    if not text:
        errors[name] = f"{label} is required."
    elif len(text) > max_length:
        errors[name] = f"{label} must be at most {max_length} characters."
    return text


def optional_text(
    values: dict[str, str], errors: dict[str, str], name: str, *, label: str, max_length: int
) -> str:
    text = values.get(name, "").strip()
    if len(text) > max_length:
        errors[name] = f"{label} must be at most {max_length} characters."
    return text
