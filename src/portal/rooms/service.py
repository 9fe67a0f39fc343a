"""Treatment rooms per location, their equipment and out-of-service windows. No HTTP.

Owners manage every room; managers the rooms of their locations. Nobody
else sees rooms (the day view is for owners and managers too).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Unpack
from zoneinfo import ZoneInfo

from portal import db, records
from portal.access import ensure, ensure_write
from portal.audit import service as audit
from portal.auth.service import MANAGER, OWNER, CurrentUser
from portal.catalog.tables import Service
from portal.errors import Forbidden, Invalid
from portal.fields import optional_text, require_text
from portal.locations.service import get_location
from portal.pagination import Page
from portal.rooms.tables import Room, RoomOutage
from portal.staff import hours as h
from portal.staff.timeoff import parse_days, window_reason
from portal.timeutil import utcnow

# The equipment the clinics' services ask for (see the catalog's required_equipment).
STANDARD_EQUIPMENT = ("hydraulic table", "hot stones", "cupping set")
TAG_RE = re.compile(r"^[a-z0-9][a-z0-9 \-/&]*$")
MAX_TAGS = 20
MAX_OUTAGE_DAYS = 92


def normalize_tag(tag: str) -> str:
    return " ".join(tag.strip().lower().split())


def split_tags(text: str) -> list[str]:
    """``"Hot stones, cupping set"`` → ``["hot stones", "cupping set"]``, deduplicated."""
    out: list[str] = []
    for part in text.split(","):
        tag = normalize_tag(part)
        if tag and tag not in out:
            out.append(tag)
    return out


def join_tags(tags: list[str] | tuple[str, ...]) -> str:
    return ",".join(tags)


@dataclass(frozen=True)
class RoomInput:
    location_id: int
    name: str
    equipment: tuple[str, ...] = ()
    notes: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "equipment": join_tags(self.equipment), "notes": self.notes}


def parse_room_form(
    values: dict[str, str], multi: dict[str, list[str]], *, location_id: int | None = None
) -> RoomInput:
    """The room form: standard equipment as checkboxes, any other tags comma-separated."""
    errors: dict[str, str] = {}
    if location_id is None:
        try:
            location_id = int(values.get("location_id", ""))
        except ValueError:
            errors["location_id"] = "Choose the room's location."
            location_id = 0
    name = require_text(values, errors, "name", label="Name", max_length=80)
    tags: list[str] = []
    for tag in [*multi.get("equipment", []), *split_tags(values.get("equipment_other", ""))]:
        tag = normalize_tag(tag)
        if not tag or tag in tags:
            continue
        if len(tag) > 40 or not TAG_RE.match(tag):
            errors["equipment_other"] = (
                f"“{tag[:40]}” is not a valid tag: use letters, digits, spaces and hyphens, "
                "at most 40 characters, and separate tags with commas."
            )
        tags.append(tag)
    if len(tags) > MAX_TAGS:
        errors["equipment_other"] = f"At most {MAX_TAGS} equipment tags."
    notes = optional_text(values, errors, "notes", label="Notes", max_length=1000)
    if errors:
        raise Invalid(errors)
    return RoomInput(location_id=location_id, name=name, equipment=tuple(tags), notes=notes)


async def equipment_suggestions() -> list[str]:
    """Standard tags, then those services require and rooms already have."""
    tags = list(STANDARD_EQUIPMENT)
    for row in await Service.select(Service.required_equipment).run():
        tags += [t for t in split_tags(str(row["required_equipment"] or "")) if t not in tags]
    for row in await Room.select(Room.equipment).run():
        tags += [t for t in split_tags(str(row["equipment"] or "")) if t not in tags]
    return tags


# -- access and reading -----------------------------------------------------


def _require_room_role(user: CurrentUser) -> None:
    if user.role not in (OWNER, MANAGER):
        raise Forbidden("Only owners and managers manage rooms.")


async def get_room(room_id: int) -> dict[str, Any]:
    row = await records.first(
        Room.select(
            *Room.all_columns(),
            Room.location.name.as_alias("location_name"),
            Room.location.timezone.as_alias("timezone"),
        ).where(Room.id == room_id),
        "No such room.",
    )
    row["tags"] = split_tags(str(row["equipment"] or ""))
    return row


async def get_room_for(user: CurrentUser, room_id: int, *, write: bool = False) -> dict[str, Any]:
    """The room if ``user`` may see it: 404 if unknown, 403 if it is at another location."""
    _require_room_role(user)
    row = await get_room(room_id)
    ensure(user, int(row["location"]), write=write)
    return row


async def list_rooms(user: CurrentUser, **filters: Unpack[records.ListQuery]) -> Page:
    _require_room_role(user)
    query = Room.select(
        Room.id,
        Room.name,
        Room.equipment,
        Room.active,
        Room.location,
        Room.location.name.as_alias("location_name"),
    )
    page = await records.list_page(
        query, Room, (Room.name, Room.equipment), user=user, within=Room.location.is_in, **filters
    )
    for row in page.rows:
        row["tags"] = split_tags(str(row["equipment"] or ""))
    return page


async def rooms_at(location_id: int, *, active_only: bool = True) -> list[dict[str, Any]]:
    query = Room.select(Room.id, Room.name, Room.equipment, Room.active).where(
        Room.location == location_id
    )
    if active_only:
        query = query.where(Room.active == True)  # noqa: E712
    rows = await query.order_by(Room.name).run()
    for row in rows:
        row["tags"] = split_tags(str(row["equipment"] or ""))
    return rows


# -- changes: rooms ---------------------------------------------------------------

NAME_TAKEN = {"name": "Another room at this location already has this name."}
ROOMS = records.Kind(Room, "room", taken=NAME_TAKEN)


async def _name_taken(location_id: int, name: str, exclude_id: int | None = None) -> bool:
    query = Room.select(Room.id, Room.name).where(Room.location == location_id)
    if exclude_id is not None:
        query = query.where(Room.id != exclude_id)
    # Compared in Python: SQLite's lower() folds ASCII only, so the friendly
    # check and the unique index agree on ASCII names and the index decides
    # the rest.
    return any(str(r["name"]).lower() == name.lower() for r in await query.run())


async def create_room(actor: CurrentUser, data: RoomInput, *, address: str = "") -> int:
    _require_room_role(actor)
    await get_location(data.location_id)
    ensure_write(actor, data.location_id)
    if await _name_taken(data.location_id, data.name):
        raise Invalid(NAME_TAKEN)
    shown = {"location_id": data.location_id, **data.as_dict()}
    values = {"location": data.location_id, **data.as_dict()}
    return await records.create(actor, ROOMS, values, shown=shown, address=address)


async def update_room(
    actor: CurrentUser, room_id: int, data: RoomInput, *, address: str = ""
) -> None:
    """Name, equipment and notes; a room does not move between locations."""
    before = await get_room_for(actor, room_id, write=True)
    if await _name_taken(int(before["location"]), data.name, exclude_id=room_id):
        raise Invalid(NAME_TAKEN)
    old = {k: before[k] for k in ("name", "equipment", "notes")}
    await records.update(actor, ROOMS, room_id, old, data.as_dict(), address=address)


async def set_active(actor: CurrentUser, room_id: int, active: bool, *, address: str = "") -> bool:
    await get_room_for(actor, room_id, write=True)
    return await records.set_active(actor, Room, "room", room_id, active, address=address)


# -- out-of-service windows ------------------------------------------------------


@dataclass(frozen=True)
class OutageInput:
    """From a local date and time to another, in the room's location's zone."""

    start_date: date
    start_minute: int
    end_date: date
    end_minute: int
    reason: str


def parse_outage_form(values: dict[str, str]) -> OutageInput:
    errors: dict[str, str] = {}
    missing = "Enter the date the room goes out of service."
    days = parse_days(values, errors, ("Start date", "End date"), missing)
    minutes: dict[str, int] = {}
    for name, example in (("start_time", "08:00"), ("end_time", "10:30")):
        raw = values.get(name, "").strip()
        parsed = h.parse_hhmm(raw) if raw else None
        if parsed is None or parsed >= h.MINUTES_PER_DAY:
            errors[name] = f"Enter a time such as {example}."
        else:
            minutes[name] = parsed
    start_date, end_date, reason = window_reason(values, errors, days)
    return OutageInput(
        start_date=start_date,
        start_minute=minutes["start_time"],
        end_date=end_date,
        end_minute=minutes["end_time"],
        reason=reason,
    )


@dataclass(frozen=True)
class AffectedAppointment:
    """A booked appointment an out-of-service window collides with."""

    appointment_id: int
    starts_at: datetime
    ends_at: datetime
    client_name: str
    therapist_name: str


async def appointments_affected(
    room_id: int, starts_at: datetime, ends_at: datetime
) -> list[AffectedAppointment]:
    """Appointments booked in ``room_id`` overlapping [starts_at, ends_at).

    The booked (not cancelled, not yet given) appointments of the room whose
    [start, end) overlaps the window, ordered by start, so the manager can
    move them to another room or time.
    """
    from portal.bookings.service import booked_in_room  # bookings build on rooms

    return [
        AffectedAppointment(
            appointment_id=int(row["id"]),
            starts_at=row["start_at"],
            ends_at=row["end_at"],
            client_name=str(row["client_name"] or row["client_email"]),
            therapist_name=str(row["therapist_name"]),
        )
        for row in await booked_in_room(room_id, starts_at, ends_at)
    ]


@dataclass
class OutageResult:
    outage_id: int
    affected: list[AffectedAppointment] = field(default_factory=list)


async def add_outage(
    actor: CurrentUser, room_id: int, data: OutageInput, *, address: str = ""
) -> OutageResult:
    room = await get_room_for(actor, room_id, write=True)
    tz = ZoneInfo(str(room["timezone"]))
    errors: dict[str, str] = {}
    start, end = h.local_window(
        (data.start_date, data.start_minute), (data.end_date, data.end_minute), tz, errors
    )
    if start is not None and end is not None and not errors:
        if end == start:
            errors["end_time"] = "The window is empty: the end must be after the start."
        elif end < start:
            errors["end_time"] = "The end is before the start."
        elif end <= utcnow():
            errors["end_date"] = (
                "This window is already over: an out-of-service window must end in the future."
            )
        elif end - start > timedelta(days=MAX_OUTAGE_DAYS):
            errors["end_date"] = (
                f"A window can last at most {MAX_OUTAGE_DAYS} days; deactivate the room "
                "for longer closures."
            )
    if errors or start is None or end is None:
        raise Invalid(errors)
    async with db.transaction():
        clash = (
            await RoomOutage.select(RoomOutage.starts_at, RoomOutage.ends_at, RoomOutage.reason)
            .where(out_of_service([room_id], start, end))
            .first()
            .run()
        )
        if clash:
            raise Invalid(
                {
                    "start_time": "Overlaps another out-of-service window of this room "
                    f"({clash['starts_at'].astimezone(tz):%Y-%m-%d %H:%M}–"
                    f"{clash['ends_at'].astimezone(tz):%Y-%m-%d %H:%M}, {clash['reason']})."
                }
            )
        outage_id = await records.insert(
            RoomOutage,
            room=room_id,
            starts_at=start,
            ends_at=end,
            reason=data.reason,
            created_at=utcnow(),
            created_by=actor.email,
        )
        await audit.record(
            actor,
            "add_out_of_service",
            "room",
            room_id,
            after={
                "out_of_service": f"{start.astimezone(tz):%Y-%m-%d %H:%M} to "
                f"{end.astimezone(tz):%Y-%m-%d %H:%M} ({tz.key})",
                "reason": data.reason,
            },
            address=address,
        )
    return OutageResult(outage_id, await appointments_affected(room_id, start, end))


def out_of_service(room_ids: list[int], start: datetime, until: datetime) -> Any:
    """Outage windows of these rooms, not called off, overlapping [start, until)."""
    return (
        RoomOutage.room.is_in(room_ids)
        & RoomOutage.cancelled_at.is_null()
        & (RoomOutage.starts_at < until)
        & (RoomOutage.ends_at > start)
    )


async def list_outages(room_id: int, *, since: datetime | None = None) -> list[dict[str, Any]]:
    query = RoomOutage.select().where(
        (RoomOutage.room == room_id) & RoomOutage.cancelled_at.is_null()
    )
    if since is not None:
        query = query.where(RoomOutage.ends_at > since)
    return await query.order_by(RoomOutage.starts_at).run()


async def get_outage_for(
    user: CurrentUser, room_id: int, outage_id: int, *, write: bool = False
) -> dict[str, Any]:
    await get_room_for(user, room_id, write=write)
    return await records.get_child(
        RoomOutage, outage_id, RoomOutage.room, room_id, "No such out-of-service window."
    )


async def remove_outage(
    actor: CurrentUser, room_id: int, outage_id: int, *, address: str = ""
) -> bool:
    """Cancel a window: the row stays (with ``cancelled_at``); False if already cancelled."""
    room = await get_room_for(actor, room_id, write=True)
    row = await get_outage_for(actor, room_id, outage_id, write=True)
    tz = ZoneInfo(str(room["timezone"]))
    return await records.cancel(
        actor,
        RoomOutage,
        outage_id,
        RoomOutage.room,
        room_id,
        entity="room",
        action="remove_out_of_service",
        before={
            "out_of_service": f"{row['starts_at'].astimezone(tz):%Y-%m-%d %H:%M} to "
            f"{row['ends_at'].astimezone(tz):%Y-%m-%d %H:%M} ({tz.key})",
            "reason": row["reason"],
        },
        after={"out_of_service": None, "reason": None},
        address=address,
    )


# -- availability (for the booking rules) ---------------------------------------------


@dataclass(frozen=True)
class RoomAvailability:
    available: bool
    reasons: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.available


async def room_availability(
    room_id: int, start_utc: datetime, end_utc: datetime, *, equipment: list[str] | None = None
) -> RoomAvailability:
    """The room side of the booking rules: active, not out of service, has the equipment."""
    if start_utc.tzinfo is None or end_utc.tzinfo is None:
        raise ValueError("room_availability needs timezone-aware datetimes")
    start, end = start_utc.astimezone(UTC), end_utc.astimezone(UTC)
    if end <= start:
        return RoomAvailability(False, ("The end must be after the start.",))
    room = await Room.select().where(Room.id == room_id).first().run()
    if room is None:
        return RoomAvailability(False, ("No such room.",))
    reasons = []
    if not room["active"]:
        reasons.append(f"{room['name']} is inactive.")
    outages = await RoomOutage.select().where(out_of_service([room_id], start, end)).run()
    for outage in outages:
        reasons.append(f"{room['name']} is out of service: {outage['reason']}.")
    tags = split_tags(str(room["equipment"] or ""))
    missing = [t for t in (normalize_tag(e) for e in equipment or []) if t and t not in tags]
    if missing:
        reasons.append(f"{room['name']} lacks {', '.join(missing)}.")
    return RoomAvailability(not reasons, tuple(reasons))
