"""Stripe's events delivered many times at once, to both processes, in both orders.

The stand-in makes the events (a payment, a refund made in Stripe's
dashboard, a dispute opened and lost) while the servers' endpoints are
detached; a ``webhook_receiver`` records them as sent. Each event is then
delivered ``COPIES`` times, signed with the servers' secret, to both processes
at once — even copies in the order Stripe made them, odd copies reversed
(``checkout.session.completed`` vs ``payment_intent.succeeded``,
``refund.created`` vs ``charge.refunded``, dispute created vs closed). Every
answer is 2xx, and the effect is that of one delivery in order.
"""

from __future__ import annotations

from typing import Any

import pytest

from portal.email.tables import OutboxMessage
from portal.payments.tables import Dispute, Payment, Refund
from portal.sales.tables import Sale, SaleSession
from tests.races.conftest import (
    LARGE,
    Clinic,
    at_once,
    buy_online,
    start_online_purchase,
)
from tests.races.invariants import assert_whole, rows
from tests.servers import Portal
from tests.stripe_standin import WebhookReceiver

COPIES = 4


async def _payment(sale_id: int) -> dict[str, Any]:
    payment = await Payment.select().where(Payment.sale == sale_id).first().run()
    assert payment is not None
    return payment


async def _sale(sale_id: int) -> dict[str, Any]:
    sale = await Sale.select().where(Sale.id == sale_id).first().run()
    assert sale is not None
    return sale


async def _states(sale_id: int) -> list[str]:
    found = await SaleSession.select(SaleSession.state).where(SaleSession.sale == sale_id).run()
    return sorted(str(r["state"]) for r in found)


async def _entries(sale_id: int) -> list[str]:
    found = await rows(
        "SELECT event_key FROM journal_entry WHERE reference = {} ORDER BY id", f"sale:{sale_id}"
    )
    return [str(r["event_key"]) for r in found]


async def _deliver_at_once(portal: Portal, bodies: list[bytes]) -> None:
    """Every event COPIES times, both processes, both orders, all at once; all answered 2xx."""
    sends = []
    for copy in range(COPIES):
        ordered = bodies if copy % 2 == 0 else list(reversed(bodies))
        sends += [(copy + n, body) for n, body in enumerate(ordered)]
    answers = await at_once(portal.post_webhook(process, body) for process, body in sends)
    statuses = [(a.request.url.port, a.status_code, a.text[:80]) for a in answers]
    assert all(200 <= a.status_code < 300 for a in answers), statuses


async def _checkout(portal: Portal, clinic: Clinic, receiver: WebhookReceiver) -> None:
    portal.detach_webhooks()
    session_id = await start_online_purchase(portal, clinic, clinic.large_package)
    mark = len(receiver.deliveries)
    paid = await portal.standin.complete_session(session_id)
    await portal.standin.drain(timeout=30)
    sale_id = int(paid["metadata"]["sale_id"])
    bodies = [d.body for d in receiver.deliveries[mark:]]
    types = {d.event["type"] for d in receiver.deliveries[mark:]}
    assert {"checkout.session.completed", "payment_intent.succeeded"} <= types, types
    assert (await _sale(sale_id))["status"] == "pending", "the servers heard nothing yet"

    await _deliver_at_once(portal, bodies)

    assert (await _sale(sale_id))["status"] == "active"
    payments = await Payment.select().where(Payment.sale == sale_id).run()
    assert [p["status"] for p in payments] == ["succeeded"], payments
    assert payments[0]["fee_cents"] is not None, "the fee is recorded"
    assert await _states(sale_id) == ["available"] * LARGE[1]
    entries = await _entries(sale_id)
    assert entries.count(f"sale:{sale_id}:paid") == 1, entries
    assert len([e for e in entries if e.startswith("fee:")]) == 1, entries
    # The client's receipt: one message however many copies, in whichever order.
    receipts = await OutboxMessage.select().where(OutboxMessage.kind == "receipt").run()
    mine = [m for m in receipts if m["dedupe_key"] == f"receipt:{sale_id:06d}"]
    assert len(mine) == 1 and mine[0]["to_address"] == clinic.client.email, receipts


async def _refund(portal: Portal, clinic: Clinic, receiver: WebhookReceiver) -> None:
    sale_id = await buy_online(portal, clinic, clinic.large_package)
    portal.detach_webhooks()
    payment = await _payment(sale_id)
    share = LARGE[0] // LARGE[1]
    mark = len(receiver.deliveries)
    # Someone refunds one session's worth in Stripe's dashboard.
    made = await portal.standin.api(
        "POST", "/v1/refunds", {"payment_intent": payment["payment_intent_id"], "amount": share}
    )
    assert made.status_code == 200, made.text
    await portal.standin.drain(timeout=30)
    bodies = [d.body for d in receiver.deliveries[mark:]]
    types = [d.event["type"] for d in receiver.deliveries[mark:]]
    assert {"refund.created", "charge.refunded"} <= set(types), types

    await _deliver_at_once(portal, bodies)

    refunds = await Refund.select().where(Refund.sale == sale_id).run()
    assert [
        (
            r["stripe_refund_id"],
            r["status"],
            r["amount_cents"],
            r["sessions_revoked"],
            r["external"],
        )
        for r in refunds
    ] == [(made.json()["id"], "succeeded", share, 1, True)], refunds
    assert await _states(sale_id) == ["available"] * (LARGE[1] - 1) + ["revoked"]
    entries = await _entries(sale_id)
    assert entries.count(f"refund:{refunds[0]['id']}") == 1, entries


async def _dispute(portal: Portal, clinic: Clinic, receiver: WebhookReceiver) -> None:
    sale_id = await buy_online(portal, clinic, clinic.large_package)
    portal.detach_webhooks()
    payment = await _payment(sale_id)
    mark = len(receiver.deliveries)
    dispute = await portal.standin.open_dispute(payment["charge_id"])
    await portal.standin.close_dispute(dispute["id"], "lost")
    await portal.standin.drain(timeout=30)
    bodies = [d.body for d in receiver.deliveries[mark:]]
    types = [d.event["type"] for d in receiver.deliveries[mark:]]
    assert {"charge.dispute.created", "charge.dispute.closed"} <= set(types), types

    await _deliver_at_once(portal, bodies)

    disputes = await Dispute.select().where(Dispute.sale == sale_id).run()
    assert [(d["stripe_dispute_id"], d["outcome"]) for d in disputes] == [
        (dispute["id"], "lost")
    ], disputes
    sale = await _sale(sale_id)
    assert not sale["frozen"], "a closed dispute leaves the sale unfrozen, whatever the order"
    assert await _states(sale_id) == ["revoked"] * LARGE[1]
    entries = await _entries(sale_id)
    assert any(e.startswith(f"dispute:{dispute['id']}:") for e in entries), entries


SCENARIOS = {"checkout": _checkout, "refund": _refund, "dispute": _dispute}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_events_delivered_many_times_at_once(
    portal: Portal, clinic: Clinic, webhook_receiver: WebhookReceiver, scenario: str
) -> None:
    await SCENARIOS[scenario](portal, clinic, webhook_receiver)
    await assert_whole(portal)
