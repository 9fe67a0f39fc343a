"""Demo payments: two packages bought online by card and the Stripe payout that paid them out.

The payout spans Portland and Austin, so the "Fees and payouts" report shows
its contents, and each clinic's manager sees their own share. The Stripe ids
are made up (the local stand-in starts empty at every ``make run``), so these
two sales cannot be refunded through Stripe.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from portal.catalog import service as catalog
from portal.catalog.tables import Package
from portal.demo import DemoIds
from portal.payments import payouts
from portal.payments import service as payments
from portal.payments.gateway import (
    StripeBalanceTransaction,
    StripeCharge,
    StripePayout,
    StripePayoutItem,
)
from portal.payments.tables import Payout
from portal.sales import service as sales
from portal.timeutil import utcnow

PACKAGE = "Neuromuscular series — 5 × 60 min"
BUYERS = [("jordan.lee@demo.clinic", "portland-pearl"), ("priya.shah@demo.clinic", "austin-soco")]
PAYOUT_ID = "po_demo_1Qx7Portland"


def card_fee(amount_cents: int) -> int:
    """Stripe's standard card fee for the demo charges: 2.9 % (rounded half-up) + 30 cents."""
    if amount_cents <= 0:
        return 0
    percent = (Decimal(amount_cents) * Decimal("0.029")).quantize(Decimal(1), ROUND_HALF_UP)
    return int(percent) + 30


async def pay_by_card(
    sale_id: int, total_cents: int, currency: str, suffix: str, at: datetime
) -> StripeCharge:
    """Record the sale paid by a made-up card charge (``ch_{suffix}``), Stripe's fee included."""
    fee = card_fee(total_cents)
    txn = StripeBalanceTransaction(
        id=f"txn_{suffix}", amount=total_cents, fee=fee, net=total_cents - fee,
        currency=currency.lower(), status="available", available_on=at,
    )  # fmt: skip
    charge = StripeCharge(
        id=f"ch_{suffix}", amount=total_cents, amount_refunded=0,
        currency=currency.lower(), status="succeeded", paid=True, refunded=False,
        disputed=False, payment_intent_id=f"pi_{suffix}", balance_transaction_id=txn.id,
        balance_transaction=txn, created=at, metadata={"sale_id": str(sale_id)},
    )  # fmt: skip
    await payments.record_stripe_payment(
        sale_id, payment_intent_id=f"pi_{suffix}", amount_cents=total_cents, charge=charge,
        occurred_at=at,
    )  # fmt: skip
    return charge


async def pay_out(payout_id: str, charges: list[tuple[StripeCharge, str]], at: datetime) -> None:
    """Record Stripe's payout ``payout_id`` of made-up ``charges`` (each with the item it
    paid for), created at ``at`` and arrived half a day later."""
    items: list[StripePayoutItem] = []
    for charge, description in charges:
        txn = charge.balance_transaction
        assert txn is not None
        items.append(
            StripePayoutItem(
                id=txn.id, type="charge", amount=txn.amount, fee=txn.fee, net=txn.net,
                currency=txn.currency, created=at, description=description,
                source_id=charge.id, charge=charge,
            )
        )  # fmt: skip
    if not items:
        return
    payout = StripePayout(
        id=payout_id,
        amount=sum(item.net for item in items),
        currency=items[0].currency,
        status=payouts.PAID,
        arrival_date=(at - timedelta(hours=12)).date(),
        created=at,
        automatic=True,
    )
    await payouts.record_payout(payout, items)


async def load_demo(ids: DemoIds) -> None:
    if await Payout.exists().where(Payout.stripe_payout_id == PAYOUT_ID).run():
        return
    package = await Package.select(Package.id).where(Package.name == PACKAGE).first().run()
    if package is None:
        return
    now = utcnow()
    charges: list[tuple[StripeCharge, str]] = []
    for n, (email, slug) in enumerate(BUYERS, start=1):
        client_id, location_id = ids.users.get(email), ids.locations.get(slug)
        if client_id is None or location_id is None:
            continue
        terms = await catalog.quote_package(int(package["id"]), location_id, now, online=True)
        sale_id = await sales.create_pending_sale(
            client_id, terms, channel=sales.ONLINE, payment_method="card"
        )
        charge = await pay_by_card(sale_id, terms.total_cents, terms.currency, f"demo_{n}", now)
        charges.append((charge, terms.name))
    await pay_out(PAYOUT_ID, charges, now)
