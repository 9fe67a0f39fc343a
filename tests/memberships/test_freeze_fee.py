"""The freeze fee: each period a member spends frozen is charged the plan's fee (tax as the
location's rules say) on the subscription's card, journalled once as earned revenue."""

from __future__ import annotations

import secrets

from portal.auth.service import CLIENT, CurrentUser
from portal.ledger.tables import JournalEntry, JournalLine
from portal.memberships import subscriptions
from portal.payments.gateway import invoice_from_dict
from tests.memberships.conftest import Club, joined
from tests.memberships.helpers import make_plan


async def _freeze(club: Club, membership_id: int, frozen: bool) -> None:
    member = CurrentUser(club.member.id, club.member.email, "", CLIENT, frozenset())
    await subscriptions.set_frozen(
        club.gateway, member, membership_id, frozen, request_key=secrets.token_urlsafe(24)
    )


async def _fee_lines() -> list[tuple[str, str, int, int]]:
    rows = (
        await JournalLine.select(
            JournalLine.entry.reference, JournalLine.account,
            JournalLine.debit_cents, JournalLine.credit_cents,
        )
        .where(JournalLine.entry.kind == "membership_fee")
        .order_by(JournalLine.id)
        .run()
    )  # fmt: skip
    return [
        (r["entry.reference"], r["account"], int(r["debit_cents"]), int(r["credit_cents"]))
        for r in rows
    ]


async def test_each_frozen_period_is_charged_the_fee_once(club: Club, club_webhook) -> None:
    plan = await make_plan(
        club.location, club.service, name="Pausable", freeze_allowed=True, freeze_fee=1000
    )
    before = {record["event_id"] for record in await club.standin.deliveries()}
    membership = await joined(club, plan)
    subscription_id = str(membership["subscription_id"])
    await _freeze(club, membership["id"], True)
    await club.standin.drain()
    assert await _fee_lines() == []  # the period being frozen was paid already

    await club.standin.advance_subscription(subscription_id)
    await club.standin.drain()
    lines = await _fee_lines()
    invoice_id = lines[0][0]
    # $10.00 + 8.25 % tax = $10.83 charged; Stripe's fee 2.9 % + 30¢ = 61¢.
    assert [line[1:] for line in lines] == [
        ("stripe_clearing", 1083, 0),
        ("service_revenue", 0, 1000),
        ("tax_payable", 0, 83),
        ("processing_fees", 61, 0),
        ("stripe_clearing", 0, 61),
    ]
    invoice = invoice_from_dict(
        (await club.standin.api("GET", f"/v1/invoices/{invoice_id}")).json()
    )
    assert (invoice.status, invoice.amount_paid, invoice.billing_reason) == ("paid", 1083, "manual")
    assert invoice.subscription_id == subscription_id
    # No period, no sessions, and the membership stays active and frozen.
    assert len(await subscriptions.periods_of(membership["id"])) == 1
    fresh = await subscriptions.get_membership(membership["id"])
    assert (fresh["status"], fresh["paused"]) == ("active", True)
    assert await subscriptions.sessions_left(membership["id"]) == 2

    # Every event of it heard again changes nothing.
    for event_id in {r["event_id"] for r in await club.standin.deliveries()} - before:
        await club.standin.redeliver(event_id)
    await club.standin.drain()
    assert len(await _fee_lines()) == 5

    await club.standin.advance_subscription(subscription_id)  # a second frozen period
    await club.standin.drain()
    assert len({line[0] for line in await _fee_lines()}) == 2

    await _freeze(club, membership["id"], False)
    await club.standin.advance_subscription(subscription_id)  # running again: the plan's price
    await club.standin.drain()
    assert len({line[0] for line in await _fee_lines()}) == 2
    periods = await subscriptions.periods_of(membership["id"])
    assert [(p["status"], p["amount_cents"]) for p in periods] == [("paid", 12990)] * 2
    assert await JournalEntry.count().where(JournalEntry.kind == "membership_fee").run() == 2


async def test_a_plan_without_a_fee_charges_nothing_while_frozen(club: Club, club_webhook) -> None:
    plan = await make_plan(club.location, club.service, name="Free pause", freeze_allowed=True)
    membership = await joined(club, plan)
    await _freeze(club, membership["id"], True)
    await club.standin.advance_subscription(str(membership["subscription_id"]))
    await club.standin.drain()
    assert await _fee_lines() == []
    invoices = await club.standin.api(
        "GET", f"/v1/invoices?subscription={membership['subscription_id']}"
    )
    assert [i["billing_reason"] for i in invoices.json()["data"]] == ["subscription_create"]
