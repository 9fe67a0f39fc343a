"""Buying a package: online, or at the front desk.

Online (and a front-desk link for the client's phone) through a Stripe
Checkout Session; cash, cheque or card terminal recorded in the clinic and
active at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from portal import access, contexts, db
from portal.audit import service as audit
from portal.auth.service import CurrentUser
from portal.catalog import service as catalog
from portal.errors import Invalid
from portal.locations.tables import Location
from portal.payments.evidence import _payment_for_sale
from portal.payments.gateway import GatewayError, StripeGateway
from portal.payments.notices import send_receipt_for
from portal.payments.states import (
    FAILED,
    IN_CLINIC,
    PENDING,
    STRIPE,
    SUCCEEDED,
    _set_payment,
    idempotency_key,
    insert_payment,
)
from portal.payments.tables import Payment
from portal.sales import service as sales
from portal.sales.tables import Sale
from portal.timeutil import utcnow


@dataclass(frozen=True)
class Checkout:
    sale_id: int
    payment_id: int
    url: str


async def member_quote(
    package_id: int, location_id: int, client_id: int, *, online: bool = False
) -> catalog.PackageTerms:
    """The package's terms now, at the member price when the client is a member there."""
    terms = await catalog.quote_package(package_id, location_id, utcnow(), online=online)
    return catalog.member_terms(terms, await contexts.member_discount_bp(client_id, location_id))


async def start_checkout(
    gateway: StripeGateway,
    *,
    client_id: int,
    client_email: str,
    package_id: int,
    location_id: int,
    base_url: str,
    online: bool = True,
    sold_by: int | None = None,
    request_key: str | None = None,
    expires_at: datetime | None = None,
    within: Callable[[int], Awaitable[None]] | None = None,
    return_path: str | None = None,
) -> Checkout:
    """Create the pending sale (the full snapshot) and its Stripe Checkout Session.

    A front-desk form's ``request_key`` makes a resubmission of the same form
    return the sale it already created. ``within`` runs with the new sale's id
    in the sale's transaction (a held time is linked to it); ``return_path``
    is where the client lands when they leave the payment page (default the
    clinic's catalog); ``expires_at`` ends the Checkout Session (Stripe's
    default 24 hours otherwise).
    """
    key = request_key
    buyer = sold_by if sold_by is not None else client_id
    if key:
        existing = await sales.sale_by_request_key(key, buyer)
        if existing is not None:
            return await _checkout_of(existing)
    terms = await member_quote(package_id, location_id, client_id, online=online)
    try:
        async with db.transaction():
            sale_id = await sales.create_pending_sale(
                client_id,
                terms,
                channel=sales.ONLINE if sold_by is None else sales.FRONT_DESK,
                payment_method="card",
                sold_by=sold_by,
                request_key=key,
            )
            if within is not None:
                await within(sale_id)
            payment_id = await insert_payment(
                sale_id,
                amount_cents=terms.total_cents,
                currency=terms.currency,
                location=terms.location_id,
                created_at=utcnow(),
                recorded_by=sold_by,
            )
    except Exception as exc:
        if key and db.is_unique_violation(exc):
            return await _checkout_of(await _replayed_sale(key, buyer))
        raise
    ids = {"sale_id": str(sale_id), "payment_id": str(payment_id), "location_id": str(location_id)}
    slug = await _location_slug(location_id)
    try:
        session = await gateway.create_checkout_session(
            amount_cents=terms.total_cents,
            currency=terms.currency,
            product_name=terms.name,
            product_description=(
                f"{terms.sessions} session{'' if terms.sessions == 1 else 's'}, "
                f"valid {terms.validity_days} days"
                + ("" if terms.tax_cents == 0 else " (tax included)")
            ),
            success_url=f"{base_url}/purchases/{sale_id}?session_id={{CHECKOUT_SESSION_ID}}",
            cancel_url=f"{base_url}{return_path or f'/book/{slug}'}".replace(
                "{sale}", str(sale_id)
            ),
            client_reference_id=str(client_id),
            metadata=ids,
            payment_intent_metadata=ids,
            idempotency_key=await idempotency_key("checkout", sale_id, Sale),
            customer_email=client_email,
            expires_at=expires_at,
        )
    except GatewayError as exc:
        async with db.transaction():
            await sales.cancel_pending(sale_id)
            await _set_payment(payment_id, PENDING, FAILED, failure_message=exc.message)
        raise
    await (
        Payment.update(
            {Payment.checkout_session_id: session.id, Payment.checkout_url: session.url or ""}
        )
        .where(Payment.id == payment_id)
        .run()
    )
    return Checkout(sale_id=sale_id, payment_id=payment_id, url=session.url or "")


async def record_in_clinic_sale(
    actor: CurrentUser,
    *,
    client_id: int,
    package_id: int,
    location_id: int,
    method: str,
    request_key: str | None = None,
) -> int:
    """A package paid at the front desk (cash, cheque, card terminal): active at once.

    ``request_key`` is the form's one-time token: the same form sent again (a
    double click, the browser retrying after a lost response) returns the
    sale it already recorded instead of selling and journalling it twice.
    """
    access.ensure_write(actor, location_id)
    if method not in IN_CLINIC_METHODS:
        raise Invalid({"method": "Choose how the client paid."})
    if request_key:
        existing = await sales.sale_by_request_key(request_key, actor.id)
        if existing is not None:
            return existing
    terms = await member_quote(package_id, location_id, client_id)
    try:
        sale_id = await _record_in_clinic_sale(
            actor, client_id, package_id, terms, method, request_key
        )
    except Exception as exc:
        if request_key and db.is_unique_violation(exc):
            return await _replayed_sale(request_key, actor.id)
        raise
    # Stored now, delivered by the outbox (the desk's page does not wait for SMTP).
    await send_receipt_for(sale_id, defer=True)
    return sale_id


async def _replayed_sale(request_key: str, sold_by: int) -> int:
    """The sale a concurrent submission of the same form created."""
    existing = await sales.sale_by_request_key(request_key, sold_by)
    if existing is None:
        raise Invalid(
            {"method": "This form was already used. Reload the page and enter the sale again."}
        )
    return existing


async def _checkout_of(sale_id: int) -> Checkout:
    payment = await _payment_for_sale(sale_id)
    if payment is None:
        raise Invalid(
            {"method": "This form was already used. Reload the page and enter the sale again."}
        )
    return Checkout(sale_id=sale_id, payment_id=int(payment["id"]), url=payment["checkout_url"])


IN_CLINIC_METHODS = ("cash", "cheque", "terminal")


async def pay_in_clinic(
    actor: CurrentUser,
    client_id: int,
    terms: catalog.PackageTerms,
    method: str,
    *,
    channel: str,
    request_key: str | None = None,
) -> int:
    """A sale of ``terms`` paid in the clinic now: the sale, its succeeded payment (no
    fee) and its activation (credits; Dr cash on hand / Cr deferred revenue + tax), in
    one transaction. A package at the desk, or a membership period paid there."""
    now = utcnow()
    async with db.transaction():
        sale_id = await sales.create_pending_sale(
            client_id,
            terms,
            channel=channel,
            payment_method=method,
            sold_by=actor.id,
            request_key=request_key,
        )
        await insert_payment(
            sale_id,
            provider=IN_CLINIC,
            method=method,
            status=SUCCEEDED,
            amount_cents=terms.total_cents,
            currency=terms.currency,
            location=terms.location_id,
            fee_cents=0,
            net_cents=terms.total_cents,
            created_at=now,
            succeeded_at=now,
            recorded_by=actor.id,
        )
        await sales.activate(sale_id, occurred_at=now, payment_method=method)
    return sale_id


@dataclass(frozen=True)
class CardEvidence:
    """What Stripe says of a card payment the portal records as it is taken."""

    payment_intent_id: str
    charge_id: str | None
    balance_transaction_id: str | None
    fee_cents: int | None  # None: the fee is not known yet (a payout fills it in)


async def record_earned_sale(
    client_id: int,
    terms: catalog.PackageTerms,
    *,
    channel: str,
    method: str,
    at: datetime,
    request_key: str,
    recorded_by: int | None = None,
    card: CardEvidence | None = None,
) -> int | None:
    """A sale earned when charged (a fee: no sessions, nothing deferred), already paid:
    the sale, active at ``at``, and its succeeded payment (in the clinic by ``method``, or
    the card payment ``card`` describes), in the caller's transaction. Once per
    ``request_key`` (the sale's unique key): None when that sale exists already. The
    caller journals it, naming the sale (its revenue is not the deferred kind
    :func:`sales.activate` posts)."""
    if await Sale.exists().where(Sale.request_key == request_key).run():
        return None
    sale_id = await sales.create_pending_sale(
        client_id, terms, channel=channel, payment_method=method,
        sold_by=recorded_by, request_key=request_key,
    )  # fmt: skip
    await sales.move_sale(
        sale_id, sales.PENDING, sales.ACTIVE, activated_at=at, valid_until=at,
        payment_method=method,
    )  # fmt: skip
    fee = card.fee_cents if card is not None else 0
    await insert_payment(
        sale_id,
        provider=STRIPE if card is not None else IN_CLINIC,
        method=method,
        status=SUCCEEDED,
        amount_cents=terms.total_cents,
        currency=terms.currency,
        location=terms.location_id,
        fee_cents=fee,
        net_cents=None if fee is None else terms.total_cents - fee,
        payment_intent_id=card.payment_intent_id if card is not None else None,
        charge_id=card.charge_id if card is not None else None,
        balance_transaction_id=card.balance_transaction_id if card is not None else None,
        created_at=at,
        succeeded_at=at,
        recorded_by=recorded_by,
    )
    return sale_id


async def _record_in_clinic_sale(
    actor: CurrentUser,
    client_id: int,
    package_id: int,
    terms: catalog.PackageTerms,
    method: str,
    request_key: str | None,
) -> int:
    async with db.transaction():
        sale_id = await pay_in_clinic(
            actor, client_id, terms, method, channel=sales.FRONT_DESK, request_key=request_key
        )
        await audit.record(
            actor,
            "sell",
            "sale",
            sale_id,
            after={"package_id": package_id, "client_id": client_id, "method": method,
                   "total_cents": terms.total_cents, "currency": terms.currency},
        )  # fmt: skip
    return sale_id


async def _location_slug(location_id: int) -> str:
    row = await Location.select(Location.slug).where(Location.id == location_id).first().run()
    return str(row["slug"]) if row else ""
