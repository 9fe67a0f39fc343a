"""A freeze fee taken is a payment like any other: the fee of one frozen period is a sale
of no sessions ("Freeze fee of membership N … for the period …", kind membership) paid
in the clinic or by the subscription's card, so the payments report, the desk's cash of
the day, revenue's cash collected and the payouts see it, and the client is sent its
receipt. Its entry stays the fee's own (earned when charged), linked to the sale.

The plan: $120.00 a month + 8.25 % tax = $129.90; its freeze fee $10.00 + $0.83 tax."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

import pytest

from portal.auth.service import ACCOUNTANT, CLIENT, CurrentUser
from portal.email.tables import OutboxMessage
from portal.errors import Invalid
from portal.ledger import service as ledger
from portal.ledger.tables import JournalEntry, JournalLine
from portal.memberships import fees, subscriptions
from portal.payments import payouts
from portal.payments import service as payments
from portal.payments.gateway import StripePayoutItem
from portal.payments.tables import Payment, Refund
from portal.reports import filters as report_filters
from portal.reports import service as reports
from portal.sales import service as sales
from portal.sales.tables import Sale, SaleSession
from portal.timeutil import utcnow
from tests import factories
from tests.memberships.conftest import Club, joined
from tests.memberships.helpers import make_plan
from tests.memberships.test_desk_billing import _enrol
from tests.memberships.test_desk_freeze_fee import FEE, FEE_LINES, freeze_or_resume
from tests.reports import helpers

PERIOD = 12990


async def _report(club: Club, **params: str) -> report_filters.Filters:
    today = utcnow().date()
    query = {"start": (today - timedelta(days=3)).isoformat(),
             "end": (today + timedelta(days=1)).isoformat(), "location": str(club.location),
             **params}  # fmt: skip
    return await report_filters.parse(helpers.actor(ACCOUNTANT), {k: [v] for k, v in query.items()})


async def _fee_sale(membership_id: int) -> dict[str, Any]:
    (sale,) = (
        await Sale.select()
        .where(Sale.item_name.like(f"Freeze fee of membership {membership_id} %"))
        .run()
    )
    return sale


async def _entry_lines(sale_id: int) -> list[tuple[str, int, int]]:
    rows = (
        await JournalLine.select(
            JournalLine.account, JournalLine.debit_cents, JournalLine.credit_cents
        )
        .where((JournalLine.sale_id == sale_id) & (JournalLine.entry.kind == "membership_fee"))
        .order_by(JournalLine.id)
        .run()
    )
    return [(r["account"], int(r["debit_cents"]), int(r["credit_cents"])) for r in rows]


async def _frozen_a_period_by_card(club: Club) -> dict[str, Any]:
    """A member who joined online, frozen: the next period's fee charged on the card."""
    plan = await make_plan(
        club.location, club.service, name="Pausable", freeze_allowed=True, freeze_fee=1000
    )
    membership = await joined(club, plan)
    member = CurrentUser(club.member.id, club.member.email, "", CLIENT, frozenset())
    await subscriptions.set_frozen(club.gateway, member, membership["id"], True,
                                   request_key=secrets.token_urlsafe(24))  # fmt: skip
    await club.standin.advance_subscription(str(membership["subscription_id"]))
    await club.standin.drain()
    return membership


async def test_a_desk_fee_is_a_cash_payment_in_the_report_the_till_and_revenue(club: Club) -> None:
    plan = await make_plan(
        club.location, club.service, name="Pausable", freeze_allowed=True, freeze_fee=1000
    )
    membership_id, staff = await _enrol(club, plan)
    assert (
        await freeze_or_resume(staff, membership_id, True, secrets.token_urlsafe(24), "cash") == FEE
    )
    membership = await subscriptions.get_membership(membership_id)
    start = membership["current_period_end"]
    end = subscriptions.next_period_end(start, "month")
    item = (f"Freeze fee of membership {membership_id} (Pausable) for the period "
            f"{start:%Y-%m-%d} to {end:%Y-%m-%d}")  # fmt: skip

    sale = await _fee_sale(membership_id)
    assert (sale["item_name"], sale["channel"], sale["package_id"], sale["status"]) == (
        item, "membership", 0, "active",
    )  # fmt: skip
    assert (sale["net_cents"], sale["tax_cents"], sale["total_cents"]) == (1000, 83, FEE)
    assert (sale["sessions_total"], sale["payment_method"], sale["sold_by"]) == (
        0,
        "cash",
        staff.id,
    )
    assert await SaleSession.count().where(SaleSession.sale == sale["id"]) == 0  # no sessions
    (payment,) = await Payment.select().where(Payment.sale == sale["id"]).run()
    assert (payment["provider"], payment["method"], payment["status"]) == (
        "in_clinic", "cash", "succeeded",
    )  # fmt: skip
    assert (payment["amount_cents"], payment["fee_cents"], payment["net_cents"]) == (FEE, 0, FEE)
    # The fee's own entry, earned when charged, now names its sale.
    assert await _entry_lines(sale["id"]) == FEE_LINES
    assert await JournalLine.count().where(JournalLine.sale_id == sale["id"]) == 3

    # The payments report lists it beside the period's payment, as a membership's.
    f = await _report(club)
    lines = (await reports.payment_lines(f)).rows
    assert [(r.kind, r.item, r.payment_method, r.gross, r.tax, r.fee, r.net, r.product,
             r.status) for r in lines] == [
        ("payment", "Pausable — membership period from "
         f"{membership['current_period_start']:%Y-%m-%d}", "cash", PERIOD, 990, 0, PERIOD,
         "memberships", "succeeded"),
        ("payment", item, "cash", FEE, 83, 0, FEE, "memberships", "succeeded"),
    ]  # fmt: skip
    # The desk's cash of the day: both payments taken in cash.
    cash = await reports.payment_summary(await _report(club, method="cash"))
    (day,) = cash.rows
    assert (day.totals.payments, day.totals.gross, day.totals.tax, day.totals.net) == (
        2, PERIOD + FEE, 990 + 83, PERIOD + FEE,
    )  # fmt: skip
    assert await reports.payment_summary(await _report(club, method="cheque")) == (
        reports.PaymentSummary(rows=[], totals={})
    )
    # Revenue: cash collected counts the fee; the fee is service revenue at once.
    revenue = await reports.revenue(f)
    (row,) = revenue.rows
    assert (row.collected, row.service) == (PERIOD + FEE, 1000)

    # The client is sent the fee's receipt.
    receipts = await OutboxMessage.select().where(OutboxMessage.to_address == club.member.email)
    assert len(receipts) == 2
    fee_receipt = receipts[-1]
    assert item in fee_receipt["body_text"] and "$10.83" in fee_receipt["body_text"]
    async with factories.make_client(club.app) as web:  # and reads it on their account
        await factories.login(web, club.member)
        receipt = await web.get(f"/sales/{sale['id']}/receipt")
        purchase = await web.get(f"/purchases/{sale['id']}")
    assert receipt.status_code == 200 and item in receipt.text and "$10.83" in receipt.text
    assert "0 ×" not in receipt.text
    assert purchase.status_code == 200 and f'<dd data-testid="fee">{item}; no sessions</dd>' in (
        purchase.text
    )


async def test_a_fee_paid_by_card_is_a_stripe_payment_the_payouts_match(
    club: Club, club_webhook
) -> None:
    membership = await _frozen_a_period_by_card(club)
    for event_id in {
        event["id"] for event in club_webhook.events()
    }:  # every event heard again: no change
        await club.standin.redeliver(event_id)
    await club.standin.drain()

    sale = await _fee_sale(membership["id"])
    (payment,) = await Payment.select().where(Payment.sale == sale["id"]).run()
    assert (payment["provider"], payment["method"], payment["status"]) == (
        "stripe", "card", "succeeded",
    )  # fmt: skip
    # $10.83 charged; Stripe's fee 2.9 % + 30¢ = 61¢.
    assert (payment["amount_cents"], payment["fee_cents"], payment["net_cents"]) == (
        FEE, 61, FEE - 61,
    )  # fmt: skip
    assert payment["payment_intent_id"] and payment["charge_id"]
    assert await _entry_lines(sale["id"]) == [
        ("stripe_clearing", FEE, 0), ("service_revenue", 0, 1000), ("tax_payable", 0, 83),
        ("processing_fees", 61, 0), ("stripe_clearing", 0, 61),
    ]  # fmt: skip
    assert await JournalEntry.count().where(JournalEntry.kind == "membership_fee") == 1

    f = await _report(club)
    fee_rows = [r for r in (await reports.payment_lines(f)).rows if r.sale_id == sale["id"]]
    assert [(r.gross, r.tax, r.fee, r.net, r.payment_method, r.product, r.stripe_payment_intent)
            for r in fee_rows] == [
        (FEE, 83, 61, FEE - 61, "card", "memberships", payment["payment_intent_id"]),
    ]  # fmt: skip
    receipts = await OutboxMessage.select().where(OutboxMessage.to_address == club.member.email)
    assert sum(sale["item_name"] in r["body_text"] for r in receipts) == 1

    # A payout holding the fee's charge matches it to the payment, its sale and clinic.
    intent = await club.gateway.retrieve_payment_intent(str(payment["payment_intent_id"]))
    charge = intent.latest_charge
    assert charge is not None and charge.balance_transaction is not None
    item = StripePayoutItem(
        id=charge.balance_transaction.id, type="charge", amount=FEE, fee=61, net=FEE - 61,
        currency="usd", created=utcnow(), description="", source_id=charge.id, charge=charge,
    )  # fmt: skip
    assert await payouts._match(item) == {
        "payment": payment["id"],
        "refund": None,
        "sale": sale["id"],
        "location": club.location,
    }


async def test_a_card_fee_refunded_in_stripe_reverses_its_revenue(club: Club, club_webhook) -> None:
    """The refund form refunds sessions, and a fee has none; a fee refunded in Stripe's
    dashboard is recorded by the usual rule: nothing to revoke, the net reverses revenue."""
    membership = await _frozen_a_period_by_card(club)
    sale = await _fee_sale(membership["id"])
    (payment,) = await Payment.select().where(Payment.sale == sale["id"]).run()
    answer = await club.standin.api(
        "POST", "/v1/refunds", {"payment_intent": payment["payment_intent_id"]}
    )
    assert answer.status_code == 200, answer.text
    await club.standin.drain()

    (refund,) = await Refund.select().where(Refund.sale == sale["id"]).run()
    assert (refund["amount_cents"], refund["tax_cents"], refund["status"]) == (
        FEE, 83, "succeeded",
    )  # fmt: skip
    assert (await Sale.select(Sale.status).where(Sale.id == sale["id"]).first())["status"] == (
        "refunded"
    )
    rows = (
        await JournalLine.select(
            JournalLine.account, JournalLine.debit_cents, JournalLine.credit_cents
        )
        .where(JournalLine.entry.event_key == f"refund:{refund['id']}")
        .order_by(JournalLine.id)
    )
    assert sorted((r["account"], int(r["debit_cents"]), int(r["credit_cents"])) for r in rows) == [
        ("revenue_reversals", 1000, 0), ("stripe_clearing", 0, FEE), ("tax_payable", 83, 0),
    ]  # fmt: skip
    with pytest.raises(Invalid):  # nor can the form refund what has no sessions
        await payments.check_refund(await sales.get_sale(sale["id"]), sessions=1, reason="x")


async def test_a_fee_journalled_before_fees_were_payments_is_not_taken_again(club: Club) -> None:
    plan = await make_plan(
        club.location, club.service, name="Pausable", freeze_allowed=True, freeze_fee=1000
    )
    membership_id, staff = await _enrol(club, plan)
    membership = await subscriptions.get_membership(membership_id)
    start = await subscriptions.frozen_period_start(membership)
    await ledger.post(  # the entry alone, as the fee was recorded before
        event_key=fees.desk_fee_key(membership_id, start), kind="membership_fee",
        lines=[ledger.debit("cash_on_hand", FEE), ledger.credit("service_revenue", 1000),
               ledger.credit("tax_payable", 83)],
        currency="USD", location_id=club.location,
    )  # fmt: skip
    assert (
        await freeze_or_resume(staff, membership_id, True, secrets.token_urlsafe(24), "cash") == 0
    )
    assert await Sale.count().where(Sale.sessions_total == 0) == 0
    assert await JournalEntry.count().where(JournalEntry.kind == "membership_fee") == 1
