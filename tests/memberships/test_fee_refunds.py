"""A freeze fee refunded from the portal: a sale of no sessions is refunded by amount (all
or part of what is left), the way it was paid — handed back at the desk, or a Stripe
refund on the card (its webhooks applied once) — reversing revenue and giving back the
tax on the cumulative amount, with its refund row in the payments report, the client's
email, the audit, and a one-time key.

The plan's freeze fee: $10.00 + 8.25 % tax = $10.83."""

from __future__ import annotations

import secrets
from typing import Any

import httpx

from portal.audit.tables import AuditLog
from portal.auth.service import MANAGER
from portal.email.tables import OutboxMessage
from portal.ledger.tables import JournalLine
from portal.payments.tables import Payment, Refund
from portal.reports import service as reports
from portal.sales.tables import Sale
from tests import factories
from tests.memberships.conftest import Club
from tests.memberships.helpers import make_plan
from tests.memberships.test_desk_billing import _enrol
from tests.memberships.test_desk_freeze_fee import FEE, freeze_or_resume
from tests.memberships.test_fee_payments import PERIOD, _fee_sale, _frozen_a_period_by_card, _report


async def _refund_lines(refund_id: int) -> list[tuple[str, int, int]]:
    rows = (
        await JournalLine.select(
            JournalLine.account, JournalLine.debit_cents, JournalLine.credit_cents
        )
        .where(JournalLine.entry.event_key == f"refund:{refund_id}")
        .run()
    )
    return sorted(
        (r["account"], int(r["debit_cents"]), int(r["credit_cents"]))
        for r in rows
        if r["debit_cents"] or r["credit_cents"]
    )


async def _refund(web: httpx.AsyncClient, sale_id: int, amount: str, reason: str) -> Any:
    """The fee's refund form sent, then its confirm step: the redirect to the sale."""
    page = await web.get(f"/sales/{sale_id}")
    key = factories.input_value(page.text, "request_key")
    fields = {"request_key": key, "amount": amount, "reason": reason}
    review = await factories.post_form(web, f"/sales/{sale_id}/refunds", fields)
    assert review.status_code == 200, review.text[:500]
    done = await factories.post_form(web, f"/sales/{sale_id}/refunds", {**fields, "confirmed": "1"})
    assert (done.status_code, done.headers["location"]) == (303, f"/sales/{sale_id}")
    return review, fields


async def _status(sale_id: int) -> str:
    row = await Sale.select(Sale.status).where(Sale.id == sale_id).first().run()
    assert row is not None
    return str(row["status"])


async def test_a_desk_fee_is_handed_back_in_parts_from_the_sale_page(club: Club) -> None:
    plan = await make_plan(
        club.location, club.service, name="Pausable", freeze_allowed=True, freeze_fee=1000
    )
    membership_id, staff = await _enrol(club, plan)
    await freeze_or_resume(staff, membership_id, True, secrets.token_urlsafe(24), "cash")
    sale = await _fee_sale(membership_id)
    manager = await factories.make_user(MANAGER, location_ids=[club.location])
    async with factories.make_client(club.app) as web:
        await factories.login(web, manager)
        page = await web.get(f"/sales/{sale['id']}")
        assert "Refund the fee" in page.text and factories.input_value(page.text, "amount") == (
            "10.83"
        )
        key = factories.input_value(page.text, "request_key")
        # Bad amounts: 422, the message beside the field, what was typed kept, nothing saved.
        for typed, message in [
            ("20", "At most $10.83 is left to refund."),
            ("0", "Refund more than nothing."),
            ("ten", "Enter an amount such as 120 or 120.50."),
            ("4.001", "Use at most 2 decimals for USD."),
        ]:
            answer = await factories.post_form(
                web, f"/sales/{sale['id']}/refunds",
                {"request_key": key, "amount": typed, "reason": "Froze by mistake"},
            )  # fmt: skip
            assert answer.status_code == 422, (typed, answer.text[:300])
            assert factories.field_error(answer.text, "amount") == message
            assert factories.input_value(answer.text, "amount") == typed
            assert factories.input_value(answer.text, "reason") == "Froze by mistake"
        assert await Refund.count().where(Refund.sale == sale["id"]) == 0

        review, fields = await _refund(web, sale["id"], "4.00", "Froze a week late")
        assert "$4.00" in review.text and "Sessions revoked" not in review.text
        # The same confirmed form again (back button, a double click): the first refund.
        again = await factories.post_form(
            web, f"/sales/{sale['id']}/refunds", {**fields, "confirmed": "1"}
        )
        assert again.status_code == 303
        (first,) = await Refund.select().where(Refund.sale == sale["id"]).run()
        # Tax on the cumulative amount: 400 × 83 / 1083 = 30.65 → 31.
        assert (first["amount_cents"], first["tax_cents"], first["status"], first["rule"]) == (
            400, 31, "succeeded", "amount",
        )  # fmt: skip
        assert await _refund_lines(first["id"]) == [
            ("cash_on_hand", 0, 400), ("revenue_reversals", 369, 0), ("tax_payable", 31, 0),
        ]  # fmt: skip
        assert await _status(sale["id"]) == "active"
        page = await web.get(f"/sales/{sale['id']}")
        assert factories.input_value(page.text, "amount") == "6.83"

        await _refund(web, sale["id"], "6.83", "The rest")
    second = (await Refund.select().where(Refund.sale == sale["id"]).order_by(Refund.id).run())[-1]
    # The rest gives back the rest of the tax: 83 − 31 = 52.
    assert (second["amount_cents"], second["tax_cents"]) == (683, 52)
    assert await _refund_lines(second["id"]) == [
        ("cash_on_hand", 0, 683), ("revenue_reversals", 631, 0), ("tax_payable", 52, 0),
    ]  # fmt: skip
    assert await _status(sale["id"]) == "refunded"

    # The payments report: the payment and its two refunds; the day's cash nets to nothing.
    f = await _report(club)
    rows = [r for r in (await reports.payment_lines(f)).rows if r.sale_id == sale["id"]]
    assert sorted((r.kind, r.gross, r.tax, r.refunded, r.net) for r in rows) == [
        ("payment", FEE, 83, 0, FEE), ("refund", 0, -52, 683, -683), ("refund", 0, -31, 400, -400),
    ]  # fmt: skip
    # The desk's cash of the day (the daily totals): the period, the fee, and the fee back.
    summary = await reports.payment_summary(await _report(club, method="cash"))
    usd = summary.totals["USD"]
    assert (usd.payments, usd.refunds, usd.gross, usd.tax, usd.refunded, usd.net) == (
        2, 2, PERIOD + FEE, 990, FEE, PERIOD,
    )  # fmt: skip
    # The client is told of each refund; each is audited.
    notices = await OutboxMessage.select().where(OutboxMessage.to_address == club.member.email)
    assert sum("refund" in m["subject"].lower() for m in notices) == 2
    audited = await AuditLog.count().where(
        (AuditLog.action == "refund") & (AuditLog.entity_id == str(sale["id"]))
    )
    assert audited == 2


async def test_a_card_fee_is_refunded_through_stripe_once(club: Club, club_webhook) -> None:
    membership = await _frozen_a_period_by_card(club)
    sale = await _fee_sale(membership["id"])
    (payment,) = await Payment.select().where(Payment.sale == sale["id"]).run()
    manager = await factories.make_user(MANAGER, location_ids=[club.location])
    async with factories.make_client(club.app) as web:
        await factories.login(web, manager)
        review, _ = await _refund(web, sale["id"], "5", "Charged while away")
        assert "back on the card" in review.text
        await club.standin.drain()
        for event_id in {
            event["id"] for event in club_webhook.events()
        }:  # every event heard again: no change
            await club.standin.redeliver(event_id)
        await club.standin.drain()
        (first,) = await Refund.select().where(Refund.sale == sale["id"]).run()
        # 500 × 83 / 1083 = 38.32 → 38 of tax.
        assert (first["amount_cents"], first["tax_cents"], first["status"], first["external"]) == (
            500, 38, "succeeded", False,
        )  # fmt: skip
        assert first["stripe_refund_id"]
        assert await _refund_lines(first["id"]) == [
            ("revenue_reversals", 462, 0), ("stripe_clearing", 0, 500), ("tax_payable", 38, 0),
        ]  # fmt: skip
        await _refund(web, sale["id"], "5.83", "The rest")
    await club.standin.drain()
    for event_id in {event["id"] for event in club_webhook.events()}:
        await club.standin.redeliver(event_id)
    await club.standin.drain()
    refunds = await Refund.select().where(Refund.sale == sale["id"]).order_by(Refund.id).run()
    assert [(r["amount_cents"], r["tax_cents"], r["status"]) for r in refunds] == [
        (500, 38, "succeeded"), (583, 45, "succeeded"),
    ]  # fmt: skip
    assert await _refund_lines(refunds[1]["id"]) == [
        ("revenue_reversals", 538, 0), ("stripe_clearing", 0, 583), ("tax_payable", 45, 0),
    ]  # fmt: skip
    answer = await club.standin.api(
        "GET", f"/v1/refunds?payment_intent={payment['payment_intent_id']}"
    )
    assert sorted(r["amount"] for r in answer.json()["data"]) == [500, 583]  # asked once each
    assert await _status(sale["id"]) == "refunded"
    f = await _report(club)
    rows = [r for r in (await reports.payment_lines(f)).rows if r.sale_id == sale["id"]]
    assert sorted((r.kind, r.tax, r.refunded, r.payment_method) for r in rows) == [
        ("payment", 83, 0, "card"), ("refund", -45, 583, "card"), ("refund", -38, 500, "card"),
    ]  # fmt: skip
