"""Buying packages, the Stripe webhook, sales pages, refunds and receipts."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

from litestar import Controller, MediaType, Request, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException, NotFoundException
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template

from portal import access, db, metrics, money
from portal.auth.service import ACCOUNTANT, CLIENT, MANAGER, OWNER, CurrentUser
from portal.bookings.booking import SlotTaken
from portal.catalog import service as catalog
from portal.catalog.service import NotAvailable
from portal.errors import Invalid
from portal.onetime import service as onetime
from portal.payments import booked, html, listing, refunds, service, webhooks
from portal.payments.gateway import (
    GatewayError,
    GatewayUnavailable,
    StripeGateway,
    WebhookSignatureError,
)
from portal.sales import service as sales
from portal.sales.tables import Sale
from portal.settings import ConfigurationError, Settings
from portal.web.admin import reverse, reverser
from portal.web.deps import Acting, Actor, AppSettings, LocatedParams, SignedIn
from portal.web.forms import ValidationFailed, parse_id, read_form
from portal.web.guards import requires_role
from portal.web.middleware import CONTENT_SECURITY_POLICY
from portal.web.pagination import keyset_page
from portal.web.responses import redirect

log = logging.getLogger("portal.payments")

buyers = requires_role(CLIENT)
sale_readers = requires_role(OWNER, MANAGER, ACCOUNTANT, CLIENT)
staff_readers = requires_role(OWNER, MANAGER, ACCOUNTANT)
sellers = requires_role(OWNER, MANAGER)


def _checkout_page_headers(settings: Settings) -> dict[str, str]:
    """The Content-Security-Policy of a page whose form redirects to the payment page.

    Browsers apply ``form-action`` to the redirect after the POST, so the page
    must allow the payment page's origin: Stripe's is in the portal-wide
    policy; the local stand-in's is added here when payments go to it.
    """
    if not settings.stripe_api_base:
        return {}
    parsed = urlparse(settings.stripe_api_base)
    origin = f"{parsed.scheme}://{parsed.netloc}"
    return {
        "content-security-policy": CONTENT_SECURITY_POLICY.replace(
            "form-action 'self'", f"form-action 'self' {origin}", 1
        )
    }


class PaymentsNotConfigured(HTTPException):
    """Stripe's settings are missing: online payments answer 503 until they are set."""

    status_code = 503


def gateway_of(state: State) -> StripeGateway:
    """The app's Stripe gateway, built on first use from the settings and kept in
    ``app.state.stripe_gateway`` (where the fault tests put a broken one)."""
    gateway: StripeGateway | None = getattr(state, "stripe_gateway", None)
    if gateway is None:
        settings: Settings = state.settings
        try:
            gateway = StripeGateway.from_settings(settings)
        except ConfigurationError as exc:
            log.error("payments are not configured: %s", exc)
            raise PaymentsNotConfigured(
                detail="Online payments are not available right now."
            ) from exc
        state.stripe_gateway = gateway
    return gateway


class GatewaySource:
    """The gateway on demand, for handlers that check something first or need Stripe only
    sometimes: nothing is built, and nothing fails for want of Stripe's settings, until
    :meth:`get` is called. A refund of a cash sale never calls it; a retry calls it after
    the sale's location scope (403 comes before 503); a purchase after the clinic (404)."""

    def __init__(self, state: State) -> None:
        self._state = state

    def get(self) -> StripeGateway:
        return gateway_of(self._state)


def _provide_gateway(state: State) -> StripeGateway:
    return gateway_of(state)


def _provide_gateways(state: State) -> GatewaySource:
    return GatewaySource(state)


@dataclass(frozen=True)
class Till(Acting):
    """Someone taking money from this browser (a purchase, a front-desk sale, a
    refund, a membership): who is acting, from where, and Stripe on demand."""

    gateways: GatewaySource


def _provide_till(acting: Actor, gateways: NamedDependency[GatewaySource]) -> Till:
    return Till(
        request=acting.request, settings=acting.settings, address=acting.address,
        user=acting.user, gateways=gateways,
    )  # fmt: skip


# Handlers ask by name: ``gateway`` when Stripe is the first thing the handler needs (the
# webhook; 503 without its settings, before the handler runs), ``gateways`` otherwise,
# ``till`` for the acting user (``Actor``) with them.
GATEWAY_DEPENDENCIES = {
    "gateway": Provide(_provide_gateway, sync_to_thread=False),
    "gateways": Provide(_provide_gateways, sync_to_thread=False),
    "till": Provide(_provide_till, sync_to_thread=False),
}
Tilled = NamedDependency[Till]


async def _returned_sale(
    user: SignedIn,
    gateways: NamedDependency[GatewaySource],
    sale_id: FromPath[int],
    session_id: Annotated[str, QueryParameter(name="session_id")] = "",
) -> dict[str, Any]:
    """The sale as the purchase pages show it; back from Checkout (``session_id``), a
    paid session is recorded first if its webhook has not come yet."""
    sale = await sales.get_sale_for(user, sale_id)
    if session_id and sale["status"] in (sales.PENDING, sales.CANCELLED):
        await service.settle_return(gateways.get(), sale_id, session_id)
        sale = await sales.get_sale_for(user, sale_id)
    return sale


# The purchase pages' sale, settled first when the client is back from Checkout.
Returned = NamedDependency[dict[str, Any]]


class PurchaseController(Controller):
    """A client buying a package online."""

    path = ""
    dependencies = {**GATEWAY_DEPENDENCIES, "returned": Provide(_returned_sale)}

    @get("/buy/{package_id:int}", guards=[buyers], name="buy")
    async def summary(
        self,
        user: SignedIn,
        settings: AppSettings,
        package_id: FromPath[int],
        location: Annotated[str, QueryParameter(name="location")] = "",
    ) -> Template:
        if not location:
            # No clinic chosen (a shared or shortened link): offer the ones selling it online.
            package, offers = await listing.online_offers(package_id)
            return Template(
                "payments/buy_choose.html", context={"package": package, "offers": offers}
            )
        place = await listing.clinic_by_slug(location)
        try:
            terms = await service.member_quote(package_id, place["id"], user.id, online=True)
        except NotAvailable as exc:
            return _buy_page(settings, place, None, str(exc), 409)
        return _buy_page(settings, place, terms, "", 200)

    @post("/buy/{package_id:int}", guards=[buyers], name="buy_submit")
    async def buy(self, till: Tilled, package_id: FromPath[int]) -> Response[Any]:
        settings, user = till.settings, till.user
        values, _ = await read_form(till.request)
        place = await listing.clinic_by_slug(values.get("location", ""))
        try:
            checkout = await service.start_checkout(
                till.gateways.get(),
                client_id=user.id,
                client_email=user.email,
                package_id=package_id,
                location_id=place["id"],
                base_url=settings.base_url,
                request_key=onetime.parse(values.get(onetime.FIELD)),
            )
        except NotAvailable as exc:
            return _buy_page(settings, place, None, str(exc), 409)
        except GatewayError as exc:
            # Stripe could not start the checkout: 503 when unreachable, else 502.
            terms = await service.member_quote(package_id, place["id"], user.id, online=True)
            status = 503 if isinstance(exc, GatewayUnavailable) else 502
            return _buy_page(settings, place, terms, exc.message, status)
        # No URL: the same form sent twice at once, the first still talking to Stripe.
        target = checkout.url or f"/purchases/{checkout.sale_id}"
        return Redirect(path=target, status_code=303)

    @get("/purchases/{sale_id:int}", guards=[sale_readers], name="purchase")
    async def purchase(self, returned: Returned) -> Template:
        return Template("payments/purchase.html", context=await listing.sale_view(returned))

    @get("/appointments/checkout", guards=[buyers], name="book_and_pay")
    async def book_and_pay_form(
        self, request: Request[Any, Any, Any], user: SignedIn, settings: AppSettings
    ) -> Template:
        """A free time chosen without a session of the service: pay for one and book it."""
        values = {key: str(value) for key, value in request.query_params.items()}
        return await _book_and_pay_page(settings, user, values)

    @post("/appointments/checkout", guards=[buyers], name="book_and_pay_submit")
    async def book_and_pay(self, till: Tilled) -> Response[Any]:
        settings, user = till.settings, till.user
        values, _ = await read_form(till.request)
        try:
            slot = _chosen_slot(values)
        except Invalid as exc:
            return await _book_and_pay_page(settings, user, values, exc.errors, 422)
        try:
            checkout = await booked.book_and_pay(
                till.gateways.get(), user, location_id=slot.location_id,
                service_id=slot.service_id, start_at=slot.start, therapist_id=slot.therapist_id,
                package_id=_int_or_none(values.get("package")), base_url=settings.base_url,
                request_key=onetime.parse(values.get(onetime.FIELD)),
            )  # fmt: skip
        except Invalid as exc:
            return await _book_and_pay_page(settings, user, values, exc.errors, 422)
        except SlotTaken:
            return await _book_and_pay_page(settings, user, values, {"start": TIME_TAKEN}, 409)
        except NotAvailable as exc:
            return await _book_and_pay_page(settings, user, values, {"package": str(exc)}, 409)
        except GatewayError as exc:
            status = 503 if isinstance(exc, GatewayUnavailable) else 502
            return await _book_and_pay_page(settings, user, values, {"form": exc.message}, status)
        target = checkout.url or f"/purchases/{checkout.sale_id}"
        return Redirect(path=target, status_code=303)

    @post("/purchases/{sale_id:int}/cancel", guards=[buyers], name="purchase_cancel")
    async def cancel_purchase(
        self,
        request: Request[Any, Any, Any],
        user: SignedIn,
        gateways: NamedDependency[GatewaySource],
        sale_id: FromPath[int],
    ) -> Response[Any]:
        """ "Cancel this order" after a declined card: nothing is charged, nothing waits."""
        sale = await sales.get_sale_for(user, sale_id)
        target = reverse(request, "purchase", sale_id=sale_id)
        if sale["status"] != sales.PENDING:
            return redirect(request, target, "This order is no longer open.", "info")
        cancelled = await service.cancel_order(gateways.get(), user, sale_id)
        message = "Order cancelled; nothing was charged." if cancelled else "Already cancelled."
        return redirect(request, target, message)

    @get("/purchases/{sale_id:int}/status", guards=[sale_readers], name="purchase_status")
    async def purchase_status(self, returned: Returned) -> Template:
        """The htmx-polled part of the purchase page."""
        return Template("payments/_purchase_status.html", context=await listing.sale_view(returned))

    @get("/account/purchases", guards=[buyers], name="my_purchases")
    async def my_purchases(self, user: SignedIn) -> Template:
        return Template(
            "payments/my_purchases.html", context={"sales": await sales.client_sales(user.id)}
        )

    @get("/sales/{sale_id:int}/receipt", guards=[sale_readers], name="receipt")
    async def receipt(self, user: SignedIn, sale_id: FromPath[int]) -> Template:
        sale = await sales.get_sale_for(user, sale_id)
        if sale["status"] == sales.PENDING or sale["status"] == sales.CANCELLED:
            raise NotFoundException("There is no receipt for an unpaid purchase.")
        return Template("payments/receipt.html", context=await listing.sale_view(sale))


TIME_TAKEN = "This time was taken a moment ago; nothing was charged. Choose another time."


@dataclass(frozen=True)
class _Slot:
    location_id: int
    service_id: int
    start: datetime
    therapist_id: int | None


def _chosen_slot(values: dict[str, str]) -> _Slot:
    """The clinic, service, start (ISO with its offset) and therapist the booking page sent."""
    location_id = _int_or_none(values.get("location"))
    service_id = _int_or_none(values.get("service"))
    if location_id is None or service_id is None:
        raise Invalid({"start": "Choose a clinic, a service and a free time first."})
    try:
        start = datetime.fromisoformat(values.get("start", ""))
    except ValueError:
        start = None
    if start is None or start.tzinfo is None:
        raise Invalid({"start": "Choose one of the free times."})
    return _Slot(location_id, service_id, start, _int_or_none(values.get("therapist")))


async def _book_and_pay_page(
    settings: Settings,
    user: CurrentUser,
    values: dict[str, str],
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Template:
    """The time chosen, the single-session offers to pay for it with, and a fresh
    one-time key; the choices kept and each error beside its field."""
    errors = dict(errors or {})
    context: dict[str, Any] = {"form": values, "errors": errors, "request_key": onetime.new_key()}
    try:
        slot = _chosen_slot(values)
    except Invalid as exc:
        if not any(values.get(key) for key in ("location", "service", "start")):
            # Nothing chosen yet (a bare link): the page points to the free times.
            return Template("payments/book_and_pay.html", context=context)
        errors.update({k: v for k, v in exc.errors.items() if k not in errors})
        return Template(
            "payments/book_and_pay.html",
            context=context,
            status_code=max(status_code, 422),
            headers=_checkout_page_headers(settings),
        )
    chosen = await booked.chosen_time(user.id, slot.location_id, slot.service_id, slot.therapist_id)
    tz = ZoneInfo(str(chosen["location"]["timezone"]))
    context.update(chosen, slot=slot, tz=str(tz), day=slot.start.astimezone(tz).date())
    if not chosen["offers"] and "package" not in errors:
        errors["package"] = "This clinic sells no single session of this service online."
    return Template(
        "payments/book_and_pay.html",
        context=context,
        status_code=status_code,
        headers=_checkout_page_headers(settings),
    )


def _buy_page(
    settings: Settings,
    place: dict[str, Any],
    terms: catalog.PackageTerms | None,
    error: str,
    status_code: int,
) -> Template:
    """The buy page: the clinic's terms (None when it does not sell the package online),
    the error, and a fresh one-time key (sending this very form twice buys once)."""
    return Template(
        "payments/buy.html",
        context={
            "location": place,
            "terms": terms,
            "error": error,
            "request_key": onetime.new_key(),
        },
        status_code=status_code,
        headers=_checkout_page_headers(settings),
    )


@dataclass(frozen=True)
class _SaleForm:
    client_id: int
    client_email: str
    location_id: int
    package_id: int
    method: str
    request_key: str | None


async def _parse_sale_form(
    user: CurrentUser, values: dict[str, str]
) -> tuple[_SaleForm | None, dict[str, str]]:
    """The front-desk sale form: the client (by email), location (write access checked),
    package and payment method; None and the errors when any is missing or wrong."""
    errors: dict[str, str] = {}
    client = await listing.client_by_email(values.get("client_email", ""))
    if client is None:
        errors["client_email"] = (
            "No client account with this email. Ask the client to sign up first."
        )
    location_id = _int_or_none(values.get("location_id"))
    if location_id is None:
        errors["location_id"] = "Choose the location."
    else:
        access.ensure_write(user, location_id)
    package_id = _int_or_none(values.get("package_id"))
    if package_id is None:
        errors["package_id"] = "Choose a package."
    method = values.get("method", "")
    request_key = onetime.parse(values.get(onetime.FIELD))
    if method not in ("checkout_link", "cash", "cheque", "terminal"):
        errors["method"] = "Choose how the client pays."
    if errors:
        return None, errors
    assert client is not None and location_id is not None and package_id is not None
    form = _SaleForm(
        int(client["id"]), str(client["email"]), location_id, package_id, method, request_key
    )
    return form, errors


async def _record_sale(till: Till, form: _SaleForm) -> tuple[int, str]:
    """A checkout link for the client to pay, or a sale paid in the clinic: its id and message."""
    if form.method == "checkout_link":
        checkout = await service.start_checkout(
            till.gateways.get(),
            client_id=form.client_id,
            client_email=form.client_email,
            package_id=form.package_id,
            location_id=form.location_id,
            base_url=till.settings.base_url,
            online=False,
            sold_by=till.user.id,
            request_key=form.request_key,
        )
        return checkout.sale_id, "Checkout link created: give it to the client to pay."
    sale_id = await service.record_in_clinic_sale(
        till.user,
        client_id=form.client_id,
        package_id=form.package_id,
        location_id=form.location_id,
        method=form.method,
        request_key=form.request_key,
    )
    return sale_id, "Sale recorded; the sessions are available now."


async def _refund_gateway(gateways: GatewaySource, sale_id: int) -> StripeGateway | None:
    """Stripe's gateway when the sale has a card payment to refund; None for in-clinic
    payments, which are refunded without Stripe (and without its settings)."""
    payments = await service.payments_of(sale_id)
    if any(p["provider"] == service.STRIPE and p["status"] == service.SUCCEEDED for p in payments):
        return gateways.get()
    return None


def _refund_message(refund: dict[str, Any]) -> tuple[str, str]:
    """The flash message and its category for a refund's outcome."""
    if refund["status"] == service.SUCCEEDED:
        if refund["rule"] == refunds.FEE_RULE:
            return "Refund done.", "success"  # a fee's: no sessions
        return "Refund done; the unused sessions it covers were revoked.", "success"
    if refund["status"] == service.PENDING:
        return (
            f"Stripe could not be reached ({refund['error']}). "
            "The refund is pending; retry it below.",
            "error",
        )
    return (
        f"Stripe refused the refund: {refund['error']}. No sessions were revoked.",
        "error",
    )


def _retry_message(refund: dict[str, Any]) -> tuple[str, str]:
    """The flash message and its category for a retried refund's outcome."""
    if refund["status"] == service.SUCCEEDED:
        return "Refund done.", "success"
    if refund["status"] == service.PENDING:
        return "Stripe still cannot be reached; try again later.", "error"
    return f"Stripe refused the refund: {refund['error']}", "error"


class SaleController(Controller):
    """Staff: sales at their locations, front-desk sales, refunds."""

    path = "/sales"
    dependencies = GATEWAY_DEPENDENCIES

    @get("/", guards=[staff_readers], name="sales")
    async def index(
        self, request: Request[Any, Any, Any], user: SignedIn, located_query: LocatedParams
    ) -> Template:
        # The form sends "All my locations" as an empty value: every location
        # the user may read (portal.access), as no location at all does.
        lq = located_query
        location_id = parse_id(lq.location)
        q, status, after = lq.search, lq.status, lq.after
        query = listing.sales_query(user, q, location_id, status)
        page, locations = await db.concurrently(
            keyset_page(query, Sale.id, Sale.id, after=after, limit=50, descending=True),
            listing.visible_locations(user, active_only=False),
        )
        return Template(
            "payments/sales.html",
            context={
                "page": page,
                "locations": locations,
                "location_id": location_id,
                "status": status,
                "q": q,
                "statuses": sales.SALE_STATUS_LABELS,
                "rows": html.sale_rows(
                    page.rows,
                    sales.PAYMENT_METHODS,
                    sales.SALE_STATUS_LABELS,
                    reverser(request, "sale_detail", "sale_id"),
                ),
            },
        )

    @get("/new", guards=[sellers], name="sale_new")
    async def new(
        self,
        user: SignedIn,
        location: Annotated[str, QueryParameter(name="location")] = "",
        client_email: Annotated[str, QueryParameter(name="client_email")] = "",
    ) -> Template:
        # An empty location ("All my locations") chooses none: the form asks.
        form = {"location_id": parse_id(location) or "", "client_email": client_email.strip()}
        return Template(
            "payments/sale_form.html", context=await _front_desk_context(user, form, {})
        )

    @post("/", guards=[sellers], name="sale_create")
    async def create(self, till: Tilled) -> Response[Any]:
        request, user = till.request, till.user
        values, _ = await read_form(request)
        form, errors = await _parse_sale_form(user, values)
        if form is not None:
            try:
                sale_id, message = await _record_sale(till, form)
            except NotAvailable as exc:
                errors["package_id"] = str(exc)
            except ValidationFailed as exc:
                errors.update(exc.errors)
            except GatewayError as exc:
                errors["method"] = exc.message
            else:
                return redirect(request, f"/sales/{sale_id}", message)
        context = await _front_desk_context(user, values, errors)
        return Template("payments/sale_form.html", context=context, status_code=422)

    @get("/{sale_id:int}", guards=[staff_readers], name="sale_detail")
    async def detail(
        self,
        user: SignedIn,
        sale_id: FromPath[int],
        refund_sessions: Annotated[int | None, QueryParameter(name="sessions")] = None,
        rule: Annotated[str | None, QueryParameter(name="rule")] = None,
    ) -> Template:
        sale = await sales.get_sale_for(user, sale_id)
        return await _sale_page(sale, _RefundForm(refund_sessions, rule, ""), {})

    @post("/{sale_id:int}/refunds", guards=[sellers], name="sale_refund")
    async def refund(self, till: Tilled, sale_id: FromPath[int]) -> Response[Any]:
        request, user, gateways = till.request, till.user, till.gateways
        sale = await sales.get_sale_for(user, sale_id, write=True)
        values, _ = await read_form(request)
        form = _RefundForm(
            _int_or_none(values.get("sessions")) or 0,
            values.get("rule") or None,
            values.get("reason", ""),
            values.get("amount", ""),
        )
        request_key = onetime.parse(values.get(onetime.FIELD))
        try:
            amount = _fee_amount(sale, form)
            if values.get("confirmed") != "1":
                # First the confirm step: what is refunded, revoked, and told to the client.
                quote = await service.check_refund(
                    sale, sessions=form.sessions or 0, reason=form.reason, rule=form.rule,
                    amount_cents=amount,
                )  # fmt: skip
                return await _refund_confirm_page(sale, form, quote, request_key)
            refund = await service.refund_sale(
                await _refund_gateway(gateways, sale_id),
                user,
                sale_id,
                sessions=form.sessions or 0,
                reason=form.reason,
                rule=form.rule,
                request_key=request_key,
                amount_cents=amount,
            )
        except ValidationFailed as exc:
            return await _sale_page(sale, form, exc.errors, status_code=422)
        return redirect(request, f"/sales/{sale_id}", *_refund_message(refund))

    @post(
        "/{sale_id:int}/refunds/{refund_id:int}/retry", guards=[sellers], name="sale_refund_retry"
    )
    async def retry(
        self, till: Tilled, sale_id: FromPath[int], refund_id: FromPath[int]
    ) -> Response[Any]:
        request, user = till.request, till.user
        await sales.get_sale_for(user, sale_id, write=True)
        refund = await service.refund_of_sale(sale_id, refund_id)
        if refund["status"] != service.PENDING:
            return redirect(
                request, f"/sales/{sale_id}", "This refund is no longer pending.", "info"
            )
        refund = await service.retry_refund(till.gateways.get(), user, refund_id)
        return redirect(request, f"/sales/{sale_id}", *_retry_message(refund))


def _int_or_none(raw: str | None) -> int | None:
    try:
        return int(raw) if raw not in (None, "") else None
    except ValueError:
        return None


_METHOD_CHOICES = [
    ("checkout_link", "Card — send a Stripe Checkout link"),
    *((method, sales.PAYMENT_METHODS[method]) for method in ("cash", "cheque", "terminal")),
]


async def _front_desk_context(
    user: CurrentUser, form: dict[str, Any], errors: dict[str, str]
) -> dict[str, Any]:
    locations = await listing.visible_locations(user, active_only=True)
    if not form.get("location_id") and len(locations) == 1:
        form = {**form, "location_id": locations[0]["id"]}
    # Every rendering of the form gets a fresh one-time token (see
    # service.record_in_clinic_sale): resending this very form finds its sale.
    form = {**form, "request_key": onetime.new_key()}
    packages = await listing.active_packages()
    return {
        "form": form,
        "errors": errors,
        "locations": [(loc["id"], loc["name"]) for loc in locations],
        "packages": [(p["id"], p["name"]) for p in packages],
        "methods": _METHOD_CHOICES,
    }


@dataclass(frozen=True)
class _RefundForm:
    """What the refund form asks for: sessions (None: every unused one), rule, reason; of a
    fee (no sessions), the amount as typed instead."""

    sessions: int | None
    rule: str | None
    reason: str
    amount: str = ""


def _fee_amount(sale: dict[str, Any], form: _RefundForm) -> int | None:
    """The amount of a fee's refund in cents (None: not a fee's refund)."""
    if not sales.is_fee(sale):
        return None
    try:
        return money.parse_amount(form.amount, str(sale["currency"]))
    except ValueError as exc:
        raise Invalid({"amount": str(exc)}) from exc


async def _refund_confirm_page(
    sale: dict[str, Any], form: _RefundForm, quote: Any, request_key: str | None
) -> Template:
    """The refund's confirm step: the amount, the sessions revoked, what the client is told;
    its button sends the same form (and one-time key) again, confirmed."""
    context = await listing.sale_view(sale)
    payments = context["payments"]
    context.update(
        quote=quote,
        refund_reason=form.reason,
        refund_request_key=request_key or onetime.new_key(),
        to_card=any(p["provider"] == service.STRIPE for p in payments),
        fee_amount=money.amount_input(quote.amount_cents, str(sale["currency"])),
    )
    return Template("payments/refund_confirm.html", context=context)


async def _sale_page(
    sale: dict[str, Any], form: _RefundForm, errors: dict[str, str], status_code: int = 200
) -> Template:
    """The staff's sale page with its refund form (quoted when the sale can be refunded)."""
    context = await listing.sale_view(sale)
    counts: sales.SessionCounts = context["counts"]
    context.update(
        refund_errors=errors,
        refund_reason=form.reason,
        rule_labels=service.RULE_LABELS,
        # A fresh one-time key per rendering: sending this very form twice refunds once.
        refund_request_key=onetime.new_key(),
    )
    if sales.is_fee(sale):
        if sale["status"] == sales.ACTIVE and any(
            p["status"] == service.SUCCEEDED for p in context["payments"]
        ):
            try:
                quote = await refunds.quote_fee_refund(sale, None)
            except ValidationFailed:
                quote = None  # all of it went back, or is on its way
            context.update(
                fee_quote=quote,
                fee_amount=form.amount or money.amount_input(
                    quote.amount_cents if quote else None, str(sale["currency"])
                ),
            )  # fmt: skip
    elif (
        sale["status"] == sales.ACTIVE
        and counts.available > 0
        and any(p["status"] == service.SUCCEEDED for p in context["payments"])
    ):
        wanted = counts.available if form.sessions is None else form.sessions
        context["quote"] = await service.quote_refund(sale, wanted, form.rule)
        context["refund_sessions"] = wanted
    return Template("payments/sale.html", context=context, status_code=status_code)


def _webhooks_not_configured(
    request: Request[Any, Any, Any], exc: PaymentsNotConfigured
) -> Response[Any]:
    """Without Stripe's settings no signature can be checked: refused like a bad one."""
    metrics.record_webhook("not_configured")
    return Response({"error": "webhooks are not configured"}, status_code=400)


@post(
    "/stripe/webhook",
    opt={"public": True, "exclude_from_csrf": True},
    name="stripe_webhook",
    media_type=MediaType.JSON,
    dependencies=GATEWAY_DEPENDENCIES,
    exception_handlers={PaymentsNotConfigured: _webhooks_not_configured},
)
async def stripe_webhook(
    request: Request[Any, Any, Any], gateway: NamedDependency[StripeGateway]
) -> Response[dict[str, str]]:
    """Stripe's events. Signature checked on the raw body; 5xx makes Stripe retry.

    Every delivery is counted by outcome (``portal_stripe_webhook_events_total``):
    a run of ``invalid_signature`` is a wrong secret or someone probing, of
    ``failed`` or ``unavailable`` events Stripe will redeliver.
    """
    outcome, response = await _handle_webhook(request, gateway)
    metrics.record_webhook(outcome)
    return response


async def _handle_webhook(
    request: Request[Any, Any, Any], gateway: StripeGateway
) -> tuple[str, Response[dict[str, str]]]:
    raw = await request.body()
    try:
        event = gateway.verify_webhook(raw, request.headers.get("stripe-signature"))
    except WebhookSignatureError:
        return "invalid_signature", Response({"error": "invalid signature"}, status_code=400)
    try:
        outcome = await webhooks.handle_event(gateway, event)
    except GatewayUnavailable:
        log.warning("webhook %s: Stripe unreachable, asking for a retry", event.get("id"))
        return "unavailable", Response({"error": "temporarily unavailable"}, status_code=503)
    except Exception:
        log.exception("webhook %s (%s) failed", event.get("id"), event.get("type"))
        return "failed", Response({"error": "processing failed"}, status_code=500)
    return outcome, Response({"status": outcome}, status_code=200)


ROUTES = [PurchaseController, SaleController, stripe_webhook]
