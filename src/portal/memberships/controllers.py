"""Membership pages: plans on the one admin grammar (list, detail, form, price versions),
a location's plans for the public, joining through Stripe Checkout, a membership's page."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template

from portal import money
from portal.auth.service import ACCOUNTANT, CLIENT, MANAGER, OWNER, CurrentUser
from portal.catalog import service as catalog
from portal.clients import service as clients
from portal.locations.service import all_locations, get_location, get_location_for
from portal.locations.tables import Location
from portal.memberships import changes, desk, fees, service, subscriptions
from portal.onetime import service as onetime
from portal.payments.controllers import GATEWAY_DEPENDENCIES, Tilled, _checkout_page_headers
from portal.payments.gateway import GatewayError
from portal.timeutil import to_local, utcnow
from portal.web.admin import (
    AdminResource,
    Column,
    Roles,
    adding_handlers,
    admin_controller,
    item_route,
    location_filter,
    reverse,
    search,
)
from portal.web.deps import Actor, SignedIn, Visitor
from portal.web.forms import ValidationFailed, Values, parse_id, read_form
from portal.web.guards import requires_role
from portal.web.responses import redirect

editors = requires_role(OWNER, MANAGER)
LABELS = {
    "location_id": "Location",
    "service_id": "Service",
    "name": "Name",
    "interval": "Renews",
    "sessions_per_period": "Sessions per period",
    "rollover_cap": "Rollover cap",
    "min_term_periods": "Minimum term",
    "notice_days": "Cancellation notice",
    "freeze_fee": "Freeze fee",
    "member_discount_bp": "Member discount",
    "ends_local": "Ends",
    "price": "Price per period",
    "effective_local": "Takes effect",
    "note": "Note",
    "description": "Description",
}
DEFAULTS = {
    "location_id": "",
    "service_id": "",
    "name": "",
    "description": "",
    "interval": service.MONTHLY,
    "sessions_per_period": "1",
    "rollover_cap": "0",
    "min_term_periods": "0",
    "notice_days": "0",
    "freeze_allowed": "",
    "freeze_fee": "",
    "member_discount_bp": "0",
    "ends_local": "",
    "sellable_online": "on",
    "price": "",
}


async def _writable_locations(user: CurrentUser) -> list[dict[str, Any]]:
    locations = await all_locations(active_only=True)
    if user.role == OWNER:
        return locations
    return [loc for loc in locations if loc["id"] in user.location_ids]


async def _location_choices(user: CurrentUser) -> list[tuple[Any, str]]:
    locations = await all_locations(active_only=False)
    if not user.sees_all_locations:
        locations = [loc for loc in locations if loc["id"] in user.location_ids]
    return [(loc["id"], loc["name"]) for loc in locations]


def _as_form(plan: dict[str, Any]) -> dict[str, Any]:
    form: dict[str, Any] = {f: plan[f] for f in service.PLAN_FIELDS if f != "ends_at"}
    for flag in ("freeze_allowed", "sellable_online"):
        form[flag] = "on" if plan[flag] else ""
    form["freeze_fee"] = (
        money.amount_input(plan["freeze_fee_cents"], plan["location_currency"])
        if plan["freeze_fee_cents"]
        else ""
    )
    zone = plan["location_timezone"]
    form["ends_local"] = (
        to_local(plan["ends_at"], zone).strftime("%Y-%m-%dT%H:%M") if plan["ends_at"] else ""
    )
    return form


async def _form_page(
    user: CurrentUser,
    form: dict[str, Any],
    errors: dict[str, str],
    plan: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Template:
    locations = await _writable_locations(user)
    return Template(
        "memberships/plan_form.html",
        context={
            "form": form,
            "errors": errors,
            "labels": LABELS,
            "plan": plan,
            "intervals": list(service.INTERVALS.items()),
            "locations": [(loc["id"], loc["name"]) for loc in locations],
            "services": await service.service_choices(),
        },
        status_code=status_code,
    )


async def _detail_context(
    request: Request[Any, Any, Any], user: CurrentUser, plan: dict[str, Any]
) -> dict[str, Any]:
    now = utcnow()
    versions = (await service.plan_versions([plan["id"]]))[plan["id"]]
    current = catalog.version_in_effect(versions, now)
    location = await get_location(int(plan["location"]))
    reason = service.unavailable_reason(plan, location, current, now)
    return {
        "current": current,
        "terms": None if reason else service.terms_at(plan, location, current, now),
        "reason": reason,
        "history": catalog.version_history(versions, now, current),
        "intervals": service.INTERVALS,
        "fmt": money.format_money,
    }


async def _list_helpers(_: CurrentUser) -> dict[str, Any]:
    return {"fmt": money.format_money}


PLANS = AdminResource(
    name="membership_plan",
    label="plan",
    plural="Membership plans",
    path="/memberships/plans",
    id_param="plan_id",
    routes="membership_plan",
    list_route="membership_plans",
    roles=Roles(
        list=(OWNER, MANAGER, ACCOUNTANT),
        detail=(OWNER, MANAGER, ACCOUNTANT),
        create=(OWNER, MANAGER),
        edit=(OWNER, MANAGER),
        deactivate=(OWNER, MANAGER),
    ),
    load=service.get_plan_for,
    list_rows=service.list_plans,
    columns=(
        Column("Plan", "name", link=True, sub="service_name"),
        Column("Location", "location_name"),
        Column("Sessions", "sessions_per_period", suffix=" per period"),
        Column("Price", cell="price", numeric=True),
        Column("Online", cell="online"),
        Column("Status", cell="status"),
    ),
    filters=(
        search("Plan or service"),
        location_filter(_location_choices),
    ),
    scope=lambda row: frozenset({int(row["location"])}),
    title=lambda row: f"{row['name']} ({row['location_name']})",
    set_active=service.set_plan_active,
    detail_template="memberships/plan_detail.html",
    detail_context=_detail_context,
    list_context=_list_helpers,
    cells="memberships/_cells.html",
    new_label="New plan",
    confirm_text="No one can join it any more, online or at the front desk. Members keep "
    "their memberships and the terms they joined with. Its price history is kept, and it "
    "can be reactivated at any time.",
)


async def _price_page(
    request: Request[Any, Any, Any],
    plan: dict[str, Any],
    form: dict[str, Any],
    errors: dict[str, str],
) -> Template:
    current = await service.price_in_effect(int(plan["id"]), utcnow())
    return Template(
        "catalog/price_form.html",
        context={
            "heading": f"New price for {plan['name']}",
            "button": "Save new price",
            "labels": {
                "price": "Price per period",
                "effective_local": "Takes effect",
                "note": "Note",
            },
            "intro": f"The price per period at {plan['location_name']}, in "
            f"{plan['location_currency']}. Members keep the price they joined with.",
            "action": PLANS.url(request, "price_add", plan["id"]),
            "back_url": PLANS.url(request, "detail", plan["id"]),
            "form": {"currency": plan["location_currency"], **form},
            "errors": errors,
            "current": current,
            "fixed_zone": plan["location_timezone"],
            "zones": [plan["location_timezone"]],
            "currencies": [plan["location_currency"]],
            "fmt": money.format_money,
        },
        status_code=422 if errors else 200,
    )


async def _add_price(user: CurrentUser, plan: dict[str, Any], values: Values, address: str) -> str:
    price = catalog.parse_price_form(
        {**values, "currency": plan["location_currency"]}, zone=plan["location_timezone"]
    )
    await service.add_plan_price(user, int(plan["id"]), price, address=address)
    return "New price saved."


PRICE_HANDLERS = adding_handlers(
    PLANS,
    item_route(PLANS)[0] + "/price",
    "",
    ("membership_plan_price", "membership_plan_price_add"),
    lambda _user, _plan: {},
    _price_page,
    _add_price,
)


class PlanController(admin_controller(PLANS, PRICE_HANDLERS)):  # type: ignore[misc]
    """The admin grammar from ``PLANS``, plus the plan form and its price versions."""

    @get("/new", guards=[editors], name="membership_plan_new")
    async def new(
        self,
        user: SignedIn,
        location_id: Annotated[str, QueryParameter(name="location")] = "",
    ) -> Template:
        form = {**DEFAULTS, "location_id": location_id if parse_id(location_id) else ""}
        return await _form_page(user, form, {})

    @post("/", guards=[editors], name="membership_plan_create")
    async def create(self, acting: Actor) -> Response[Any]:
        request, user, client_address = acting.request, acting.user, acting.address
        values, _ = await read_form(request)
        form = {**DEFAULTS, **values}
        for flag in ("freeze_allowed", "sellable_online"):
            form[flag] = values.get(flag, "")
        location_id = parse_id(values.get("location_id", ""))
        try:
            location = (
                await get_location_for(user, location_id, write=True) if location_id else None
            )
            data, price = service.parse_plan_form(
                values,
                creating=True,
                zone=location["timezone"] if location else "UTC",
                currency=location["currency"] if location else "USD",
            )
            assert price is not None
            plan_id = await service.create_plan(user, data, price, address=client_address)
        except ValidationFailed as exc:
            return await _form_page(user, form, exc.errors, status_code=422)
        return redirect(
            request,
            reverse(request, "membership_plan_detail", plan_id=plan_id),
            f"Plan “{data.name}” created.",
        )

    @get("/{plan_id:int}/edit", guards=[editors], name="membership_plan_edit")
    async def edit(self, user: SignedIn, plan_id: FromPath[int]) -> Template:
        plan = await service.get_plan_for(user, plan_id, write=True)
        return await _form_page(user, _as_form(plan), {}, plan)

    @post("/{plan_id:int}/edit", guards=[editors], name="membership_plan_update")
    async def update(self, acting: Actor, plan_id: FromPath[int]) -> Response[Any]:
        request, user, client_address = acting.request, acting.user, acting.address
        plan = await service.get_plan_for(user, plan_id, write=True)
        values, _ = await read_form(request)
        form = {**_as_form(plan), **values}
        for flag in ("freeze_allowed", "sellable_online"):
            form[flag] = values.get(flag, "")
        try:
            data, _price = service.parse_plan_form(
                values,
                creating=False,
                zone=plan["location_timezone"],
                currency=plan["location_currency"],
            )
            await service.update_plan(user, plan_id, data, address=client_address)
        except ValidationFailed as exc:
            return await _form_page(user, form, exc.errors, plan, status_code=422)
        return redirect(
            request, reverse(request, "membership_plan_detail", plan_id=plan_id), "Plan saved."
        )


# -- joining and the membership's page --------------------------------------------

joiners = requires_role(CLIENT)


def _stripe_post(path: str, guard: Any, name: str) -> Any:
    """A POST handler that talks to Stripe (its gateway injected as ``gateways``)."""
    return post(path, guards=[guard], name=name, dependencies=GATEWAY_DEPENDENCIES)


member_readers = requires_role(OWNER, MANAGER, ACCOUNTANT, CLIENT)
LINK = "checkout_link"
DESK_METHODS = {LINK: "Card — send a Stripe Checkout link (renews automatically)"} | {
    method: f"{label} at the desk, each period" for method, label in desk.METHODS.items()
}


async def _public_location(slug: str) -> dict[str, Any] | None:
    return (
        await Location.select()
        .where((Location.slug == slug) & (Location.active == True))  # noqa: E712
        .first()
        .run()
    )


async def _plans_page(
    request: Request[Any, Any, Any],
    user: CurrentUser | None,
    location: dict[str, Any],
    error: str = "",
    status: int = 200,
) -> Template:
    return Template(
        "memberships/public.html",
        context={
            "location": location,
            "plans": await service.location_plans(location, utcnow(), online_only=True),
            "intervals": service.INTERVALS,
            "fmt": money.format_money,
            "can_join": user is not None and user.role == CLIENT,
            "request_key": onetime.new_key(),
            "error": error,
        },
        status_code=status,
        headers=_checkout_page_headers(request.app.state.settings),
    )


@get("/book/{location_slug:str}/memberships", opt={"public": True}, name="public_memberships")
async def public_plans(
    request: Request[Any, Any, Any], user_or_none: Visitor, location_slug: FromPath[str]
) -> Template:
    """A location's membership plans, joined online (no sign-in to look)."""
    location = await _public_location(location_slug)
    if location is None:
        return Template("catalog/public_not_found.html", status_code=404)
    return await _plans_page(request, user_or_none, location)


@_stripe_post("/memberships/join/{joinable_plan_id:int}", joiners, "membership_join")
async def join(till: Tilled, joinable_plan_id: FromPath[int]) -> Response[Any]:
    """Open Stripe Checkout in subscription mode for a new membership of the plan."""
    request, user, settings, gateways = till.request, till.user, till.settings, till.gateways
    plan = await service.get_plan(joinable_plan_id)
    location = await get_location(int(plan["location"]))
    values, _ = await read_form(request)
    key = onetime.parse(values.get(onetime.FIELD))
    if key is None:  # a money form without its one-time key: not from the page
        return await _plans_page(request, user, location, "Please press Join again.", 400)
    try:
        membership_id, url = await subscriptions.join(
            gateways.get(),
            user,
            joinable_plan_id,
            base_url=settings.base_url,
            request_key=key,
        )
    except ValidationFailed as exc:
        return await _plans_page(request, user, location, next(iter(exc.errors.values())), 409)
    except GatewayError as exc:
        return await _plans_page(request, user, location, exc.message, 503)
    if not url:
        return Redirect(path=f"/memberships/{membership_id}", status_code=303)
    return Redirect(path=url, status_code=303)


@get("/memberships/{membership_id:int}", guards=[member_readers], name="membership")
async def membership_page(
    request: Request[Any, Any, Any], user: SignedIn, membership_id: FromPath[int]
) -> Template:
    return await _membership_page(request, user, membership_id)


async def _membership_page(
    request: Request[Any, Any, Any],
    user: CurrentUser,
    membership_id: int,
    *,
    failed: str = "",
    errors: dict[str, str] | None = None,
    values: Values | None = None,
    status: int = 200,
) -> Template:
    """The membership's page; with the form that ``failed`` (its name), the errors to
    show beside its fields and what was sent, kept (its one-time key too: the refused
    attempt claimed nothing)."""
    context = await _membership_context(user, membership_id)
    if failed and values is not None and onetime.parse(values.get(onetime.FIELD)):
        context["request_key"] = values.get(onetime.FIELD)
    membership = context["membership"]
    is_desk = subscriptions.is_desk(membership)
    freeze_fee = fees.fee_quote(context["terms"]) if is_desk else None
    return Template(
        "memberships/membership.html",
        context={
            **context,
            "status": subscriptions.STATUS_LABELS.get(membership["status"], membership["status"]),
            "periods": await subscriptions.periods_of(membership_id),
            "sessions_left": await subscriptions.sessions_left(membership_id),
            "intervals": service.INTERVALS,
            "joined": request.query_params.get("joined") == "1",
            "can_change": user.role in (OWNER, MANAGER, CLIENT),
            "desk": is_desk,
            "due": await desk.next_due(membership) if is_desk else None,
            "freeze_fee": freeze_fee,
            "freeze_from": (
                await subscriptions.frozen_period_start(membership)
                if freeze_fee and membership["current_period_end"]
                else None
            ),
            "can_take_payment": user.role in (OWNER, MANAGER),
            "change": changes.scheduled(membership),
            "plan_choices": [
                (plan["id"], f"{plan['name']}, {money.format_money(t.total_cents, t.currency)}")
                for plan, t in (
                    await changes.choices(user, membership)
                    if user.role in (OWNER, MANAGER, CLIENT)
                    else []
                )
            ],
            "methods": list(desk.METHODS.items()),
            "failed": failed,
            "errors": errors or {},
            "sent": values or {},
        },
        status_code=status,
    )


@post("/memberships/{membership_id:int}/payment", guards=[editors], name="membership_desk_payment")
async def desk_payment(acting: Actor, membership_id: FromPath[int]) -> Response[Any]:
    """This period's fee taken at the front desk (cash, cheque, card terminal): once."""
    request, user, client_address = acting.request, acting.user, acting.address

    async def act(values: Values, key: str) -> str:
        sale_id = await desk.record_payment(
            user, membership_id, values.get("method", ""), request_key=key, address=client_address
        )
        if not sale_id:
            return "Freeze fee recorded: the frozen period is paid for."
        return "Payment recorded: the period's sessions are granted."

    return await _act(request, user, membership_id, act, "payment")


async def _membership_context(
    user: CurrentUser, membership_id: int, *, write: bool = False
) -> dict[str, Any]:
    """What every page about one membership shows: it, the terms it was joined with,
    its location, and a one-time key for the forms that change it."""
    membership = await subscriptions.get_membership_for(user, membership_id, write=write)
    return {
        "membership": membership,
        "terms": json.loads(membership["terms"]),
        "location": await get_location(int(membership["location"])),
        "fmt": money.format_money,
        "request_key": onetime.new_key(),
    }


member_editors = requires_role(OWNER, MANAGER, CLIENT)


def _membership_url(request: Request[Any, Any, Any], membership_id: int) -> str:
    return reverse(request, "membership", membership_id=membership_id)


async def _cancel_page(
    user: CurrentUser, membership_id: int, error: str = "", status: int = 200
) -> Template:
    context = await _membership_context(user, membership_id, write=True)
    quote = None
    try:
        quote = await subscriptions.quote_cancel(context["membership"])
    except ValidationFailed as exc:
        error = error or next(iter(exc.errors.values()))
    return Template(
        "memberships/cancel.html",
        context={**context, "quote": quote, "error": error},
        status_code=status,
    )


@get("/memberships/{membership_id:int}/cancel", guards=[member_editors], name="membership_cancel")
async def cancel_confirm(user: SignedIn, membership_id: FromPath[int]) -> Template:
    """The notice and minimum term explained, with the date it would end, before confirming."""
    return await _cancel_page(user, membership_id)


@_stripe_post("/memberships/{membership_id:int}/cancel", member_editors, "membership_cancel_submit")
async def cancel_submit(till: Tilled, membership_id: FromPath[int]) -> Response[Any]:
    request, user, client_address, gateways = till.request, till.user, till.address, till.gateways
    values, _ = await read_form(request)
    key = onetime.parse(values.get(onetime.FIELD))
    if key is None:
        return await _cancel_page(user, membership_id, "Please confirm again.", 400)
    try:
        ends = await subscriptions.cancel(
            gateways.get(), user, membership_id, request_key=key, address=client_address,
        )  # fmt: skip
    except ValidationFailed as exc:
        return await _cancel_page(user, membership_id, next(iter(exc.errors.values())), 409)
    except GatewayError as exc:
        return await _cancel_page(user, membership_id, exc.message, 503)
    membership = await subscriptions.get_membership(membership_id)
    zone = (await get_location(int(membership["location"])))["timezone"]
    return redirect(
        request,
        _membership_url(request, membership_id),
        f"Cancelled: the membership ends on {to_local(ends, zone):%Y-%m-%d}.",
    )


async def _act(
    request: Request[Any, Any, Any],
    user: CurrentUser,
    membership_id: int,
    act: Callable[[Values, str], Awaitable[str]],
    form: str,
) -> Response[Any]:
    """A form on the membership's page (``form`` names it): its one-time key, the
    service's act (which says what it did), back to the page with that. Refused, the
    page is shown again (4xx) with why beside the form's fields and what was sent."""
    await subscriptions.get_membership_for(user, membership_id, write=True)
    values, _ = await read_form(request)

    async def again(errors: dict[str, str], status: int) -> Response[Any]:
        return await _membership_page(
            request, user, membership_id, failed=form, errors=errors, values=values,
            status=status,
        )  # fmt: skip

    key = onetime.parse(values.get(onetime.FIELD))
    if key is None:
        return await again({"form": "Please press the button again."}, 400)
    try:
        done = await act(values, key)
    except ValidationFailed as exc:
        return await again(exc.errors, 422)
    except GatewayError as exc:
        return await again({"form": exc.message}, 503)
    return redirect(request, _membership_url(request, membership_id), done)


def _freeze_handler(frozen: bool) -> Any:
    async def handler(till: Tilled, membership_id: FromPath[int]) -> Response[Any]:
        request, user, client_address = till.request, till.user, till.address
        gateways = till.gateways

        async def act(values: Values, key: str) -> str:
            fee = await subscriptions.set_frozen(
                gateways.get(), user, membership_id, frozen,
                request_key=key, address=client_address, method=values.get("method", ""),
            )  # fmt: skip
            if not frozen:
                return "Resumed."
            if fee:
                membership = await subscriptions.get_membership(membership_id)
                paid = money.format_money(fee, str(membership["currency"]))
                return (
                    f"Frozen: the freeze fee of {paid} is recorded paid; "
                    "no new sessions until resumed."
                )
            return "Frozen: no charges and no new sessions until you resume."

        return await _act(request, user, membership_id, act, "freeze" if frozen else "resume")

    return handler


@_stripe_post("/memberships/{membership_id:int}/card", member_editors, "membership_card")
async def update_card(till: Tilled, membership_id: FromPath[int]) -> Response[Any]:
    """To Stripe's hosted card update (no card data in the portal), back here after."""
    request, user, settings, gateways = till.request, till.user, till.settings, till.gateways
    back = _membership_url(request, membership_id)
    try:
        customer = await subscriptions.card_customer(user, membership_id)
        url = await subscriptions.card_update_url(
            gateways.get(), customer, membership_id, base_url=settings.base_url
        )
    except ValidationFailed as exc:
        return redirect(request, back, next(iter(exc.errors.values())), "error")
    except GatewayError as exc:
        return redirect(request, back, exc.message, "error")
    return Redirect(path=url, status_code=303)


@_stripe_post("/memberships/{membership_id:int}/plan", member_editors, "membership_change_plan")
async def change_plan(till: Tilled, membership_id: FromPath[int]) -> Response[Any]:
    """Change to another plan of the location from the next period on."""
    request, user, client_address = till.request, till.user, till.address
    gateways = till.gateways

    async def act(values: Values, key: str) -> str:
        plan_id = parse_id(values.get("plan_id", ""))
        if plan_id is None:
            raise ValidationFailed({"plan_id": "Choose a plan."})
        at = await changes.schedule(
            gateways.get(), user, membership_id, plan_id, request_key=key, address=client_address
        )
        membership = await subscriptions.get_membership(membership_id)
        zone = (await get_location(int(membership["location"])))["timezone"]
        return f"The plan changes on {to_local(at, zone):%Y-%m-%d}."

    return await _act(request, user, membership_id, act, "change")


@_stripe_post("/memberships/{membership_id:int}/plan/keep", member_editors, "membership_keep_plan")
async def keep_plan(till: Tilled, membership_id: FromPath[int]) -> Response[Any]:
    """Call off a scheduled change of plan before it applies."""
    request, user, client_address = till.request, till.user, till.address
    gateways = till.gateways

    async def act(_: Values, key: str) -> str:
        await changes.keep_plan(
            gateways.get(), user, membership_id, request_key=key, address=client_address
        )
        return "The change of plan is called off."

    return await _act(request, user, membership_id, act, "keep")


freeze = _stripe_post(
    "/memberships/{membership_id:int}/freeze", member_editors, "membership_freeze"
)(_freeze_handler(True))
resume = _stripe_post(
    "/memberships/{membership_id:int}/resume", member_editors, "membership_resume"
)(_freeze_handler(False))


async def _desk_page(
    user: CurrentUser,
    client_id: int,
    form: dict[str, str],
    errors: dict[str, str],
    *,
    url: str = "",
    membership_id: int = 0,
    status: int = 200,
) -> Template:
    client = await clients.get_client_for(user, client_id)
    now = utcnow()
    choices = []
    for place in await _writable_locations(user):
        location = await get_location(int(place["id"]))
        for plan, terms in await service.location_plans(location, now):
            price = money.format_money(terms.total_cents, terms.currency)
            choices.append((plan["id"], f"{plan['name']} — {location['name']}, {price}"))
    return Template(
        "memberships/desk.html",
        context={
            "client": client,
            "plans": choices,
            "form": form,
            "errors": errors,
            "url": url,
            "membership_id": membership_id,
            "methods": list(DESK_METHODS.items()),
            "request_key": onetime.new_key(),
        },
        status_code=status,
    )


@get("/memberships/desk/{client_id:int}", guards=[editors], name="membership_desk")
async def desk_form(user: SignedIn, client_id: FromPath[int]) -> Template:
    """Staff start a membership for a client at the front desk: choose the plan."""
    return await _desk_page(user, client_id, {}, {})


@_stripe_post("/memberships/desk/{client_id:int}", editors, "membership_desk_submit")
async def desk_submit(till: Tilled, client_id: FromPath[int]) -> Response[Any]:
    """The pending membership and its Checkout link, shown here and emailed to the client;
    or, paid at the desk, the client enrolled with the first period paid."""
    request, user, settings, gateways = till.request, till.user, till.settings, till.gateways
    client_address = till.address
    values, _ = await read_form(request)
    key = onetime.parse(values.get(onetime.FIELD))
    plan_id = parse_id(values.get("plan_id", ""))
    method = values.get("method", LINK)
    if key is None or plan_id is None or method not in DESK_METHODS:
        errors = {"plan_id": "Choose a plan." if key else "Please send the form again."}
        if method not in DESK_METHODS:
            errors = {"method": "Choose how the client pays."}
        return await _desk_page(user, client_id, values, errors, status=400)
    if method != LINK:
        try:
            membership_id = await desk.enrol(
                user, client_id, plan_id, method, request_key=key, address=client_address
            )
        except ValidationFailed as exc:
            return await _desk_page(user, client_id, values, exc.errors, status=409)
        return redirect(
            request,
            _membership_url(request, membership_id),
            f"Enrolled. The first period is paid ({desk.METHODS[method].lower()}); "
            "each next one is paid at the desk.",
        )
    try:
        membership_id, url = await subscriptions.join_at_desk(
            gateways.get(), user, client_id, plan_id,
            base_url=settings.base_url, request_key=key,
        )  # fmt: skip
    except ValidationFailed as exc:
        message = next(iter(exc.errors.values()))
        return await _desk_page(user, client_id, values, {"plan_id": message}, status=409)
    except GatewayError as exc:
        return await _desk_page(user, client_id, values, {"plan_id": exc.message}, status=503)
    return await _desk_page(user, client_id, values, {}, url=url, membership_id=membership_id)


@get("/memberships", guards=[member_readers], name="memberships")
async def memberships_list(
    user: SignedIn,
    status: Annotated[str, QueryParameter(name="status")] = "",
) -> Template:
    """A client's own memberships; for staff, the members of their locations (``past_due``:
    those in arrears)."""
    rows = await subscriptions.list_memberships(user, status=status)
    return Template(
        "memberships/list.html",
        context={
            "rows": rows,
            "status": status,
            "labels": subscriptions.STATUS_LABELS,
            "fmt": money.format_money,
            "staff": user.role != CLIENT,
        },
    )


ROUTES = [
    PlanController,
    public_plans,
    join,
    memberships_list,
    desk_form,
    desk_submit,
    membership_page,
    desk_payment,
    cancel_confirm,
    cancel_submit,
    freeze,
    resume,
    change_plan,
    keep_plan,
    update_card,
]
