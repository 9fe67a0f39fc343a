"""Report test data: sales, payments, redemptions, refunds and expiries at chosen instants.

The journal entries are the ones the portal writes (``sales.activate`` for a
sale, the postings of ``payments.service`` and ``bookings.service``), but
dated where a scenario needs them: across a month end, a DST change.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from datetime import datetime, timedelta
from typing import Any

from portal.auth.service import CurrentUser
from portal.ledger import service as ledger
from portal.money import round_half_up, split_evenly
from portal.payments import totals as payment_totals
from portal.payments.tables import Payment, Refund
from portal.sales import service as sales
from portal.sales.tables import Sale, SaleSession
from portal.staff.tables import Therapist
from portal.timeutil import utcnow

_seq = itertools.count(1)


def csv_rows(text: str) -> list[list[str]]:
    """A CSV download's rows, its header first."""
    return list(csv.reader(io.StringIO(text)))


def actor(role: str, location_ids: tuple[int, ...] = (), user_id: int = 1) -> CurrentUser:
    return CurrentUser(
        id=user_id,
        email=f"{role}{user_id}@example.test",
        name="",
        role=role,
        location_ids=frozenset(location_ids),
    )


async def make_therapist(name: str) -> int:
    now = utcnow()
    rows = (
        await Therapist.insert(Therapist(name=name, created_at=now, updated_at=now))
        .returning(Therapist.id)
        .run()
    )
    return int(rows[0]["id"])


async def make_sale(
    location_id: int,
    client_id: int,
    *,
    at: datetime,
    net: int,
    tax: int = 0,
    sessions: int = 5,
    currency: str = "USD",
    method: str = "card",
    fee: int | None = None,
    package_id: int = 1,
    item: str = "5 × 60 min neuromuscular",
    validity_days: int = 180,
) -> int:
    """An active, paid sale: the snapshot, its credits, its payment and journal entries."""
    total = net + tax
    terms = {
        "session_values": split_evenly(net, sessions),
        "session_totals": split_evenly(total, sessions),
    }
    n = next(_seq)
    sale_id = (
        await Sale.insert(
            Sale(
                client=client_id, location=location_id, package_id=package_id,
                price_version_id=1, service_id=1, service_name="Neuromuscular massage",
                item_name=item, sessions_total=sessions, validity_days=validity_days,
                currency=currency, price_cents=net, net_cents=net, tax_cents=tax,
                total_cents=total, tax_rate_bp=0, terms=json.dumps(terms), status="pending",
                channel="online" if method == "card" else "front_desk", payment_method=method,
                created_at=at,
            )
        ).returning(Sale.id).run()
    )[0]["id"]  # fmt: skip
    assert await sales.activate(int(sale_id), occurred_at=at, payment_method=method)
    stripe = method == "card"
    payment = await Payment.insert(
        Payment(
            sale=sale_id, location=location_id, provider="stripe" if stripe else "in_clinic",
            method=method,
            status="succeeded", amount_cents=total, currency=currency,
            fee_cents=fee if stripe else 0, net_cents=total - (fee or 0),
            payment_intent_id=f"pi_test_{n}" if stripe else None,
            charge_id=f"ch_test_{n}" if stripe else None,
            created_at=at - timedelta(minutes=2), succeeded_at=at,
        )
    ).returning(Payment.id).run()  # fmt: skip
    await payment_totals.added(payment=int(payment[0]["id"]))
    if stripe and fee:
        await ledger.post(
            event_key=f"fee:txn_test_{n}", kind="processing_fee", occurred_at=at,
            currency=currency, location_id=location_id, reference=f"sale:{sale_id}",
            memo="Stripe fee", sale_id=int(sale_id), channel="online",
            lines=[ledger.debit("processing_fees", fee), ledger.credit("stripe_clearing", fee)],
        )  # fmt: skip
    return int(sale_id)


async def _sale(sale_id: int) -> dict[str, Any]:
    return await sales.get_sale(sale_id)


async def redeem(
    sale_id: int,
    count: int,
    *,
    at: datetime,
    therapist_id: int | None = None,
    given_at: int | None = None,
    forfeit: bool = False,
) -> int:
    """Sessions given (or forfeited), as bookings journals them; returns their value."""
    sale = await _sale(sale_id)
    rows = (
        await SaleSession.select()
        .where((SaleSession.sale == sale_id) & (SaleSession.state == "available"))
        .order_by(SaleSession.position)
        .limit(count)
        .run()
    )
    assert len(rows) == count
    total = 0
    for row in rows:
        # Through sales, the credits' one writer (which keeps the daily totals).
        assert await sales.move_credit(int(row["id"]), sales.AVAILABLE, sales.HELD)
        final = sales.FORFEITED if forfeit else sales.REDEEMED
        assert await sales.move_credit(int(row["id"]), sales.HELD, final, changed_at=at)
        value = int(row["value_cents"])
        total += value
        where = given_at or int(sale["location"])
        kind = "session_forfeited" if forfeit else "session_completed"
        await ledger.post(
            event_key=f"appointment:test-{row['id']}:{kind}", kind=kind, occurred_at=at,
            currency=sale["currency"], location_id=where, reference=f"appointment:{row['id']}",
            memo="Session given", sale_id=sale_id, channel=sale["channel"],
            therapist_id=therapist_id,
            lines=ledger.recognition_lines(value, sold_at=int(sale["location"]), given_at=where),
        )  # fmt: skip
    return total


async def refund(sale_id: int, count: int, amount: int, *, at: datetime) -> int:
    """A refund of ``count`` unused sessions, journalled as payments.service does."""
    sale = await _sale(sale_id)
    payment = await Payment.select().where(Payment.sale == sale_id).first().run()
    assert payment is not None
    refund_id = (
        await Refund.insert(
            Refund(
                sale=sale_id, payment=payment["id"], amount_cents=amount,
                currency=sale["currency"], sessions_requested=count, sessions_revoked=count,
                rule="pro_rata", reason="test", status="succeeded", external=False,
                created_at=at, completed_at=at,
            )
        ).returning(Refund.id).run()
    )[0]["id"]  # fmt: skip
    rows = (
        await SaleSession.select()
        .where((SaleSession.sale == sale_id) & (SaleSession.state == "available"))
        .order_by(SaleSession.position, ascending=False)
        .limit(count)
        .run()
    )
    assert len(rows) == count
    for row in rows:
        assert await sales.move_credit(int(row["id"]), sales.AVAILABLE, sales.REVOKED,
                                       changed_at=at, refund_id=refund_id)  # fmt: skip
    total = int(sale["total_cents"])
    tax_part = round_half_up(amount * int(sale["tax_cents"]), total) if total else 0
    # The tax the refund gave back is stored on it, as payments.service does.
    await Refund.update({Refund.tax_cents: tax_part}).where(Refund.id == refund_id).run()
    await payment_totals.added(refund=int(refund_id))
    value = sum(int(r["value_cents"]) for r in rows)
    difference = value - (amount - tax_part)
    lines = [
        ledger.debit("deferred_revenue", value),
        ledger.debit("tax_payable", tax_part),
        ledger.credit(sales.CLEARING_ACCOUNT.get(payment["method"], "stripe_clearing"), amount),
    ]
    if difference > 0:
        lines.append(ledger.credit("breakage_revenue", difference))
    elif difference < 0:
        lines.append(ledger.debit("revenue_reversals", -difference))
    await ledger.post(
        event_key=f"refund:{refund_id}", kind="refund", occurred_at=at,
        currency=sale["currency"], location_id=sale["location"],
        reference=f"sale:{sale_id}", memo=f"Refund of {count} session(s)", sale_id=sale_id,
        channel=sale["channel"], lines=lines,
    )  # fmt: skip
    return int(refund_id)


async def expire(sale_id: int, *, at: datetime) -> int:
    """Expire the sale's unused sessions at ``at`` (through sales.expire_due); returns value."""
    await Sale.update({Sale.valid_until: at}).where(Sale.id == sale_id).run()
    before = await ledger.balance("deferred_revenue", sale_id=sale_id)
    await sales.expire_due(now=at)
    after = await ledger.balance("deferred_revenue", sale_id=sale_id)
    return before - after
