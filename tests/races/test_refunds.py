"""Refund forms sent at once: never more money back than was paid, never twice.

1. The same form (same one-time ``request_key``) posted N times at once — a
   double or quadruple click — on a cash sale and on a card sale: exactly one
   refund, one Stripe refund, and every answer is the first one's.
2. Different forms (two managers, two tabs each) of "refund 3 sessions" on a
   5-session 1,020.00 sale, at once: one refund of 612.00; the others are
   refused with a message (409/422), never a 5xx.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench import load
from portal.payments.tables import Payment, Refund
from portal.sales.tables import Sale, SaleSession
from tests.races.conftest import (
    LARGE,
    SMALL,
    Clinic,
    at_once,
    buy_online,
    describe,
    sell_cash,
)
from tests.races.invariants import assert_whole
from tests.servers import Browser, Portal, refusal_message, stripe_client

CLICKS = 4
FORMS = 4


async def _sale(portal: Portal, clinic: Clinic, paid_by: str, size: tuple[int, int]) -> int:
    package = clinic.small_package if size == SMALL else clinic.large_package
    if paid_by == "cash":
        return await sell_cash(clinic, package)
    return await buy_online(portal, clinic, package)


async def _refunds(sale_id: int) -> list[dict[str, Any]]:
    return await Refund.select().where(Refund.sale == sale_id).order_by(Refund.id).run()


async def _available(sale_id: int) -> int:
    return int(
        await SaleSession.count()
        .where((SaleSession.sale == sale_id) & (SaleSession.state == "available"))
        .run()
    )


async def _stripe_refunds(portal: Portal, sale_id: int) -> list[Any]:
    """The refunds "Stripe" (the stand-in) holds for the sale's payment."""
    payment = await Payment.select().where(Payment.sale == sale_id).first().run()
    assert payment is not None and payment["payment_intent_id"]
    async with stripe_client(portal.standin) as client:
        page = await client.v1.refunds.list_async(
            {"payment_intent": payment["payment_intent_id"], "limit": 100}
        )
    return list(page.data)


async def _confirm_step(browser: Browser, action: str, form: dict[str, str]) -> dict[str, str]:
    """The refund form sent once shows the confirm step (nothing refunded yet); its
    form — the same one-time key, confirmed — is what the clicks below send."""
    review = await browser.post(action, form)
    assert review.status_code == 200, review.text[:300]
    confirm = load.form_fields(review.text, action)
    assert confirm is not None and confirm["confirmed"] == "1"
    assert confirm["request_key"] == form["request_key"]
    return confirm


@pytest.mark.parametrize("paid_by", ["cash", "card"])
async def test_a_refund_form_clicked_many_times_refunds_once(
    portal: Portal, clinic: Clinic, paid_by: str
) -> None:
    paid, sessions = SMALL
    sale_id = await _sale(portal, clinic, paid_by, SMALL)
    manager = await portal.signed_in(clinic.manager)
    action = f"/sales/{sale_id}/refunds"
    form = await manager.form(f"/sales/{sale_id}?sessions={sessions}", action)
    form["reason"] = "Moving to another city"
    form = await _confirm_step(manager, action, form)

    answers = await at_once(manager.post(action, form, process=i) for i in range(CLICKS))

    refunds = await _refunds(sale_id)
    assert [(r["status"], r["amount_cents"], r["sessions_revoked"]) for r in refunds] == [
        ("succeeded", paid, sessions)
    ], f"{CLICKS} clicks of one form made these refunds: {refunds}"
    if paid_by == "card":
        sent = await _stripe_refunds(portal, sale_id)
        assert [(r.amount, r.status) for r in sent] == [(paid, "succeeded")], (
            f"Stripe was asked for {[r.amount for r in sent]}"
        )
    sale = await Sale.select(Sale.status).where(Sale.id == sale_id).first().run()
    assert sale is not None and sale["status"] == "refunded"
    assert await _available(sale_id) == 0
    await assert_whole(portal)

    # Every click is answered with the first one's result: the sale page.
    assert {(a.status_code, a.headers.get("location")) for a in answers} == {
        (303, f"/sales/{sale_id}")
    }, describe(answers)
    # And so is the same form sent once more later (the back button, a retry).
    again = await manager.post(action, form)
    assert (again.status_code, again.headers.get("location")) == (303, f"/sales/{sale_id}")
    assert len(await _refunds(sale_id)) == 1
    assert form.get("request_key"), "the refund form carries a one-time request_key"


@pytest.mark.parametrize("paid_by", ["cash", "card"])
async def test_managers_refunding_at_once_never_refund_more_than_paid(
    portal: Portal, clinic: Clinic, paid_by: str
) -> None:
    paid, sessions = LARGE
    share = paid // sessions
    sale_id = await _sale(portal, clinic, paid_by, LARGE)
    managers = [
        await portal.signed_in(clinic.manager, "manager 1"),
        await portal.signed_in(clinic.manager2, "manager 2"),
    ]
    action = f"/sales/{sale_id}/refunds"
    sends = []
    for n in range(FORMS):  # each manager opens the sale in two tabs
        browser = managers[n % 2]
        form = await browser.form(f"/sales/{sale_id}?sessions=3", action)
        form["reason"] = f"Asked by the client ({browser.name}, tab {n // 2 + 1})"
        sends.append((browser, await _confirm_step(browser, action, form)))

    answers = await at_once(
        browser.post(action, form, process=i) for i, (browser, form) in enumerate(sends)
    )

    assert not [a for a in answers if a.status_code >= 500], describe(answers)
    refunds = await _refunds(sale_id)
    counted = [r for r in refunds if r["status"] in ("succeeded", "pending")]
    assert sum(int(r["amount_cents"]) for r in counted) <= paid, refunds
    assert [(r["status"], r["amount_cents"], r["sessions_revoked"]) for r in counted] == [
        ("succeeded", 3 * share, 3)
    ], f"{FORMS} forms of 3 sessions on a {sessions}-session sale made: {refunds}"
    assert await _available(sale_id) == sessions - 3
    if paid_by == "card":
        sent = await _stripe_refunds(portal, sale_id)
        assert [r.amount for r in sent] == [3 * share], f"Stripe was asked for {sent}"
    await assert_whole(portal)

    done = [a for a in answers if a.status_code == 303]
    refused = [a for a in answers if a.status_code != 303]
    assert len(done) == 1 and done[0].headers["location"] == f"/sales/{sale_id}", describe(answers)
    for answer in refused:
        assert answer.status_code in (409, 422), describe(answers)
        assert refusal_message(answer.text), f"refused without a message: {answer.text[:500]}"
    keys = [form.get("request_key") for _, form in sends]
    assert all(keys) and len(set(keys)) == FORMS, "each refund form carries its own one-time key"
