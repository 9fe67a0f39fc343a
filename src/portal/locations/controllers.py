from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, get
from litestar.params import FromPath, QueryParameter

from portal.identity import ACCOUNTANT, MANAGER, OWNER, CurrentUser
from portal.locations import service
from portal.timeutil import common_timezones
from portal.web.admin import AdminForm, AdminResource, Column, Roles, admin_controller, search
from portal.web.deps import SignedIn
from portal.web.guards import requires_role

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


async def _form_context(
    _user: CurrentUser, _form: dict[str, Any], _row: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "timezones": common_timezones(),
        "currencies": COMMON_CURRENCIES,
        "refund_rules": list(service.REFUND_RULES.items()),
    }


def _as_form(row: dict[str, Any]) -> dict[str, Any]:
    form = {k: row[k] for k in DEFAULTS}
    form["prices_include_tax"] = "on" if row["prices_include_tax"] else ""
    return form


LOCATION_FORM = AdminForm(
    template="locations/form.html",
    labels={
        "name": "Name",
        "slug": "Slug",
        "address": "Address",
        "phone": "Phone",
        "timezone": "Time zone",
        "currency": "Currency",
        "tax_rate_bp": "Tax rate",
        "cancellation_window_hours": "Cancellation window",
    },
    defaults=DEFAULTS,
    parse=lambda values, _lists, _row: service.parse_location_form(values),
    create=service.create_location,
    update=service.update_location,
    as_form=_as_form,
    checkboxes=("prices_include_tax",),
    context=_form_context,
)


LOCATIONS = AdminResource(
    name="location",
    plural="Locations",
    # Owners open and close locations; a manager edits the ones they manage.
    roles=Roles.every(
        OWNER,
        list=(OWNER, MANAGER, ACCOUNTANT),
        detail=(OWNER, MANAGER, ACCOUNTANT),
        edit=(OWNER, MANAGER),
    ),
    load=service.get_location_for,
    list_rows=service.list_locations,
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
    set_active=service.set_active,
    detail_template="locations/detail.html",
    cells="locations/_cells.html",
    confirm_text="The location stops taking bookings and no longer appears in public pages. "
    "Its history, sales and records are kept, and an owner can reactivate it at any time.",
    form=LOCATION_FORM,
)


LocationController = admin_controller(LOCATIONS)


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
        user: SignedIn,
        after: Annotated[str | None, QueryParameter(name="after")] = None,
        status: Annotated[str, QueryParameter(name="status")] = "all",
    ) -> dict[str, Any]:
        page = await service.list_locations(user, status=status, after=after)
        return {"items": [_api_location(r) for r in page.rows], "next": page.next_cursor}

    @get("/{location_id:int}", guards=[readers], name="api_location")
    async def detail(self, user: SignedIn, location_id: FromPath[int]) -> dict[str, Any]:
        return _api_location(await service.get_location_for(user, location_id))


ROUTES = [LocationController, LocationApiController]
