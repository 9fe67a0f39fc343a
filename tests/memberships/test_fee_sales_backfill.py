"""Freeze fees journalled before fees were payments get their sale and payment from the
``fee sales backfill`` migration: amounts from the entry's lines, at its location, in its
currency, at its time; no journal line written; once however often it runs. The daily
totals are then rebuilt from the day it names, and ``portal reports verify`` passes.

The plan's freeze fee: $10.00 + 8.25 % tax = $10.83; Stripe's fee on a card fee 61¢."""

from __future__ import annotations

import importlib
import secrets
from datetime import timedelta
from typing import Any

import pytest
from piccolo.engine import engine_finder

from portal.auth.service import OWNER, CurrentUser
from portal.errors import Invalid
from portal.ledger import service as ledger
from portal.ledger.tables import JournalLine
from portal.memberships import fees, subscriptions
from portal.payments import service as payments
from portal.payments.tables import Payment, Refund
from portal.reports import service as reports
from portal.reports import totals
from portal.sales import service as sales
from portal.sales.tables import Sale
from portal.timeutil import utcnow
from tests.memberships.conftest import Club
from tests.memberships.helpers import make_plan
from tests.memberships.test_desk_billing import _enrol
from tests.memberships.test_desk_freeze_fee import FEE
from tests.memberships.test_fee_payments import _report

MIGRATION = importlib.import_module(
    "migrations.portal_2026_12_11t09_00_00_000000_fee_sales_backfill"
)


async def _old_fees(club: Club) -> tuple[int, str]:
    """A desk member's fee paid by cheque and a card fee, journalled the old way (an
    entry, no sale) two days ago; the desk fee's key."""
    plan = await make_plan(
        club.location, club.service, name="Pausable", freeze_allowed=True, freeze_fee=1000
    )
    membership_id, _ = await _enrol(club, plan)
    start = await subscriptions.frozen_period_start(
        await subscriptions.get_membership(membership_id)
    )
    at = utcnow() - timedelta(days=2)
    key = fees.desk_fee_key(membership_id, start)
    await ledger.post(
        event_key=key, kind="membership_fee", occurred_at=at,
        lines=[ledger.debit("cash_on_hand", FEE), ledger.credit("service_revenue", 1000),
               ledger.credit("tax_payable", 83)],
        currency="USD", location_id=club.location,
        reference=f"desk-freeze:{membership_id}:{int(start.timestamp())}",
        memo=f"Freeze fee, membership {membership_id}, paid at the desk (cheque)",
    )  # fmt: skip
    await ledger.post(
        event_key="membership_fee:in_old_fee", kind="membership_fee", occurred_at=at,
        lines=[ledger.debit("stripe_clearing", FEE), ledger.credit("service_revenue", 1000),
               ledger.credit("tax_payable", 83), ledger.debit("processing_fees", 61),
               ledger.credit("stripe_clearing", 61)],
        currency="USD", location_id=club.location, reference="in_old_fee",
        memo=f"Freeze fee, membership {membership_id}",
    )  # fmt: skip
    return membership_id, key


async def _fee_rows(membership_id: int) -> list[tuple[Any, ...]]:
    sales = await Sale.select().where(
        Sale.item_name.like(f"Freeze fee of membership {membership_id} %")
    )
    out = []
    for sale in sorted(sales, key=lambda s: str(s["request_key"])):
        (payment,) = await Payment.select().where(Payment.sale == sale["id"]).run()
        out.append((
            sale["request_key"], sale["channel"], sale["package_id"], sale["sessions_total"],
            sale["status"], sale["payment_method"], sale["location"], sale["currency"],
            sale["net_cents"], sale["tax_cents"], sale["total_cents"],
            payment["provider"], payment["method"], payment["status"], payment["amount_cents"],
            payment["fee_cents"], payment["net_cents"],
        ))  # fmt: skip
    return out


async def test_old_fee_entries_get_their_sales_once_and_the_totals_verify(
    club: Club, capsys: pytest.CaptureFixture[str]
) -> None:
    membership_id, key = await _old_fees(club)
    lines_before = await JournalLine.count()
    assert (await totals.verify()).differences == []

    manager = await MIGRATION.forwards()
    await manager.run()
    await MIGRATION.backfill(engine_finder())  # run again: nothing more

    day = (utcnow() - timedelta(days=3)).date().isoformat()
    assert f"portal reports rebuild --since {day}" in capsys.readouterr().err
    assert await _fee_rows(membership_id) == [
        ("membership_fee:desk:" + key.split(":", 2)[2], "membership", 0, 0, "active", "cheque",
         club.location, "USD", 1000, 83, FEE, "in_clinic", "cheque", "succeeded", FEE, 0, FEE),
        ("membership_fee:in_old_fee", "membership", 0, 0, "active", "card", club.location,
         "USD", 1000, 83, FEE, "stripe", "card", "succeeded", FEE, 61, FEE - 61),
    ]  # fmt: skip
    # No journal line written or changed.
    assert await JournalLine.count() == lines_before
    # A fee of that period is not taken again at the desk.
    assert await fees.desk_fee_paid(membership_id, await subscriptions.frozen_period_start(
        await subscriptions.get_membership(membership_id)))  # fmt: skip

    # Until the totals are rebuilt, verify lists the day; then they equal the rows.
    assert (await totals.verify()).differences != []
    await totals.rebuild(utcnow().date() - timedelta(days=3))
    assert (await totals.verify()).differences == []

    # The payments report lists each fee once, as a membership's payment.
    f = await _report(club)
    rows = [r for r in (await reports.payment_lines(f)).rows if "Freeze fee" in r.item]
    assert sorted((r.kind, r.payment_method, r.gross, r.tax, r.fee, r.net, r.product)
                  for r in rows) == [
        ("payment", "card", FEE, 83, 61, FEE - 61, "memberships"),
        ("payment", "cheque", FEE, 83, 0, FEE, "memberships"),
    ]  # fmt: skip
    summary = await reports.payment_summary(await _report(club, method="cheque"))
    usd = summary.totals["USD"]
    assert (usd.payments, usd.gross, usd.tax, usd.net) == (1, FEE, 83, FEE)

    # The desk fee is refunded from its sale like any fee: the tax given back is read
    # from its refunds (its paid entry names no sale): 400 → 31, then the rest 683 → 52.
    by_key = {s["request_key"]: s for s in await Sale.select().where(Sale.sessions_total == 0)}
    staff = CurrentUser(1, "", "", OWNER, frozenset())
    desk_sale = int(by_key[key]["id"])
    for amount in (400, None):
        await payments.refund_sale(
            None, staff, desk_sale, sessions=0, reason="Paid twice", amount_cents=amount,
            request_key=secrets.token_urlsafe(24),
        )  # fmt: skip
    refunds = await Refund.select().where(Refund.sale == desk_sale).order_by(Refund.id).run()
    assert [(r["amount_cents"], r["tax_cents"], r["status"]) for r in refunds] == [
        (400, 31, "succeeded"), (683, 52, "succeeded"),
    ]  # fmt: skip
    # The card fee has no Stripe ids here: refunded in Stripe's dashboard, the form says.
    with pytest.raises(Invalid) as refused:
        await payments.check_refund(
            await sales.get_sale(int(by_key["membership_fee:in_old_fee"]["id"])),
            sessions=0, reason="x", amount_cents=100,
        )  # fmt: skip
    assert "refund it in Stripe's dashboard" in refused.value.errors["amount"]
