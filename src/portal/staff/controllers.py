from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any

from litestar import Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Template

from portal.access import can_write, visible_locations, writable_among
from portal.auth.service import MANAGER, OWNER, THERAPIST, CurrentUser
from portal.locations.service import all_locations, get_location_for, location_choices
from portal.staff import credentials, html, photos, schedule, therapists, timeoff
from portal.staff import hours as h
from portal.staff.tables import TIME_OFF_PENDING
from portal.timeutil import utcnow
from portal.users.service import get_user
from portal.web.admin import (
    AdminForm,
    AdminResource,
    AdminView,
    Column,
    Messages,
    Records,
    Roles,
    admin_controller,
    location_filter,
    records_handlers,
    render_form,
    reverse,
    search,
)
from portal.web.deps import Actor, SignedIn
from portal.web.forms import (
    Flash,
    Lists,
    ValidationFailed,
    Values,
    parse_id,
    read_form,
    submit,
)
from portal.web.guards import requires_owner, requires_role
from portal.web.responses import redirect

managers = requires_role(OWNER, MANAGER)
readers = requires_role(OWNER, MANAGER, THERAPIST)
therapists_only = requires_role(THERAPIST)

DEFAULTS: dict[str, Any] = {
    "name": "",
    "email": "",
    "phone": "",
    "bio": "",
    "licence_number": "",
    "licence_state": "",
    "licence_expires": "",
    "insurance_expires": "",
    "service_ids": [],
    "location_ids": [],
}
LABELS = {
    "name": "Name",
    "email": "Email",
    "phone": "Phone",
    "bio": "Bio",
    "licence_number": "Licence number",
    "licence_state": "Issuing state",
    "licence_expires": "Licence expiry",
    "insurance_expires": "Insurance expiry",
    "service_ids": "Services",
    "location_ids": "Locations",
}
# Empty interval rows offered per weekday on the hours form (beyond the saved ones).
MIN_HOURS_ROWS = 3
PHOTO_UPLOAD_LIMIT = 6 * 1024 * 1024
ACCOUNT_CREATED = (
    "Sign-in account created: we emailed the therapist an invitation to choose a password."
)


def _as_form(row: dict[str, Any]) -> dict[str, Any]:
    form = {k: row.get(k) or "" for k in DEFAULTS}
    for key in ("licence_expires", "insurance_expires"):
        form[key] = row[key].isoformat() if row.get(key) else ""
    form["service_ids"] = [str(i) for i in row["service_ids"]]
    form["location_ids"] = [str(i) for i in row["location_ids"]]
    return form


async def _initial(user: CurrentUser, _query: Mapping[str, str]) -> dict[str, Any]:
    """A new therapist, at the manager's location when they have only one."""
    mine = visible_locations(user)
    only = [str(i) for i in mine] if mine is not None and len(mine) == 1 else []
    return {**DEFAULTS, "location_ids": only}


async def _form_context(
    user: CurrentUser, form: dict[str, Any], therapist: dict[str, Any] | None
) -> dict[str, Any]:
    """The locations this user may put the therapist at (active ones, and those
    they work at already); the others they work at are shown, not offered."""
    current = therapist["location_ids"] if therapist else frozenset()
    locations = await all_locations(active_only=False)
    selected = frozenset(n for n in map(parse_id, form["service_ids"]) if n is not None)
    extra = {"has_photo": await photos.has_photo(int(therapist["id"]))} if therapist else {}
    return {
        "location_choices": [
            loc
            for loc in locations
            if can_write(user, loc["id"]) and (loc["active"] or loc["id"] in current)
        ],
        "fixed_locations": [
            loc for loc in locations if loc["id"] in current and not can_write(user, loc["id"])
        ],
        "services": await therapists.service_choices(
            selected | (therapist or {}).get("service_ids", frozenset())
        ),
        "today": utcnow().date(),
        **extra,
    }


def _saved(done: str, warned: str) -> Callable[[therapists.TherapistInput], tuple[str, str]]:
    """The message after a save: a warning when a credential has expired or will soon."""

    def message(data: therapists.TherapistInput) -> tuple[str, str]:
        warnings = therapists.expiry_warnings(data)
        if warnings:
            return f"{warned.format(name=data.name)} Warning: " + " ".join(warnings), "warning"
        return done.format(name=data.name), "success"

    return message


THERAPIST_FORM = AdminForm(
    template="staff/form.html",
    labels=LABELS,
    defaults=DEFAULTS,
    lists=("service_ids", "location_ids"),
    parse=lambda values, lists, _row: therapists.parse_therapist_form(values, lists),
    create=therapists.create_therapist,
    update=therapists.update_therapist,
    as_form=_as_form,
    initial=_initial,
    context=_form_context,
    created=_saved(
        "Therapist “{name}” added. Next, set their working hours.", "Therapist “{name}” added."
    ),
    saved=_saved("Therapist saved.", "Saved."),
    new_title="Add therapist",
    create_button="Add therapist",
)


async def _detail_context(
    request: Request[Any, Any, Any], user: CurrentUser, therapist: dict[str, Any]
) -> dict[str, Any]:
    """The therapist's page: profile, weekly hours per location, time off,
    credentials, sign-in account and photo."""
    therapist_id = int(therapist["id"])
    places = await therapists.location_names(therapist["location_ids"])
    ordered = sorted(places, key=lambda i: str(places[i]["name"]))
    hours_rows = await schedule.hours_of(therapist_id)
    weekly = [
        {
            "location": places[loc_id],
            "days": schedule.week_summary([r for r in hours_rows if r["location"] == loc_id]),
            "editable": can_write(user, loc_id),
        }
        for loc_id in ordered
    ]
    account = await get_user(int(therapist["account"])) if therapist["account"] else None
    # Linking an existing account is the owners' (accounts are chain-wide).
    linkable = user.role == OWNER and account is None
    return {
        "admin": AdminView(THERAPISTS, request, user),
        "therapist": therapist,
        "locations": [places[i] for i in ordered],
        "services": sorted((await therapists.service_names(therapist["service_ids"])).values()),
        "weekly": weekly,
        "weekdays": h.WEEKDAYS,
        "time_off": await timeoff.list_time_off(therapist_id, since=utcnow() - timedelta(days=30)),
        "time_off_statuses": timeoff.STATUS_LABELS,
        "account": account,
        "unlinked_accounts": await therapists.unlinked_therapist_accounts() if linkable else [],
        "has_photo": await photos.has_photo(therapist_id),
        "licence_status": credentials.credential_status(therapist["licence_expires"]),
        "insurance_status": credentials.credential_status(therapist["insurance_expires"]),
        "account_form": {"account_email": therapist["email"]},
        "today": utcnow().date(),
        "credential_badge": html.credential_badge,
        "account_errors": {},
    }


async def _list_context(_: CurrentUser) -> dict[str, Any]:
    return {"today": utcnow().date()}


def _deactivated(form: dict[str, str]) -> str:
    if form.get("include_account") == "on":
        return "Therapist deactivated: they can no longer be booked or sign in."
    return "Therapist deactivated: they can no longer be booked."


THERAPISTS = AdminResource(
    name="therapist",
    plural="Therapists",
    roles=Roles.every(OWNER, MANAGER, detail=(OWNER, MANAGER, THERAPIST)),
    load=therapists.get_therapist_for,
    list_rows=therapists.list_therapists,
    columns=(
        Column("Name", "name", link=True, sub="email"),
        Column("Locations", html=html.locations_cell),
        Column("Licence", html=html.licence_cell),
        Column("Insurance", html=html.insurance_cell),
        Column("Status", cell="status"),
    ),
    filters=(
        search("Name or email"),
        location_filter(location_choices),
    ),
    scope=lambda row: frozenset(row["location_ids"]),
    # Deactivating takes a therapist out of every location: a manager needs them all.
    deactivate_needs_every_location=True,
    set_active=therapists.set_active,
    set_active_options=lambda form: {"include_account": form.get("include_account") == "on"},
    detail_template="staff/detail.html",
    detail_context=_detail_context,
    list_template="staff/list.html",
    list_context=_list_context,
    new_label="Add therapist",
    confirm_template="staff/deactivate.html",
    messages=Messages(deactivated=_deactivated),
    form=THERAPIST_FORM,
)


async def _hours_page(
    user: CurrentUser,
    therapist: dict[str, Any],
    location_id: int,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    notice: str = "",
) -> Template:
    """The weekly hours form at one location, with the hours elsewhere for reference."""
    places = await therapists.location_names(therapist["location_ids"] | {location_id})
    rows = await schedule.hours_of(int(therapist["id"]))
    form = h.hours_form(rows, location_id) if form is None else form
    elsewhere = [
        {
            "location": places[loc_id],
            "days": schedule.week_summary([r for r in rows if r["location"] == loc_id]),
        }
        for loc_id in sorted(therapist["location_ids"] - {location_id})
        if loc_id in places
    ]
    context = {
        "therapist": therapist,
        "place": places[location_id],
        "form": form,
        "errors": errors or {},
        "days": h.hours_rows(form, MIN_HOURS_ROWS),
        "elsewhere": elsewhere,
        "notice": notice,
    }
    return Template("staff/hours.html", context=context, status_code=422 if errors else 200)


async def _time_off_page(
    _: Request[Any, Any, Any],
    therapist: dict[str, Any],
    form: dict[str, str],
    errors: dict[str, str],
    *,
    requesting: bool = False,
) -> Template:
    """The time off form: a manager records it, a therapist requests it (``requesting``)."""
    places = await therapists.location_names(therapist["location_ids"])
    context = {
        "requesting": requesting,
        "therapist": therapist,
        "form": form,
        "errors": errors or {},
        "locations": [
            (loc_id, f"{places[loc_id]['name']} ({places[loc_id]['timezone']})")
            for loc_id in sorted(places, key=lambda i: str(places[i]["name"]))
        ],
    }
    return Template("staff/time_off_form.html", context=context, status_code=422 if errors else 200)


def _first_writable(user: CurrentUser, therapist: dict[str, Any]) -> dict[str, str]:
    """A new time off's location: the first of theirs this user manages (an owner: the first)."""
    mine = writable_among(user, sorted(therapist["location_ids"]))
    return {"location_id": str(mine[0]) if mine else ""}


async def _add_time_off(
    user: CurrentUser, therapist: dict[str, Any], values: Values, address: str
) -> Flash:
    data = timeoff.parse_time_off_form(values)
    await timeoff.add_time_off(user, int(therapist["id"]), data, address=address)
    return "Time off recorded."


TIME_OFF = Records(
    path="time-off",
    name="time_off",
    initial=_first_writable,
    page=_time_off_page,
    add=_add_time_off,
    load=timeoff.get_time_off_for,
    remove=timeoff.remove_time_off,
    removed="Time off removed.",
    already_removed="That time off had already been removed.",
    confirm_template="staff/time_off_remove.html",
)


def _account_refused(
    request: Request[Any, Any, Any], user: CurrentUser, therapist: dict[str, Any]
) -> Callable[[Values, Lists, dict[str, str]], Awaitable[Template]]:
    """The therapist's page again, the sign-in account form's errors beside it
    (and the email typed, when there was one)."""

    async def refused(values: Values, _: Lists, errors: dict[str, str]) -> Template:
        context = await _detail_context(request, user, therapist)
        context["account_errors"] = errors
        if "account_email" in values:
            context["account_form"] = {"account_email": values["account_email"]}
        return Template("staff/detail.html", context=context, status_code=422)

    return refused


def _photo_response(content: bytes, media_type: str, **headers: str) -> Response[bytes]:
    return Response(
        content=content,
        media_type=media_type,
        headers={
            "Cache-Control": "private, max-age=300",
            "X-Content-Type-Options": "nosniff",
            **headers,
        },
    )


# What a sign-in account form does: (user, therapist id, values, address) → the flash.
AccountAction = Callable[[CurrentUser, int, Values, str], Awaitable[Flash]]


async def _create_account(
    user: CurrentUser, therapist_id: int, values: Values, address: str
) -> Flash:
    email = values.get("account_email", "")
    await therapists.create_account(user, therapist_id, email=email, address=address)
    return ACCOUNT_CREATED


async def _link(user: CurrentUser, therapist_id: int, values: Values, address: str) -> Flash:
    """Linking an existing account (the owners': accounts are chain-wide)."""
    account_id = parse_id(values.get("account_user", ""))
    if account_id is None:
        raise ValidationFailed({"account_user": "Choose an account from the list."})
    await therapists.link_account(user, therapist_id, account_id, address=address)
    return "Sign-in account linked."


def _account_action(suffix: str, guard: Any, name: str, act: AccountAction) -> Any:
    """The POST handler of one of the sign-in account forms on a therapist's
    page; on bad input the page again, the form's errors beside it."""

    @post("/{therapist_id:int}/account" + suffix, guards=[guard], name=name)
    async def handler(self: Any, acting: Actor, therapist_id: FromPath[int]) -> Response[Any]:
        request, user = acting.request, acting.user
        therapist = await therapists.get_therapist_for(user, therapist_id, write=True)

        async def save(values: Values, _: Lists) -> tuple[str, Flash]:
            message = await act(user, therapist_id, values, acting.address)
            return _detail_url(request, therapist_id), message

        return await submit(request, save, _account_refused(request, user, therapist))

    return handler


def _decision(verb: str, approve: bool) -> Any:
    """The POST with which a manager approves or declines requested time off."""

    @post(
        f"/{{therapist_id:int}}/time-off/{{time_off_id:int}}/{verb}",
        guards=[managers],
        name=f"time_off_{verb}",
    )
    async def handler(
        self: Any, acting: Actor, therapist_id: FromPath[int], time_off_id: FromPath[int]
    ) -> Response[Any]:
        request, user = acting.request, acting.user
        values, _ = await read_form(request)
        confirmed = values.get("confirmed") == "yes"
        if approve and not confirmed:
            # Bookings inside the time off: listed, to be moved or cancelled, and the
            # approval confirmed; none: approved at once.
            row, booked = await timeoff.bookings_in_time_off(user, therapist_id, time_off_id)
            if booked and row["status"] == TIME_OFF_PENDING and row["cancelled_at"] is None:
                return Template(
                    "staff/time_off_approve.html",
                    context={
                        "therapist": await therapists.get_therapist(therapist_id),
                        "time_off": row,
                        "booked": booked,
                    },
                )
        decided = await timeoff.decide_time_off(
            user, therapist_id, time_off_id, approve=approve, confirmed=confirmed,
            address=acting.address, settings=acting.settings,
        )  # fmt: skip
        message = f"Time off {verb}d; the therapist was emailed."
        if not decided:
            message = "That time off had already been decided or removed."
        return redirect(request, _detail_url(request, therapist_id), message, "info")

    return handler


class TherapistController(admin_controller(THERAPISTS, records_handlers(THERAPISTS, TIME_OFF))):  # type: ignore[misc]
    """The admin grammar from ``THERAPISTS`` and its time off, plus hours, the
    sign-in account and the photo."""

    @get("/me", guards=[requires_role(THERAPIST)], name="therapist_me")
    async def me(self, request: Request[Any, Any, Any], user: SignedIn) -> Template:
        therapist = await therapists.therapist_of_account(user.id)
        if therapist is None:
            raise NotFoundException(
                "No therapist profile is linked to your account yet. Ask your manager."
            )
        return Template(
            "staff/detail.html", context=await _detail_context(request, user, therapist)
        )

    @get("/compliance", guards=[managers], name="therapist_compliance")
    async def compliance(self, user: SignedIn) -> Template:
        return Template(
            "staff/compliance.html",
            context={
                "report": await credentials.compliance(user),
                "soon_days": credentials.SOON_DAYS,
                "later_days": credentials.LATER_DAYS,
            },
        )

    # -- hours ------------------------------------------------------------

    @get("/{therapist_id:int}/hours/{location_id:int}", guards=[managers], name="therapist_hours")
    async def hours(
        self, user: SignedIn, therapist_id: FromPath[int], location_id: FromPath[int]
    ) -> Template:
        therapist = await _therapist_at(user, therapist_id, location_id)
        if location_id not in therapist["location_ids"]:
            raise NotFoundException(
                f"{therapist['name']} does not work at this location: add it to the profile first."
            )
        return await _hours_page(user, therapist, location_id)

    @post(
        "/{therapist_id:int}/hours/{location_id:int}",
        guards=[managers],
        name="therapist_hours_save",
    )
    async def save_hours(
        self, acting: Actor, therapist_id: FromPath[int], location_id: FromPath[int]
    ) -> Response[Any]:
        request, user = acting.request, acting.user
        therapist = await _therapist_at(user, therapist_id, location_id)
        values, _ = await read_form(request)
        source = parse_id(values.pop("copy_from", "") or "-")
        if source is not None and source < len(h.WEEKDAYS):
            if location_id not in therapist["location_ids"]:
                raise NotFoundException("This therapist does not work at this location.")
            copied, targets = h.copy_day(values, source)
            notice = (
                f"{h.WEEKDAYS[source]}'s hours copied to "
                f"{', '.join(h.WEEKDAYS[d] for d in targets)}. Check them, then save."
            )
            return await _hours_page(user, therapist, location_id, copied, notice=notice)

        async def save(values: Values, _: Lists) -> tuple[str, Flash]:
            intervals, errors = schedule.read_hours_form(values)
            await schedule.set_hours(
                user, therapist_id, location_id, intervals, address=acting.address,
                form_errors=errors,
            )  # fmt: skip
            return _detail_url(request, therapist_id), "Working hours saved."

        async def refused(values: Values, _: Lists, errors: dict[str, str]) -> Template:
            if location_id not in therapist["location_ids"]:
                raise NotFoundException(errors.get("form", ""))
            return await _hours_page(user, therapist, location_id, values, errors)

        return await submit(request, save, refused)

    # -- time off the therapist requests, a manager decides ----------------------

    @get(
        "/{therapist_id:int}/time-off/request",
        guards=[therapists_only],
        name="time_off_request_new",
    )
    async def request_time_off_form(
        self, request: Request[Any, Any, Any], user: SignedIn, therapist_id: FromPath[int]
    ) -> Template:
        therapist = await timeoff.own_profile(user, therapist_id)
        form = {"location_id": str(min(therapist["location_ids"], default=""))}
        return await _time_off_page(request, therapist, form, {}, requesting=True)

    @post("/{therapist_id:int}/time-off/request", guards=[therapists_only], name="time_off_request")
    async def request_time_off(self, acting: Actor, therapist_id: FromPath[int]) -> Response[Any]:
        request, user = acting.request, acting.user
        therapist = await timeoff.own_profile(user, therapist_id)

        async def save(values: Values, _: Lists) -> tuple[str, Flash]:
            data = timeoff.parse_time_off_form(values)
            await timeoff.request_time_off(user, therapist_id, data, address=acting.address)
            return _detail_url(request, therapist_id), "Time off requested: a manager will decide."

        async def refused(values: Values, _: Lists, errors: dict[str, str]) -> Template:
            return await _time_off_page(request, therapist, values, errors, requesting=True)

        return await submit(request, save, refused)

    approve_time_off = _decision("approve", True)
    decline_time_off = _decision("decline", False)

    # -- sign-in account ------------------------------------------------------

    create_account = _account_action("", managers, "therapist_account_create", _create_account)
    link_account = _account_action("/link", requires_owner, "therapist_account_link", _link)

    # -- photo -----------------------------------------------------------------

    @get("/{therapist_id:int}/photo", guards=[readers], name="therapist_photo")
    async def photo(self, user: SignedIn, therapist_id: FromPath[int]) -> Response[bytes]:
        therapist = await therapists.get_therapist_for(user, therapist_id)
        photo = await photos.get_photo(therapist_id)
        if photo is None:
            avatar = photos.initials_avatar(str(therapist["name"]))
            return _photo_response(avatar.encode(), "image/svg+xml")
        return _photo_response(
            bytes(photo["data"]), str(photo["content_type"]), **{"Content-Disposition": "inline"}
        )

    @post(
        "/{therapist_id:int}/photo",
        guards=[managers],
        name="therapist_photo_upload",
        request_max_body_size=PHOTO_UPLOAD_LIMIT,
    )
    async def upload_photo(self, acting: Actor, therapist_id: FromPath[int]) -> Response[Any]:
        request, user = acting.request, acting.user
        therapist = await therapists.get_therapist_for(user, therapist_id, write=True)
        upload = (await request.form()).get("photo")
        try:
            data = await upload.read() if isinstance(upload, UploadFile) else b""
            await photos.set_photo(user, therapist_id, data, address=acting.address)
        except ValidationFailed as exc:
            # The profile form again, the photo's error beside the upload.
            form, errors = _as_form(therapist), {"photo_errors": exc.errors}
            return await render_form(
                THERAPISTS, request, user, form, {}, therapist, status_code=422, **errors
            )
        return redirect(request, _detail_url(request, therapist_id), "Photo saved.")

    @post("/{therapist_id:int}/photo/remove", guards=[managers], name="therapist_photo_remove")
    async def remove_photo(self, acting: Actor, therapist_id: FromPath[int]) -> Response[Any]:
        removed = await photos.remove_photo(acting.user, therapist_id, address=acting.address)
        message = "Photo removed." if removed else "There was no photo."
        return redirect(acting.request, _detail_url(acting.request, therapist_id), message, "info")


async def _therapist_at(user: CurrentUser, therapist_id: int, location_id: int) -> dict[str, Any]:
    """The therapist whose hours at a location this user may set (both checked for writing)."""
    therapist = await therapists.get_therapist_for(user, therapist_id, write=True)
    await get_location_for(user, location_id, write=True)
    return therapist


def _detail_url(request: Request[Any, Any, Any], therapist_id: int) -> str:
    return reverse(request, "therapist_detail", therapist_id=therapist_id)


ROUTES = [TherapistController]
