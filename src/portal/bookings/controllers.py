"""Booking pages: the client's booking flow, appointments, staff actions, series."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from litestar import Controller, Request, Response, get, post
from litestar.exceptions import PermissionDeniedException
from litestar.params import FromPath, QueryParameter
from litestar.response import Template

from portal.auth.service import ACCOUNTANT, CLIENT, MANAGER, OWNER, THERAPIST, CurrentUser
from portal.auth.tables import User
from portal.bookings import series as series_service
from portal.bookings import service
from portal.catalog.tables import Service
from portal.locations.service import visible_location_ids
from portal.locations.tables import Location
from portal.staff import hours as h
from portal.staff.tables import Therapist, TherapistLocation
from portal.timeutil import utcnow
from portal.web.forms import ValidationFailed, read_form
from portal.web.guards import current_user, requires_role
from portal.web.responses import redirect

bookers = requires_role(OWNER, MANAGER, CLIENT)
viewers = requires_role(OWNER, MANAGER, ACCOUNTANT, THERAPIST, CLIENT)
staff_actions = requires_role(OWNER, MANAGER, THERAPIST)
managers = requires_role(OWNER, MANAGER)


def _int(raw: str | None) -> int | None:
    try:
        return int(raw) if raw not in (None, "") else None
    except ValueError:
        return None


def _day(raw: str | None, tz: ZoneInfo) -> date:
    try:
        return date.fromisoformat(raw) if raw else utcnow().astimezone(tz).date()
    except ValueError:
        return utcnow().astimezone(tz).date()


async def _choices(user: CurrentUser, location_id: int | None) -> dict[str, Any]:
    locations = (
        await Location.select(Location.id, Location.name, Location.timezone)
        .where(Location.active == True)  # noqa: E712
        .order_by(Location.name)
        .run()
    )
    if user.role == MANAGER:
        visible = visible_location_ids(user) or frozenset()
        locations = [loc for loc in locations if loc["id"] in visible]
    services = (
        await Service.select(Service.id, Service.name, Service.duration_minutes)
        .where(Service.active == True)  # noqa: E712
        .order_by(Service.name)
        .run()
    )
    therapists: list[dict[str, Any]] = []
    if location_id is not None:
        ids = [
            r["therapist"]
            for r in await TherapistLocation.select(TherapistLocation.therapist)
            .where(TherapistLocation.location == location_id)
            .run()
        ]
        if ids:
            therapists = (
                await Therapist.select(Therapist.id, Therapist.name)
                .where(Therapist.id.is_in(ids) & (Therapist.active == True))  # noqa: E712
                .order_by(Therapist.name)
                .run()
            )
    return {"locations": locations, "services": services, "therapists": therapists}


async def _booking_page(
    user: CurrentUser,
    values: dict[str, str],
    errors: dict[str, str] | None = None,
    *,
    status_code: int = 200,
) -> Template:
    location_id = _int(values.get("location"))
    service_id = _int(values.get("service"))
    therapist_id = _int(values.get("therapist"))
    context: dict[str, Any] = await _choices(user, location_id)
    location = next((loc for loc in context["locations"] if loc["id"] == location_id), None)
    tz = ZoneInfo(str(location["timezone"])) if location else ZoneInfo("UTC")
    day = _day(values.get("day"), tz)
    slots: list[service.Slot] = []
    credits: list[dict[str, Any]] = []
    client_id = user.id if user.role == CLIENT else None
    if location and service_id:
        slots = await service.free_slots(
            location_id or 0, service_id, day, therapist_id=therapist_id
        )
        if therapist_id is None:
            # "Any therapist": one slot per start time, the least busy therapist.
            seen: set[datetime] = set()
            unique = []
            for slot in slots:
                if slot.start not in seen:
                    seen.add(slot.start)
                    unique.append(slot)
            slots = unique
        if client_id is not None:
            credits = await service.credits_for(client_id, service_id, utcnow())
    context.update(
        {
            "form": values,
            "errors": errors or {},
            "location": location,
            "tz": str(tz),
            "day": day,
            "prev_day": day - timedelta(days=1),
            "next_day": day + timedelta(days=1),
            "slots": slots,
            "credits": credits,
            "is_client": user.role == CLIENT,
        }
    )
    return Template("bookings/book.html", context=context, status_code=status_code)


class BookingController(Controller):
    path = "/appointments"

    @get("/", guards=[viewers], name="appointments")
    async def index(
        self,
        request: Request[Any, Any, Any],
        location_id: Annotated[int | None, QueryParameter(name="location")] = None,
        day: Annotated[str | None, QueryParameter(name="day")] = None,
    ) -> Template:
        user = current_user(request)
        if user.role == CLIENT:
            rows = await service.client_appointments(user.id)
            now = utcnow()
            return Template(
                "bookings/mine.html",
                context={
                    "upcoming": sorted(
                        (r for r in rows if r["start_at"] > now and r["status"] == service.BOOKED),
                        key=lambda r: r["start_at"],
                    ),
                    "past": [
                        r for r in rows if r["start_at"] <= now or r["status"] != service.BOOKED
                    ],
                    "labels": service.STATUS_LABELS,
                },
            )
        locations = await _choices(user, None)
        visible = visible_location_ids(user)
        options = [loc for loc in locations["locations"] if visible is None or loc["id"] in visible]
        if user.role == THERAPIST:
            therapist = (
                await Therapist.select(Therapist.id)
                .where(Therapist.account == user.id)
                .first()
                .run()
            )
            start = utcnow() - timedelta(days=1)
            rows = (
                await service.appointments_between(
                    start=start, end=start + timedelta(days=30), therapist_id=therapist["id"]
                )
                if therapist
                else []
            )
            return Template(
                "bookings/schedule.html",
                context={"rows": rows, "labels": service.STATUS_LABELS, "title": "My schedule"},
            )
        location = next(
            (loc for loc in options if loc["id"] == location_id), options[0] if options else None
        )
        if location is None:
            return Template(
                "bookings/schedule.html",
                context={"rows": [], "labels": service.STATUS_LABELS, "title": "Appointments"},
            )
        if location_id is not None and location["id"] != location_id:
            raise PermissionDeniedException("You do not have access to this location.")
        tz = ZoneInfo(str(location["timezone"]))
        the_day = _day(day, tz)
        span = h.local_day_span(the_day, tz)
        rows = await service.appointments_between(
            start=span.start, end=span.end, location_id=location["id"]
        )
        return Template(
            "bookings/schedule.html",
            context={
                "rows": rows,
                "labels": service.STATUS_LABELS,
                "title": f"Appointments at {location['name']}",
                "locations": options,
                "location": location,
                "day": the_day,
                "prev_day": the_day - timedelta(days=1),
                "next_day": the_day + timedelta(days=1),
            },
        )

    @get("/new", guards=[bookers], name="appointment_new")
    async def new(self, request: Request[Any, Any, Any]) -> Template:
        values = {k: v for k, v in request.query_params.items() if isinstance(v, str)}
        return await _booking_page(current_user(request), values)

    @post("/", guards=[bookers], name="appointment_create")
    async def create(self, request: Request[Any, Any, Any]) -> Response[Any]:
        user = current_user(request)
        values, _ = await read_form(request)
        location_id = _int(values.get("location"))
        service_id = _int(values.get("service"))
        errors: dict[str, str] = {}
        client_id = user.id
        if user.role != CLIENT:
            client = (
                await User.select(User.id, User.role)
                .where(User.email == values.get("client_email", "").strip().lower())
                .first()
                .run()
            )
            if client is None or client["role"] != CLIENT:
                errors["client_email"] = "No client account with this email."
            else:
                client_id = int(client["id"])
        try:
            start = datetime.fromisoformat(values.get("start", ""))
            if start.tzinfo is None:
                raise ValueError
        except ValueError:
            errors["start"] = "Choose one of the free times."
            start = utcnow()
        if location_id is None or service_id is None:
            errors["service"] = "Choose a clinic and a service."
        if errors:
            return await _booking_page(user, values, errors, status_code=422)
        assert location_id is not None and service_id is not None
        try:
            appointment_id = await service.book(
                user,
                client_id=client_id,
                location_id=location_id,
                service_id=service_id,
                start_at=start,
                therapist_id=_int(values.get("booked_therapist") or values.get("therapist")),
            )
        except service.NoCredit:
            return await _booking_page(
                user,
                values,
                {
                    "credit": "No unused session of this service is left in an active "
                    "package. Buy a package first."
                },
                status_code=409,
            )
        except service.SlotTaken:
            return await _booking_page(
                user,
                values,
                {"start": "Someone booked this time a moment ago; choose another."},
                status_code=409,
            )
        except ValidationFailed as exc:
            return await _booking_page(user, values, exc.errors, status_code=422)
        return redirect(request, f"/appointments/{appointment_id}", "Booked. See you then!")

    @get("/{appointment_id:int}", guards=[viewers], name="appointment_detail")
    async def detail(
        self, request: Request[Any, Any, Any], appointment_id: FromPath[int]
    ) -> Template:
        user = current_user(request)
        appointment = await service.get_appointment_for(user, appointment_id)
        now = utcnow()
        return Template(
            "bookings/detail.html",
            context={
                "a": appointment,
                "labels": service.STATUS_LABELS,
                "late": service.is_late(appointment, now),
                "started": appointment["start_at"] <= now,
                "errors": {},
            },
        )

    @post("/{appointment_id:int}/cancel", guards=[bookers], name="appointment_cancel")
    async def cancel(
        self, request: Request[Any, Any, Any], appointment_id: FromPath[int]
    ) -> Response[Any]:
        user = current_user(request)
        values, _ = await read_form(request)
        try:
            outcome = await service.cancel(
                user,
                appointment_id,
                reason=values.get("reason", ""),
                waive=values.get("waive") == "on",
                waive_reason=values.get("waive_reason", ""),
            )
        except ValidationFailed as exc:
            return await self._detail_with_errors(user, appointment_id, exc.errors)
        message = (
            "Cancelled; the session is back in your package."
            if outcome == service.CANCELLED
            else "Cancelled inside the cancellation window."
        )
        return redirect(request, f"/appointments/{appointment_id}", message, "info")

    @post("/{appointment_id:int}/complete", guards=[staff_actions], name="appointment_complete")
    async def complete(
        self, request: Request[Any, Any, Any], appointment_id: FromPath[int]
    ) -> Response[Any]:
        user = current_user(request)
        try:
            await service.complete(user, appointment_id)
        except ValidationFailed as exc:
            return await self._detail_with_errors(user, appointment_id, exc.errors)
        return redirect(request, f"/appointments/{appointment_id}", "Session completed.")

    @post("/{appointment_id:int}/no-show", guards=[managers], name="appointment_no_show")
    async def no_show(
        self, request: Request[Any, Any, Any], appointment_id: FromPath[int]
    ) -> Response[Any]:
        user = current_user(request)
        values, _ = await read_form(request)
        try:
            await service.mark_no_show(
                user,
                appointment_id,
                waive=values.get("waive") == "on",
                waive_reason=values.get("waive_reason", ""),
            )
        except ValidationFailed as exc:
            return await self._detail_with_errors(user, appointment_id, exc.errors)
        return redirect(
            request, f"/appointments/{appointment_id}", "Recorded as a no-show.", "info"
        )

    async def _detail_with_errors(
        self, user: CurrentUser, appointment_id: int, errors: dict[str, str]
    ) -> Template:
        appointment = await service.get_appointment_for(user, appointment_id)
        now = utcnow()
        return Template(
            "bookings/detail.html",
            context={
                "a": appointment,
                "labels": service.STATUS_LABELS,
                "late": service.is_late(appointment, now),
                "started": appointment["start_at"] <= now,
                "errors": errors,
            },
            status_code=422,
        )

    @get("/series/new", guards=[bookers], name="series_new")
    async def series_form(self, request: Request[Any, Any, Any]) -> Template:
        user = current_user(request)
        values = {k: v for k, v in request.query_params.items() if isinstance(v, str)}
        return Template(
            "bookings/series.html",
            context={
                **await _choices(user, _int(values.get("location"))),
                "form": values,
                "errors": {},
                "result": None,
            },
        )

    @post("/series", guards=[bookers], name="series_create")
    async def series_create(self, request: Request[Any, Any, Any]) -> Template:
        user = current_user(request)
        values, _ = await read_form(request)
        context: dict[str, Any] = {
            **await _choices(user, _int(values.get("location"))),
            "form": values,
            "result": None,
        }
        try:
            request_ = series_service.parse_series_form(values)
            client_id = user.id
            if user.role != CLIENT:
                client = (
                    await User.select(User.id, User.role)
                    .where(User.email == values.get("client_email", "").strip().lower())
                    .first()
                    .run()
                )
                if client is None or client["role"] != CLIENT:
                    raise ValidationFailed({"client_email": "No client account with this email."})
                client_id = int(client["id"])
            context["result"] = await series_service.book_series(user, client_id, request_)
        except ValidationFailed as exc:
            context["errors"] = exc.errors
            return Template("bookings/series.html", context=context, status_code=422)
        context["errors"] = {}
        return Template("bookings/series.html", context=context)


ROUTES = [BookingController]
