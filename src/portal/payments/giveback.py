"""What money going back to a client is worth: refund quotes, the tax it returns and its
journal lines. No HTTP here.

Shared by staff refunds, refunds made in Stripe's dashboard (``refunds``) and lost
chargebacks (``disputes``). The rules that decide amounts are pure functions
(:func:`compute_refund`, :func:`cumulative_tax`, :func:`sessions_covered`) so they are
property-tested; the rest reads what was given back before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from piccolo.query.functions.aggregate import Sum

from portal.errors import Invalid
from portal.ledger import service as ledger
from portal.ledger.tables import JournalLine
from portal.locations.tables import Location
from portal.money import format_money, round_half_up
from portal.payments.states import PENDING, REFUND_RULES, RULE_LIST_PRICE, SUCCEEDED
from portal.payments.tables import Dispute, Payment, Refund
from portal.sales import service as sales
from portal.sales.tables import SaleSession


@dataclass(frozen=True)
class RefundQuote:
    sessions: int  # unused sessions the refund revokes
    amount_cents: int
    refundable_cents: int  # still refundable on the payment
    rule: str
    explanation: str


async def refunded_so_far(payment_id: int) -> int:
    """Money that went back, or is on its way back, on a payment.

    Completed and pending refunds (a pending one may still go through), and
    disputed amounts not won back (Stripe withdrew them when the dispute opened).
    """
    rows = (
        await Refund.select(Refund.amount_cents)
        .where((Refund.payment == payment_id) & (Refund.status.is_in([PENDING, SUCCEEDED])))
        .run()
    )
    disputed = (
        await Dispute.select(Dispute.amount_cents)
        .where((Dispute.payment == payment_id) & (Dispute.outcome != "won"))
        .run()
    )
    return sum(int(r["amount_cents"]) for r in rows) + sum(int(d["amount_cents"]) for d in disputed)


async def paid_payment(sale_id: int, field: str = "sessions") -> dict[str, Any]:
    payment = (
        await Payment.select()
        .where((Payment.sale == sale_id) & (Payment.status == SUCCEEDED))
        .order_by(Payment.id)
        .first()
        .run()
    )
    if payment is None:
        raise Invalid({field: "This sale has no completed payment to refund."})
    return payment


def compute_refund(
    *,
    rule: str,
    paid_cents: int,
    already_refunded_cents: int,
    sessions_total: int,
    revoked_before: int,
    unused_totals: list[int],
    refund_sessions: int,
    unit_list_price_gross: int | None,
    fmt: Callable[[int], str] = str,
) -> tuple[int, str]:
    """The refund for revoking ``refund_sessions`` of the unused sessions, and why.

    ``unused_totals`` are the client-paid shares of the available sessions,
    latest first (the order they are revoked in). Sessions neither unused nor
    revoked before count as used (given, booked, forfeited).

    * pro rata: the paid share of the sessions refunded;
    * list price: what was paid, minus what was refunded before, minus the
      used sessions at the single-session list price, minus the paid share of
      the unused sessions the client keeps — never below zero, never above
      the pro-rata amount. Valuing kept sessions at their paid share makes the
      rule path-independent: refunding 2 then 3 sessions returns what
      refunding 5 at once would.

    Whatever the rule, never more than is still refundable. Pure, so it is
    property-tested; ``fmt`` formats amounts in the explanation.
    """
    refundable = max(paid_cents - already_refunded_cents, 0)
    refund_sessions = max(0, min(refund_sessions, len(unused_totals)))
    pro_rata = sum(unused_totals[:refund_sessions])
    if rule == RULE_LIST_PRICE and unit_list_price_gross is not None:
        used = max(sessions_total - revoked_before - len(unused_totals), 0)
        kept = unused_totals[refund_sessions:]
        raw = paid_cents - already_refunded_cents - used * unit_list_price_gross - sum(kept)
        amount = min(max(raw, 0), pro_rata)
        parts = [f"paid {fmt(paid_cents)}"]
        if already_refunded_cents:
            parts.append(f"refunded before {fmt(already_refunded_cents)}")
        if used:
            parts.append(f"{used} used × list price {fmt(unit_list_price_gross)}")
        if kept:
            parts.append(f"{len(kept)} kept at their paid share {fmt(sum(kept))}")
        explanation = " − ".join(parts)
        if raw > pro_rata:
            explanation += f", capped at the paid share of the sessions, {fmt(pro_rata)}"
    else:
        amount = pro_rata
        explanation = f"the paid share of {refund_sessions} unused session(s)"
    return min(amount, refundable), explanation


async def quote_refund(
    sale: dict[str, Any], refund_sessions: int, rule: str | None = None
) -> RefundQuote:
    payment = await paid_payment(int(sale["id"]))
    location = (
        await Location.select(Location.refund_rule)
        .where(Location.id == sale["location"])
        .first()
        .run()
    )
    rule = rule or (location["refund_rule"] if location else RULE_LIST_PRICE)
    if rule not in REFUND_RULES:
        rule = RULE_LIST_PRICE
    rows = await sales.sessions_of(int(sale["id"]))
    unused = sorted(
        (r for r in rows if r["state"] == sales.AVAILABLE), key=lambda r: -int(r["position"])
    )
    revoked_before = sum(1 for r in rows if r["state"] == sales.REVOKED)
    refund_sessions = max(0, min(refund_sessions, len(unused)))
    already = await refunded_so_far(int(payment["id"]))
    unit_gross = None
    if sale["unit_list_price_cents"] is not None:
        unit = int(sale["unit_list_price_cents"])
        unit_gross = (
            unit
            if sale["prices_include_tax"]
            else unit + round_half_up(unit * int(sale["tax_rate_bp"]), 10_000)
        )
    currency = str(sale["currency"])
    amount, explanation = compute_refund(
        fmt=lambda cents: format_money(cents, currency),
        rule=rule,
        paid_cents=int(payment["amount_cents"]),
        already_refunded_cents=already,
        sessions_total=int(sale["sessions_total"]),
        revoked_before=revoked_before,
        unused_totals=[int(r["total_cents"]) for r in unused],
        refund_sessions=refund_sessions,
        unit_list_price_gross=unit_gross,
    )
    return RefundQuote(
        sessions=refund_sessions,
        amount_cents=amount,
        refundable_cents=max(int(payment["amount_cents"]) - already, 0),
        rule=rule,
        explanation=explanation,
    )


def cumulative_tax(*, total_cents: int, tax_cents: int, returned_cents: int) -> int:
    """The tax inside ``returned_cents`` of a sale's money, computed on the cumulative amount.

    Each refund (or lost chargeback) gives back the tax of everything returned
    so far minus what earlier ones gave back, so rounding never adds up across
    partial refunds: the tax returned never exceeds the tax collected, and the
    whole amount returns exactly the whole tax. Pure, property-tested.
    """
    if total_cents <= 0 or returned_cents <= 0:
        return 0
    if returned_cents >= total_cents:
        return tax_cents
    return round_half_up(returned_cents * tax_cents, total_cents)


async def returned_before(
    sale: dict[str, Any], *, refund_id: int | None = None, dispute_id: int | None = None
) -> tuple[int, int, list[dict[str, Any]]]:
    """Money and tax already given back on the sale (completed refunds, lost
    chargebacks), other than the one being booked, and the credits those
    refunds revoked."""
    sale_id = int(sale["id"])
    refunds = (
        await Refund.select(Refund.id, Refund.amount_cents)
        .where((Refund.sale == sale_id) & (Refund.status == SUCCEEDED))
        .run()
    )
    refunds = [r for r in refunds if r["id"] != refund_id]
    lost = (
        await Dispute.select(Dispute.id, Dispute.amount_cents)
        .where((Dispute.sale == sale_id) & (Dispute.outcome == "lost"))
        .run()
    )
    lost = [d for d in lost if d["id"] != dispute_id]
    money = sum(int(r["amount_cents"]) for r in refunds) + sum(int(d["amount_cents"]) for d in lost)
    # Tax is what the journal says was given back: the tax payable debited on the sale (only
    # money going back debits it; a fee journalled before fees were sales has its own entry
    # apart from the sale, so the tax still payable would not say it).
    tax = await _tax_debited(sale_id)
    credits: list[dict[str, Any]] = []
    if refunds and not lost:
        credits = (
            await SaleSession.select(SaleSession.value_cents, SaleSession.total_cents)
            .where(
                (SaleSession.sale == sale_id)
                & (SaleSession.state == sales.REVOKED)
                & SaleSession.refund_id.is_in([int(r["id"]) for r in refunds])
            )
            .run()
        )
    return money, max(tax, 0), credits


async def _tax_debited(sale_id: int) -> int:
    rows = (
        await JournalLine.select(Sum(JournalLine.debit_cents).as_alias("d"))
        .where((JournalLine.account == "tax_payable") & (JournalLine.sale_id == sale_id))
        .run()
    )
    return int(rows[0]["d"] or 0) if rows else 0


async def tax_given_back(
    sale: dict[str, Any],
    amount: int,
    revoked: list[dict[str, Any]],
    *,
    refund_id: int | None = None,
    dispute_id: int | None = None,
) -> int:
    """The tax this refund or chargeback gives back (see :func:`cumulative_tax`).

    When everything returned so far is exactly the paid shares of the sessions
    revoked for it (pro-rata refunds), the tax is those sessions' own tax
    shares, so nothing is left over as a cent of breakage.
    """
    total, tax = int(sale["total_cents"]), int(sale["tax_cents"])
    money_before, tax_before, credits_before = await returned_before(
        sale, refund_id=refund_id, dispute_id=dispute_id
    )
    returned = money_before + amount
    shares = [*credits_before, *revoked]
    if dispute_id is None and returned == sum(int(c["total_cents"]) for c in shares):
        target = sum(int(c["total_cents"]) - int(c["value_cents"]) for c in shares)
    else:
        target = cumulative_tax(total_cents=total, tax_cents=tax, returned_cents=returned)
    return max(0, min(target, tax) - tax_before)


def give_back_lines(
    amount: int, tax: int, revoked: list[dict[str, Any]], paid_from: str
) -> list[ledger.Line]:
    """Money going back to the client, against the sessions ``revoked`` for it.

    Dr deferred revenue (the revoked sessions' value) + Dr tax payable / Cr
    ``paid_from``. If the revoked sessions were worth more than the net money
    returned, the rest is breakage (the client gave it up); if less, the money
    returned for sessions already given reverses revenue (contra-revenue).
    """
    value = sum(int(r["value_cents"]) for r in revoked)
    net_part = amount - tax
    difference = value - net_part
    lines = [
        ledger.debit("deferred_revenue", value),
        ledger.debit("tax_payable", tax),
        ledger.credit(paid_from, amount),
    ]
    if difference > 0:
        lines.append(ledger.credit("breakage_revenue", difference))
    elif difference < 0:
        lines.append(ledger.debit("revenue_reversals", -difference))
    return lines


def sessions_covered(
    *, cumulative_cents: int, paid_cents: int, revoked_totals: int, available_totals: list[int]
) -> int:
    """How many more unused sessions the money refunded so far pays for.

    Refunds made in Stripe's dashboard come with an amount only. They
    accumulate: the available sessions (latest first) are revoked as the
    cumulative refunded amount, beyond the paid shares of the sessions already
    revoked, covers each one's share; everything refunded revokes everything
    unused. Pure, property-tested.
    """
    if cumulative_cents >= paid_cents:
        return len(available_totals)
    left = cumulative_cents - revoked_totals
    count = 0
    for share in available_totals:
        if share > left:
            break
        left -= share
        count += 1
    return count
