"""Book and pay in one flow: a client without a session of a service picks a
free time and pays for a single session (or the clinic's introductory offer).

The time is held first (``bookings.holds``: an appointment ``held`` that the
database's no-double-booking rules refuse to everyone else) for
:data:`HOLD_FOR`, the pending sale is created and linked to it in one
transaction, and the client goes to Stripe Checkout, whose session ends
before the hold does. Stripe's payment books the held time with the new
credit in the activation's transaction (``evidence.record_stripe_payment``),
whichever of the webhook and the return page brings it first; an abandoned
order lets the time go (``abandon.cancel_unpaid``). A payment that finds the
time gone leaves the paid session in the client's account. No HTTP here.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from portal.auth.service import CLIENT, CurrentUser
from portal.bookings import booking, holds
from portal.bookings.states import CANCELLED, leave_held
from portal.bookings.tables import Appointment
from portal.catalog import service as catalog
from portal.catalog.tables import Package
from portal.errors import Forbidden, Invalid, NotFound
from portal.locations.service import get_location
from portal.payments.checkout import Checkout, _checkout_of, member_quote, start_checkout
from portal.payments.gateway import GatewayError, StripeGateway
from portal.sales import service as sales
from portal.staff.tables import Therapist
from portal.timeutil import utcnow

# Stripe's shortest Checkout Session lasts 30 minutes; the hold outlasts it a little,
# so a payment made at the last moment still finds its time.
CHECKOUT_FOR = timedelta(minutes=31)
HOLD_FOR = CHECKOUT_FOR + timedelta(minutes=4)
CHOOSE_OFFER = "Choose one of the offers for this service."


async def single_offers(
    client_id: int, location_id: int, service_id: int
) -> list[catalog.PackageTerms]:
    """What a client may pay for one session of the service with, at the clinic: its
    one-session packages sold online there, the introductory offer first (unless the
    client has had theirs), at the member price where they are a member."""
    packages = (
        await Package.select(Package.id, Package.introductory)
        .where(
            (Package.service == service_id)
            & (Package.sessions == 1)
            & (Package.active == True)  # noqa: E712
            & (Package.sellable_online == True)  # noqa: E712
        )
        .order_by(Package.introductory, ascending=False)
        .order_by(Package.name)
        .run()
    )
    had_intro = await sales.had_introductory(client_id)
    offers = []
    for package in packages:
        if package["introductory"] and had_intro:
            continue
        try:
            quote = await member_quote(int(package["id"]), location_id, client_id, online=True)
            offers.append(quote)
        except catalog.NotAvailable:
            continue  # no price at this clinic
    return offers


async def _introductory(package_id: int) -> bool:
    row = await Package.select(Package.introductory).where(Package.id == package_id).first().run()
    return bool(row and row["introductory"])


async def book_and_pay(
    gateway: StripeGateway,
    actor: CurrentUser,
    *,
    location_id: int,
    service_id: int,
    start_at: datetime,
    therapist_id: int | None,
    package_id: int | None,
    base_url: str,
    request_key: str | None = None,
) -> Checkout:
    """Hold the time, create the pending sale for it and its Checkout Session.

    Raises ``Invalid`` (``package``, or the booking's own fields), ``SlotTaken``,
    ``NotAvailable`` (the introductory offer already had) or ``GatewayError``;
    nothing stays held or pending after a refusal. The same form sent again
    (``request_key``) answers the order it already started.
    """
    if actor.role != CLIENT:
        raise Forbidden("Clients book and pay for themselves.")
    if request_key:
        existing = await sales.sale_by_request_key(request_key, actor.id)
        if existing is not None:
            return await _checkout_of(existing)
    offers = await single_offers(actor.id, location_id, service_id)
    if package_id is None or all(offer.package_id != package_id for offer in offers):
        if package_id is not None and await _introductory(package_id):
            raise catalog.NotAvailable(sales.INTRO_TAKEN)  # had it, or buying it now
        raise Invalid({"package": CHOOSE_OFFER})
    now = utcnow().replace(microsecond=0)
    expires_at = now + CHECKOUT_FOR
    try:
        hold_id = await booking.book(
            actor, client_id=actor.id, location_id=location_id, service_id=service_id,
            start_at=start_at, therapist_id=therapist_id, hold_until=now + HOLD_FOR,
        )  # fmt: skip
    except booking.SlotTaken:
        if request_key and (again := await sales.sale_by_request_key(request_key, actor.id)):
            return await _checkout_of(again)  # the same form, sent twice at once, holds it
        raise
    linked: list[int] = []

    async def link(sale_id: int) -> None:
        await holds.link_hold(hold_id, sale_id)
        linked.append(sale_id)

    try:
        checkout = await start_checkout(
            gateway, client_id=actor.id, client_email=actor.email, package_id=package_id,
            location_id=location_id, base_url=base_url, request_key=request_key,
            expires_at=expires_at, within=link, return_path="/purchases/{sale}",
        )  # fmt: skip
    except GatewayError:
        # The sale was cancelled (``start_checkout``); its time is let go with it.
        await leave_held(Appointment.id == hold_id, CANCELLED, cancelled_at=utcnow())
        raise
    except BaseException:
        await holds.discard_hold(hold_id)
        raise
    if not linked:
        await holds.discard_hold(hold_id)  # a copy of this form had started the order
    return checkout


async def chosen_time(
    client_id: int, location_id: int, service_id: int, therapist_id: int | None
) -> dict[str, Any]:
    """What the book-and-pay page shows of the time chosen: the clinic (active), the
    service, the therapist when one was chosen, and the offers. ``NotFound`` for an
    unknown or inactive clinic or service."""
    location = await get_location(location_id)
    service = await catalog.get_service(service_id)
    if not location["active"] or not service["active"]:
        raise NotFound("This clinic or service is not taking bookings.")
    therapist = (
        await Therapist.select(Therapist.name).where(Therapist.id == therapist_id).first().run()
        if therapist_id is not None
        else None
    )
    return {
        "location": location,
        "service": service,
        "therapist_name": therapist["name"] if therapist else "",
        "offers": await single_offers(client_id, location_id, service_id),
    }
