"""Time: stored in UTC, shown in a location's zone."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones


def utcnow() -> datetime:
    return datetime.now(UTC)


def is_valid_timezone(name: str) -> bool:
    """An IANA zone name the portal can use.

    Checked against the zone list first: ``ZoneInfo`` raises other errors
    than "not found" for some strings (``America`` is a folder of zones,
    ``IsADirectoryError``; a very long name, ``OSError``).
    """
    if not name or name != name.strip() or len(name) > 64 or name not in _zone_names():
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def common_timezones() -> list[str]:
    """Zones offered in pickers: canonical Area/City names, sorted."""
    return sorted(
        z
        for z in available_timezones()
        if "/" in z and not z.startswith(("Etc/", "SystemV/", "US/", "posix/", "right/"))
    )


def to_local(value: datetime, tz: str) -> datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(ZoneInfo(tz))
