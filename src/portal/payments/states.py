"""The payment and refund states, shared by every payment module.

The state machines as data (docs/architecture.md, "Money transitions") and the
compare-and-set moves that apply them (``_set_payment``, ``_move_refund``), the
providers, the refund rules and the idempotency keys sent to Stripe.
"""

from __future__ import annotations

from typing import Any

from portal.locations import service as location_service
from portal.payments import totals
from portal.payments.tables import Payment, Refund
from portal.sales import service as sales
from portal.sales.tables import Sale

PENDING = "pending"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"

# The payment and refund state machines, declared once (docs/architecture.md,
# "Money transitions"); ``_set_payment`` and ``_move_refund`` refuse other moves.
PAYMENT_MOVES: dict[str, frozenset[str]] = {
    PENDING: frozenset({SUCCEEDED, FAILED, CANCELLED}),
    # Money that arrives after the checkout failed or was abandoned still counts.
    FAILED: frozenset({SUCCEEDED}),
    CANCELLED: frozenset({SUCCEEDED}),
    SUCCEEDED: frozenset(),
}
REFUND_MOVES: dict[str, frozenset[str]] = {
    PENDING: frozenset({SUCCEEDED, FAILED}),
    SUCCEEDED: frozenset(),
    FAILED: frozenset(),
}

STRIPE = "stripe"
IN_CLINIC = "in_clinic"

RULE_LIST_PRICE = "list_price"
RULE_PRO_RATA = "pro_rata"
REFUND_RULES = location_service.REFUND_RULES
# How the refund form names the rules (see compute_refund for the arithmetic).
RULE_LABELS = {
    RULE_LIST_PRICE: "Used sessions at the single-session price",
    RULE_PRO_RATA: "Pro rata (paid share per session)",
}


async def idempotency_key(kind: str, row_id: int, table: type[Sale] | type[Refund]) -> str:
    """``kind:id:created`` — derived from our row, stable across retries of it.

    The creation time makes the key unique even when ids repeat (a database
    restored or recreated against the same Stripe account).
    """
    row = await table.select(table.created_at).where(table.id == row_id).first().run()
    stamp = int(row["created_at"].timestamp() * 1_000_000) if row else 0
    return f"{kind}:{row_id}:{stamp}"


async def insert_payment(
    sale_id: int,
    *,
    provider: str = STRIPE,
    method: str = "card",
    status: str = PENDING,
    **fields: Any,
) -> int:
    """Insert one payment of ``sale_id`` (by default a pending Stripe card payment); its id.

    The payment carries its sale's location (the payments report reads one
    clinic's payments by it): the caller passes it where it has the sale's terms,
    otherwise it is read from the sale. It is counted in the daily totals at once
    (``totals.added``): under succeeded when it is inserted already succeeded (at
    the front desk), else under its status until ``_set_payment`` moves it.
    """
    if "location" not in fields:
        sale = await Sale.select(Sale.location).where(Sale.id == sale_id).first().run()
        fields["location"] = sale["location"] if sale else None
    payment = Payment(sale=sale_id, provider=provider, method=method, status=status, **fields)
    rows = await Payment.insert(payment).returning(Payment.id).run()
    payment_id = int(rows[0]["id"])
    await totals.added(payment=payment_id)
    return payment_id


async def _set_payment(payment_id: int, expected: str, new: str, **values: Any) -> bool:
    """Compare-and-set a payment ``expected`` → ``new`` (an allowed move)."""
    sales.check_move(PAYMENT_MOVES, expected, new, "payment")
    async with totals.tracked(payment=payment_id):
        return bool(await sales.compare_and_set(Payment.status, payment_id, expected, new, values))


async def _move_refund(refund_id: int, old: str, new: str, **values: Any) -> list[dict[str, Any]]:
    """Compare-and-set a refund ``old`` → ``new`` (an allowed move); the rows changed."""
    sales.check_move(REFUND_MOVES, old, new, "refund")
    async with totals.tracked(refund=refund_id):
        return await sales.compare_and_set(
            Refund.status, refund_id, old, new, values, Refund.id, Refund.amount_cents
        )
