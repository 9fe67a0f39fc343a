"""Time: stored in UTC, shown in a location's zone."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

# The instant ``utcnow`` answers inside ``as_of``: only the demo's history sets it.
_AS_OF: ContextVar[datetime | None] = ContextVar("portal_as_of", default=None)


def utcnow() -> datetime:
    moment = _AS_OF.get()
    return moment if moment is not None else datetime.now(UTC)


@contextlib.contextmanager
def as_of(moment: datetime) -> Iterator[None]:
    """Run the block as if it were ``moment`` (UTC): ``portal demo`` writes months of
    history through the real services, each event stamped, journalled and totalled on
    its own day. The setting belongs to the running task alone."""
    token = _AS_OF.set(moment.astimezone(UTC))
    try:
        yield
    finally:
        _AS_OF.reset(token)


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
