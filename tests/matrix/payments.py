from __future__ import annotations

from portal.auth.service import CLIENT
from portal.payments.tables import Payment, Refund
from portal.sales.tables import Sale
from portal.timeutil import utcnow
from tests import factories
from tests.matrix import Param, World


async def _sale(client_id: int, location_id: int) -> tuple[int, int]:
    now = utcnow()
    sale = (
        await Sale.insert(
            Sale(
                client=client_id, location=location_id, package_id=1, price_version_id=1,
                service_id=1, service_name="Massage", item_name="Matrix package",
                sessions_total=3, validity_days=90, currency="USD", price_cents=30000,
                net_cents=30000, tax_cents=0, total_cents=30000, terms="{}", status="active",
                channel="front_desk", payment_method="cash", created_at=now, activated_at=now,
                valid_until=now,
            )
        ).returning(Sale.id).run()
    )[0]["id"]  # fmt: skip
    payment = (
        await Payment.insert(
            Payment(sale=sale, location=location_id, provider="in_clinic", method="cash", status="succeeded",
                    amount_cents=30000, currency="USD", created_at=now, succeeded_at=now)
        ).returning(Payment.id).run()
    )[0]["id"]  # fmt: skip
    refund = (
        await Refund.insert(
            Refund(sale=sale, payment=payment, amount_cents=100, currency="USD",
                   status="failed", created_at=now)
        ).returning(Refund.id).run()
    )[0]["id"]  # fmt: skip
    return sale, refund


async def provide(world: World) -> dict[str, Param]:
    # "Own" sale: the world's client bought it at the own location; "other":
    # another client at the other location.
    stranger = await factories.make_user(CLIENT)
    own_sale, own_refund = await _sale(world.accounts[CLIENT].id, world.own_location)
    other_sale, other_refund = await _sale(stranger.id, world.other_location)
    return {
        "sale_id": Param(own=own_sale, other=other_sale),
        "refund_id": Param(own=own_refund, other=other_refund),
    }
