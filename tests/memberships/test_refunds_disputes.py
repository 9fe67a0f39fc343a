"""Refunds and disputes of a membership's invoices follow the rules of package sales:
sessions revoked or frozen, the journal moved the same way, once, whatever the order.

Figures: $120.00 + 8.25 % tax = $129.90 per period for 2 sessions ($60.00 of revenue and
$64.95 paid each); Stripe's fee on $129.90 is $4.07; a dispute costs $15.00."""

from __future__ import annotations

import itertools
import secrets
from typing import Any

import pytest

from portal.auth.service import CLIENT, MANAGER, CurrentUser
from portal.ledger import service as ledger
from portal.ledger.tables import JournalLine
from portal.memberships import subscriptions
from portal.payments import service as payments
from portal.payments import webhooks
from portal.sales import service as sales
from tests import factories
from tests.memberships.conftest import Club
from tests.stripe_standin import WebhookReceiver

TOTAL, NET, TAX, FEE, DISPUTE_FEE = 12990, 12000, 990, 407, 1500


def _member(club: Club) -> CurrentUser:
    return CurrentUser(club.member.id, club.member.email, "", CLIENT, frozenset())


async def _manager(club: Club) -> CurrentUser:
    account = await factories.make_user(MANAGER, location_ids=[club.location])
    return CurrentUser(account.id, account.email, "", MANAGER, frozenset({club.location}))


async def _start(club: Club) -> tuple[int, str]:
    membership_id, url = await subscriptions.join(
        club.gateway, _member(club), club.plan, base_url="http://portal.test",
        request_key=secrets.token_urlsafe(24),
    )  # fmt: skip
    return membership_id, url.rsplit("/", 1)[-1]


async def _joined(club: Club) -> tuple[int, int]:
    """A paid membership (events forwarded): its id and its first period's sale."""
    membership_id, session = await _start(club)
    await club.standin.complete_session(session)
    await club.standin.drain()
    (period,) = await subscriptions.periods_of(membership_id)
    return membership_id, int(period["sale_id"])


async def _disputed(club: Club) -> tuple[int, int, dict[str, Any]]:
    """A paid membership whose first invoice's charge the member disputed in full."""
    membership_id, sale_id = await _joined(club)
    payment = (await payments.payments_of(sale_id))[0]
    dispute = await club.standin.open_dispute(payment["charge_id"])
    await club.standin.drain()
    return membership_id, sale_id, dispute


async def _balances(sale_id: int) -> dict[str, int]:
    rows = await JournalLine.select().where(JournalLine.sale_id == sale_id).run()
    out: dict[str, int] = {}
    for row in rows:
        sign = 1 if ledger.ACCOUNTS[row["account"]][1] in (ledger.ASSET, ledger.EXPENSE) else -1
        out[row["account"]] = out.get(row["account"], 0) + sign * (
            int(row["debit_cents"]) - int(row["credit_cents"])
        )
    return {k: v for k, v in out.items() if v}


PAID = {
    "stripe_clearing": TOTAL - FEE,
    "processing_fees": FEE,
    "deferred_revenue": NET,
    "tax_payable": TAX,
}


async def test_staff_refund_of_one_session_of_a_membership_period(
    club: Club, club_webhook: WebhookReceiver
) -> None:
    membership_id, sale_id = await _joined(club)
    assert await _balances(sale_id) == PAID
    refund = await payments.refund_sale(
        club.gateway, await _manager(club), sale_id, sessions=1, reason="Moved away",
        request_key=secrets.token_urlsafe(24),
    )  # fmt: skip
    await club.standin.drain()
    assert (refund["amount_cents"], refund["sessions_revoked"], refund["status"]) == (
        6495, 1, "succeeded",
    )  # fmt: skip
    assert await _balances(sale_id) == REFUNDED
    assert await subscriptions.sessions_left(membership_id) == 1
    for event in club_webhook.events():  # every event again: nothing moves twice
        await club.standin.redeliver(event["id"])
    await club.standin.drain()
    assert await subscriptions.sessions_left(membership_id) == 1
    assert len(await payments.refunds_of(sale_id)) == 1
    assert (await subscriptions.get_membership(membership_id))["status"] == "active"


async def test_a_lost_dispute_of_a_membership_invoice_is_a_chargeback(
    club: Club, club_webhook: WebhookReceiver
) -> None:
    membership_id, sale_id, dispute = await _disputed(club)
    assert (await sales.get_sale(sale_id))["frozen"]
    assert await _balances(sale_id) == {
        "stripe_clearing": TOTAL - FEE - TOTAL - DISPUTE_FEE,
        "disputed_funds": TOTAL,
        "dispute_fees": DISPUTE_FEE,
        "processing_fees": FEE,
        "deferred_revenue": NET,
        "tax_payable": TAX,
    }
    await club.standin.close_dispute(dispute["id"], "lost")
    await club.standin.drain()
    lost = {
        "stripe_clearing": -FEE - DISPUTE_FEE,
        "dispute_fees": DISPUTE_FEE,
        "processing_fees": FEE,
    }
    assert await _balances(sale_id) == lost
    sale = await sales.get_sale(sale_id)
    assert sale["status"] == sales.REFUNDED and not sale["frozen"]
    assert await subscriptions.sessions_left(membership_id) == 0
    for event in club_webhook.events():
        await club.standin.redeliver(event["id"])
    await club.standin.drain()
    assert await _balances(sale_id) == lost


async def test_a_won_dispute_thaws_the_period_sessions(
    club: Club, club_webhook: WebhookReceiver
) -> None:
    membership_id, sale_id, dispute = await _disputed(club)
    await club.standin.close_dispute(dispute["id"], "won")
    await club.standin.drain()
    sale = await sales.get_sale(sale_id)
    assert sale["status"] == sales.ACTIVE and not sale["frozen"]
    assert await subscriptions.sessions_left(membership_id) == 2
    assert await _balances(sale_id) == {**PAID, "stripe_clearing": TOTAL - FEE - DISPUTE_FEE,
                                        "dispute_fees": DISPUTE_FEE}  # fmt: skip


def _after(receiver: WebhookReceiver, mark: int) -> list[dict[str, Any]]:
    return [d.event for d in receiver.deliveries[mark:]]


async def _deliver(club: Club, events: list[dict[str, Any]]) -> None:
    for event in events:
        await webhooks.handle_event(club.gateway, event)


REFUNDED = {
    "stripe_clearing": TOTAL - FEE - 6495,
    "processing_fees": FEE,
    "deferred_revenue": NET - 6000,
    "tax_payable": TAX - 495,
}
DISPUTED = {
    "stripe_clearing": TOTAL - FEE - 6495 - DISPUTE_FEE,
    "disputed_funds": 6495,
    "dispute_fees": DISPUTE_FEE,
    "processing_fees": FEE,
    "deferred_revenue": NET,
    "tax_payable": TAX,
}


@pytest.mark.parametrize(
    ("kind", "join_first"), list(itertools.product(("refund", "dispute"), (True, False)))
)
async def test_invoice_then_refund_or_dispute_events_in_either_order_and_replayed(
    club: Club, webhook_receiver: WebhookReceiver, kind: str, join_first: bool
) -> None:
    """Stripe's events held back, then handed over in either order (a refund of $64.95
    made in Stripe's dashboard, or a dispute of $64.95 opened on the invoice's charge,
    heard before the invoice was), then everything again."""
    membership_id, session = await _start(club)
    mark = len(webhook_receiver.deliveries)
    await club.standin.complete_session(session)
    await club.standin.drain()
    join = _after(webhook_receiver, mark)
    assert (await subscriptions.get_membership(membership_id))["status"] == "pending"
    invoice_id = next(e["data"]["object"]["id"] for e in join if e["type"] == "invoice.paid")
    invoice = await club.gateway.retrieve_invoice(invoice_id)
    intent = await club.gateway.retrieve_payment_intent(str(invoice.payment_intent_id))
    assert intent.latest_charge_id is not None
    mark = len(webhook_receiver.deliveries)
    if kind == "refund":
        answer = await club.standin.api(
            "POST", "/v1/refunds", {"payment_intent": intent.id, "amount": 6495}
        )
        assert answer.status_code == 200, answer.text
    else:
        await club.standin.open_dispute(intent.latest_charge_id, amount=6495)
    await club.standin.drain()
    later = _after(webhook_receiver, mark)

    await _deliver(club, [*join, *later] if join_first else [*later, *join])
    await _deliver(club, [*later, *join, *later])

    (period,) = await subscriptions.periods_of(membership_id)
    sale_id = int(period["sale_id"])
    assert (await subscriptions.get_membership(membership_id))["status"] == "active"
    sale = await sales.get_sale(sale_id)
    counts = await sales.session_counts(sale_id)
    if kind == "refund":
        assert [r["amount_cents"] for r in await payments.refunds_of(sale_id)] == [6495]
        assert (sale["frozen"], counts.revoked, counts.available) == (False, 1, 1)
        assert await _balances(sale_id) == REFUNDED
    else:
        assert (sale["frozen"], counts.revoked, counts.available) == (True, 0, 2)
        assert await _balances(sale_id) == DISPUTED
