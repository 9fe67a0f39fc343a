from __future__ import annotations

from datetime import date
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, QueryParameter
from litestar.response import Template

from portal.audit import service as audit
from portal.auth.service import MANAGER, OWNER, CurrentUser
from portal.locations.service import all_locations, get_location_for
from portal.locations.tables import Location
from portal.rooms import service
from portal.rooms.dayview import build_day_view
from portal.timeutil import utcnow
from portal.web.forms import ValidationFailed, parse_id, read_form
from portal.web.guards import current_user, requires_owner, requires_role
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


class RoomController(Controller):
    path = "/rooms"
    guards = [managers]

    @get("/", name="rooms")
    async def index(
        self,
        request: Request[Any, Any, Any],
        q: Annotated[str, QueryParameter(name="q")] = "",
        location: Annotated[str, QueryParameter(name="location")] = "",
        status: Annotated[str, QueryParameter(name="status")] = "active",
        after: Annotated[str | None, QueryParameter(name="after")] = None,
    ) -> Template:
        user = current_user(request)
        location_id = parse_id(location)
        page = await service.list_rooms(
            user, search=q.strip(), location_id=location_id, status=status, after=after
        )
        locations = await all_locations(active_only=False)
        if user.role != OWNER:
            locations = [loc for loc in locations if loc["id"] in user.location_ids]
        return Template(
            "rooms/list.html",
            context={
                "page": page,
                "q": q,
                "status": status,
                "location": location,
                "locations": locations,
            },
        )

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
        return redirect(request, f"/rooms/{room_id}", f"Room “{data.name}” added.")

    @get("/{room_id:int}", name="room_detail")
    async def detail(
        self,
        request: Request[Any, Any, Any],
        room_id: FromPath[int],
        past: Annotated[str, QueryParameter(name="past")] = "",
    ) -> Template:
        user = current_user(request)
        room = await service.get_room_for(user, room_id)
        since = None if past == "1" else utcnow()
        return Template(
            "rooms/detail.html",
            context={
                "room": room,
                "outages": await service.list_outages(room_id, since=since),
                "show_past": past == "1",
            },
        )

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
        return redirect(request, f"/rooms/{room_id}", "Room saved.")

    @get("/{room_id:int}/deactivate", name="room_deactivate_confirm")
    async def confirm_deactivate(
        self, request: Request[Any, Any, Any], room_id: FromPath[int]
    ) -> Template:
        room = await service.get_room_for(current_user(request), room_id, write=True)
        return Template("rooms/deactivate.html", context={"room": room})

    @post("/{room_id:int}/deactivate", name="room_deactivate")
    async def deactivate(
        self, request: Request[Any, Any, Any], room_id: FromPath[int]
    ) -> Response[Any]:
        changed = await service.set_active(
            current_user(request), room_id, False, address=client_address(request)
        )
        message = "Room deactivated." if changed else "The room was already inactive."
        return redirect(request, f"/rooms/{room_id}", message, "info")

    @post("/{room_id:int}/reactivate", name="room_reactivate")
    async def reactivate(
        self, request: Request[Any, Any, Any], room_id: FromPath[int]
    ) -> Response[Any]:
        changed = await service.set_active(
            current_user(request), room_id, True, address=client_address(request)
        )
        message = "Room reactivated." if changed else "The room was already active."
        return redirect(request, f"/rooms/{room_id}", message)

    @get("/{room_id:int}/history", guards=[requires_owner], name="room_history")
    async def history(self, request: Request[Any, Any, Any], room_id: FromPath[int]) -> Template:
        room = await service.get_room_for(current_user(request), room_id)
        return Template(
            "audit/history.html",
            context={
                "rows": await audit.history("room", room_id),
                "title": f"History of {room['name']} ({room['location_name']})",
                "back_url": f"/rooms/{room_id}",
            },
        )

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
                for a in result.affected
            )
            message = (
                f"Out-of-service window added. It affects {len(result.affected)} booked "
                f"appointment(s) — move them to another room or time: {listed}."
            )
            return redirect(request, f"/rooms/{room_id}", message, "warning")
        return redirect(
            request,
            f"/rooms/{room_id}",
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
        return redirect(request, f"/rooms/{room_id}", message, "info")


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
