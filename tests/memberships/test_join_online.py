"""Joining online and every renewal after it, end to end: the portal's pages, Stripe Checkout
in subscription mode in the stand-in, its signed webhooks into the portal's webhook route.

Figures: $120.00 per month plus 8.25 % tax = $129.90 for 2 sessions; each session is worth
$60.00 of revenue and $64.95 of what the member paid; Stripe's fee on $129.90 is $4.07."""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

from portal.ledger.tables import JournalEntry, JournalLine
from portal.memberships import subscriptions
from portal.memberships.tables import Membership, MembershipPeriod
from portal.payments.tables import Payment
from portal.sales.tables import Sale, SaleSession
from stripe_standin.patches import stripe_fee
from tests.memberships.conftest import Club

TOTAL, NET, TAX, FEE = 12990, 12000, 990, 407


def per_period(n: int) -> Counter[tuple[str, int, int]]:
    """The journal lines of ``n`` paid periods: the payment, then Stripe's fee."""
    return Counter(
        {
            ("stripe_clearing", TOTAL, 0): n,
            ("deferred_revenue", 0, NET): n,
            ("tax_payable", 0, TAX): n,
            ("processing_fees", FEE, 0): n,
            ("stripe_clearing", 0, FEE): n,
        }
    )


async def join(club: Club, member_client) -> tuple[int, dict[str, Any]]:
    """The member presses Join on the public page and pays on Stripe's page."""
    page = await member_client.get("/book/club/memberships")
    assert page.status_code == 200 and "$129.90" in page.text and "Join for $129.90" in page.text
    key = re.search(r'name="request_key" value="([^"]+)"', page.text)
    assert key is not None
    form = {"request_key": key.group(1), "_csrf_token": member_client.cookies["portal_csrf"]}
    answer = await member_client.post(f"/memberships/join/{club.plan}", data=form)
    assert answer.status_code == 303, answer.text
    session_id = answer.headers["location"].rsplit("/", 1)[-1]
    again = await member_client.post(f"/memberships/join/{club.plan}", data=form)
    assert again.headers["location"] == answer.headers["location"]  # the same form, once
    membership = await Membership.select().where(Membership.client == club.member.id).run()
    assert [m["status"] for m in membership] == ["pending"]
    await club.standin.complete_session(session_id)
    await club.standin.drain()
    return int(membership[0]["id"]), await subscriptions.get_membership(int(membership[0]["id"]))


async def paid_periods(membership_id: int) -> list[dict[str, Any]]:
    return (
        await MembershipPeriod.select()
        .where(MembershipPeriod.membership == membership_id)
        .order_by(MembershipPeriod.period_start)
        .run()
    )


async def journal_of(sale_ids: list[int]) -> Counter[tuple[str, int, int]]:
    lines = await JournalLine.select().where(JournalLine.sale_id.is_in(sale_ids or [-1])).run()
    return Counter((r["account"], int(r["debit_cents"]), int(r["credit_cents"])) for r in lines)


async def test_joining_online_grants_the_first_periods_sessions_and_books_them(
    club: Club, member_client, club_webhook
) -> None:
    membership_id, membership = await join(club, member_client)
    assert membership["status"] == "active" and membership["subscription_id"]
    assert membership["total_cents"] == TOTAL and membership["customer_id"]
    (period,) = await paid_periods(membership_id)
    assert (period["status"], period["amount_cents"]) == ("paid", TOTAL)
    assert (period["period_start"], period["period_end"]) == (
        membership["current_period_start"],
        membership["current_period_end"],
    )
    sale = await Sale.select().where(Sale.id == period["sale_id"]).first().run()
    assert (sale["status"], sale["channel"], sale["client"]) == (
        "active",
        "membership",
        club.member.id,
    )
    assert (sale["net_cents"], sale["tax_cents"], sale["total_cents"]) == (NET, TAX, TOTAL)
    assert sale["valid_until"] == period["period_end"]
    credits = await SaleSession.select().where(SaleSession.sale == sale["id"]).run()
    assert sorted((c["value_cents"], c["total_cents"], c["state"]) for c in credits) == [
        (6000, 6495, "available"),
        (6000, 6495, "available"),
    ]
    assert await journal_of([sale["id"]]) == per_period(1)
    (payment,) = await Payment.select().where(Payment.sale == sale["id"]).run()
    assert (payment["status"], payment["amount_cents"], payment["fee_cents"]) == (
        "succeeded", TOTAL, stripe_fee(TOTAL),
    )  # fmt: skip
    assert stripe_fee(TOTAL) == FEE

    page = await member_client.get(f"/memberships/{membership_id}?joined=1")
    assert page.status_code == 200
    assert 'data-testid="status">Active' in page.text
    assert 'data-testid="sessions-left">2<' in page.text
    assert "$129.90 on" in page.text  # the next charge


async def test_two_renewals_then_a_failed_one_paid_after_the_card_is_updated(
    club: Club, member_client, club_webhook
) -> None:
    membership_id, membership = await join(club, member_client)
    subscription = str(membership["subscription_id"])
    for _ in range(2):
        await club.standin.advance_subscription(subscription)
    await club.standin.drain()
    periods = await paid_periods(membership_id)
    assert [p["status"] for p in periods] == ["paid", "paid", "paid"]
    assert periods[1]["period_start"] == periods[0]["period_end"]
    assert periods[2]["period_start"] == periods[1]["period_end"]
    sale_ids = [int(p["sale_id"]) for p in periods]
    assert len(set(sale_ids)) == 3
    assert await subscriptions.sessions_left(membership_id) == 6
    assert await journal_of(sale_ids) == per_period(3)
    fresh = await subscriptions.get_membership(membership_id)
    assert fresh["current_period_end"] == periods[2]["period_end"]

    await club.standin.set_card_declines(str(membership["customer_id"]), True)
    failed = await club.standin.advance_subscription(subscription)
    await club.standin.drain()
    fresh = await subscriptions.get_membership(membership_id)
    assert fresh["status"] == "past_due"
    periods = await paid_periods(membership_id)
    assert [p["status"] for p in periods] == ["paid", "paid", "paid", "failed"]
    assert periods[3]["sale_id"] is None
    assert fresh["grace_until"] == periods[3]["failed_at"] + timedelta(days=7)
    assert await subscriptions.sessions_left(membership_id) == 6  # nothing granted for it
    page = await member_client.get(f"/memberships/{membership_id}")
    assert "Payment failed" in page.text and "update your card" in page.text

    await club.standin.set_card_declines(str(membership["customer_id"]), False)
    response = await club.standin.api("POST", f"/v1/invoices/{failed['invoice']['id']}/pay")
    assert response.status_code == 200
    await club.standin.drain()
    fresh = await subscriptions.get_membership(membership_id)
    assert (fresh["status"], fresh["grace_until"]) == ("active", None)
    periods = await paid_periods(membership_id)
    assert [p["status"] for p in periods] == ["paid"] * 4
    assert await subscriptions.sessions_left(membership_id) == 8
    sale_ids = [int(p["sale_id"]) for p in periods]
    assert await journal_of(sale_ids) == per_period(4)
    entries = (
        await JournalEntry.select(JournalEntry.kind)
        .where(JournalEntry.reference.is_in([f"sale:{s}" for s in sale_ids]))
        .run()
    )
    assert Counter(e["kind"] for e in entries) == {"sale_paid": 4, "processing_fee": 4}


async def test_a_cancel_at_the_period_end_ends_the_membership_and_keeps_its_sessions(
    club: Club, member_client, club_webhook
) -> None:
    membership_id, membership = await join(club, member_client)
    subscription = str(membership["subscription_id"])
    await club.gateway.update_subscription(
        subscription,
        idempotency_key=f"cancel:{uuid.uuid4()}",
        cancel_at=membership["current_period_end"],
    )
    await club.standin.drain()
    fresh = await subscriptions.get_membership(membership_id)
    assert (fresh["status"], fresh["cancel_at"]) == ("active", membership["current_period_end"])
    page = await member_client.get(f"/memberships/{membership_id}")
    assert "the membership ends on" in page.text
    await club.standin.advance_subscription(subscription)
    await club.standin.drain()
    fresh = await subscriptions.get_membership(membership_id)
    assert fresh["status"] == "ended" and fresh["ended_at"] is not None
    assert len(await paid_periods(membership_id)) == 1
    assert await subscriptions.sessions_left(membership_id) == 2  # paid for, still bookable


async def test_a_declined_join_changes_nothing_and_a_stranger_cannot_see_a_membership(
    club: Club, member_client, club_webhook, app_factory_client=None
) -> None:
    page = await member_client.get("/book/club/memberships")
    key = re.search(r'name="request_key" value="([^"]+)"', page.text)
    assert key is not None
    answer = await member_client.post(
        f"/memberships/join/{club.plan}",
        data={"request_key": key.group(1), "_csrf_token": member_client.cookies["portal_csrf"]},
    )
    session_id = answer.headers["location"].rsplit("/", 1)[-1]
    await club.standin.decline_session(session_id)
    await club.standin.drain()
    (membership,) = await Membership.select().run()
    assert membership["status"] == "pending"
    assert await MembershipPeriod.count().run() == 0 and await Sale.count().run() == 0
    assert json.loads(membership["terms"])["total_cents"] == TOTAL
