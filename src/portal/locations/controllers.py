from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, QueryParameter
from litestar.response import Template

from portal.identity import ACCOUNTANT, MANAGER, OWNER, CurrentUser
from portal.locations import service
from portal.timeutil import common_timezones
from portal.web.admin import AdminResource, Column, Roles, admin_controller, reverse, search
from portal.web.forms import ValidationFailed, read_form
from portal.web.guards import requires_owner, requires_role
from portal.web.pagination import Page
from portal.web.responses import redirect

COMMON_CURRENCIES = ["USD", "CAD", "EUR", "GBP", "AUD", "NZD", "CHF"]
readers = requires_role(OWNER, MANAGER, ACCOUNTANT)
editors = requires_role(OWNER, MANAGER)

DEFAULTS = {
    "name": "",
    "slug": "",
    "address": "",
    "phone": "",
    "timezone": "",
    "currency": "USD",
    "tax_rate_bp": "0",
    "prices_include_tax": "",
    "cancellation_window_hours": "24",
    "refund_rule": "list_price",
}


def _form_context(form: dict[str, Any], errors: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {
        "form": form,
        "errors": errors,
        "timezones": common_timezones(),
        "currencies": COMMON_CURRENCIES,
        "refund_rules": list(service.REFUND_RULES.items()),
        **extra,
    }


def _as_form(row: dict[str, Any]) -> dict[str, Any]:
    form = {k: row[k] for k in DEFAULTS}
    form["prices_include_tax"] = "on" if row["prices_include_tax"] else ""
    return form


async def _list_rows(user: CurrentUser, filters: dict[str, str], after: str | None) -> Page:
    return await service.list_locations(
        user, search=filters["q"].strip(), status=filters["status"], after=after
    )


async def _load(user: CurrentUser, location_id: int, write: bool) -> dict[str, Any]:
    return await service.get_location_for(user, location_id, write=write)


async def _set_active(
    user: CurrentUser, location_id: int, active: bool, _: dict[str, str], address: str
) -> bool:
    return await service.set_active(user, location_id, active, address=address)


LOCATIONS = AdminResource(
    name="location",
    label="location",
    plural="Locations",
    path="/locations",
    id_param="location_id",
    routes="location",
    list_route="locations",
    roles=Roles(
        list=(OWNER, MANAGER, ACCOUNTANT),
        detail=(OWNER, MANAGER, ACCOUNTANT),
        create=(OWNER,),
        edit=(OWNER, MANAGER),
        deactivate=(OWNER,),
    ),
    load=_load,
    list_rows=_list_rows,
    columns=(
        Column("Name", "name", link=True, sub="slug"),
        Column("Time zone", "timezone"),
        Column("Currency", "currency"),
        Column("Tax", cell="tax"),
        Column("Cancellation window", "cancellation_window_hours", suffix=" h"),
        Column("Status", cell="status"),
    ),
    filters=(search("Name or slug"),),
    scope=lambda row: frozenset({int(row["id"])}),
    set_active=_set_active,
    detail_template="locations/detail.html",
    cells="locations/_cells.html",
    new_label="New location",
    confirm_text="The location stops taking bookings and no longer appears in public pages. "
    "Its history, sales and records are kept, and an owner can reactivate it at any time.",
)


class LocationController(admin_controller(LOCATIONS)):  # type: ignore[misc]
    """The admin grammar from ``LOCATIONS``, plus the location form."""

    @get("/new", guards=[requires_owner], name="location_new")
    async def new(self) -> Template:
        return Template("locations/form.html", context=_form_context(dict(DEFAULTS), {}))

    @post("/", guards=[requires_owner], name="location_create")
    async def create(
        self, request: Request[Any, Any, Any], user: CurrentUser, client_address: str
    ) -> Response[Any]:
        values, _ = await read_form(request)
        try:
            data = service.parse_location_form(values)
            location_id = await service.create_location(user, data, address=client_address)
        except ValidationFailed as exc:
            return Template(
                "locations/form.html",
                context=_form_context({**DEFAULTS, **values}, exc.errors),
                status_code=422,
            )
        return redirect(
            request,
            reverse(request, "location_detail", location_id=location_id),
            f"Location “{data.name}” created.",
        )

    @get("/{location_id:int}/edit", guards=[editors], name="location_edit")
    async def edit(self, user: CurrentUser, location_id: FromPath[int]) -> Template:
        location = await service.get_location_for(user, location_id, write=True)
        return Template(
            "locations/form.html",
            context=_form_context(_as_form(location), {}, location=location),
        )

    @post("/{location_id:int}/edit", guards=[editors], name="location_update")
    async def update(
        self,
        request: Request[Any, Any, Any],
        user: CurrentUser,
        client_address: str,
        location_id: FromPath[int],
    ) -> Response[Any]:
        location = await service.get_location_for(user, location_id, write=True)
        values, _ = await read_form(request)
        try:
            data = service.parse_location_form(values)
            await service.update_location(user, location_id, data, address=client_address)
        except ValidationFailed as exc:
            return Template(
                "locations/form.html",
                context=_form_context({**DEFAULTS, **values}, exc.errors, location=location),
                status_code=422,
            )
        return redirect(
            request, reverse(request, "location_detail", location_id=location_id), "Location saved."
        )


def _api_location(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "slug": row["slug"],
        "address": row["address"],
        "phone": row["phone"],
        "timezone": row["timezone"],
        "currency": row["currency"],
        "tax_rate_bp": row["tax_rate_bp"],
        "prices_include_tax": row["prices_include_tax"],
        "cancellation_window_hours": row["cancellation_window_hours"],
        "active": row["active"],
    }


class LocationApiController(Controller):
    path = "/api/v1/locations"
    tags = ["locations"]

    @get("/", guards=[readers], name="api_locations")
    async def index(
        self,
        user: CurrentUser,
        after: Annotated[str | None, QueryParameter(name="after")] = None,
        status: Annotated[str, QueryParameter(name="status")] = "all",
    ) -> dict[str, Any]:
        page = await service.list_locations(user, status=status, after=after)
        return {"items": [_api_location(r) for r in page.rows], "next": page.next_cursor}

    @get("/{location_id:int}", guards=[readers], name="api_location")
    async def detail(self, user: CurrentUser, location_id: FromPath[int]) -> dict[str, Any]:
        return _api_location(await service.get_location_for(user, location_id))


ROUTES = [LocationController, LocationApiController]
