"""What the sales and purchase pages read: a clinic by its slug, the clinics selling a
package online, a sale with everything shown beside it, the sales a user may list.
No HTTP here: the controllers render what these return.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from portal import access
from portal.auth.tables import User
from portal.bookings import holds
from portal.catalog import service as catalog
from portal.catalog.tables import Package
from portal.errors import NotFound
from portal.fields import parse_id
from portal.identity import CLIENT, CurrentUser
from portal.locations.service import active_by_slug
from portal.locations.tables import Location
from portal.payments.tables import Dispute, Payment, Refund
from portal.sales import service as sales
from portal.sales.tables import Sale
from portal.timeutil import utcnow


async def payments_of(sale_id: int) -> list[dict[str, Any]]:
    return await Payment.select().where(Payment.sale == sale_id).order_by(Payment.id).run()


async def refunds_of(sale_id: int) -> list[dict[str, Any]]:
    return await Refund.select().where(Refund.sale == sale_id).order_by(Refund.id).run()


async def disputes_of(sale_id: int) -> list[dict[str, Any]]:
    return await Dispute.select().where(Dispute.sale == sale_id).order_by(Dispute.id).run()


async def open_dispute(sale_id: int) -> bool:
    """Whether the sale has a dispute without an outcome (it keeps the sale frozen)."""
    return bool(
        await Dispute.exists().where((Dispute.sale == sale_id) & (Dispute.outcome == "")).run()
    )


async def clinic_by_slug(slug: str) -> dict[str, Any]:
    row = await active_by_slug(slug)
    if row is None:
        raise NotFound("No such clinic.")
    return row


async def online_offers(package_id: int) -> tuple[dict[str, Any], list[catalog.Offer]]:
    """The package and its terms at every active clinic that sells it online."""
    package = await catalog.get_package(package_id)
    locations = (
        await Location.select()
        .where(Location.active == True)  # noqa: E712
        .order_by(Location.name)
        .run()
    )
    versions = await catalog.package_versions([package_id], [loc["id"] for loc in locations])
    units = await catalog.service_versions([package["service"]])
    now = utcnow()
    offers = [
        catalog.build_offer(package, loc, versions[package_id], units[package["service"]], now)
        for loc in locations
    ]
    return package, [offer for offer in offers if offer.online]


async def sale_view(sale: dict[str, Any]) -> dict[str, Any]:
    """Everything a sale's pages show: its clinic, client, seller, sessions and their
    counts, payments, refunds and disputes; of a fee (``sales.is_fee``: no sessions to
    count), ``fee`` and the membership it was taken for (``fee_membership``, if named)."""
    location = await Location.select().where(Location.id == sale["location"]).first().run()
    client = (
        await User.select(User.id, User.email, User.name)
        .where(User.id == sale["client"])
        .first()
        .run()
    )
    rows = await sales.sessions_of(int(sale["id"]))
    seller = (
        await User.select(User.name, User.email).where(User.id == sale["sold_by"]).first().run()
        if sale["sold_by"]
        else None
    )
    return {
        "sale": sale,
        "location": location,
        "client": client,
        "seller": seller,
        "sessions": rows,
        "counts": sales.count_states(rows, int(sale["sessions_total"])),
        "fee": sales.is_fee(sale),
        "fee_membership": sales.fee_membership(sale),
        "payments": await payments_of(int(sale["id"])),
        "refunds": await refunds_of(int(sale["id"])),
        "disputes": await disputes_of(int(sale["id"])),
        "methods": sales.PAYMENT_METHODS,
        "hold": await holds.hold_of_sale(int(sale["id"])),
    }


@cache
def _listed_columns() -> tuple[Any, ...]:
    """What the sales list shows (``payments.html.sale_rows``), not the whole sale: its
    terms snapshot is the largest column, and every column costs each page. Built once:
    a column reached through a foreign key and given an alias is a deep copy, and
    queries read their columns, never change them."""
    return (
        Sale.id,
        Sale.created_at,
        Sale.item_name,
        Sale.total_cents,
        Sale.currency,
        Sale.payment_method,
        Sale.status,
        Sale.frozen,
        Sale.location.name.as_alias("location_name"),
        Sale.location.timezone.as_alias("location_timezone"),
        Sale.client.email.as_alias("client_email"),
        Sale.client.name.as_alias("client_name"),
    )


def sales_query(user: CurrentUser, q: str, location_id: int | None, status: str) -> Any:
    """The sales the user may see, filtered by a sale number or client name or email
    (any letter case), location, status.

    The name or email is matched through the join to the client that the list
    shows anyway; a substring can use no index, so the list still walks sales
    newest first (keyset on ``id``) and the join filters them.
    """
    query = Sale.select(*_listed_columns())
    if q:
        number = q.lstrip("#").lstrip("0")
        sale_number = parse_id(number)
        if sale_number is not None:
            query = query.where(Sale.id == sale_number)
        else:
            pattern = f"%{q}%"
            query = query.where(Sale.client.name.ilike(pattern) | Sale.client.email.ilike(pattern))
    visible = access.visible_locations(user)
    if visible is not None:
        query = query.where(Sale.location.is_in(list(visible) or [-1]))
    if location_id is not None:
        access.ensure_read(user, location_id)
        query = query.where(Sale.location == location_id)
    if status:
        query = query.where(Sale.status == status)
    return query


async def visible_locations(user: CurrentUser, *, active_only: bool) -> list[dict[str, Any]]:
    """The locations the user may see (``portal.access``), by name: id and name."""
    query = Location.select(Location.id, Location.name).order_by(Location.name)
    if active_only:
        query = query.where(Location.active == True)  # noqa: E712
    visible = access.visible_locations(user)
    if visible is not None:
        query = query.where(Location.id.is_in(list(visible) or [-1]))
    rows: list[dict[str, Any]] = await query.run()
    return rows


async def client_by_email(email: str) -> dict[str, Any] | None:
    """The client account with ``email`` (any case, spaces trimmed): id and email; None
    when there is none, or the address belongs to staff."""
    row: dict[str, Any] | None = (
        await User.select(User.id, User.email)
        .where((User.email == email.strip().lower()) & (User.role == CLIENT))
        .first()
        .run()
    )
    return row


async def active_packages() -> list[dict[str, Any]]:
    """The packages on sale, by name: id and name."""
    rows: list[dict[str, Any]] = (
        await Package.select(Package.id, Package.name)
        .where(Package.active == True)  # noqa: E712
        .order_by(Package.name)
        .run()
    )
    return rows
