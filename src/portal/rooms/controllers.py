from __future__ import annotations

from datetime import date
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, QueryParameter
from litestar.response import Template

from portal.auth.service import MANAGER, OWNER, CurrentUser
from portal.locations.service import all_locations, get_location_for
from portal.locations.tables import Location
from portal.rooms import service
from portal.rooms.dayview import build_day_view
from portal.timeutil import utcnow
from portal.web.admin import (
    AdminResource,
    Column,
    Filter,
    Roles,
    admin_controller,
    reverse,
    search,
)
from portal.web.forms import ValidationFailed, parse_id, read_form
from portal.web.guards import current_user, requires_role
from portal.web.pagination import Page
from portal.web.responses import client_address, redirect

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


async def _writable_locations(user: CurrentUser) -> list[dict[str, Any]]:
    locations = await all_locations(active_only=True)
    if user.role == OWNER:
        return locations
    return [loc for loc in locations if loc["id"] in user.location_ids]


async def _form_context(
    user: CurrentUser,
    form: dict[str, Any],
    errors: dict[str, str],
    room: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "form": form,
        "errors": errors,
        "labels": LABELS,
        "room": room,
        "locations": [(loc["id"], loc["name"]) for loc in await _writable_locations(user)],
        "suggestions": await service.equipment_suggestions(),
    }


def _as_form(room: dict[str, Any]) -> dict[str, Any]:
    tags = room["tags"]
    return {
        "location_id": str(room["location"]),
        "name": room["name"],
        "equipment": tags,
        "equipment_other": "",
        "notes": room["notes"],
    }


def _submitted(values: dict[str, str], multi: dict[str, list[str]]) -> dict[str, Any]:
    return {
        "location_id": values.get("location_id", ""),
        "name": values.get("name", ""),
        "equipment": multi.get("equipment", []),
        "equipment_other": values.get("equipment_other", ""),
        "notes": values.get("notes", ""),
    }


async def _list_rows(user: CurrentUser, filters: dict[str, str], after: str | None) -> Page:
    return await service.list_rooms(
        user,
        search=filters["q"].strip(),
        location_id=parse_id(filters["location"]),
        status=filters["status"],
        after=after,
    )


async def _visible_locations(user: CurrentUser) -> list[dict[str, Any]]:
    locations = await all_locations(active_only=False)
    if user.role != OWNER:
        locations = [loc for loc in locations if loc["id"] in user.location_ids]
    return locations


async def _location_choices(user: CurrentUser) -> list[tuple[Any, str]]:
    return [(loc["id"], loc["name"]) for loc in await _visible_locations(user)]


async def _list_context(user: CurrentUser) -> dict[str, Any]:
    return {"locations": await _visible_locations(user)}


async def _load(user: CurrentUser, room_id: int, write: bool) -> dict[str, Any]:
    return await service.get_room_for(user, room_id, write=write)


async def _detail_context(
    request: Request[Any, Any, Any], user: CurrentUser, room: dict[str, Any]
) -> dict[str, Any]:
    show_past = request.query_params.get("past") == "1"
    since = None if show_past else utcnow()
    return {
        "outages": await service.list_outages(int(room["id"]), since=since),
        "show_past": show_past,
    }


async def _set_active(
    user: CurrentUser, room_id: int, active: bool, _: dict[str, str], address: str
) -> bool:
    return await service.set_active(user, room_id, active, address=address)


ROOMS = AdminResource(
    name="room",
    label="room",
    plural="Rooms",
    path="/rooms",
    id_param="room_id",
    routes="room",
    list_route="rooms",
    roles=Roles(
        list=(OWNER, MANAGER),
        detail=(OWNER, MANAGER),
        create=(OWNER, MANAGER),
        edit=(OWNER, MANAGER),
        deactivate=(OWNER, MANAGER),
    ),
    load=_load,
    list_rows=_list_rows,
    columns=(
        Column("Room", "name", link=True),
        Column("Location", "location_name"),
        Column("Equipment", cell="tags"),
        Column("Status", cell="status"),
    ),
    filters=(
        search("Name or equipment"),
        Filter("location", "Location", choices=_location_choices, any_label="All locations"),
    ),
    scope=lambda row: frozenset({int(row["location"])}),
    title=lambda row: f"{row['name']} ({row['location_name']})",
    set_active=_set_active,
    detail_template="rooms/detail.html",
    detail_context=_detail_context,
    detail_query=("past",),
    list_template="rooms/list.html",
    list_context=_list_context,
    new_label="Add room",
    confirm_text="The room can no longer be booked and leaves the day view. Its history is "
    "kept, and it can be reactivated at any time. For a temporary closure, add an "
    "out-of-service window instead.",
)


async def _affected_message(
    room: dict[str, Any], affected: list[service.AffectedAppointment]
) -> str:
    """The warning listing the booked appointments a new outage overlaps (local times)."""
    place = (
        await Location.select(Location.timezone)
        .where(Location.id == room["location"])
        .first()
        .run()
    )
    zone = ZoneInfo(str(place["timezone"])) if place else ZoneInfo("UTC")
    listed = "; ".join(
        f"{a.starts_at.astimezone(zone):%a %d %b %H:%M} {a.client_name} "
        f"with {a.therapist_name} (appointment {a.appointment_id})"
        for a in affected
    )
    return (
        f"Out-of-service window added. It affects {len(affected)} booked "
        f"appointment(s) — move them to another room or time: {listed}."
    )


class RoomController(admin_controller(ROOMS)):  # type: ignore[misc]
    """The admin grammar from ``ROOMS``, plus the room form and out-of-service windows."""

    guards = [managers]

    @get("/new", name="room_new")
    async def new(
        self,
        request: Request[Any, Any, Any],
        location: Annotated[str, QueryParameter(name="location")] = "",
    ) -> Template:
        user = current_user(request)
        choices = await _writable_locations(user)
        default = location if parse_id(location) else ""
        if not default and len(choices) == 1:
            default = str(choices[0]["id"])
        form = {
            "location_id": default,
            "name": "",
            "equipment": [],
            "equipment_other": "",
            "notes": "",
        }
        return Template("rooms/form.html", context=await _form_context(user, form, {}))

    @post("/", name="room_create")
    async def create(self, request: Request[Any, Any, Any]) -> Response[Any]:
        user = current_user(request)
        values, multi = await read_form(request)
        try:
            data = service.parse_room_form(values, multi)
            room_id = await service.create_room(user, data, address=client_address(request))
        except ValidationFailed as exc:
            return Template(
                "rooms/form.html",
                context=await _form_context(user, _submitted(values, multi), exc.errors),
                status_code=422,
            )
        return redirect(request, _detail_url(request, room_id), f"Room “{data.name}” added.")

    @get("/{room_id:int}/edit", name="room_edit")
    async def edit(self, request: Request[Any, Any, Any], room_id: FromPath[int]) -> Template:
        user = current_user(request)
        room = await service.get_room_for(user, room_id, write=True)
        return Template(
            "rooms/form.html", context=await _form_context(user, _as_form(room), {}, room)
        )

    @post("/{room_id:int}/edit", name="room_update")
    async def update(
        self, request: Request[Any, Any, Any], room_id: FromPath[int]
    ) -> Response[Any]:
        user = current_user(request)
        room = await service.get_room_for(user, room_id, write=True)
        values, multi = await read_form(request)
        try:
            data = service.parse_room_form(values, multi, location_id=int(room["location"]))
            await service.update_room(user, room_id, data, address=client_address(request))
        except ValidationFailed as exc:
            form = {**_submitted(values, multi), "location_id": str(room["location"])}
            return Template(
                "rooms/form.html",
                context=await _form_context(user, form, exc.errors, room),
                status_code=422,
            )
        return redirect(request, _detail_url(request, room_id), "Room saved.")

    # -- out-of-service windows ---------------------------------------------------

    @get("/{room_id:int}/out-of-service/new", name="room_outage_new")
    async def new_outage(self, request: Request[Any, Any, Any], room_id: FromPath[int]) -> Template:
        room = await service.get_room_for(current_user(request), room_id, write=True)
        today = utcnow().astimezone(ZoneInfo(str(room["timezone"]))).date().isoformat()
        form = {"start_date": today}
        return Template(
            "rooms/outage_form.html",
            context={"room": room, "form": form, "errors": {}, "labels": LABELS},
        )

    @post("/{room_id:int}/out-of-service", name="room_outage_create")
    async def create_outage(
        self, request: Request[Any, Any, Any], room_id: FromPath[int]
    ) -> Response[Any]:
        user = current_user(request)
        room = await service.get_room_for(user, room_id, write=True)
        values, _ = await read_form(request)
        try:
            data = service.parse_outage_form(values)
            result = await service.add_outage(user, room_id, data, address=client_address(request))
        except ValidationFailed as exc:
            return Template(
                "rooms/outage_form.html",
                context={"room": room, "form": values, "errors": exc.errors, "labels": LABELS},
                status_code=422,
            )
        if result.affected:
            message = await _affected_message(room, result.affected)
            return redirect(request, _detail_url(request, room_id), message, "warning")
        return redirect(
            request,
            _detail_url(request, room_id),
            "Out-of-service window added. No booked appointments are affected.",
        )

    @get(
        "/{room_id:int}/out-of-service/{outage_id:int}/remove",
        name="room_outage_remove_confirm",
    )
    async def confirm_remove_outage(
        self, request: Request[Any, Any, Any], room_id: FromPath[int], outage_id: FromPath[int]
    ) -> Template:
        user = current_user(request)
        room = await service.get_room_for(user, room_id, write=True)
        outage = await service.get_outage_for(user, room_id, outage_id, write=True)
        return Template("rooms/outage_remove.html", context={"room": room, "outage": outage})

    @post("/{room_id:int}/out-of-service/{outage_id:int}/remove", name="room_outage_remove")
    async def remove_outage(
        self, request: Request[Any, Any, Any], room_id: FromPath[int], outage_id: FromPath[int]
    ) -> Response[Any]:
        removed = await service.remove_outage(
            current_user(request), room_id, outage_id, address=client_address(request)
        )
        message = (
            "Out-of-service window removed."
            if removed
            else "That out-of-service window had already been removed."
        )
        return redirect(request, _detail_url(request, room_id), message, "info")


def _detail_url(request: Request[Any, Any, Any], room_id: int) -> str:
    return reverse(request, "room_detail", room_id=room_id)


class DayViewController(Controller):
    """The location day view lives under its location's address."""

    path = "/locations"

    @get("/{location_id:int}/day", guards=[managers], name="location_day")
    async def day(
        self,
        request: Request[Any, Any, Any],
        location_id: FromPath[int],
        on: Annotated[str, QueryParameter(name="date")] = "",
    ) -> Template:
        user = current_user(request)
        location = await get_location_for(user, location_id)
        today = utcnow().astimezone(ZoneInfo(str(location["timezone"]))).date()
        try:
            day = date.fromisoformat(on) if on else today
        except ValueError:
            day = today
        if not 1900 <= day.year <= 2200:
            day = today
        view = await build_day_view(user, location_id, day)
        return Template("rooms/day.html", context={"view": view, "today": today})


ROUTES = [RoomController, DayViewController]
