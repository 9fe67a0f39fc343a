"""What the client is emailed about their money: a receipt when a purchase is paid, a
notice when a refund is done. No HTTP here.

Called after the change has committed (the webhook that activated a card sale,
the desk's sale, the refund), never inside its transaction. Each message has
its outbox deduplication key (``receipt:<number>``, ``refund:<id>``), so a
webhook replayed or delivered twice at once, a form resent, or a caller and a
retry after a crash send it once. A message that cannot be built is logged;
it never undoes the payment.
"""

from __future__ import annotations

import logging
from typing import Any

from portal.auth.tables import User
from portal.email import messages
from portal.locations.tables import Location
from portal.payments.states import IN_CLINIC, SUCCEEDED
from portal.payments.tables import Payment, Refund
from portal.sales import service as sales
from portal.settings import Settings

log = logging.getLogger("portal.payments")


def receipt_number(sale_id: int) -> str:
    """The number a purchase's receipt carries (the same on every page and email)."""
    return f"{sale_id:06d}"


async def _people(sale: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    client = await User.select(User.email, User.name).where(User.id == sale["client"]).first().run()
    place = (
        await Location.select(Location.name, Location.timezone)
        .where(Location.id == sale["location"])
        .first()
        .run()
    )
    assert client is not None and place is not None
    return client, place


async def send_receipt_for(
    sale_id: int, *, settings: Settings | None = None, defer: bool = False
) -> int | None:
    """The receipt of a paid purchase, once; None when the sale is not paid (or on error)."""
    try:
        sale = await sales.get_sale(sale_id)
        if sale["status"] not in (sales.ACTIVE, sales.REFUNDED) or sale["activated_at"] is None:
            return None
        client, place = await _people(sale)
        return await messages.send_receipt(
            str(client["email"]),
            name=str(client["name"] or client["email"]),
            receipt_number=receipt_number(sale_id),
            location_name=str(place["name"]),
            paid_at=sale["activated_at"],
            timezone=str(place["timezone"]),
            currency=str(sale["currency"]),
            lines=[messages.ReceiptLine(str(sale["item_name"]), int(sale["net_cents"]))],
            tax_cents=int(sale["tax_cents"]),
            total_cents=int(sale["total_cents"]),
            payment_method=sales.PAYMENT_METHODS.get(str(sale["payment_method"]), ""),
            settings=settings,
            defer=defer,
        )
    except Exception:
        log.exception("Could not send the receipt of sale %s", sale_id)
        return None


async def send_refund_notice_for(
    refund_id: int, *, settings: Settings | None = None, defer: bool = False
) -> int | None:
    """The client's notice of a refund that is done, once; None otherwise (or on error)."""
    try:
        refund = await Refund.select().where(Refund.id == refund_id).first().run()
        if refund is None or refund["status"] != SUCCEEDED:
            return None
        sale = await sales.get_sale(int(refund["sale"]))
        client, place = await _people(sale)
        payment = (
            await Payment.select(Payment.provider)
            .where(Payment.id == refund["payment"])
            .first()
            .run()
        )
        return await messages.send_refund_notice(
            str(client["email"]),
            name=str(client["name"] or client["email"]),
            refund_id=refund_id,
            receipt_number=receipt_number(int(sale["id"])),
            item_name=str(sale["item_name"]),
            location_name=str(place["name"]),
            refunded_at=refund["completed_at"] or refund["created_at"],
            timezone=str(place["timezone"]),
            currency=str(refund["currency"]),
            amount_cents=int(refund["amount_cents"]),
            sessions_revoked=int(refund["sessions_revoked"]),
            to_card=payment is not None and payment["provider"] != IN_CLINIC,
            settings=settings,
            defer=defer,
        )
    except Exception:
        log.exception("Could not send the notice of refund %s", refund_id)
        return None
