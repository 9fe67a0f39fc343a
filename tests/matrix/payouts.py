from __future__ import annotations

from datetime import date

from portal.payments.tables import Payout, PayoutLine
from portal.timeutil import utcnow
from tests.matrix import Param, World


async def _payout(location_id: int, stripe_id: str) -> int:
    """A paid payout whose one line is money of ``location_id``."""
    now = utcnow()
    payout = (
        await Payout.insert(
            Payout(stripe_payout_id=stripe_id, amount_cents=970, currency="USD", status="paid",
                   arrival_date=date(2026, 3, 2), automatic=True, itemized=True,
                   stripe_created=now, imported_at=now, updated_at=now)
        ).returning(Payout.id).run()
    )[0]["id"]  # fmt: skip
    await PayoutLine.insert(
        PayoutLine(payout=payout, balance_transaction_id=f"txn_{stripe_id}", type="charge",
                   gross_cents=1000, fee_cents=30, net_cents=970, currency="USD",
                   location=location_id, stripe_created=now)
    ).run()  # fmt: skip
    return int(payout)


async def provide(world: World) -> dict[str, Param]:
    return {
        "payout_id": Param(
            own=await _payout(world.own_location, "po_matrix_own"),
            other=await _payout(world.other_location, "po_matrix_other"),
        )
    }
