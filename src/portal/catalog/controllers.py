"""Catalog pages: services, packages, prices and overrides; the public catalog; the JSON API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from litestar import Controller, Request, Response, get, post
from litestar.exceptions import NoRouteMatchFoundException, ValidationException
from litestar.params import FromPath, QueryParameter
from litestar.response import Template

from portal import money
from portal.auth.service import ACCOUNTANT, MANAGER, OWNER, CurrentUser
from portal.catalog import inputs, listing, packages, prices, pricing, services
from portal.locations.service import get_location_for
from portal.timeutil import to_local, utcnow
from portal.web.admin import (
    AdminForm,
    AdminResource,
    Column,
    Filter,
    Roles,
    adding_handlers,
    admin_controller,
    chainwide,
    item_route,
    reverse,
    search,
    unscoped,
)
from portal.web.deps import Actor, ListParams, SignedIn
from portal.web.forms import Flash, Lists, Values, parse_id, submit
from portal.web.guards import requires_role

readers = requires_role(OWNER, MANAGER, ACCOUNTANT)
override_editors = requires_role(OWNER, MANAGER)
PUBLIC = {"public": True}
# The purchase page's route name (payments); the public catalog links to it when present.
BUY_ROUTE = "buy"
CURRENCIES = ["USD", "CAD", "EUR", "GBP", "AUD", "NZD", "CHF"]

SERVICE_DEFAULTS = {
    "name": "",
    "treatment_type": "",
    "duration_minutes": "60",
    "buffer_after_minutes": "15",
    "required_equipment": "",
    "description": "",
    "price": "",
    "currency": "USD",
}
PACKAGE_DEFAULTS = {
    "name": "",
    "service_id": "",
    "sessions": "5",
    "validity_days": "180",
    "description": "",
    "sellable_online": "on",
    "redeemable": inputs.ALL_CLINICS,
    "price": "",
    "currency": "USD",
}
PRICE_LABELS = {
    "price": "Price",
    "currency": "Currency",
    "effective_local": "Takes effect",
    "effective_zone": "Time zone",
    "note": "Note",
}
TREATMENT_TYPES = ["Neuromuscular", "Sports", "Trigger point", "Relaxation"]


def _helpers() -> dict[str, Any]:
    """Money and time helpers for the catalog's templates (display only)."""
    return {
        "fmt": money.format_money,
        "share": money.format_share,
        "local_input": _local_input,
    }


def _local_input(value: datetime, zone: str) -> str:
    return to_local(value, zone).strftime("%Y-%m-%dT%H:%M")


def page(template: str, status_code: int = 200, **context: Any) -> Template:
    return Template(
        f"catalog/{template}", context={**_helpers(), **context}, status_code=status_code
    )


def _service_form(row: dict[str, Any]) -> dict[str, Any]:
    return {f: row[f] for f in inputs.SERVICE_FIELDS}


def _package_form(row: dict[str, Any]) -> dict[str, Any]:
    form: dict[str, Any] = {f: row[f] for f in inputs.PACKAGE_FIELDS}
    form["sellable_online"] = "on" if row["sellable_online"] else ""
    form["service_id"] = str(row["service"])
    form["sessions"] = str(row["sessions"])
    return form


async def _service_form_context(*_: Any) -> dict[str, Any]:
    return {"currencies": CURRENCIES, "treatment_types": TREATMENT_TYPES}


async def _package_form_context(*_: Any) -> dict[str, Any]:
    services = await listing.all_services()
    return {
        "currencies": CURRENCIES,
        "redeemable_choices": list(inputs.REDEEMABLE.items()),
        "services": [
            (s["id"], s["name"] + ("" if s["active"] else " (inactive)")) for s in services
        ],
    }


async def _package_initial(_: CurrentUser, query: Mapping[str, str]) -> dict[str, Any]:
    """A new package, for the service it was started from (the service's page links here)."""
    service_id = query["service"]
    return {**PACKAGE_DEFAULTS, "service_id": service_id if parse_id(service_id) else ""}


@dataclass(frozen=True)
class Priced:
    """A service or package with its first price (the price only when creating)."""

    entity: Any
    price: inputs.PriceInput | None

    @property
    def name(self) -> str:
        return str(self.entity.name)


def _creator(create: Callable[..., Awaitable[int]]) -> Callable[..., Awaitable[int]]:
    async def created(user: CurrentUser, data: Priced, *, address: str) -> int:
        assert data.price is not None  # the parser requires it when creating
        return await create(user, data.entity, data.price, address=address)

    return created


def _updater(update: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    async def updated(user: CurrentUser, row_id: int, data: Priced, *, address: str) -> None:
        await update(user, row_id, data.entity, address=address)

    return updated


SERVICE_FORM = AdminForm(
    template="catalog/service_form.html",
    labels={
        "name": "Name",
        "treatment_type": "Treatment type",
        "duration_minutes": "Duration",
        "buffer_after_minutes": "Buffer after",
        "required_equipment": "Required equipment",
        "description": "Description",
        "price": "List price",
        "currency": "Currency",
    },
    defaults=SERVICE_DEFAULTS,
    parse=lambda values, _lists, row: Priced(
        *inputs.parse_service_form(values, creating=row is None)
    ),
    create=_creator(services.create_service),
    update=_updater(services.update_service),
    as_form=_service_form,
    context=_service_form_context,
)
PACKAGE_FORM = AdminForm(
    template="catalog/package_form.html",
    labels={
        "name": "Name",
        "service_id": "Service",
        "sessions": "Sessions",
        "validity_days": "Validity",
        "redeemable": "Where the sessions can be booked",
        "introductory": "Introductory offer",
        "description": "Description",
        "price": "Price",
        "currency": "Currency",
    },
    defaults=PACKAGE_DEFAULTS,
    checkboxes=("sellable_online", "introductory"),
    parse=lambda values, _lists, row: Priced(
        *inputs.parse_package_form(values, creating=row is None)
    ),
    create=_creator(packages.create_package),
    update=_updater(packages.update_package),
    as_form=_package_form,
    initial=_package_initial,
    new_query=("service",),
    context=_package_form_context,
)


@dataclass(frozen=True)
class PriceForm:
    """A new price version for a service or a package: its page and its save.

    Prices are never edited; each save adds a version (``add``), effective
    now or later. One declaration per priced entity builds both handlers.
    """

    resource: AdminResource
    title: str  # "New list price for {name}"
    intro: Callable[[dict[str, Any]], str]
    in_effect: Callable[[int, datetime], Awaitable[pricing.PriceVersion | None]]
    add: Callable[..., Awaitable[object]]  # (user, id, price, *, address)
    saved: str


async def _price_page(
    spec: PriceForm,
    request: Request[Any, Any, Any],
    row: dict[str, Any],
    form: dict[str, Any],
    errors: dict[str, str] | None = None,
) -> Template:
    res, row_id = spec.resource, int(row["id"])
    current = await spec.in_effect(row_id, utcnow())
    zones = await listing.base_price_zones()
    form = {"effective_zone": zones[0], "currency": current.currency if current else "USD", **form}
    return page(
        "price_form.html",
        status_code=422 if errors else 200,
        heading=spec.title.format(name=row["name"]),
        intro=spec.intro(row),
        button="Save new price",
        action=res.url(request, "price_add", row_id),
        back_url=res.url(request, "detail", row_id),
        labels=PRICE_LABELS,
        form=form,
        errors=errors or {},
        current=current,
        zones=zones,
        fixed_zone=None,
        currencies=CURRENCIES,
    )


def _price_handlers(spec: PriceForm) -> dict[str, Any]:
    """The new price form and its save: each save adds a version."""
    res = spec.resource

    async def show(
        request: Request[Any, Any, Any], row: dict[str, Any], form: Values, errors: Values
    ) -> Template:
        return await _price_page(spec, request, row, form, errors)

    async def add(user: CurrentUser, row: dict[str, Any], values: Values, address: str) -> Flash:
        await spec.add(user, int(row["id"]), inputs.parse_price_form(values), address=address)
        return spec.saved

    routes = (res.route("price"), res.route("price_add"))
    path = item_route(res)[0] + "/price"
    return adding_handlers(res, path, "", routes, lambda _user, _row: {}, show, add)


# -- the admin resources ---------------------------------------------------------

# The catalog is chain-wide: owners change it, managers and accountants read it.
CATALOG_ROLES = Roles.every(
    OWNER, list=(OWNER, MANAGER, ACCOUNTANT), detail=(OWNER, MANAGER, ACCOUNTANT)
)


async def _catalog_context(_: CurrentUser) -> dict[str, Any]:
    return _helpers()


async def _price_story(versions: list[pricing.PriceVersion], now: datetime) -> dict[str, Any]:
    """A service's or package's page: the price in effect, the history of its
    versions and the zone their dates are shown in."""
    current = pricing.version_in_effect(versions, now)
    zones = await listing.base_price_zones()
    history = pricing.version_history(versions, now, current)
    return {**_helpers(), "current": current, "history": history, "zone": zones[0]}


async def _service_detail(
    _: Request[Any, Any, Any], __: CurrentUser, row: dict[str, Any]
) -> dict[str, Any]:
    return await _price_story((await pricing.service_versions([row["id"]]))[row["id"]], utcnow())


def _catalog_resource(
    name: str,
    plural: str,
    get: Callable[[int], Awaitable[dict[str, Any]]],
    rows: Callable[..., Awaitable[Any]],
    **declared: Any,
) -> AdminResource:
    """Services and packages share their roles, their list page and its cells,
    are chain-wide (``get`` a row and list ``rows`` with no location), and live
    below /catalog (routes ``catalog_service…``, ``catalog_package…``)."""
    return AdminResource(
        name=name,
        plural=plural,
        load=unscoped(get),
        list_rows=chainwide(rows),
        path=f"/catalog/{plural.lower()}",
        routes=f"catalog_{name}",
        list_route=f"catalog_{plural.lower()}",
        roles=CATALOG_ROLES,
        list_template="catalog/list.html",
        list_context=_catalog_context,
        cells="catalog/_cells.html",
        filter_class="catalog-filters",
        **declared,
    )


SERVICES = _catalog_resource(
    "service", "Services", listing.get_service, listing.list_services,
    columns=(
        Column("Service", "name", link=True, sub="treatment_type"),
        Column("Duration", "duration_minutes", suffix=" min"),
        Column("Buffer after", "buffer_after_minutes", suffix=" min"),
        Column("List price (1 session)", cell="price", numeric=True),
        Column("Status", cell="status"),
    ),
    filters=(search("Name or treatment type"),),
    set_active=services.set_service_active,
    detail_template="catalog/service_detail.html",
    detail_context=_service_detail,
    confirm_text="Its packages stop selling until the service is reactivated. Packages "
    "already sold are not affected. Its price history is kept, and an owner can reactivate "
    "the service at any time.",
    form=SERVICE_FORM,
)  # fmt: skip


async def _service_choices(_: CurrentUser) -> list[tuple[Any, str]]:
    return [(s["id"], s["name"]) for s in await listing.all_services()]


async def _online_choices(_: CurrentUser) -> list[tuple[Any, str]]:
    return [("all", "All"), ("yes", "Yes"), ("no", "No")]


async def _package_detail(
    request: Request[Any, Any, Any], user: CurrentUser, row: dict[str, Any]
) -> dict[str, Any]:
    now = utcnow()
    package, offers = await listing.package_offers(user, row["id"], now)
    versions = (await pricing.package_versions([row["id"]], []))[row["id"]]
    story = await _price_story(versions, now)
    current = story["current"]
    unit = await pricing.service_price_in_effect(package["service"], now)
    return {
        **story,
        "package": package,
        "offers": offers,
        "current": current,
        "unit": unit,
        "per_session": money.per_session(current.amount_cents, package["sessions"])
        if current
        else None,
        "saving": (
            money.saving(unit.amount_cents, package["sessions"], current.amount_cents)
            if unit and current and unit.currency == current.currency
            else None
        ),
    }


PACKAGES = _catalog_resource(
    "package", "Packages", listing.get_package, listing.list_packages,
    columns=(
        Column("Package", "name", link=True, sub="service_name"),
        Column("Sessions", "sessions"),
        Column("Valid for", "validity_days", suffix=" days"),
        Column("Base price", cell="price", numeric=True),
        Column("Per session", cell="per_session", numeric=True),
        Column("Saving", cell="saving"),
        Column("Online", cell="online"),
        Column("Status", cell="status"),
    ),
    filters=(
        search("Package or service"),
        Filter(
            "service",
            "Service",
            choices=_service_choices,
            any_label="All services",
            param="service_id",
            parse=parse_id,
        ),
        Filter("online", "Sold online", choices=_online_choices, default="all"),
    ),
    set_active=packages.set_package_active,
    detail_template="catalog/package_detail.html",
    detail_context=_package_detail,
    confirm_text="It is no longer sold, online or at the front desk. Packages already sold "
    "keep every term they were sold with. Its price history is kept, and an owner can "
    "reactivate the package at any time.",
    form=PACKAGE_FORM,
)  # fmt: skip


# -- services ------------------------------------------------------------------


ServiceController = admin_controller(
    SERVICES,
    _price_handlers(
        PriceForm(
            resource=SERVICES,
            title="New list price for {name}",
            intro=lambda _: "The price of one session. Packages show their saving against it.",
            in_effect=pricing.service_price_in_effect,
            add=prices.add_service_price,
            saved="New list price saved.",
        )
    ),
)
PACKAGE_PRICE = PriceForm(
    resource=PACKAGES,
    title="New base price for {name}",
    intro=lambda row: (
        f"The price of all {row['sessions']} sessions, used at every location "
        "without an override of its own."
    ),
    in_effect=pricing.price_in_effect,
    add=prices.add_package_price,
    saved="New base price saved.",
)


# What an override form does at one location: parse, save, and the flash message.
OverrideChange = Callable[[CurrentUser, int, dict[str, Any], Values, str], Awaitable[str]]


async def _set_override(
    user: CurrentUser, package_id: int, location: dict[str, Any], values: Values, address: str
) -> str:
    price = inputs.parse_price_form(values, zone=location["timezone"])
    await prices.set_override(user, package_id, location["id"], price, address=address)
    return f"Price override for {location['name']} saved."


async def _end_override(
    user: CurrentUser, package_id: int, location: dict[str, Any], values: Values, address: str
) -> str:
    effective, note = inputs.parse_end_override_form(values, zone=location["timezone"])
    await prices.end_override(
        user, package_id, location["id"], effective, note=note, address=address
    )
    return f"{location['name']} returns to the base price."


def _override_change(suffix: str, name: str, change: OverrideChange) -> Any:
    """The POST handler of one of a package's override forms at a location (set
    one, or end it), for a location the user manages; the page again on bad
    input, with the errors beside the form that was sent."""
    end = suffix == "/end"

    @post(
        "/{package_id:int}/locations/{location_id:int}" + suffix,
        guards=[override_editors],
        name=name,
    )
    async def handler(
        self: Any, acting: Actor, package_id: FromPath[int], location_id: FromPath[int]
    ) -> Response[Any]:
        request, user = acting.request, acting.user
        location = await get_location_for(user, location_id, write=True)
        await listing.get_package(package_id)
        back = reverse(
            request, "catalog_package_override", package_id=package_id, location_id=location_id
        )

        async def saved(values: Values, _: Lists) -> tuple[str, Flash]:
            return back, await change(user, package_id, location, values, acting.address)

        async def refused(values: Values, _: Lists, errors: dict[str, str]) -> Template:
            which = "end_" if end else ""
            sent = {f"{which}form": values, f"{which}errors": errors}
            return await _override_page(package_id, location, status_code=422, **sent)

        return await submit(request, saved, refused)

    return handler


class PackageController(admin_controller(PACKAGES, _price_handlers(PACKAGE_PRICE))):  # type: ignore[misc]
    """The admin grammar from ``PACKAGES``, its form and prices, plus the
    per-location overrides."""

    @get(
        "/{package_id:int}/locations/{location_id:int}",
        guards=[readers],
        name="catalog_package_override",
    )
    async def override(
        self, user: SignedIn, package_id: FromPath[int], location_id: FromPath[int]
    ) -> Template:
        location = await get_location_for(user, location_id)
        return await _override_page(package_id, location)

    set_override = _override_change("", "catalog_package_override_set", _set_override)
    end_override = _override_change("/end", "catalog_package_override_end", _end_override)


async def _override_page(
    package_id: int,
    location: dict[str, Any],
    *,
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    end_form: dict[str, Any] | None = None,
    end_errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Template:
    """A package at one location: its price there now, the override form and history."""
    package = await listing.get_package(package_id)
    now = utcnow()
    versions = (await pricing.package_versions([package_id], [location["id"]]))[package_id]
    units = (await pricing.service_versions([package["service"]]))[package["service"]]
    overrides = [v for v in versions if v.location_id == location["id"]]
    current_override = pricing.version_in_effect(overrides, now)
    return page(
        "override.html",
        status_code=status_code,
        package=package,
        location=location,
        offer=pricing.build_offer(package, location, versions, units, now),
        base=pricing.version_in_effect([v for v in versions if v.location_id is None], now),
        current_override=current_override,
        history=pricing.version_history(overrides, now, current_override),
        form={"currency": location["currency"], **(form or {})},
        errors=errors or {},
        end_form=end_form or {},
        end_errors=end_errors or {},
        has_override=any(not v.clears_override for v in overrides),
    )


# -- public catalog --------------------------------------------------------------


@get("/book/{location_slug:str}", opt=PUBLIC, name="public_catalog")
async def public_catalog(request: Request[Any, Any, Any], location_slug: FromPath[str]) -> Template:
    """A location's packages for sale online, with that location's prices (no sign-in)."""
    found = await listing.public_catalog(location_slug, utcnow())
    if found is None:
        return page("public_not_found.html", status_code=404)
    location, offers = found
    return page(
        "public.html",
        location=location,
        offers=offers,
        buy_urls=_buy_urls(request, location, offers),
    )


def _buy_urls(
    request: Request[Any, Any, Any], location: dict[str, Any], offers: list[pricing.Offer]
) -> dict[int, str]:
    """Links to the purchase page, when the app has one (the payments context)."""
    urls: dict[int, str] = {}
    for offer in offers:
        try:
            path = request.app.route_reverse(BUY_ROUTE, package_id=offer.package["id"])
        except NoRouteMatchFoundException:
            return {}
        urls[offer.package["id"]] = f"{path}?{urlencode({'location': location['slug']})}"
    return urls


# -- JSON API --------------------------------------------------------------------


def _parse_at(at: str | None) -> datetime:
    if not at:
        return utcnow()
    try:
        value = datetime.fromisoformat(at.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValidationException("`at` must be an ISO 8601 date-time.") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _api_row(row: dict[str, Any], price_key: str, **fields: Any) -> dict[str, Any]:
    """A service or package in the API: what both have around its own ``fields``,
    and its price in effect under ``price_key``."""
    price = row.get("price")
    return {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        **fields,
        "active": row["active"],
        price_key: price.as_dict() if price else None,
    }


def _api_service(row: dict[str, Any]) -> dict[str, Any]:
    equipment = [t for t in row["required_equipment"].split(", ") if t]
    return _api_row(
        row, "list_price", treatment_type=row["treatment_type"],
        duration_minutes=row["duration_minutes"],
        buffer_after_minutes=row["buffer_after_minutes"], required_equipment=equipment,
    )  # fmt: skip


def _api_package(row: dict[str, Any]) -> dict[str, Any]:
    return _api_row(
        row, "base_price", service_id=row["service"], service_name=row["service_name"],
        sessions=row["sessions"], validity_days=row["validity_days"],
        sellable_online=row["sellable_online"], redeemable=row["redeemable"],
    )  # fmt: skip


class CatalogApiController(Controller):
    path = "/api/v1/catalog"
    tags = ["catalog"]
    guards = [readers]

    @get("/services", name="api_catalog_services")
    async def services(self, list_query: ListParams) -> dict[str, Any]:
        # An empty status is "all" (records.status_filter).
        lq = list_query
        result = await listing.list_services(search=lq.search, status=lq.status, after=lq.after)
        return {"items": [_api_service(r) for r in result.rows], "next": result.next_cursor}

    @get("/services/{service_id:int}", name="api_catalog_service")
    async def service_detail(self, service_id: FromPath[int]) -> dict[str, Any]:
        row = await listing.get_service(service_id)
        versions = (await pricing.service_versions([service_id]))[service_id]
        row["price"] = pricing.version_in_effect(versions, utcnow())
        data = _api_service(row)
        data["price_versions"] = [
            v.as_dict() for v in sorted(versions, key=lambda v: (v.effective_from, v.id))
        ]
        return data

    @get("/packages", name="api_catalog_packages")
    async def packages(
        self,
        list_query: ListParams,
        online: Annotated[str, QueryParameter(name="online")] = "all",
    ) -> dict[str, Any]:
        lq = list_query
        result = await listing.list_packages(
            search=lq.search, status=lq.status, online=online, after=lq.after
        )
        return {"items": [_api_package(r) for r in result.rows], "next": result.next_cursor}

    @get("/packages/{package_id:int}", name="api_catalog_package")
    async def package_detail(self, user: SignedIn, package_id: FromPath[int]) -> dict[str, Any]:
        now = utcnow()
        package, offers = await listing.package_offers(user, package_id, now)
        visible = [o.location["id"] for o in offers]
        versions = (await pricing.package_versions([package_id], visible))[package_id]
        package["price"] = pricing.version_in_effect(
            [v for v in versions if v.location_id is None], now
        )
        data = _api_package(package)
        ordered = sorted(versions, key=lambda v: (v.effective_from, v.id))
        data["price_versions"] = [v.as_dict() for v in ordered if v.location_id is None]
        data["override_versions"] = [v.as_dict() for v in ordered if v.location_id is not None]
        data["locations"] = [o.as_dict() for o in offers]
        return data

    @get("/locations/{location_id:int}/prices", name="api_catalog_location_prices")
    async def location_prices(
        self,
        user: SignedIn,
        location_id: FromPath[int],
        at: Annotated[str | None, QueryParameter(name="at")] = None,
    ) -> dict[str, Any]:
        """Every active package's price at one location at a time (default now)."""
        location = await get_location_for(user, location_id)
        offers = await listing.location_offers(location, _parse_at(at))
        return {
            "location_id": location_id,
            "currency": location["currency"],
            "items": [{**o.as_dict(), "package_name": o.package["name"]} for o in offers],
        }

    @get(
        "/locations/{location_id:int}/packages/{package_id:int}/quote",
        name="api_catalog_quote",
    )
    async def quote(
        self,
        user: SignedIn,
        location_id: FromPath[int],
        package_id: FromPath[int],
        at: Annotated[str | None, QueryParameter(name="at")] = None,
    ) -> Response[dict[str, Any]]:
        """The terms a sale would snapshot; 409 when the package is not sold there then."""
        await get_location_for(user, location_id)
        try:
            terms = await listing.quote_package(package_id, location_id, _parse_at(at))
        except pricing.NotAvailable as exc:
            return Response(
                {"status_code": 409, "error": "Not available", "detail": str(exc)},
                status_code=409,
            )
        return Response(terms.as_dict())


ROUTES = [
    ServiceController,
    PackageController,
    public_catalog,
    CatalogApiController,
]
