"""Test data for the payments tests: a clinic that sells a package, a client and its manager."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from portal.auth.service import CurrentUser
from portal.catalog.tables import Package, PackagePrice, Service, ServicePrice
from portal.payments import service as payments
from portal.payments.gateway import StripeGateway
from portal.payments.tables import Payment
from portal.timeutil import utcnow
from tests import factories
from tests.stripe_standin import StandIn

# The shop's package: 5 sessions at 450.00 plus 8.25 % tax = 487.13; list price 100.00.
PRICE = 45000
TOTAL = 48713
SESSION_VALUE = 9000  # net value of one session (450.00 / 5)


@dataclass
class Shop:
    location_id: int
    package_id: int
    client: factories.Account
    manager: factories.Account
    app: Any
    gateway: StripeGateway

    @property
    def manager_user(self) -> CurrentUser:
        return as_user(self.manager, frozenset({self.location_id}))


async def make_package(
    *, price: int = PRICE, unit: int = 10000, sessions: int = 5, name: str | None = None
) -> int:
    now = utcnow()
    service = (
        await Service.insert(
            Service(name=f"NMT 60 {price}-{sessions}", duration_minutes=60, created_at=now)
        )
        .returning(Service.id)
        .run()
    )[0]["id"]
    await ServicePrice.insert(
        ServicePrice(service=service, amount_cents=unit, currency="USD", effective_from=now)
    ).run()
    package = (
        await Package.insert(
            Package(
                name=name or f"{sessions} × 60 min neuromuscular",
                service=service,
                sessions=sessions,
                validity_days=180,
                sellable_online=True,
                active=True,
                created_at=now,
            )
        )
        .returning(Package.id)
        .run()
    )[0]["id"]
    await PackagePrice.insert(
        PackagePrice(package=package, amount_cents=price, currency="USD", effective_from=now)
    ).run()
    return int(package)


def as_user(account: factories.Account, locations: frozenset[int] = frozenset()) -> CurrentUser:
    return CurrentUser(
        id=account.id, email=account.email, name="", role=account.role, location_ids=locations
    )


async def start_purchase(shop: Shop) -> tuple[int, dict[str, Any]]:
    """A pending online sale and its payment row (with the Checkout Session id)."""
    checkout = await payments.start_checkout(
        shop.gateway,
        client_id=shop.client.id,
        client_email=shop.client.email,
        package_id=shop.package_id,
        location_id=shop.location_id,
        base_url="http://testserver",
    )
    payment = await Payment.select().where(Payment.id == checkout.payment_id).first().run()
    assert payment is not None and payment["checkout_session_id"] and checkout.url
    return checkout.sale_id, payment


async def pay(shop: Shop, standin: StandIn) -> tuple[int, dict[str, Any]]:
    """Buy the shop's package and pay on the hosted page; webhooks go wherever they are sent."""
    sale_id, payment = await start_purchase(shop)
    completed = await standin.complete_session(payment["checkout_session_id"])
    await standin.drain()
    return sale_id, completed
