"""Catalog pages: services, packages, prices and overrides; the public catalog; the JSON API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from litestar import Controller, Request, Response, get, post
from litestar.exceptions import NoRouteMatchFoundException, ValidationException
from litestar.params import FromPath, QueryParameter
from litestar.response import Template

from portal import money
from portal.auth.service import ACCOUNTANT, MANAGER, OWNER, CurrentUser
from portal.catalog import service
from portal.locations.service import get_location_for
from portal.timeutil import to_local, utcnow
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
from portal.web.guards import current_user, requires_owner, requires_role
from portal.web.pagination import Page
from portal.web.responses import client_address, redirect

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
    "price": "",
    "currency": "USD",
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
    return {f: row[f] for f in service.SERVICE_FIELDS}


def _package_form(row: dict[str, Any]) -> dict[str, Any]:
    form: dict[str, Any] = {f: row[f] for f in service.PACKAGE_FIELDS}
    form["sellable_online"] = "on" if row["sellable_online"] else ""
    form["service_id"] = str(row["service"])
    form["sessions"] = str(row["sessions"])
    return form


async def _service_form_context(
    form: dict[str, Any], errors: dict[str, str], **extra: Any
) -> dict[str, Any]:
    return {
        "form": form,
        "errors": errors,
        "currencies": CURRENCIES,
        "treatment_types": TREATMENT_TYPES,
        **extra,
    }


async def _package_form_context(
    form: dict[str, Any], errors: dict[str, str], **extra: Any
) -> dict[str, Any]:
    services = await service.all_services()
    return {
        "form": form,
        "errors": errors,
        "currencies": CURRENCIES,
        "services": [
            (s["id"], s["name"] + ("" if s["active"] else " (inactive)")) for s in services
        ],
        **extra,
    }


async def _price_page(
    *,
    title: str,
    action: str,
    back_url: str,
    form: dict[str, Any],
    errors: dict[str, str],
    current: service.PriceVersion | None,
    fixed_zone: str | None = None,
    fixed_currency: str | None = None,
    intro: str = "",
    status_code: int = 200,
) -> Template:
    zones = [] if fixed_zone else await service.base_price_zones()
    form = {**form}
    form.setdefault("effective_zone", fixed_zone or zones[0])
    form.setdefault("currency", fixed_currency or (current.currency if current else "USD"))
    return page(
        "price_form.html",
        status_code=status_code,
        title=title,
        action=action,
        back_url=back_url,
        form=form,
        errors=errors,
        current=current,
        zones=zones,
        fixed_zone=fixed_zone,
        fixed_currency=fixed_currency,
        currencies=CURRENCIES,
        intro=intro,
    )


async def _service_price_page(
    row: dict[str, Any], form: dict[str, Any], errors: dict[str, str], status_code: int = 200
) -> Template:
    return await _price_page(
        title=f"New list price for {row['name']}",
        action=f"/catalog/services/{row['id']}/price",
        back_url=f"/catalog/services/{row['id']}",
        form=form,
        errors=errors,
        current=await service.service_price_in_effect(row["id"], utcnow()),
        intro="The price of one session. Packages show their saving against it.",
        status_code=status_code,
    )


async def _package_price_page(
    row: dict[str, Any], form: dict[str, Any], errors: dict[str, str], status_code: int = 200
) -> Template:
    return await _price_page(
        title=f"New base price for {row['name']}",
        action=f"/catalog/packages/{row['id']}/price",
        back_url=f"/catalog/packages/{row['id']}",
        form=form,
        errors=errors,
        current=await service.price_in_effect(row["id"], utcnow()),
        intro=f"The price of all {row['sessions']} sessions, used at every location "
        "without an override of its own.",
        status_code=status_code,
    )


# -- the admin resources ---------------------------------------------------------

CATALOG_ROLES = Roles(
    list=(OWNER, MANAGER, ACCOUNTANT),
    detail=(OWNER, MANAGER, ACCOUNTANT),
    create=(OWNER,),
    edit=(OWNER,),
    deactivate=(OWNER,),
)


async def _catalog_context(_: CurrentUser) -> dict[str, Any]:
    return _helpers()


async def _services_page(user: CurrentUser, filters: dict[str, str], after: str | None) -> Page:
    return await service.list_services(
        search=filters["q"].strip(), status=filters["status"], after=after
    )


async def _load_service(_: CurrentUser, service_id: int, write: bool) -> dict[str, Any]:
    return await service.get_service(service_id)


async def _service_detail(
    request: Request[Any, Any, Any], user: CurrentUser, row: dict[str, Any]
) -> dict[str, Any]:
    now = utcnow()
    versions = (await service.service_versions([row["id"]]))[row["id"]]
    current = service.version_in_effect(versions, now)
    zones = await service.base_price_zones()
    return {
        **_helpers(),
        "current": current,
        "history": service.version_history(versions, now, current),
        "zone": zones[0],
    }


async def _set_service_active(
    user: CurrentUser, service_id: int, active: bool, _: dict[str, str], address: str
) -> bool:
    return await service.set_service_active(user, service_id, active, address=address)


SERVICES = AdminResource(
    name="service",
    label="service",
    plural="Services",
    path="/catalog/services",
    id_param="service_id",
    routes="catalog_service",
    list_route="catalog_services",
    roles=CATALOG_ROLES,
    load=_load_service,
    list_rows=_services_page,
    columns=(
        Column("Service", "name", link=True, sub="treatment_type"),
        Column("Duration", "duration_minutes", suffix=" min"),
        Column("Buffer after", "buffer_after_minutes", suffix=" min"),
        Column("List price (1 session)", cell="price", numeric=True),
        Column("Status", cell="status"),
    ),
    filters=(search("Name or treatment type"),),
    set_active=_set_service_active,
    detail_template="catalog/service_detail.html",
    detail_context=_service_detail,
    list_template="catalog/list.html",
    list_context=_catalog_context,
    cells="catalog/_cells.html",
    new_label="New service",
    filter_class="catalog-filters",
    confirm_text="Its packages stop selling until the service is reactivated. Packages "
    "already sold are not affected. Its price history is kept, and an owner can reactivate "
    "the service at any time.",
)


async def _packages_page(user: CurrentUser, filters: dict[str, str], after: str | None) -> Page:
    return await service.list_packages(
        search=filters["q"].strip(),
        status=filters["status"],
        online=filters["online"],
        service_id=parse_id(filters["service"]),
        after=after,
    )


async def _service_choices(_: CurrentUser) -> list[tuple[Any, str]]:
    return [(s["id"], s["name"]) for s in await service.all_services()]


async def _online_choices(_: CurrentUser) -> list[tuple[Any, str]]:
    return [("all", "All"), ("yes", "Yes"), ("no", "No")]


async def _load_package(_: CurrentUser, package_id: int, write: bool) -> dict[str, Any]:
    return await service.get_package(package_id)


async def _package_detail(
    request: Request[Any, Any, Any], user: CurrentUser, row: dict[str, Any]
) -> dict[str, Any]:
    now = utcnow()
    package, offers = await service.package_offers(user, row["id"], now)
    versions = (await service.package_versions([row["id"]], []))[row["id"]]
    current = service.version_in_effect(versions, now)
    unit = await service.service_price_in_effect(package["service"], now)
    zones = await service.base_price_zones()
    return {
        **_helpers(),
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
        "history": service.version_history(versions, now, current),
        "zone": zones[0],
    }


async def _set_package_active(
    user: CurrentUser, package_id: int, active: bool, _: dict[str, str], address: str
) -> bool:
    return await service.set_package_active(user, package_id, active, address=address)


PACKAGES = AdminResource(
    name="package",
    label="package",
    plural="Packages",
    path="/catalog/packages",
    id_param="package_id",
    routes="catalog_package",
    list_route="catalog_packages",
    roles=CATALOG_ROLES,
    load=_load_package,
    list_rows=_packages_page,
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
        Filter("service", "Service", choices=_service_choices, any_label="All services"),
        Filter("online", "Sold online", choices=_online_choices, default="all"),
    ),
    set_active=_set_package_active,
    detail_template="catalog/package_detail.html",
    detail_context=_package_detail,
    list_template="catalog/list.html",
    list_context=_catalog_context,
    cells="catalog/_cells.html",
    new_label="New package",
    filter_class="catalog-filters",
    confirm_text="It is no longer sold, online or at the front desk. Packages already sold "
    "keep every term they were sold with. Its price history is kept, and an owner can "
    "reactivate the package at any time.",
)


# -- services ------------------------------------------------------------------


class ServiceController(admin_controller(SERVICES)):  # type: ignore[misc]
    """The admin grammar from ``SERVICES``, plus the service form and its list prices."""

    @get("/new", guards=[requires_owner], name="catalog_service_new")
    async def new(self) -> Template:
        context = await _service_form_context(dict(SERVICE_DEFAULTS), {})
        return page("service_form.html", **context)

    @post("/", guards=[requires_owner], name="catalog_service_create")
    async def create(self, request: Request[Any, Any, Any]) -> Response[Any]:
        values, _ = await read_form(request)
        try:
            data, price = service.parse_service_form(values, creating=True)
            assert price is not None
            service_id = await service.create_service(
                current_user(request), data, price, address=client_address(request)
            )
        except ValidationFailed as exc:
            context = await _service_form_context({**SERVICE_DEFAULTS, **values}, exc.errors)
            return page("service_form.html", status_code=422, **context)
        return redirect(
            request,
            reverse(request, "catalog_service_detail", service_id=service_id),
            f"Service “{data.name}” created.",
        )

    @get("/{service_id:int}/edit", guards=[requires_owner], name="catalog_service_edit")
    async def edit(self, service_id: FromPath[int]) -> Template:
        row = await service.get_service(service_id)
        context = await _service_form_context(_service_form(row), {}, service=row)
        return page("service_form.html", **context)

    @post("/{service_id:int}/edit", guards=[requires_owner], name="catalog_service_update")
    async def update(
        self, request: Request[Any, Any, Any], service_id: FromPath[int]
    ) -> Response[Any]:
        row = await service.get_service(service_id)
        values, _ = await read_form(request)
        try:
            data, _price = service.parse_service_form(values, creating=False)
            await service.update_service(
                current_user(request), service_id, data, address=client_address(request)
            )
        except ValidationFailed as exc:
            context = await _service_form_context(
                {**SERVICE_DEFAULTS, **values}, exc.errors, service=row
            )
            return page("service_form.html", status_code=422, **context)
        return redirect(
            request,
            reverse(request, "catalog_service_detail", service_id=service_id),
            "Service saved.",
        )

    @get("/{service_id:int}/price", guards=[requires_owner], name="catalog_service_price")
    async def price_form(self, service_id: FromPath[int]) -> Template:
        return await _service_price_page(await service.get_service(service_id), {}, {})

    @post("/{service_id:int}/price", guards=[requires_owner], name="catalog_service_price_add")
    async def add_price(
        self, request: Request[Any, Any, Any], service_id: FromPath[int]
    ) -> Response[Any]:
        row = await service.get_service(service_id)
        values, _ = await read_form(request)
        try:
            price = service.parse_price_form(values)
            await service.add_service_price(
                current_user(request), service_id, price, address=client_address(request)
            )
        except ValidationFailed as exc:
            return await _service_price_page(row, values, exc.errors, status_code=422)
        return redirect(
            request,
            reverse(request, "catalog_service_detail", service_id=service_id),
            "New list price saved.",
        )


# -- packages ------------------------------------------------------------------


class PackageController(admin_controller(PACKAGES)):  # type: ignore[misc]
    """The admin grammar from ``PACKAGES``, plus the package form, prices and overrides."""

    @get("/new", guards=[requires_owner], name="catalog_package_new")
    async def new(
        self, service_id: Annotated[str, QueryParameter(name="service")] = ""
    ) -> Template:
        form = {**PACKAGE_DEFAULTS, "service_id": service_id if parse_id(service_id) else ""}
        context = await _package_form_context(form, {})
        return page("package_form.html", **context)

    @post("/", guards=[requires_owner], name="catalog_package_create")
    async def create(self, request: Request[Any, Any, Any]) -> Response[Any]:
        values, _ = await read_form(request)
        form = {**PACKAGE_DEFAULTS, **values, "sellable_online": values.get("sellable_online", "")}
        try:
            data, price = service.parse_package_form(values, creating=True)
            assert price is not None
            package_id = await service.create_package(
                current_user(request), data, price, address=client_address(request)
            )
        except ValidationFailed as exc:
            context = await _package_form_context(form, exc.errors)
            return page("package_form.html", status_code=422, **context)
        return redirect(
            request,
            reverse(request, "catalog_package_detail", package_id=package_id),
            f"Package “{data.name}” created.",
        )

    @get("/{package_id:int}/edit", guards=[requires_owner], name="catalog_package_edit")
    async def edit(self, package_id: FromPath[int]) -> Template:
        row = await service.get_package(package_id)
        context = await _package_form_context(_package_form(row), {}, package=row)
        return page("package_form.html", **context)

    @post("/{package_id:int}/edit", guards=[requires_owner], name="catalog_package_update")
    async def update(
        self, request: Request[Any, Any, Any], package_id: FromPath[int]
    ) -> Response[Any]:
        row = await service.get_package(package_id)
        values, _ = await read_form(request)
        form = {
            **_package_form(row),
            **values,
            "sellable_online": values.get("sellable_online", ""),
        }
        try:
            data, _price = service.parse_package_form(values, creating=False)
            await service.update_package(
                current_user(request), package_id, data, address=client_address(request)
            )
        except ValidationFailed as exc:
            context = await _package_form_context(form, exc.errors, package=row)
            return page("package_form.html", status_code=422, **context)
        return redirect(
            request,
            reverse(request, "catalog_package_detail", package_id=package_id),
            "Package saved.",
        )

    @get("/{package_id:int}/price", guards=[requires_owner], name="catalog_package_price")
    async def price_form(self, package_id: FromPath[int]) -> Template:
        return await _package_price_page(await service.get_package(package_id), {}, {})

    @post("/{package_id:int}/price", guards=[requires_owner], name="catalog_package_price_add")
    async def add_price(
        self, request: Request[Any, Any, Any], package_id: FromPath[int]
    ) -> Response[Any]:
        row = await service.get_package(package_id)
        values, _ = await read_form(request)
        try:
            price = service.parse_price_form(values)
            await service.add_package_price(
                current_user(request), package_id, price, address=client_address(request)
            )
        except ValidationFailed as exc:
            return await _package_price_page(row, values, exc.errors, status_code=422)
        return redirect(
            request,
            reverse(request, "catalog_package_detail", package_id=package_id),
            "New base price saved.",
        )

    @get(
        "/{package_id:int}/locations/{location_id:int}",
        guards=[readers],
        name="catalog_package_override",
    )
    async def override(
        self, request: Request[Any, Any, Any], package_id: FromPath[int], location_id: FromPath[int]
    ) -> Template:
        return await _override_page(request, package_id, location_id, {}, {}, {})

    @post(
        "/{package_id:int}/locations/{location_id:int}",
        guards=[override_editors],
        name="catalog_package_override_set",
    )
    async def set_override(
        self, request: Request[Any, Any, Any], package_id: FromPath[int], location_id: FromPath[int]
    ) -> Response[Any]:
        user = current_user(request)
        location = await get_location_for(user, location_id, write=True)
        await service.get_package(package_id)
        values, _ = await read_form(request)
        try:
            price = service.parse_price_form(values, zone=location["timezone"])
            await service.set_override(
                user, package_id, location_id, price, address=client_address(request)
            )
        except ValidationFailed as exc:
            return await _override_page(
                request, package_id, location_id, values, exc.errors, {}, status_code=422
            )
        return redirect(
            request,
            reverse(
                request, "catalog_package_override", package_id=package_id, location_id=location_id
            ),
            f"Price override for {location['name']} saved.",
        )

    @post(
        "/{package_id:int}/locations/{location_id:int}/end",
        guards=[override_editors],
        name="catalog_package_override_end",
    )
    async def end_override(
        self, request: Request[Any, Any, Any], package_id: FromPath[int], location_id: FromPath[int]
    ) -> Response[Any]:
        user = current_user(request)
        location = await get_location_for(user, location_id, write=True)
        await service.get_package(package_id)
        values, _ = await read_form(request)
        try:
            effective, note = service.parse_end_override_form(values, zone=location["timezone"])
            await service.end_override(
                user,
                package_id,
                location_id,
                effective,
                note=note,
                address=client_address(request),
            )
        except ValidationFailed as exc:
            return await _override_page(
                request, package_id, location_id, {}, {}, values, exc.errors, status_code=422
            )
        return redirect(
            request,
            reverse(
                request, "catalog_package_override", package_id=package_id, location_id=location_id
            ),
            f"{location['name']} returns to the base price.",
        )


async def _override_page(
    request: Request[Any, Any, Any],
    package_id: int,
    location_id: int,
    form: dict[str, Any],
    errors: dict[str, str],
    end_form: dict[str, Any],
    end_errors: dict[str, str] | None = None,
    *,
    status_code: int = 200,
) -> Template:
    user = current_user(request)
    location = await get_location_for(user, location_id)
    package = await service.get_package(package_id)
    now = utcnow()
    versions = (await service.package_versions([package_id], [location_id]))[package_id]
    units = (await service.service_versions([package["service"]]))[package["service"]]
    offer = service.build_offer(package, location, versions, units, now)
    overrides = [v for v in versions if v.location_id == location_id]
    current_override = service.version_in_effect(overrides, now)
    base = service.version_in_effect([v for v in versions if v.location_id is None], now)
    can_edit = user.role == OWNER or (user.role == MANAGER and location_id in user.location_ids)
    return page(
        "override.html",
        status_code=status_code,
        package=package,
        location=location,
        offer=offer,
        base=base,
        current_override=current_override,
        history=service.version_history(overrides, now, current_override),
        can_edit=can_edit,
        form={"currency": location["currency"], **form},
        errors=errors,
        end_form=end_form,
        end_errors=end_errors or {},
        has_override=any(not v.clears_override for v in overrides),
    )


# -- public catalog --------------------------------------------------------------


@get("/book/{location_slug:str}", opt=PUBLIC, name="public_catalog")
async def public_catalog(request: Request[Any, Any, Any], location_slug: FromPath[str]) -> Template:
    """A location's packages for sale online, with that location's prices (no sign-in)."""
    found = await service.public_catalog(location_slug, utcnow())
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
    request: Request[Any, Any, Any], location: dict[str, Any], offers: list[service.Offer]
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


def _api_service(row: dict[str, Any]) -> dict[str, Any]:
    price = row.get("price")
    return {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "treatment_type": row["treatment_type"],
        "duration_minutes": row["duration_minutes"],
        "buffer_after_minutes": row["buffer_after_minutes"],
        "required_equipment": [t for t in row["required_equipment"].split(", ") if t],
        "active": row["active"],
        "list_price": price.as_dict() if price else None,
    }


def _api_package(row: dict[str, Any]) -> dict[str, Any]:
    price = row.get("price")
    return {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "service_id": row["service"],
        "service_name": row["service_name"],
        "sessions": row["sessions"],
        "validity_days": row["validity_days"],
        "sellable_online": row["sellable_online"],
        "active": row["active"],
        "base_price": price.as_dict() if price else None,
    }


class CatalogApiController(Controller):
    path = "/api/v1/catalog"
    tags = ["catalog"]
    guards = [readers]

    @get("/services", name="api_catalog_services")
    async def services(
        self,
        q: Annotated[str, QueryParameter(name="q")] = "",
        status: Annotated[str, QueryParameter(name="status")] = "all",
        after: Annotated[str | None, QueryParameter(name="after")] = None,
    ) -> dict[str, Any]:
        result = await service.list_services(search=q.strip(), status=status, after=after)
        return {"items": [_api_service(r) for r in result.rows], "next": result.next_cursor}

    @get("/services/{service_id:int}", name="api_catalog_service")
    async def service_detail(self, service_id: FromPath[int]) -> dict[str, Any]:
        row = await service.get_service(service_id)
        versions = (await service.service_versions([service_id]))[service_id]
        row["price"] = service.version_in_effect(versions, utcnow())
        data = _api_service(row)
        data["price_versions"] = [
            v.as_dict() for v in sorted(versions, key=lambda v: (v.effective_from, v.id))
        ]
        return data

    @get("/packages", name="api_catalog_packages")
    async def packages(
        self,
        q: Annotated[str, QueryParameter(name="q")] = "",
        status: Annotated[str, QueryParameter(name="status")] = "all",
        online: Annotated[str, QueryParameter(name="online")] = "all",
        after: Annotated[str | None, QueryParameter(name="after")] = None,
    ) -> dict[str, Any]:
        result = await service.list_packages(
            search=q.strip(), status=status, online=online, after=after
        )
        return {"items": [_api_package(r) for r in result.rows], "next": result.next_cursor}

    @get("/packages/{package_id:int}", name="api_catalog_package")
    async def package_detail(
        self, request: Request[Any, Any, Any], package_id: FromPath[int]
    ) -> dict[str, Any]:
        now = utcnow()
        package, offers = await service.package_offers(current_user(request), package_id, now)
        visible = [o.location["id"] for o in offers]
        versions = (await service.package_versions([package_id], visible))[package_id]
        package["price"] = service.version_in_effect(
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
        request: Request[Any, Any, Any],
        location_id: FromPath[int],
        at: Annotated[str | None, QueryParameter(name="at")] = None,
    ) -> dict[str, Any]:
        """Every active package's price at one location at a time (default now)."""
        location = await get_location_for(current_user(request), location_id)
        offers = await service.location_offers(location, _parse_at(at))
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
        request: Request[Any, Any, Any],
        location_id: FromPath[int],
        package_id: FromPath[int],
        at: Annotated[str | None, QueryParameter(name="at")] = None,
    ) -> Response[dict[str, Any]]:
        """The terms a sale would snapshot; 409 when the package is not sold there then."""
        await get_location_for(current_user(request), location_id)
        try:
            terms = await service.quote_package(package_id, location_id, _parse_at(at))
        except service.NotAvailable as exc:
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
