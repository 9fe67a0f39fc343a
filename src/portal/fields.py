"""Form fields shared by every context's service: text in, a value or a message per field out.

Framework-free, so services use it; ``portal.web.forms`` re-exports it for controllers.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import TypeVar

# Every table's id is a 32-bit integer (Piccolo ``Serial``).
MAX_ID = 2**31 - 1
# The days the portal accepts: it can do arithmetic around them (no year 1 or 9999).
FIRST_YEAR, LAST_YEAR = 1900, 2200

T = TypeVar("T")


# What a ticked checkbox (or a yes in a query or a file) sends; anything else is unticked.
TICKED = frozenset({"on", "yes", "true", "1"})


def checked(values: dict[str, str], name: str) -> bool:
    """Whether the checkbox ``name`` was ticked (an absent box was not)."""
    return values.get(name, "") in TICKED


def plausible(day: date) -> bool:
    """A calendar day between ``FIRST_YEAR`` and ``LAST_YEAR``."""
    return FIRST_YEAR <= day.year <= LAST_YEAR


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


def parse_iso_date(raw: str, errors: dict[str, str], name: str, *, example: str) -> date | None:
    """A date typed as YYYY-MM-DD (what a date input sends); None when empty, or when it is
    no such date, then with a message at ``name`` showing ``example``. The caller checks
    the range its field allows."""
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        errors[name] = f"Enter a date such as {example}."
        return None


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


def parse_optional(
    values: dict[str, str], errors: dict[str, str], name: str, parse: Callable[[str], T]
) -> T | None:
    """``parse`` of the field ``name`` when it is filled in; None when it is empty, or
    when ``parse`` refuses it (``ValueError``), then with its message at ``name``.
    The caller checks the range its field allows."""
    raw = values.get(name, "").strip()
    if not raw:
        return None
    try:
        return parse(raw)
    except ValueError as exc:
        errors[name] = str(exc)
        return None


def require_text(
    values: dict[str, str], errors: dict[str, str], name: str, *, label: str, max_length: int
) -> str:
    """``optional_text`` that must not be blank."""
    text = optional_text(values, errors, name, label=label, max_length=max_length)
    if not text:
        errors[name] = f"{label} is required."
    return text


def optional_text(
    values: dict[str, str], errors: dict[str, str], name: str, *, label: str, max_length: int
) -> str:
    text = values.get(name, "").strip()
    if len(text) > max_length:
        errors[name] = f"{label} must be at most {max_length} characters."
    return text
