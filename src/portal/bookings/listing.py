"""The staff list of appointments: newest first, 50 a page, paged by cursor.

Rows come in ``(start_at DESC, id DESC)`` order through
:func:`portal.pagination.keyset_page`, so page 10,000 costs what page 1
costs and nothing is ever counted. Every filter keeps the walk on an index
(see the appointment list indexes migration):

* no filter, or only dates: ``appointment (start_at, id)`` read backwards;
* a location: ``appointment (location, start_at, id)``;
* a therapist (and a therapist's own list): ``appointment (therapist, start_at, id)``;
* a status: ``appointment (status, start_at, id)``;
* a client search: the matching clients first (trigram indexes on
  PostgreSQL), then ``appointment (client, start_at)`` for each of them.

The page's ids come from the appointment table alone; the names of its rows
are read by id afterwards, so a filter that has to sort (a few hundred rows
of one therapist in a date range) never joins more than the rows shown.

Dates are local days in each location's zone: a range becomes, per location,
[its first instant of the first day, its first instant after the last day),
so a day of 23 or 25 hours is whole. Without a chosen location each time zone
of the chain gets its own bounds (one ``OR`` branch per zone, naming its
locations) inside an outer bound that the index can seek.

Scope: owners and accountants see every location; managers see their
locations (naming another one is 403); therapists see only their own
appointments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import reduce
from typing import Any
from zoneinfo import ZoneInfo

from portal import access
from portal.auth.service import CLIENT, THERAPIST, CurrentUser
from portal.auth.tables import User
from portal.bookings.reading import SHOWN, joined
from portal.bookings.states import STATUS_LABELS
from portal.bookings.tables import Appointment
from portal.errors import Forbidden, Invalid
from portal.fields import FIRST_YEAR, LAST_YEAR, parse_id, parse_iso_date, plausible
from portal.locations.service import all_locations
from portal.locations.tables import Location
from portal.pagination import Page, keyset_page
from portal.staff import hours as h
from portal.staff.tables import Therapist, TherapistLocation

PAGE_SIZE = 50
MAX_SEARCH = 100
# A search naming at most this many clients lists their appointments by client id.
CLIENT_IDS_MAX = 200
FILTER_KEYS = ("location", "therapist", "status", "start", "end", "q")


@dataclass(frozen=True)
class ListFilters:
    location_id: int | None = None
    therapist_id: int | None = None
    status: str = ""
    day_from: date | None = None
    day_to: date | None = None
    search: str = ""

    @property
    def chosen(self) -> bool:
        return bool(
            self.location_id
            or self.therapist_id
            or self.status
            or self.day_from
            or self.day_to
            or self.search
        )


def _date(raw: str, errors: dict[str, str], field: str) -> date | None:
    day = parse_iso_date(raw, errors, field, example="2026-03-08")
    if day is None:
        return None
    if not plausible(day):
        errors[field] = f"Enter a date between {FIRST_YEAR} and {LAST_YEAR}."
        return None
    return day


def parse_filters(actor: CurrentUser, params: Mapping[str, str]) -> ListFilters:
    """Filters from the query string; Invalid names each bad field.

    The location is checked first, so a manager who names another clinic
    gets 403 whatever else the address holds.
    """
    errors: dict[str, str] = {}
    values = {key: str(params.get(key) or "").strip() for key in FILTER_KEYS}
    location_id = None
    if values["location"]:
        location_id = parse_id(values["location"])
        if location_id is None:
            errors["location"] = "Choose a location from the list."
        else:
            access.ensure_read(actor, location_id)
    therapist_id = None
    if values["therapist"] and actor.role != THERAPIST:
        therapist_id = parse_id(values["therapist"])
        if therapist_id is None:
            errors["therapist"] = "Choose a therapist from the list."
    status = values["status"]
    if status and status not in STATUS_LABELS:
        errors["status"] = "Choose a status from the list."
    day_from = _date(values["start"], errors, "start")
    day_to = _date(values["end"], errors, "end")
    if day_from and day_to and day_to < day_from:
        errors["end"] = "The last day must not be before the first."
    search = values["q"]
    if len(search) > MAX_SEARCH or "\x00" in search:
        errors["q"] = f"Search for at most {MAX_SEARCH} characters of a name or email."
    if errors:
        raise Invalid(errors)
    return ListFilters(location_id, therapist_id, status, day_from, day_to, search)


async def own_therapist_ids(actor: CurrentUser) -> list[int]:
    """The therapist profiles linked to a therapist's account (usually one)."""
    rows = await Therapist.select(Therapist.id).where(Therapist.account == actor.id).run()
    return [int(r["id"]) for r in rows]


async def location_choices(actor: CurrentUser) -> list[dict[str, Any]]:
    """Locations for the filter: every one the user may see, closed ones too."""
    return await all_locations(active_only=False, visible_to=actor)


async def therapist_choices(actor: CurrentUser) -> list[dict[str, Any]]:
    """Therapists for the filter: those working at the user's locations (owners: all)."""
    if actor.role == THERAPIST:
        return []
    query = Therapist.select(Therapist.id, Therapist.name, Therapist.active).order_by(
        Therapist.name
    )
    visible = access.visible_locations(actor)
    if visible is not None:
        query = query.where(
            Therapist.id.is_in(
                TherapistLocation.select(TherapistLocation.therapist).where(
                    TherapistLocation.location.is_in(sorted(visible) or [-1])
                )
            )
        )
    return await query.run()


def _local_days(
    zones: dict[int, str], day_from: date | None, day_to: date | None
) -> tuple[Any, datetime | None, datetime | None]:
    """A WHERE clause for local days per zone, and the outer [lo, hi) over all of them.

    Locations that share a zone share one branch (``location IN (…)`` with that
    zone's bounds), so a chain of fifty clinics in five zones adds five branches.
    """
    assert day_from is not None or day_to is not None
    by_zone: dict[str, list[int]] = {}
    for location_id, zone in zones.items():
        by_zone.setdefault(zone, []).append(location_id)
    branches: list[Any] = []
    lows: list[datetime] = []
    highs: list[datetime] = []
    for zone, location_ids in sorted(by_zone.items()):
        tz = ZoneInfo(zone)
        # One zone: its bounds alone; several: each zone's locations with their bounds.
        parts: list[Any] = (
            [Appointment.location.is_in(sorted(location_ids))] if len(by_zone) > 1 else []
        )
        if day_from is not None:
            lo = h.wall_to_utc(day_from, 0, tz)
            lows.append(lo)
            parts.append(Appointment.start_at >= lo)
        if day_to is not None:
            hi = h.wall_to_utc(day_to + timedelta(days=1), 0, tz)
            highs.append(hi)
            parts.append(Appointment.start_at < hi)
        branches.append(reduce(lambda a, b: a & b, parts))
    # No location at all: nothing matches.
    clause: Any = reduce(lambda a, b: a | b, branches) if branches else Appointment.id < 0
    return clause, min(lows, default=None), max(highs, default=None)


async def list_appointments(
    actor: CurrentUser,
    filters: ListFilters,
    *,
    after: str | None = None,
    limit: int = PAGE_SIZE,
) -> Page:
    """One page of appointments the user may see, newest first.

    Two steps: the page of (start_at, id) from the appointment table alone —
    planned in a moment and read from an index in order — then the names for
    those rows by id, so only the rows shown are ever joined.
    """
    if actor.role == CLIENT:
        raise Forbidden("You do not have access to the appointment list.")
    query = Appointment.select(Appointment.id, Appointment.start_at)
    visible = access.visible_locations(actor)
    if actor.role == THERAPIST:
        query = query.where(Appointment.therapist.is_in(await own_therapist_ids(actor) or [-1]))
    elif visible is not None:
        query = query.where(Appointment.location.is_in(sorted(visible) or [-1]))
    if filters.location_id is not None:
        access.ensure_read(actor, filters.location_id)
        query = query.where(Appointment.location == filters.location_id)
    if filters.therapist_id is not None and actor.role != THERAPIST:
        query = query.where(Appointment.therapist == filters.therapist_id)
    if filters.status:
        query = query.where(Appointment.status == filters.status)
    if filters.day_from is not None or filters.day_to is not None:
        zone_query = Location.select(Location.id, Location.timezone)
        if filters.location_id is not None:
            zone_query = zone_query.where(Location.id == filters.location_id)
        elif visible is not None and actor.role != THERAPIST:  # theirs: any zone
            zone_query = zone_query.where(Location.id.is_in(sorted(visible) or [-1]))
        zones = {int(r["id"]): str(r["timezone"]) for r in await zone_query.run()}
        clause, lo, hi = _local_days(zones, filters.day_from, filters.day_to)
        query = query.where(clause)
        if len(set(zones.values())) > 1:
            # The outer bound lets the index seek the range; the branches cut it per zone.
            if lo is not None:
                query = query.where(Appointment.start_at >= lo)
            if hi is not None:
                query = query.where(Appointment.start_at < hi)
    if filters.search:
        query = query.where(await _clients_matching(filters.search))
    page = await keyset_page(
        query,
        Appointment.start_at,
        Appointment.id,
        after=after,
        limit=limit,
        descending=True,
    )
    ids = [int(row["id"]) for row in page.rows]
    if not ids:
        return page
    details = {
        int(row["id"]): row
        for row in await Appointment.select(
            Appointment.id,
            Appointment.start_at,
            Appointment.end_at,
            Appointment.status,
            Appointment.location,
            Appointment.therapist,
            Appointment.client,
            *joined(*SHOWN),
        )
        .where(Appointment.id.is_in(ids))
        .run()
    }
    return Page(rows=[details[i] for i in ids if i in details], next_cursor=page.next_cursor)


async def _clients_matching(search: str) -> Any:
    """A WHERE clause for appointments of clients whose name or email contains ``search``.

    The clients are looked up first (trigram indexes on PostgreSQL). A few of
    them become a list of ids, which the appointment query reads client by
    client; when many match, a subquery lets the list walk its time index and
    test each row's client instead. Naming the ids also keeps a cached
    generic plan of a pattern-shaped query out of the way: such a plan cannot
    know whether the pattern is rare or common.
    """
    pattern = f"%{search}%"

    def matching() -> Any:  # a new query each time: Piccolo's limit() changes its query
        return User.select(User.id).where(
            (User.role == CLIENT) & (User.name.ilike(pattern) | User.email.ilike(pattern))
        )

    found = await matching().limit(CLIENT_IDS_MAX + 1).run()
    if len(found) > CLIENT_IDS_MAX:
        return Appointment.client.is_in(matching())
    return Appointment.client.is_in([int(r["id"]) for r in found] or [-1])
