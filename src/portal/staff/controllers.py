from __future__ import annotations

from datetime import timedelta
from typing import Any

from litestar import Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Template

from portal.auth.service import MANAGER, OWNER, THERAPIST, CurrentUser
from portal.locations.service import all_locations
from portal.staff import hours as h
from portal.staff import service
from portal.timeutil import utcnow
from portal.web.admin import (
    AdminResource,
    AdminView,
    Column,
    Filter,
    Messages,
    Roles,
    admin_controller,
    reverse,
    search,
)
from portal.web.forms import ValidationFailed, parse_id, read_form
from portal.web.guards import current_user, requires_owner, requires_role
from portal.web.pagination import Page
from portal.web.responses import client_address, redirect

managers = requires_role(OWNER, MANAGER)
readers = requires_role(OWNER, MANAGER, THERAPIST)

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


def _as_form(row: dict[str, Any]) -> dict[str, Any]:
    form = {k: row.get(k) or "" for k in DEFAULTS}
    for key in ("licence_expires", "insurance_expires"):
        form[key] = row[key].isoformat() if row.get(key) else ""
    form["service_ids"] = [str(i) for i in row["service_ids"]]
    form["location_ids"] = [str(i) for i in row["location_ids"]]
    return form


def _submitted(values: dict[str, str], multi: dict[str, list[str]]) -> dict[str, Any]:
    return {
        **DEFAULTS,
        **{k: v for k, v in values.items() if k in DEFAULTS},
        "service_ids": multi.get("service_ids", []),
        "location_ids": multi.get("location_ids", []),
    }


async def _form_context(
    user: CurrentUser,
    form: dict[str, Any],
    errors: dict[str, str],
    therapist: dict[str, Any] | None = None,
) -> dict[str, Any]:
    locations = await all_locations(active_only=False)
    current = therapist["location_ids"] if therapist else frozenset()
    if user.role == OWNER:
        choices = [loc for loc in locations if loc["active"] or loc["id"] in current]
        fixed: list[dict[str, Any]] = []
    else:
        choices = [loc for loc in locations if loc["id"] in user.location_ids]
        fixed = [
            loc for loc in locations if loc["id"] in current and loc["id"] not in user.location_ids
        ]
    selected = frozenset(n for n in map(parse_id, form["service_ids"]) if n is not None)
    return {
        "form": form,
        "errors": errors,
        "labels": LABELS,
        "location_choices": choices,
        "fixed_locations": fixed,
        "services": await service.service_choices(
            selected | (therapist or {}).get("service_ids", frozenset())
        ),
        "therapist": therapist,
        "today": utcnow().date(),
    }


async def _detail_context(
    request: Request[Any, Any, Any], user: CurrentUser, therapist: dict[str, Any]
) -> dict[str, Any]:
    therapist_id = int(therapist["id"])
    places = await service.location_names(therapist["location_ids"])
    hours_rows = await service.hours_of(therapist_id)
    weekly = []
    for loc_id, place in sorted(places.items(), key=lambda kv: str(kv[1]["name"])):
        rows = [r for r in hours_rows if r["location"] == loc_id]
        weekly.append(
            {
                "location": place,
                "days": service.week_summary(rows),
                "editable": user.role == OWNER
                or (user.role == MANAGER and loc_id in user.location_ids),
            }
        )
    account = None
    if therapist["account"] is not None:
        from portal.users.service import get_user

        account = await get_user(int(therapist["account"]))
    can_manage = service.can_manage(user, therapist["location_ids"])
    return {
        "admin": AdminView(THERAPISTS, request),
        "therapist": therapist,
        "locations": [places[i] for i in sorted(places, key=lambda i: str(places[i]["name"]))],
        "services": sorted((await service.service_names(therapist["service_ids"])).values()),
        "weekly": weekly,
        "weekdays": h.WEEKDAYS,
        "time_off": await service.list_time_off(therapist_id, since=utcnow() - timedelta(days=30)),
        "account": account,
        "unlinked_accounts": await service.unlinked_therapist_accounts()
        if user.role == OWNER and account is None
        else [],
        "has_photo": await service.has_photo(therapist_id),
        "can_manage": can_manage,
        "can_deactivate": service.can_deactivate(user, therapist["location_ids"]),
        "licence_status": service.credential_status(therapist["licence_expires"]),
        "insurance_status": service.credential_status(therapist["insurance_expires"]),
        "account_form": {"account_email": therapist["email"]},
        "today": utcnow().date(),
        "account_errors": {},
    }


async def _list_rows(user: CurrentUser, filters: dict[str, str], after: str | None) -> Page:
    return await service.list_therapists(
        user,
        search=filters["q"].strip(),
        location_id=parse_id(filters["location"]),
        status=filters["status"],
        after=after,
    )


async def _location_choices(user: CurrentUser) -> list[tuple[Any, str]]:
    locations = await all_locations(active_only=False)
    if user.role != OWNER:
        locations = [loc for loc in locations if loc["id"] in user.location_ids]
    return [(loc["id"], loc["name"]) for loc in locations]


async def _list_context(_: CurrentUser) -> dict[str, Any]:
    return {"today": utcnow().date()}


async def _load(user: CurrentUser, therapist_id: int, write: bool) -> dict[str, Any]:
    return await service.get_therapist_for(user, therapist_id, write=write)


async def _set_active(
    user: CurrentUser, therapist_id: int, active: bool, form: dict[str, str], address: str
) -> bool:
    return await service.set_active(
        user,
        therapist_id,
        active,
        include_account=form.get("include_account") == "on",
        address=address,
    )


def _deactivated(form: dict[str, str]) -> str:
    if form.get("include_account") == "on":
        return "Therapist deactivated: they can no longer be booked or sign in."
    return "Therapist deactivated: they can no longer be booked."


THERAPISTS = AdminResource(
    name="therapist",
    label="therapist",
    plural="Therapists",
    path="/therapists",
    id_param="therapist_id",
    routes="therapist",
    list_route="therapists",
    roles=Roles(
        list=(OWNER, MANAGER),
        detail=(OWNER, MANAGER, THERAPIST),
        create=(OWNER, MANAGER),
        edit=(OWNER, MANAGER),
        deactivate=(OWNER, MANAGER),
    ),
    load=_load,
    list_rows=_list_rows,
    columns=(
        Column("Name", "name", link=True, sub="email"),
        Column("Locations", cell="locations"),
        Column("Licence", cell="licence"),
        Column("Insurance", cell="insurance"),
        Column("Status", cell="status"),
    ),
    filters=(
        search("Name or email"),
        Filter("location", "Location", choices=_location_choices, any_label="All locations"),
    ),
    scope=lambda row: frozenset(row["location_ids"]),
    # Deactivating takes a therapist out of every location: a manager needs them all.
    deactivate_needs_every_location=True,
    set_active=_set_active,
    detail_template="staff/detail.html",
    detail_context=_detail_context,
    list_template="staff/list.html",
    list_context=_list_context,
    cells="staff/_cells.html",
    new_label="Add therapist",
    confirm_template="staff/deactivate.html",
    confirm_context=lambda user, row: {
        "can_deactivate": service.can_deactivate(user, row["location_ids"])
    },
    messages=Messages(deactivated=_deactivated),
)


class TherapistController(admin_controller(THERAPISTS)):  # type: ignore[misc]
    """The admin grammar from ``THERAPISTS``, plus the profile form, hours, time off,
    sign-in account and photo."""

    @get("/new", guards=[managers], name="therapist_new")
    async def new(self, request: Request[Any, Any, Any]) -> Template:
        user = current_user(request)
        form = dict(DEFAULTS)
        if user.role == MANAGER and len(user.location_ids) == 1:
            form["location_ids"] = [str(i) for i in user.location_ids]
        return Template("staff/form.html", context=await _form_context(user, form, {}))

    @post("/", guards=[managers], name="therapist_create")
    async def create(self, request: Request[Any, Any, Any]) -> Response[Any]:
        user = current_user(request)
        values, multi = await read_form(request)
        try:
            data = service.parse_therapist_form(values, multi)
            therapist_id = await service.create_therapist(
                user, data, address=client_address(request)
            )
        except ValidationFailed as exc:
            return Template(
                "staff/form.html",
                context=await _form_context(user, _submitted(values, multi), exc.errors),
                status_code=422,
            )
        warnings = service.expiry_warnings(data)
        if warnings:
            return redirect(
                request,
                _detail_url(request, therapist_id),
                f"Therapist “{data.name}” added. Warning: " + " ".join(warnings),
                "warning",
            )
        return redirect(
            request,
            _detail_url(request, therapist_id),
            f"Therapist “{data.name}” added. Next, set their working hours.",
        )

    @get("/me", guards=[requires_role(THERAPIST)], name="therapist_me")
    async def me(self, request: Request[Any, Any, Any]) -> Template:
        user = current_user(request)
        therapist = await service.therapist_of_account(user.id)
        if therapist is None:
            raise NotFoundException(
                "No therapist profile is linked to your account yet. Ask your manager."
            )
        return Template(
            "staff/detail.html", context=await _detail_context(request, user, therapist)
        )

    @get("/compliance", guards=[managers], name="therapist_compliance")
    async def compliance(self, request: Request[Any, Any, Any]) -> Template:
        report = await service.compliance(current_user(request))
        return Template(
            "staff/compliance.html",
            context={
                "report": report,
                "soon_days": service.SOON_DAYS,
                "later_days": service.LATER_DAYS,
            },
        )

    @get("/{therapist_id:int}/edit", guards=[managers], name="therapist_edit")
    async def edit(self, request: Request[Any, Any, Any], therapist_id: FromPath[int]) -> Template:
        user = current_user(request)
        therapist = await service.get_therapist_for(user, therapist_id, write=True)
        return Template(
            "staff/form.html",
            context={
                **await _form_context(user, _as_form(therapist), {}, therapist),
                "has_photo": await service.has_photo(therapist_id),
            },
        )

    @post("/{therapist_id:int}/edit", guards=[managers], name="therapist_update")
    async def update(
        self, request: Request[Any, Any, Any], therapist_id: FromPath[int]
    ) -> Response[Any]:
        user = current_user(request)
        therapist = await service.get_therapist_for(user, therapist_id, write=True)
        values, multi = await read_form(request)
        try:
            data = service.parse_therapist_form(values, multi)
            await service.update_therapist(
                user, therapist_id, data, address=client_address(request)
            )
        except ValidationFailed as exc:
            return Template(
                "staff/form.html",
                context={
                    **await _form_context(user, _submitted(values, multi), exc.errors, therapist),
                    "has_photo": await service.has_photo(therapist_id),
                },
                status_code=422,
            )
        warnings = service.expiry_warnings(data)
        if warnings:
            return redirect(
                request,
                _detail_url(request, therapist_id),
                "Saved. Warning: " + " ".join(warnings),
                "warning",
            )
        return redirect(request, _detail_url(request, therapist_id), "Therapist saved.")

    # -- hours ------------------------------------------------------------

    async def _hours_context(
        self,
        user: CurrentUser,
        therapist: dict[str, Any],
        location_id: int,
        form: dict[str, str] | None,
        errors: dict[str, str],
    ) -> dict[str, Any]:
        places = await service.location_names(therapist["location_ids"] | {location_id})
        place = places[location_id]
        rows = await service.hours_of(int(therapist["id"]))
        if form is None:
            form = {}
            counts: dict[int, int] = {}
            for row in rows:
                if row["location"] != location_id:
                    continue
                n = counts.get(row["weekday"], 0)
                counts[row["weekday"]] = n + 1
                form[f"d{row['weekday']}_{n}_start"] = h.format_minute(row["start_minute"])
                end = row["end_minute"]
                form[f"d{row['weekday']}_{n}_end"] = (
                    "00:00" if end == h.MINUTES_PER_DAY else h.format_minute(end)
                )
        slots: dict[int, int] = {}
        for key, value in form.items():
            parts = key.split("_")
            if len(parts) != 3 or parts[0][:1] != "d" or not value:
                continue
            day, index = parse_id(parts[0][1:]), parse_id(parts[1])
            if day is not None and index is not None:
                slots[day] = max(slots.get(day, 0), index + 1)
        days = [
            {
                "weekday": day,
                "name": h.WEEKDAYS[day],
                "rows": list(range(max(MIN_HOURS_ROWS, slots.get(day, 0) + 1))),
            }
            for day in range(7)
        ]
        elsewhere = [
            {
                "location": places[loc_id],
                "days": service.week_summary([r for r in rows if r["location"] == loc_id]),
            }
            for loc_id in sorted(therapist["location_ids"] - {location_id})
            if loc_id in places
        ]
        return {
            "therapist": therapist,
            "place": place,
            "form": form,
            "errors": errors,
            "days": days,
            "elsewhere": elsewhere,
        }

    @get("/{therapist_id:int}/hours/{location_id:int}", guards=[managers], name="therapist_hours")
    async def hours(
        self,
        request: Request[Any, Any, Any],
        therapist_id: FromPath[int],
        location_id: FromPath[int],
    ) -> Template:
        user = current_user(request)
        therapist = await service.get_therapist_for(user, therapist_id, write=True)
        from portal.locations.service import get_location_for

        await get_location_for(user, location_id, write=True)
        if location_id not in therapist["location_ids"]:
            raise NotFoundException(
                f"{therapist['name']} does not work at this location: add it to the profile first."
            )
        return Template(
            "staff/hours.html",
            context=await self._hours_context(user, therapist, location_id, None, {}),
        )

    @post(
        "/{therapist_id:int}/hours/{location_id:int}",
        guards=[managers],
        name="therapist_hours_save",
    )
    async def save_hours(
        self,
        request: Request[Any, Any, Any],
        therapist_id: FromPath[int],
        location_id: FromPath[int],
    ) -> Response[Any]:
        user = current_user(request)
        therapist = await service.get_therapist_for(user, therapist_id, write=True)
        from portal.locations.service import get_location_for

        await get_location_for(user, location_id, write=True)
        values, _ = await read_form(request)
        try:
            intervals = service.parse_hours_form(values)
            await service.set_hours(
                user, therapist_id, location_id, intervals, address=client_address(request)
            )
        except ValidationFailed as exc:
            if location_id not in therapist["location_ids"]:
                raise NotFoundException(exc.errors.get("form", "")) from exc
            return Template(
                "staff/hours.html",
                context=await self._hours_context(user, therapist, location_id, values, exc.errors),
                status_code=422,
            )
        return redirect(request, _detail_url(request, therapist_id), "Working hours saved.")

    # -- time off -------------------------------------------------------------

    async def _time_off_context(
        self, therapist: dict[str, Any], form: dict[str, str], errors: dict[str, str]
    ) -> dict[str, Any]:
        places = await service.location_names(therapist["location_ids"])
        return {
            "therapist": therapist,
            "form": form,
            "errors": errors,
            "locations": [
                (loc_id, f"{places[loc_id]['name']} ({places[loc_id]['timezone']})")
                for loc_id in sorted(places, key=lambda i: str(places[i]["name"]))
            ],
        }

    @get("/{therapist_id:int}/time-off/new", guards=[managers], name="time_off_new")
    async def new_time_off(
        self, request: Request[Any, Any, Any], therapist_id: FromPath[int]
    ) -> Template:
        user = current_user(request)
        therapist = await service.get_therapist_for(user, therapist_id, write=True)
        mine = sorted(therapist["location_ids"] & user.location_ids) or sorted(
            therapist["location_ids"]
        )
        form = {"location_id": str(mine[0]) if mine else ""}
        return Template(
            "staff/time_off_form.html", context=await self._time_off_context(therapist, form, {})
        )

    @post("/{therapist_id:int}/time-off", guards=[managers], name="time_off_create")
    async def create_time_off(
        self, request: Request[Any, Any, Any], therapist_id: FromPath[int]
    ) -> Response[Any]:
        user = current_user(request)
        therapist = await service.get_therapist_for(user, therapist_id, write=True)
        values, _ = await read_form(request)
        try:
            data = service.parse_time_off_form(values)
            await service.add_time_off(user, therapist_id, data, address=client_address(request))
        except ValidationFailed as exc:
            return Template(
                "staff/time_off_form.html",
                context=await self._time_off_context(therapist, values, exc.errors),
                status_code=422,
            )
        return redirect(request, _detail_url(request, therapist_id), "Time off recorded.")

    @get(
        "/{therapist_id:int}/time-off/{time_off_id:int}/remove",
        guards=[managers],
        name="time_off_remove_confirm",
    )
    async def confirm_remove_time_off(
        self,
        request: Request[Any, Any, Any],
        therapist_id: FromPath[int],
        time_off_id: FromPath[int],
    ) -> Template:
        user = current_user(request)
        therapist = await service.get_therapist_for(user, therapist_id, write=True)
        row = await service.get_time_off_for(user, therapist_id, time_off_id, write=True)
        return Template(
            "staff/time_off_remove.html", context={"therapist": therapist, "time_off": row}
        )

    @post(
        "/{therapist_id:int}/time-off/{time_off_id:int}/remove",
        guards=[managers],
        name="time_off_remove",
    )
    async def remove_time_off(
        self,
        request: Request[Any, Any, Any],
        therapist_id: FromPath[int],
        time_off_id: FromPath[int],
    ) -> Response[Any]:
        removed = await service.remove_time_off(
            current_user(request), therapist_id, time_off_id, address=client_address(request)
        )
        message = "Time off removed." if removed else "That time off had already been removed."
        return redirect(request, _detail_url(request, therapist_id), message, "info")

    # -- sign-in account ------------------------------------------------------

    @post("/{therapist_id:int}/account", guards=[managers], name="therapist_account_create")
    async def create_account(
        self, request: Request[Any, Any, Any], therapist_id: FromPath[int]
    ) -> Response[Any]:
        user = current_user(request)
        therapist = await service.get_therapist_for(user, therapist_id, write=True)
        values, _ = await read_form(request)
        try:
            await service.create_account(
                user,
                therapist_id,
                email=values.get("account_email", ""),
                password=values.get("account_password", ""),
                address=client_address(request),
            )
        except ValidationFailed as exc:
            context = await _detail_context(request, user, therapist)
            context["account_form"] = {"account_email": values.get("account_email", "")}
            context["account_errors"] = exc.errors
            return Template("staff/detail.html", context=context, status_code=422)
        return redirect(
            request,
            _detail_url(request, therapist_id),
            "Sign-in account created: the therapist can now sign in and see their profile.",
        )

    @post(
        "/{therapist_id:int}/account/link", guards=[requires_owner], name="therapist_account_link"
    )
    async def link_account(
        self, request: Request[Any, Any, Any], therapist_id: FromPath[int]
    ) -> Response[Any]:
        user = current_user(request)
        therapist = await service.get_therapist_for(user, therapist_id, write=True)
        values, _ = await read_form(request)
        raw = values.get("account_user", "")
        try:
            account_id = parse_id(raw)
            if account_id is None:
                raise ValidationFailed({"account_user": "Choose an account from the list."})
            await service.link_account(
                user, therapist_id, account_id, address=client_address(request)
            )
        except ValidationFailed as exc:
            context = await _detail_context(request, user, therapist)
            context["account_errors"] = exc.errors
            return Template("staff/detail.html", context=context, status_code=422)
        return redirect(request, _detail_url(request, therapist_id), "Sign-in account linked.")

    # -- photo -----------------------------------------------------------------

    @get("/{therapist_id:int}/photo", guards=[readers], name="therapist_photo")
    async def photo(
        self, request: Request[Any, Any, Any], therapist_id: FromPath[int]
    ) -> Response[bytes]:
        await service.get_therapist_for(current_user(request), therapist_id)
        photo = await service.get_photo(therapist_id)
        if photo is None:
            therapist = await service.get_therapist(therapist_id)
            return Response(
                content=service.initials_avatar(str(therapist["name"])).encode(),
                media_type="image/svg+xml",
                headers={
                    "Cache-Control": "private, max-age=300",
                    "X-Content-Type-Options": "nosniff",
                },
            )
        return Response(
            content=bytes(photo["data"]),
            media_type=str(photo["content_type"]),
            headers={
                "Cache-Control": "private, max-age=300",
                "X-Content-Type-Options": "nosniff",
                "Content-Disposition": "inline",
            },
        )

    @post(
        "/{therapist_id:int}/photo",
        guards=[managers],
        name="therapist_photo_upload",
        request_max_body_size=PHOTO_UPLOAD_LIMIT,
    )
    async def upload_photo(
        self, request: Request[Any, Any, Any], therapist_id: FromPath[int]
    ) -> Response[Any]:
        user = current_user(request)
        therapist = await service.get_therapist_for(user, therapist_id, write=True)
        form = await request.form()
        upload = form.get("photo")
        data = await upload.read() if isinstance(upload, UploadFile) else b""
        try:
            await service.set_photo(user, therapist_id, data, address=client_address(request))
        except ValidationFailed as exc:
            return Template(
                "staff/form.html",
                context={
                    **await _form_context(user, _as_form(therapist), {}, therapist),
                    "photo_errors": exc.errors,
                    "has_photo": await service.has_photo(therapist_id),
                },
                status_code=422,
            )
        return redirect(request, _detail_url(request, therapist_id), "Photo saved.")

    @post("/{therapist_id:int}/photo/remove", guards=[managers], name="therapist_photo_remove")
    async def remove_photo(
        self, request: Request[Any, Any, Any], therapist_id: FromPath[int]
    ) -> Response[Any]:
        removed = await service.remove_photo(
            current_user(request), therapist_id, address=client_address(request)
        )
        return redirect(
            request,
            _detail_url(request, therapist_id),
            "Photo removed." if removed else "There was no photo.",
            "info",
        )


def _detail_url(request: Request[Any, Any, Any], therapist_id: int) -> str:
    return reverse(request, "therapist_detail", therapist_id=therapist_id)


ROUTES = [TherapistController]
