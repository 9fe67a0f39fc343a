"""Booking pages: the client's booking flow, appointments, staff actions, series."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from litestar import Controller, Request, Response, get, post
from litestar.background_tasks import BackgroundTask
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, QueryParameter
from litestar.response import Template

from portal import access, db
from portal.auth.service import ACCOUNTANT, CLIENT, MANAGER, OWNER, THERAPIST, CurrentUser
from portal.bookings import (
    availability,
    booking,
    dayview,
    html,
    listing,
    notify,
    outcomes,
    reading,
    weekview,
)
from portal.bookings import series as series_service
from portal.bookings.credits import NoCredit, credits_for
from portal.bookings.states import (
    BOOKED,
    CANCELLED,
    STATUS_LABELS,
    is_late,
    too_late_to_reschedule,
)
from portal.catalog.service import all_services
from portal.clients import service as clients
from portal.errors import Forbidden, Invalid
from portal.fields import plausible
from portal.locations.service import all_locations, get_location_for
from portal.onetime import service as onetime
from portal.settings import Settings
from portal.staff import hours as h
from portal.timeutil import utcnow
from portal.web.admin import reverse, reverser
from portal.web.deps import AppSettings, SignedIn
from portal.web.forms import parse_id, read_form
from portal.web.guards import requires_role
from portal.web.pagination import Page
from portal.web.responses import redirect

bookers = requires_role(OWNER, MANAGER, CLIENT)
viewers = requires_role(OWNER, MANAGER, ACCOUNTANT, THERAPIST, CLIENT)
staff_actions = requires_role(OWNER, MANAGER, THERAPIST)
managers = requires_role(OWNER, MANAGER)
list_viewers = requires_role(OWNER, MANAGER, ACCOUNTANT, THERAPIST)

TAKEN_MESSAGE = "This time has just been taken; choose another."
BOOKED_MESSAGE = {  # by whether the client booked it themselves
    True: "Booked. See you then! A confirmation is on its way by email.",
    False: "Booked. The client gets a confirmation by email.",
}


def _int(raw: str | None) -> int | None:
    """An id from a form or the query string; anything else (0, out of range) is None."""
    return parse_id(raw or "") or None


def _query(request: Request[Any, Any, Any]) -> dict[str, str]:
    return {k: v for k, v in request.query_params.items() if isinstance(v, str)}


@dataclass
class _Mail:
    """The messages a change queues, sent once the page has answered (SMTP only)."""

    settings: Settings
    deferred: list[int] = field(default_factory=list)

    @property
    def kw(self) -> dict[str, Any]:
        """The ``settings`` and ``deferred`` a booking service passes to notify."""
        return {"settings": self.settings, "deferred": self.deferred}

    def after(self, response: Response[Any]) -> Response[Any]:
        if self.deferred and self.settings.smtp_host:
            response.background = BackgroundTask(
                notify.deliver_all, list(self.deferred), self.settings
            )
        return response


def _provide_mail(settings: AppSettings) -> _Mail:
    return _Mail(settings)


# A handler that books, cancels or moves asks for ``mail: Mail``: a fresh queue a request.
MAIL = {"mail": Provide(_provide_mail, sync_to_thread=False)}
Mail = NamedDependency[_Mail]


def _to_detail(
    request: Request[Any, Any, Any], appointment_id: int, message: str, level: str = "success"
) -> Response[Any]:
    path = reverse(request, "appointment_detail", appointment_id=appointment_id)
    return redirect(request, path, message, level)


def _no_credit(user: CurrentUser, exc: NoCredit) -> str:
    if user.role == CLIENT:
        return f"{exc.message} Buy a package for it first."
    return f"{exc.message} The client needs a package for it first."


def _day(raw: str | None, tz: ZoneInfo, default: date | None = None) -> date:
    """The day asked for (ISO), else ``default``, else today in ``tz``."""
    fallback = default or _today(tz)
    try:
        day = date.fromisoformat(raw) if raw else fallback
    except ValueError:
        return fallback
    return day if plausible(day) else fallback


def _days_around(day: date) -> dict[str, date]:
    return {"day": day, "prev_day": day - timedelta(days=1), "next_day": day + timedelta(days=1)}


async def _choices(user: CurrentUser, location_id: int | None) -> dict[str, Any]:
    """The booking forms' lists: where the user may book, the services, the therapists."""
    locations = await all_locations(active_only=True)
    if user.role != CLIENT:  # staff book where they may change appointments
        locations = [loc for loc in locations if access.can_write(user, int(loc["id"]))]
    return {
        "locations": locations,
        "services": await all_services(active_only=True),
        "therapists": (
            await availability.therapists_at(
                location_id, credentialed_on=utcnow().date() if user.role == CLIENT else None
            )
            if location_id
            else []
        ),
    }


async def _client_id(user: CurrentUser, values: dict[str, str]) -> int | None:
    """Whom the booking is for: the client themselves, or the client staff name by email."""
    if user.role == CLIENT:
        return user.id
    client = await clients.find_client_for(user, values.get("client_email", ""))
    return int(client["id"]) if client else None


# Who sees a client's health flags (from the intake) beside their appointments.
SEE_HEALTH = (OWNER, MANAGER, THERAPIST)


async def _week_search(
    location_id: int,
    service_id: int,
    day: date,
    therapist_id: int | None,
    *,
    except_appointment_id: int | None = None,
) -> tuple[list[availability.Slot], list[tuple[date, int]]]:
    """The free times of ``day`` and, for its week (Monday first), each day's number of
    them, searched at once: the strip of days shows where there is room, so nobody
    pages day by day to find it. With no therapist chosen, one time per start."""
    monday = day - timedelta(days=day.weekday())
    by_day = await availability.free_slots_by_day(
        location_id,
        service_id,
        monday,
        days=7,
        therapist_id=therapist_id,
        except_appointment_id=except_appointment_id,
    )
    if therapist_id is None:
        by_day = {d: availability.one_per_start(found) for d, found in by_day.items()}
    return by_day[day], [(d, len(found)) for d, found in by_day.items()]


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
    slots: list[availability.Slot] = []
    credits: list[dict[str, Any]] = []
    client = None
    if user.role != CLIENT:
        client = await clients.find_client_for(user, values.get("client_email", ""))
    client_id = user.id if user.role == CLIENT else (int(client["id"]) if client else None)
    week: list[tuple[date, int]] = []
    if location and service_id:
        slots, week = await _week_search(location_id or 0, service_id, day, therapist_id)
        if client_id is not None:
            credits = await credits_for(client_id, service_id, utcnow(), location_id or 0)
    services = {x["id"]: str(x["name"]) for x in context["services"]}
    context.update(_days_around(day))
    context.update(
        form=values,
        errors=errors or {},
        location=location,
        tz=str(tz),
        slots=slots,
        week=week,
        credits=credits,
        client=client,
        is_client=user.role == CLIENT,
        service_name=services.get(service_id, ""),
    )
    return Template("bookings/book.html", context=context, status_code=status_code)


async def _my_appointments_page(user: CurrentUser) -> Template:
    """A client's own appointments: upcoming first, then the past and the cancelled."""
    rows = await reading.client_appointments(user.id)
    now = utcnow()
    return Template(
        "bookings/mine.html",
        context={
            "upcoming": sorted(
                (r for r in rows if r["start_at"] > now and r["status"] == BOOKED),
                key=lambda r: r["start_at"],
            ),
            "past": [r for r in rows if r["start_at"] <= now or r["status"] != BOOKED],
            "labels": STATUS_LABELS,
        },
    )


async def _therapist_agenda_page(user: CurrentUser) -> Template:
    """A therapist's own appointments from yesterday for 30 days, each marked with its local day."""
    own = await listing.own_therapist_ids(user)
    start = utcnow() - timedelta(days=1)
    rows = (
        await reading.appointments_between(
            start=start, end=start + timedelta(days=30), therapist_id=own[0]
        )
        if own
        else []
    )
    now = utcnow()
    await clients.with_health_flags(rows)
    for row in rows:
        zone = ZoneInfo(str(row["timezone"]))
        row["local_day"] = row["start_at"].astimezone(zone).date()
        row["is_today"] = row["local_day"] == now.astimezone(zone).date()
    return Template(
        "bookings/schedule.html",
        context={"rows": rows, "labels": STATUS_LABELS, "title": "My schedule", "agenda": True},
    )


async def _location_day_page(
    user: CurrentUser, location_id: int | None, day: str | None
) -> Template:
    """Staff's schedule of one location's day (the first visible location by default)."""
    options = await all_locations(active_only=True, visible_to=user)
    location = next(
        (loc for loc in options if loc["id"] == location_id), options[0] if options else None
    )
    if location is None:
        return Template(
            "bookings/schedule.html",
            context={"rows": [], "labels": STATUS_LABELS, "title": "Appointments"},
        )
    if location_id is not None and location["id"] != location_id:
        raise Forbidden("You do not have access to this location.")
    tz = ZoneInfo(str(location["timezone"]))
    the_day = _day(day, tz)
    span = h.local_day_span(the_day, tz)
    rows = await reading.appointments_between(
        start=span.start, end=span.end, location_id=location["id"]
    )
    if user.role in SEE_HEALTH:
        await clients.with_health_flags(rows)
    return Template(
        "bookings/schedule.html",
        context={
            "rows": rows,
            "labels": STATUS_LABELS,
            "title": f"Appointments at {location['name']}",
            "locations": options,
            "location": location,
            **_days_around(the_day),
        },
    )


def _aware_start(raw: str) -> datetime:
    """A free time's start from the form: an ISO datetime with its offset, on a plausible day."""
    start = datetime.fromisoformat(raw)
    if start.tzinfo is None or not plausible(start.date()):
        raise ValueError
    return start


@dataclass(frozen=True)
class _BookingForm:
    location_id: int
    service_id: int
    client_id: int
    start: datetime
    therapist_id: int | None


async def _parse_booking_form(user: CurrentUser, values: dict[str, str]) -> _BookingForm:
    """The booking form's clinic, service, client (staff give an email), start and
    therapist; Invalid names each problem."""
    location_id = _int(values.get("location"))
    service_id = _int(values.get("service"))
    errors: dict[str, str] = {}
    client_id = await _client_id(user, values)
    if not values.get("client_email", "").strip() and user.role != CLIENT:
        errors["client_email"] = "Enter the client's email address."
    elif client_id is None:
        errors["client_email"] = "No client account with this email."
    try:
        start = _aware_start(values.get("start", ""))
    except ValueError:
        errors["start"] = "Choose one of the free times."
    if location_id is None or service_id is None:
        errors["service"] = "Choose a clinic and a service."
    if errors:
        raise Invalid(errors)
    assert location_id is not None and service_id is not None and client_id is not None
    therapist_id = _int(values.get("booked_therapist") or values.get("therapist"))
    return _BookingForm(location_id, service_id, client_id, start, therapist_id)


async def _booking_refused(
    user: CurrentUser, values: dict[str, str], exc: NoCredit | booking.SlotTaken | Invalid
) -> Template:
    """The booking page again after the service refused: 409 for no credit or a taken
    time, 422 for bad input."""
    if isinstance(exc, NoCredit):
        return await _booking_page(user, values, {"credit": _no_credit(user, exc)}, status_code=409)
    if isinstance(exc, booking.SlotTaken):
        return await _booking_page(user, values, {"start": TAKEN_MESSAGE}, status_code=409)
    return await _booking_page(user, values, exc.errors, status_code=422)


def _cancelled_message(user: CurrentUser, outcome: str, *, waived: bool) -> str:
    if outcome == CANCELLED:
        if user.role == CLIENT:
            return "Cancelled; the session is back in your package."
        return "Cancelled; the session is back in the client's package."
    if waived:
        return "Cancelled inside the cancellation window; the forfeit was waived."
    return "Cancelled inside the cancellation window; the session is used up."


def _parse_move_form(
    values: dict[str, str], tz: ZoneInfo
) -> tuple[dict[str, str], datetime | None, int | None, dict[str, str]]:
    """The move form: a free time picked from the list, or a day and a wall-clock time in
    ``tz``; and the therapist. Returns the form to show again, the start, the therapist's
    id and the errors."""
    form = {
        "day": values.get("day", ""),
        "time": values.get("time", ""),
        "therapist": values.get("therapist", ""),
        "room": values.get("room", ""),
    }
    errors: dict[str, str] = {}
    start: datetime | None = None
    if values.get("start"):
        # A free time picked from the list.
        try:
            start = _aware_start(values["start"])
            local = start.astimezone(tz)
            form["day"], form["time"] = local.date().isoformat(), local.strftime("%H:%M")
        except ValueError:
            errors["start"] = "Choose one of the free times."
    else:
        start = _wall_start(form, tz, errors)
    therapist_id = _int(form["therapist"])
    if form["therapist"] and therapist_id is None:
        errors["therapist"] = "Choose a therapist from the list."
    if form["room"] and _int(form["room"]) is None:
        errors["room"] = "Choose a room from the list."
    return form, start, therapist_id, errors


def _wall_start(form: dict[str, str], tz: ZoneInfo, errors: dict[str, str]) -> datetime | None:
    """The start from the form's day and time in ``tz``; problems go into ``errors``."""
    on: date | None
    try:
        on = date.fromisoformat(form["day"])
    except ValueError:
        on = None
    if on is None or not plausible(on):
        errors["day"] = "Enter the new date."
        on = None
    minute = h.parse_hhmm(form["time"])
    if minute is None or minute >= 24 * 60:
        errors["time"] = "Enter a time such as 14:30."
    if on is None or minute is None or errors:
        return None
    start, problem = h.local_wall(on, minute, tz)
    if problem:
        errors["time"] = problem
    return start


def _moved_message(user: CurrentUser, moved: dict[str, Any], tz: ZoneInfo) -> str:
    when = moved["start_at"].astimezone(tz)
    if user.role == CLIENT:
        return (
            f"Rescheduled to {when:%A %d %B, %H:%M} with {moved['therapist_name']}. "
            "A new confirmation is on its way by email."
        )
    return (
        f"Moved to {when:%A %d %B, %H:%M} with {moved['therapist_name']} in "
        f"{moved['room_name']}. The client gets a new confirmation."
    )


async def _no_page() -> Page:
    return Page(rows=[], next_cursor=None)


async def _list_context(
    request: Request[Any, Any, Any],
    user: CurrentUser,
    listed: Awaitable[Page] | None,
    values: dict[str, str],
    errors: dict[str, str],
    *,
    filtered: bool,
) -> dict[str, Any]:
    """The appointment list's context: the page (``listed``, read together with the
    filter's choices; None: the filters were refused), the filter form and its choices."""
    page, locations, therapists = await db.concurrently(
        listed or _no_page(), listing.location_choices(user), listing.therapist_choices(user)
    )
    return {
        "page": page,
        "form": values,
        "errors": errors,
        "filtered": filtered or bool(errors),
        "locations": locations,
        "therapists": [
            (t["id"], t["name"] if t["active"] else f"{t['name']} (inactive)") for t in therapists
        ],
        "labels": STATUS_LABELS,
        "is_therapist": user.role == THERAPIST,
        "rows": html.appointment_rows(
            page.rows, STATUS_LABELS, reverser(request, "appointment_detail", "appointment_id")
        ),
    }


async def _detail_page(
    user: CurrentUser,
    appointment_id: int,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
) -> Template:
    """An appointment and its actions; again with ``errors`` (422) after one was refused."""
    appointment = await reading.get_appointment_for(user, appointment_id)
    if user.role in SEE_HEALTH:  # who treats or runs the clinic sees them before the session
        await clients.with_health_flags([appointment])
    now = utcnow()
    return Template(
        "bookings/detail.html",
        context={
            "a": appointment,
            "labels": STATUS_LABELS,
            "late": is_late(appointment, now),
            "started": appointment["start_at"] <= now,
            "errors": errors or {},
            "form": form or {},
            "can_write": access.can_write(user, int(appointment["location"])),
            # its client, before the cancellation window (the policy)
            "reschedulable": user.role == CLIENT and not is_late(appointment, now),
        },
        status_code=422 if errors else 200,
    )


def _waiver(values: dict[str, str]) -> dict[str, Any]:
    """The forfeit waiver a manager may give with a late cancel or a no-show, and the
    form's one-time key."""
    return {
        "waive": values.get("waive") == "on",
        "waive_reason": values.get("waive_reason", ""),
        "request_key": onetime.parse(values.get(onetime.FIELD)),
    }


class BookingController(Controller):
    path = "/appointments"
    dependencies = MAIL

    @get("/", guards=[viewers], name="appointments")
    async def index(
        self,
        user: SignedIn,
        location: Annotated[str, QueryParameter(name="location")] = "",
        day: Annotated[str | None, QueryParameter(name="day")] = None,
    ) -> Template:
        """Three pages on one path: a client's own appointments, a therapist's
        agenda, and staff's day schedule of one location (an empty location: the first
        of the user's)."""
        if user.role == CLIENT:
            return await _my_appointments_page(user)
        if user.role == THERAPIST:
            return await _therapist_agenda_page(user)
        return await _location_day_page(user, parse_id(location), day)

    @get("/list", guards=[list_viewers], name="appointment_list")
    async def list_page(
        self,
        request: Request[Any, Any, Any],
        user: SignedIn,
        after: Annotated[str | None, QueryParameter(name="after")] = None,
    ) -> Template:
        """Every appointment the user may see, newest first, 50 a page (keyset)."""
        values = {key: str(request.query_params.get(key) or "") for key in listing.FILTER_KEYS}
        errors: dict[str, str] = {}
        filters = listing.ListFilters()
        try:
            filters = listing.parse_filters(user, values)
        except Invalid as exc:
            errors = exc.errors
        return Template(
            "bookings/list.html",
            context=await _list_context(
                request,
                user,
                None if errors else listing.list_appointments(user, filters, after=after),
                values,
                errors,
                filtered=filters.chosen,
            ),
            status_code=422 if errors else 200,
        )

    @get("/new", guards=[bookers], name="appointment_new")
    async def new(self, request: Request[Any, Any, Any], user: SignedIn) -> Template:
        return await _booking_page(user, _query(request))

    @post("/", guards=[bookers], name="appointment_create")
    async def create(
        self, request: Request[Any, Any, Any], user: SignedIn, mail: Mail
    ) -> Response[Any]:
        values, _ = await read_form(request)
        try:
            form = await _parse_booking_form(user, values)
        except Invalid as exc:
            return await _booking_page(user, values, exc.errors, status_code=422)
        try:
            appointment_id = await booking.book(
                user, client_id=form.client_id, location_id=form.location_id,
                service_id=form.service_id, start_at=form.start,
                therapist_id=form.therapist_id, **mail.kw,
            )  # fmt: skip
        except (NoCredit, booking.SlotTaken, Invalid) as exc:
            return await _booking_refused(user, values, exc)
        booked = BOOKED_MESSAGE[user.role == CLIENT]
        return mail.after(_to_detail(request, appointment_id, booked))

    @get("/{appointment_id:int}", guards=[viewers], name="appointment_detail")
    async def detail(self, user: SignedIn, appointment_id: FromPath[int]) -> Template:
        return await _detail_page(user, appointment_id)

    @post("/{appointment_id:int}/cancel", guards=[bookers], name="appointment_cancel")
    async def cancel(
        self,
        request: Request[Any, Any, Any],
        user: SignedIn,
        mail: Mail,
        appointment_id: FromPath[int],
    ) -> Response[Any]:
        values, _ = await read_form(request)
        try:
            outcome = await outcomes.cancel(
                user, appointment_id, reason=values.get("reason", ""), **_waiver(values), **mail.kw
            )
        except Invalid as exc:
            return await _detail_page(user, appointment_id, exc.errors, values)
        message = _cancelled_message(user, outcome, waived=values.get("waive") == "on")
        return mail.after(_to_detail(request, appointment_id, message, "info"))

    @post("/{appointment_id:int}/complete", guards=[staff_actions], name="appointment_complete")
    async def complete(
        self, request: Request[Any, Any, Any], user: SignedIn, appointment_id: FromPath[int]
    ) -> Response[Any]:
        values, _ = await read_form(request)
        request_key = onetime.parse(values.get(onetime.FIELD))
        try:
            await outcomes.complete(user, appointment_id, request_key=request_key)
        except Invalid as exc:
            return await _detail_page(user, appointment_id, exc.errors)
        return _to_detail(request, appointment_id, "Session completed.")

    @post("/{appointment_id:int}/no-show", guards=[managers], name="appointment_no_show")
    async def no_show(
        self, request: Request[Any, Any, Any], user: SignedIn, appointment_id: FromPath[int]
    ) -> Response[Any]:
        values, _ = await read_form(request)
        try:
            await outcomes.mark_no_show(user, appointment_id, **_waiver(values))
        except Invalid as exc:
            return await _detail_page(user, appointment_id, exc.errors)
        return _to_detail(request, appointment_id, "Recorded as a no-show.", "info")

    # -- moving (staff) ------------------------------------------------------------

    @get("/{appointment_id:int}/move", guards=[bookers], name="appointment_move_form")
    async def move_form(
        self,
        user: SignedIn,
        appointment_id: FromPath[int],
        day: Annotated[str | None, QueryParameter(name="day")] = None,
        therapist: Annotated[str | None, QueryParameter(name="therapist")] = None,
    ) -> Template:
        """Staff move an appointment; its client reschedules it before the window."""
        appointment = await _movable(user, appointment_id)
        tz = ZoneInfo(str(appointment["timezone"]))
        start = appointment["start_at"].astimezone(tz)
        form = {
            "day": day or start.date().isoformat(),
            "time": start.strftime("%H:%M"),
            "therapist": therapist if therapist is not None else str(appointment["therapist"]),
        }
        return await _move_page(appointment, form, {}, user=user)

    @post("/{appointment_id:int}/move", guards=[bookers], name="appointment_move")
    async def move(
        self,
        request: Request[Any, Any, Any],
        user: SignedIn,
        mail: Mail,
        appointment_id: FromPath[int],
    ) -> Response[Any]:
        appointment = await _movable(user, appointment_id)
        values, _ = await read_form(request)
        tz = ZoneInfo(str(appointment["timezone"]))
        form, start, therapist_id, errors = _parse_move_form(values, tz)
        if errors or start is None:
            return await _move_page(appointment, form, errors, status_code=422, user=user)
        try:
            await booking.move(
                user, appointment_id, start_at=start, therapist_id=therapist_id,
                room_id=_int(form["room"]), **mail.kw,
            )  # fmt: skip
        except (booking.SlotTaken, Invalid) as exc:
            return await _move_refused(user, appointment, form, exc)
        message = _moved_message(user, await reading.get_appointment(appointment_id), tz)
        return mail.after(_to_detail(request, appointment_id, message))

    @get("/series/new", guards=[bookers], name="series_new")
    async def series_form(self, request: Request[Any, Any, Any], user: SignedIn) -> Template:
        return await _series_page(user, _query(request))

    @post("/series", guards=[bookers], name="series_create")
    async def series_create(
        self, request: Request[Any, Any, Any], user: SignedIn, mail: Mail
    ) -> Response[Any]:
        values, _ = await read_form(request)
        try:
            request_ = series_service.parse_series_form(values)
            client_id = await _client_id(user, values)
            if client_id is None:
                raise Invalid({"client_email": "No client account with this email."})
            result = await series_service.book_series(user, client_id, request_, **mail.kw)
        except Invalid as exc:
            return await _series_page(user, values, exc.errors)
        return mail.after(await _series_page(user, values, result=result))


async def _series_page(
    user: CurrentUser,
    values: dict[str, str],
    errors: dict[str, str] | None = None,
    *,
    result: series_service.SeriesResult | None = None,
) -> Template:
    """The series form, with what a booked series came to, or again with its errors (422)."""
    return Template(
        "bookings/series.html",
        context={
            **await _choices(user, _int(values.get("location"))),
            "form": values,
            "errors": errors or {},
            "result": result,
        },
        status_code=422 if errors else 200,
    )


async def _movable(user: CurrentUser, appointment_id: int) -> dict[str, Any]:
    """The appointment to move: staff need write access to its clinic, a client owns it."""
    return await reading.get_appointment_for(user, appointment_id, write=user.role != CLIENT)


async def _move_refused(
    user: CurrentUser,
    appointment: dict[str, Any],
    form: dict[str, str],
    exc: booking.SlotTaken | Invalid,
) -> Template:
    """The move form again after the service refused: 409 for a taken time, 422 else."""
    if isinstance(exc, booking.SlotTaken):
        errors = {"start": TAKEN_MESSAGE}
        return await _move_page(appointment, form, errors, status_code=409, user=user)
    errors = {("time" if k == "start" else k): v for k, v in exc.errors.items()}
    return await _move_page(appointment, form, errors, status_code=422, user=user)


async def _move_page(
    appointment: dict[str, Any],
    form: dict[str, str],
    errors: dict[str, str],
    *,
    user: CurrentUser,
    status_code: int = 200,
) -> Template:
    """The move form, with the free times of the chosen day for the chosen therapist."""
    location_id = int(appointment["location"])
    service_id = int(appointment["service"])
    tz = ZoneInfo(str(appointment["timezone"]))
    is_client = user.role == CLIENT
    therapists = await availability.eligible_therapists(location_id, service_id, None)
    if is_client:  # clients are offered only therapists they can book today
        bookable = await availability.therapists_at(location_id, credentialed_on=utcnow().date())
        ids = {t["id"] for t in bookable}
        therapists = [t for t in therapists if t["id"] in ids]
    on = _day(form.get("day"), tz, appointment["start_at"].astimezone(tz).date())
    therapist_id = _int(form.get("therapist")) or int(appointment["therapist"])
    slots: list[availability.Slot] = []
    week: list[tuple[date, int]] = []
    if appointment["status"] == BOOKED:
        slots, week = await _week_search(
            location_id,
            service_id,
            on,
            therapist_id,
            except_appointment_id=int(appointment["id"]),
        )
    context = {
        "a": appointment,
        "form": form,
        "errors": errors,
        "therapists": therapists,
        "rooms": (await availability.booking_context(location_id, service_id)).rooms,
        "slots": slots,
        "week": week,
        "tz": str(tz),
        "started": appointment["start_at"] <= utcnow(),
        "labels": STATUS_LABELS,
        "is_client": is_client,
        "too_late": is_client and is_late(appointment, utcnow()),
        "policy": too_late_to_reschedule(appointment),
        **_days_around(on),
    }
    return Template("bookings/move.html", context=context, status_code=status_code)


class ScheduleController(Controller):
    """The location day and week views live under their location's address."""

    path = "/locations"

    @get("/{location_id:int}/day", guards=[managers], name="location_day")
    async def day(
        self,
        user: SignedIn,
        location_id: FromPath[int],
        on: Annotated[str, QueryParameter(name="date")] = "",
    ) -> Template:
        tz = await _location_zone(user, location_id)
        view = await dayview.build_day_view(user, location_id, _day(on, tz))
        return Template("bookings/day.html", context={"view": view, "today": _today(tz)})

    @get("/{location_id:int}/week", guards=[managers], name="location_week")
    async def week(
        self,
        user: SignedIn,
        location_id: FromPath[int],
        on: Annotated[str, QueryParameter(name="date")] = "",
        by: Annotated[str, QueryParameter(name="by")] = weekview.THERAPISTS,
    ) -> Template:
        tz = await _location_zone(user, location_id)
        view = await weekview.build_week_view(user, location_id, _day(on, tz), by=by)
        return Template("bookings/week.html", context={"view": view, "today": _today(tz)})


async def _location_zone(user: CurrentUser, location_id: int) -> ZoneInfo:
    """The zone of a location the user may see (404/403 otherwise)."""
    return ZoneInfo(str((await get_location_for(user, location_id))["timezone"]))


def _today(tz: ZoneInfo) -> date:
    return utcnow().astimezone(tz).date()


ROUTES = [BookingController, ScheduleController]
