"""Closed periods: months whose journal lines never change again.

A month is closed for one location, or for every location at once (``location``
NULL, which also covers lines without a location, dated in UTC). A journal line
belongs to the local day of its own location; ``ledger.post`` moves an entry
with a line in a closed month to the first instant of the first open day after
it (see ``open_instant``). Closing is one-way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from piccolo.columns.combination import Combinable

from portal import db
from portal.audit import service as audit
from portal.auth.service import CurrentUser
from portal.errors import Invalid
from portal.fields import parse_id
from portal.ledger.tables import ClosedPeriod
from portal.locations.tables import Location
from portal.timeutil import utcnow

UTC_ZONE = "UTC"


def first_of_next_month(day: date) -> date:
    return (day.replace(day=1) + timedelta(days=32)).replace(day=1)


def local_midnight(tz: str, day: date) -> datetime:
    """The UTC instant a local day begins (the first existing instant in a DST gap)."""
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(tz)).astimezone(UTC)


def local_date(tz: str, at: datetime) -> date:
    return at.astimezone(ZoneInfo(tz)).date()


@dataclass(frozen=True)
class Closed:
    """The closed months that matter to one posting."""

    all_locations: frozenset[date]
    by_location: frozenset[tuple[int, date]]

    def __bool__(self) -> bool:
        return bool(self.all_locations or self.by_location)

    def is_closed(self, location_id: int | None, month: date) -> bool:
        if month in self.all_locations:
            return True
        return location_id is not None and (location_id, month) in self.by_location


async def closed_since(month: date, location_ids: Iterable[int | None]) -> Closed:
    """Closed months from ``month`` on, for these locations (and all-location closes)."""
    located = sorted({i for i in location_ids if i is not None})
    where: Combinable = ClosedPeriod.location.is_null()
    if located:
        where = where | ClosedPeriod.location.is_in(located)
    rows = (
        await ClosedPeriod.select(ClosedPeriod.location, ClosedPeriod.month)
        .where((ClosedPeriod.month >= month) & where)
        .run()
    )
    every: set[date] = set()
    mine: set[tuple[int, date]] = set()
    for row in rows:
        if row["location"] is None:
            every.add(row["month"])
        else:
            mine.add((int(row["location"]), row["month"]))
    return Closed(frozenset(every), frozenset(mine))


async def zones(location_ids: Iterable[int | None]) -> dict[int | None, str]:
    """Each location's zone; lines without a location are dated in UTC."""
    ids = sorted({i for i in location_ids if i is not None})
    out: dict[int | None, str] = {None: UTC_ZONE}
    if ids:
        rows = await Location.select(Location.id, Location.timezone).where(Location.id.is_in(ids))
        out.update({int(r["id"]): str(r["timezone"]) for r in rows})
    return out


async def lock_for_posting() -> None:
    """Inside a posting's transaction, before it reads the closed months.

    On PostgreSQL the posting takes the lock an insert takes anyway (ROW
    EXCLUSIVE on ``journal_entry``) *before* reading ``closed_period``, and a
    close takes SHARE on the same table, which waits for postings in flight and
    holds new ones until it commits: a posting either commits before the close
    or sees it. SQLite transactions write one at a time (``BEGIN IMMEDIATE``).
    """
    if not db.is_sqlite(db.current_engine()):
        await ClosedPeriod.raw("LOCK TABLE journal_entry IN ROW EXCLUSIVE MODE").run()


async def _lock_for_closing() -> None:
    if not db.is_sqlite(db.current_engine()):
        await ClosedPeriod.raw("LOCK TABLE journal_entry IN SHARE MODE").run()


async def open_instant(when: datetime, location_ids: Iterable[int | None]) -> datetime:
    """``when``, or the first instant at which no line of these locations is in a
    closed month: each location's first open local day after its closed month,
    in its own zone, the latest of them (and checked again from there)."""
    locations = set(location_ids)
    # A local date is at most a day off the UTC one; look from the month before.
    closed = await closed_since((when - timedelta(days=2)).date().replace(day=1), locations)
    if not closed:
        return when
    zone_of = await zones(locations)
    at = when
    for _ in range(1200):  # a hundred years of closed months; never reached
        latest = at
        for location_id in locations:
            tz = zone_of.get(location_id, UTC_ZONE)
            month = local_date(tz, at).replace(day=1)
            if not closed.is_closed(location_id, month):
                continue
            while closed.is_closed(location_id, month):
                month = first_of_next_month(month)
            latest = max(latest, local_midnight(tz, month))
        if latest == at:
            return at
        at = latest
    raise RuntimeError("No open period after a run of closed months")


# -- closing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MonthStatus:
    month: date
    closed: bool
    closed_for_all: bool
    can_close: bool  # ended, and not closed yet


def parse_month(text: str) -> date | None:
    """``YYYY-MM`` (or a full ISO date) → the month's first day."""
    text = text.strip()
    try:
        if len(text) == 7:
            return date.fromisoformat(text + "-01")
        return date.fromisoformat(text).replace(day=1)
    except ValueError:
        return None


def month_ended(month: date, tz: str, now: datetime) -> bool:
    return now >= local_midnight(tz, first_of_next_month(month))


async def closed_months(
    location_ids: Iterable[int], start: date, end: date
) -> dict[date, set[int | None]]:
    """Month → the locations it is closed for (None: every location), between two days."""
    ids = sorted(set(location_ids))
    where: Combinable = ClosedPeriod.location.is_null()
    if ids:
        where = where | ClosedPeriod.location.is_in(ids)
    rows = (
        await ClosedPeriod.select(ClosedPeriod.location, ClosedPeriod.month)
        .where((ClosedPeriod.month >= start.replace(day=1)) & (ClosedPeriod.month <= end) & where)
        .run()
    )
    out: dict[date, set[int | None]] = {}
    for row in rows:
        location = int(row["location"]) if row["location"] is not None else None
        out.setdefault(row["month"], set()).add(location)
    return out


async def grid(
    locations: list[dict[str, object]], months: int = 12, *, now: datetime | None = None
) -> list[tuple[date, list[tuple[dict[str, object], str]], str]]:
    """The recent months, newest first: per location ``closed``, ``open`` (ended, may be
    closed) or ``pending`` (not ended), and the same for all locations at once."""
    now = now or utcnow()
    first = now.date().replace(day=1)
    recent = [first]
    for _ in range(months - 1):
        recent.append((recent[-1] - timedelta(days=1)).replace(day=1))
    closed = await closed_months([int(str(loc["id"])) for loc in locations], recent[-1], first)
    out = []
    for month in recent:
        ids = closed.get(month, set())
        cells = []
        for loc in locations:
            if None in ids or int(str(loc["id"])) in ids:
                status = "closed"
            elif month_ended(month, str(loc["timezone"]), now):
                status = "open"
            else:
                status = "pending"
            cells.append((loc, status))
        if None in ids:
            every = "closed"
        elif all(month_ended(month, str(loc["timezone"]), now) for loc in locations):
            every = "open"
        else:
            every = "pending"
        out.append((month, cells, every))
    return out


def month_label(month: date) -> str:
    return month.strftime("%B %Y")


async def close_month(
    actor: CurrentUser,
    location_raw: str,
    month_raw: str,
    *,
    now: datetime | None = None,
    address: str = "",
    dry_run: bool = False,
) -> tuple[int | None, date]:
    """Close a month for one location (an id) or for all (``all``); audited.

    Refuses (``Invalid``) a malformed or future month, one that has not
    ended in the location's zone (every zone, for all locations), an unknown
    location, and a month already closed. ``dry_run``: check only (the confirm step).
    """
    now = now or utcnow()
    errors: dict[str, str] = {}
    location_id: int | None = None
    zone_names: list[str] = []
    if location_raw.strip() in ("", "all"):
        rows = await Location.select(Location.timezone).run()
        zone_names = sorted({str(r["timezone"]) for r in rows}) or [UTC_ZONE]
    else:
        location_id = parse_id(location_raw)
        row = (
            await Location.select(Location.timezone).where(Location.id == location_id).first().run()
            if location_id is not None
            else None
        )
        if row is None:
            errors["location"] = "Choose a location, or all locations."
        else:
            zone_names = [str(row["timezone"])]
    month = parse_month(month_raw)
    if month is None:
        errors["month"] = "Enter a month as YYYY-MM, e.g. 2026-11."
    elif month > now.date().replace(day=1):
        errors["month"] = "That month is in the future; only a month that has ended can be closed."
    elif zone_names and not all(month_ended(month, tz, now) for tz in zone_names):
        errors["month"] = (
            f"{month_label(month)} has not ended yet; it can be closed from the first of the next "
            "month."
        )
    if errors:
        raise Invalid(errors)
    assert month is not None
    closed = await closed_since(month, [location_id])
    if month in closed.all_locations:
        raise Invalid({"month": f"{month_label(month)} is already closed for every location."})
    if location_id is not None and (location_id, month) in closed.by_location:
        raise Invalid({"month": f"{month_label(month)} is already closed for this location."})
    if dry_run:
        return location_id, month
    async with db.transaction():
        await _lock_for_closing()
        try:
            rows = (
                await ClosedPeriod.insert(
                    ClosedPeriod(
                        location=location_id, month=month, closed_by=actor.id, closed_at=now
                    )
                )
                .returning(ClosedPeriod.id)
                .run()
            )
        except Exception as exc:
            if db.is_unique_violation(exc):
                raise Invalid({"month": f"{month_label(month)} is already closed."}) from exc
            raise
        await audit.record(
            actor,
            "close_period",
            "closed_period",
            int(rows[0]["id"]),
            after={"location_id": location_id, "month": month.isoformat()},
            address=address,
        )
    return location_id, month
