from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

from litestar import Request
from litestar.response import Template

from portal.auth.service import MANAGER, OWNER, CurrentUser
from portal.locations.service import location_choices, locations_for
from portal.rooms import service
from portal.timeutil import utcnow
from portal.web.admin import (
    AdminForm,
    AdminResource,
    Column,
    Records,
    Roles,
    admin_controller,
    location_filter,
    records_handlers,
    search,
)
from portal.web.forms import Flash, Values, parse_id
from portal.web.guards import requires_role

managers = requires_role(OWNER, MANAGER)
LABELS = {
    "location_id": "Location",
    "name": "Name",
    "equipment_other": "Other equipment",
    "notes": "Notes",
    "start_date": "Start date",
    "start_time": "Start time",
    "end_date": "End date",
    "end_time": "End time",
    "reason": "Reason",
}


async def _initial(user: CurrentUser, query: Mapping[str, str]) -> dict[str, Any]:
    """A new room's form: the location asked for, or the user's only one."""
    choices = await locations_for(user, write=True, active_only=True)
    default = query["location"] if parse_id(query["location"]) else ""
    if not default and len(choices) == 1:
        default = str(choices[0]["id"])
    return {**ROOM_DEFAULTS, "location_id": default}


async def _form_context(
    user: CurrentUser, _form: dict[str, Any], _room: dict[str, Any] | None
) -> dict[str, Any]:
    writable = await locations_for(user, write=True, active_only=True)
    return {
        "locations": [(loc["id"], loc["name"]) for loc in writable],
        "suggestions": await service.equipment_suggestions(),
    }


def _as_form(room: dict[str, Any]) -> dict[str, Any]:
    return {
        "location_id": str(room["location"]),
        "name": room["name"],
        "equipment": room["tags"],
        "equipment_other": "",
        "notes": room["notes"],
    }


def _parse(
    values: dict[str, str], lists: dict[str, list[str]], room: dict[str, Any] | None
) -> service.RoomInput:
    # A room stays at its location: editing never moves it.
    location_id = int(room["location"]) if room is not None else None
    return service.parse_room_form(values, lists, location_id=location_id)


ROOM_DEFAULTS: dict[str, Any] = {
    "location_id": "",
    "name": "",
    "equipment": [],
    "equipment_other": "",
    "notes": "",
}
ROOM_FORM = AdminForm(
    template="rooms/form.html",
    labels=LABELS,
    defaults=ROOM_DEFAULTS,
    lists=("equipment",),
    parse=_parse,
    create=service.create_room,
    update=service.update_room,
    as_form=_as_form,
    initial=_initial,
    new_query=("location",),
    context=_form_context,
    created=lambda data: f"Room “{data.name}” added.",
    saved="Room saved.",
    new_title="Add room",
    create_button="Add room",
    edit_title=lambda room: f"Edit {room['name']} ({room['location_name']})",
)


async def _list_context(user: CurrentUser) -> dict[str, Any]:
    return {"locations": await locations_for(user)}


async def _detail_context(
    request: Request[Any, Any, Any], user: CurrentUser, room: dict[str, Any]
) -> dict[str, Any]:
    show_past = request.query_params.get("past") == "1"
    now = utcnow()
    outages = await service.list_outages(int(room["id"]), since=None if show_past else now)
    # The booked appointments each window still to come collides with, to move them.
    for outage in outages:
        outage["affected"] = (
            await service.appointments_affected(
                int(room["id"]), outage["starts_at"], outage["ends_at"]
            )
            if outage["ends_at"] > now
            else []
        )
    return {"outages": outages, "show_past": show_past}


ROOMS = AdminResource(
    name="room",
    plural="Rooms",
    roles=Roles.every(OWNER, MANAGER),
    load=service.get_room_for,
    list_rows=service.list_rooms,
    columns=(
        Column("Room", "name", link=True),
        Column("Location", "location_name"),
        Column("Equipment", cell="tags"),
        Column("Status", cell="status"),
    ),
    filters=(
        search("Name or equipment"),
        location_filter(location_choices),
    ),
    scope=lambda row: frozenset({int(row["location"])}),
    title=lambda row: f"{row['name']} ({row['location_name']})",
    set_active=service.set_active,
    detail_template="rooms/detail.html",
    detail_context=_detail_context,
    detail_query=("past",),
    list_template="rooms/list.html",
    list_context=_list_context,
    new_label="Add room",
    confirm_text="The room can no longer be booked and leaves the day view. Its history is "
    "kept, and it can be reactivated at any time. For a temporary closure, add an "
    "out-of-service window instead.",
    form=ROOM_FORM,
)


def _outage_added(room: dict[str, Any], affected: list[service.AffectedAppointment]) -> Flash:
    """After adding a window: a warning listing the booked appointments it
    overlaps (local times), if any."""
    if not affected:
        return "Out-of-service window added. No booked appointments are affected."
    zone = ZoneInfo(str(room["timezone"]))
    listed = "; ".join(
        f"{a.starts_at.astimezone(zone):%a %d %b %H:%M} {a.client_name} "
        f"with {a.therapist_name} (appointment {a.appointment_id})"
        for a in affected
    )
    return (
        f"Out-of-service window added. It affects {len(affected)} booked "
        f"appointment(s) — move them to another room or time: {listed}.",
        "warning",
    )


async def _outage_form(
    _: Request[Any, Any, Any], room: dict[str, Any], form: dict[str, str], errors: dict[str, str]
) -> Template:
    return Template(
        "rooms/outage_form.html",
        context={"room": room, "form": form, "errors": errors, "labels": LABELS},
        status_code=422 if errors else 200,
    )


def _outage_today(_: CurrentUser, room: dict[str, Any]) -> dict[str, str]:
    """A new window starts today, in the room's time zone."""
    return {"start_date": utcnow().astimezone(ZoneInfo(str(room["timezone"]))).date().isoformat()}


async def _add_outage(
    user: CurrentUser, room: dict[str, Any], values: Values, address: str
) -> Flash:
    data = service.parse_outage_form(values)
    result = await service.add_outage(user, int(room["id"]), data, address=address)
    return _outage_added(room, result.affected)


OUTAGES = Records(
    path="out-of-service",
    routes="room_outage",
    name="outage",
    initial=_outage_today,
    page=_outage_form,
    add=_add_outage,
    load=service.get_outage_for,
    remove=service.remove_outage,
    removed="Out-of-service window removed.",
    already_removed="That out-of-service window had already been removed.",
    confirm_template="rooms/outage_remove.html",
)


class RoomController(admin_controller(ROOMS, records_handlers(ROOMS, OUTAGES))):  # type: ignore[misc]
    """The admin grammar from ``ROOMS``, its form and out-of-service windows."""

    guards = [managers]


ROUTES = [RoomController]
