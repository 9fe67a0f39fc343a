"""Stripe Billing's events applied once, whatever their order, however often they come.

The stand-in makes the events while nothing forwards them; each test then hands
them to the portal's webhook dispatcher (``payments.webhooks.handle_event``, the
route's own code) in every order of a pair, then every one of them again."""

from __future__ import annotations

import itertools
import secrets
from typing import Any

import pytest

from portal.auth.service import CLIENT, CurrentUser
from portal.email.tables import OutboxMessage
from portal.ledger.tables import JournalEntry
from portal.memberships import subscriptions
from portal.memberships.tables import MembershipPeriod
from portal.payments import webhooks
from portal.payments.notices import receipt_number
from tests.memberships.conftest import Club
from tests.stripe_standin import WebhookReceiver

JOIN_EVENTS = ("checkout.session.completed", "invoice.paid", "customer.subscription.created")


def _member(club: Club) -> CurrentUser:
    return CurrentUser(
        id=club.member.id, email=club.member.email, name="", role=CLIENT,
        location_ids=frozenset(),
    )  # fmt: skip


async def _joined(club: Club, receiver: WebhookReceiver) -> tuple[int, dict[str, Any]]:
    """A membership whose Checkout was paid in the stand-in; the portal heard nothing yet.
    Returns it and its events by type (first of each)."""
    membership_id, url = await subscriptions.join(
        club.gateway, _member(club), club.plan, base_url="http://portal.test",
        request_key=secrets.token_urlsafe(24),
    )  # fmt: skip
    mark = len(receiver.deliveries)
    await club.standin.complete_session(url.rsplit("/", 1)[-1])
    await club.standin.drain()
    return membership_id, _by_type(receiver, mark)


def _by_type(receiver: WebhookReceiver, mark: int) -> dict[str, Any]:
    events: dict[str, Any] = {}
    for delivery in receiver.deliveries[mark:]:
        events.setdefault(delivery.event["type"], delivery.event)
    return events


async def _deliver(club: Club, *events: dict[str, Any]) -> list[str]:
    return [await webhooks.handle_event(club.gateway, event) for event in events]


async def _state(membership_id: int) -> tuple[str, list[str], int, int]:
    """Status, the periods' states, sessions left, paid-period journal entries."""
    membership = await subscriptions.get_membership(membership_id)
    periods = await subscriptions.periods_of(membership_id)
    sale_refs = [f"sale:{p['sale_id']}" for p in periods if p["sale_id"]]
    paid_entries = (
        await JournalEntry.count()
        .where(
            JournalEntry.reference.is_in(sale_refs or ["-"]) & (JournalEntry.kind == "sale_paid")
        )
        .run()
    )
    return (
        str(membership["status"]),
        sorted(str(p["status"]) for p in periods),
        await subscriptions.sessions_left(membership_id),
        int(paid_entries),
    )


@pytest.mark.parametrize(("first", "second"), list(itertools.permutations(JOIN_EVENTS, 2)))
async def test_joining_events_in_any_order_and_replayed_activate_once(
    club: Club, webhook_receiver: WebhookReceiver, first: str, second: str
) -> None:
    membership_id, events = await _joined(club, webhook_receiver)
    assert (await _state(membership_id))[0] == "pending"
    assert await _deliver(club, events[first], events[second]) == ["processed", "processed"]
    assert await _state(membership_id) == ("active", ["paid"], 2, 1)
    replies = await _deliver(club, events[second], events[first], *events.values())
    assert replies[:2] == ["duplicate", "duplicate"]
    assert await _state(membership_id) == ("active", ["paid"], 2, 1)
    membership = await subscriptions.get_membership(membership_id)
    assert (
        membership["subscription_id"]
        == events["invoice.paid"]["data"]["object"]["parent"]["subscription_details"][
            "subscription"
        ]
    )


@pytest.mark.parametrize("failed_first", [True, False])
async def test_a_failed_renewal_and_its_late_payment_in_either_order(
    club: Club, webhook_receiver: WebhookReceiver, failed_first: bool
) -> None:
    membership_id, events = await _joined(club, webhook_receiver)
    await _deliver(club, *events.values())
    membership = await subscriptions.get_membership(membership_id)
    customer, subscription = str(membership["customer_id"]), str(membership["subscription_id"])

    await club.standin.set_card_declines(customer, True)
    mark = len(webhook_receiver.deliveries)
    renewal = await club.standin.advance_subscription(subscription)
    await club.standin.set_card_declines(customer, False)
    paid = await club.standin.api("POST", f"/v1/invoices/{renewal['invoice']['id']}/pay")
    assert paid.status_code == 200
    await club.standin.drain()
    later = _by_type(webhook_receiver, mark)
    failed, settled = later["invoice.payment_failed"], later["invoice.paid"]
    order = (failed, settled) if failed_first else (settled, failed)
    await _deliver(club, *order)
    assert await _state(membership_id) == ("active", ["paid", "paid"], 4, 2)
    await _deliver(club, *order, *reversed(order), later["customer.subscription.updated"])
    assert await _state(membership_id) == ("active", ["paid", "paid"], 4, 2)
    assert (await subscriptions.get_membership(membership_id))["grace_until"] is None


async def test_a_failed_renewal_alone_makes_the_membership_past_due_once(
    club: Club, webhook_receiver: WebhookReceiver
) -> None:
    membership_id, events = await _joined(club, webhook_receiver)
    await _deliver(club, *events.values())
    membership = await subscriptions.get_membership(membership_id)
    await club.standin.set_card_declines(str(membership["customer_id"]), True)
    mark = len(webhook_receiver.deliveries)
    await club.standin.advance_subscription(str(membership["subscription_id"]))
    await club.standin.drain()
    failed = _by_type(webhook_receiver, mark)["invoice.payment_failed"]
    await _deliver(club, failed, failed)
    assert await _state(membership_id) == ("past_due", ["failed", "paid"], 2, 1)
    grace = (await subscriptions.get_membership(membership_id))["grace_until"]
    await _deliver(club, {**failed, "id": failed["id"] + "_resent"})  # same invoice, new event
    assert (await subscriptions.get_membership(membership_id))["grace_until"] == grace
    assert await MembershipPeriod.count().run() == 2


@pytest.mark.parametrize("deleted_first", [True, False])
async def test_an_ended_subscription_and_its_paid_invoice_in_either_order(
    club: Club, webhook_receiver: WebhookReceiver, deleted_first: bool
) -> None:
    membership_id, events = await _joined(club, webhook_receiver)
    membership_row = events["checkout.session.completed"]["data"]["object"]
    subscription = str(membership_row["subscription"])
    mark = len(webhook_receiver.deliveries)
    await club.standin.api("DELETE", f"/v1/subscriptions/{subscription}")
    await club.standin.drain()
    deleted = _by_type(webhook_receiver, mark)["customer.subscription.deleted"]
    paid = events["invoice.paid"]
    order = (deleted, paid) if deleted_first else (paid, deleted)
    await _deliver(club, *order, *order)
    # Ended for good, and the period it paid for keeps its sessions.
    assert await _state(membership_id) == ("ended", ["paid"], 2, 1)


async def test_a_paid_renewal_sends_its_receipt_once_however_often_it_is_heard(
    club: Club, webhook_receiver: WebhookReceiver
) -> None:
    membership_id, events = await _joined(club, webhook_receiver)
    await _deliver(club, *events.values(), *events.values())
    membership = await subscriptions.get_membership(membership_id)
    mark = len(webhook_receiver.deliveries)
    await club.standin.advance_subscription(str(membership["subscription_id"]))
    await club.standin.drain()
    renewal = _by_type(webhook_receiver, mark)["invoice.paid"]
    await _deliver(club, renewal, renewal)
    await webhooks.handle_event(club.gateway, {**renewal, "id": renewal["id"] + "-resent"})
    receipts = (
        await OutboxMessage.select()
        .where((OutboxMessage.to_address == club.member.email) & (OutboxMessage.kind == "receipt"))
        .order_by(OutboxMessage.id)
        .run()
    )
    periods = await subscriptions.periods_of(membership_id)
    numbers = sorted(receipt_number(int(p["sale_id"])) for p in periods)
    assert len(periods) == 2 and len(receipts) == 2, (
        "the joining invoice and the renewal, once each"
    )
    assert sorted(n for n in numbers for m in receipts if n in m["subject"]) == numbers
