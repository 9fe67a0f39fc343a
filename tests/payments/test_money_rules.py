"""Money stays exact: hand scenarios with exact figures (both engines).

Three partial refunds of one sale, refunds made piecemeal in Stripe's
dashboard, a lost and a won chargeback as Stripe moves the money, a payment
whose evidence does not match its sale, one-time form keys, and the sale
lock's refusals.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portal import db
from portal.ledger import service as ledger
from portal.ledger.tables import JournalLine
from portal.onetime import service as onetime
from portal.payments import service as payments
from portal.payments.tables import Dispute, Payment, Refund
from portal.sales import service as sales
from tests.payments.helpers import Shop, as_user, make_package, pay, start_purchase
from tests.stripe_standin import StandIn

# A sale whose per-refund tax rounding used to add up to more than was
# collected: 400.49 + 8.25 % tax (33.04) = 433.53, five sessions.
ODD_PRICE = 40049
ODD_TAX = 3304


async def _balances(sale_id: int) -> dict[str, int]:
    rows = await JournalLine.select().where(JournalLine.sale_id == sale_id).run()
    out: dict[str, int] = {}
    for row in rows:
        kind = ledger.ACCOUNTS[row["account"]][1]
        sign = 1 if kind in (ledger.ASSET, ledger.EXPENSE) else -1
        out[row["account"]] = out.get(row["account"], 0) + sign * (
            int(row["debit_cents"]) - int(row["credit_cents"])
        )
    return {k: v for k, v in out.items() if v}


async def _cash_sale(shop: Shop, package_id: int) -> int:
    return await payments.record_in_clinic_sale(
        shop.manager_user,
        client_id=shop.client.id,
        package_id=package_id,
        location_id=shop.location_id,
        method="cash",
    )


async def test_three_partial_refunds_give_back_exactly_the_tax_collected(shop: Shop) -> None:
    package = await make_package(price=ODD_PRICE, name="Five at an odd price")
    sale_id = await _cash_sale(shop, package)
    sale = await sales.get_sale(sale_id)
    assert (sale["tax_cents"], sale["total_cents"]) == (ODD_TAX, ODD_PRICE + ODD_TAX)
    for count in (2, 2, 1):
        refund = await payments.refund_sale(
            None, shop.manager_user, sale_id, sessions=count, reason="Moving",
            rule=payments.RULE_PRO_RATA,
        )  # fmt: skip
        assert refund["status"] == payments.SUCCEEDED
    refunds = await payments.refunds_of(sale_id)
    assert sum(r["amount_cents"] for r in refunds) == ODD_PRICE + ODD_TAX
    assert sum(r["tax_cents"] for r in refunds) == ODD_TAX  # per-refund rounding gave 33.05
    # Every account of the sale is back to zero: no cent of breakage or of revenue.
    assert await _balances(sale_id) == {}
    assert (await sales.get_sale(sale_id))["status"] == sales.REFUNDED


async def test_pro_rata_refund_books_no_breakage(shop: Shop) -> None:
    package = await make_package(price=ODD_PRICE, name="Five at an odd price")
    sale_id = await _cash_sale(shop, package)
    await payments.refund_sale(
        None, shop.manager_user, sale_id, sessions=2, reason="x", rule=payments.RULE_PRO_RATA
    )
    balances = await _balances(sale_id)
    assert "breakage_revenue" not in balances and "revenue_reversals" not in balances
    credits = [c for c in await sales.sessions_of(sale_id) if c["state"] == sales.AVAILABLE]
    assert balances["deferred_revenue"] == sum(c["value_cents"] for c in credits)
    assert balances["tax_payable"] == sum(c["total_cents"] - c["value_cents"] for c in credits)


async def test_a_repeated_refund_form_refunds_once(shop: Shop) -> None:
    sale_id = await _cash_sale(shop, shop.package_id)
    key = onetime.new_key()
    first = await payments.refund_sale(
        None, shop.manager_user, sale_id, sessions=3, reason="x", request_key=key
    )
    again = await payments.refund_sale(
        None, shop.manager_user, sale_id, sessions=3, reason="x", request_key=key
    )
    assert again["id"] == first["id"]
    assert await Refund.count().where(Refund.sale == sale_id).run() == 1
    assert (await sales.session_counts(sale_id)).revoked == 3
    # The same key from someone else, or for another form, is refused, not replayed.
    with pytest.raises(payments.Invalid):
        async with db.transaction():
            await onetime.claim(key, user_id=as_user(shop.client).id, action="refund")
    with pytest.raises(payments.Invalid):
        async with db.transaction():
            await onetime.claim(key, user_id=shop.manager.id, action="complete")


async def test_refusal_after_every_session_was_used_says_why(shop: Shop) -> None:
    sale_id = await _cash_sale(shop, shop.package_id)
    await payments.refund_sale(None, shop.manager_user, sale_id, sessions=5, reason="x")
    with pytest.raises(payments.Invalid) as refused:
        await payments.refund_sale(None, shop.manager_user, sale_id, sessions=1, reason="x")
    assert refused.value.errors  # a message for the form, never an empty page


async def test_dashboard_refunds_accumulate_until_they_cover_a_session(
    shop: Shop, stripe_standin: StandIn, portal_webhook: Any
) -> None:
    sale_id, _ = await pay(shop, stripe_standin)
    payment = (await payments.payments_of(sale_id))[0]
    share = min(c["total_cents"] for c in await sales.sessions_of(sale_id))
    last = (await sales.sessions_of(sale_id))[-1]["total_cents"]
    for amount in (last - 1, 2000):  # 1 cent short of the last session's share, then more
        response = await stripe_standin.api(
            "POST",
            "/v1/refunds",
            {"payment_intent": payment["payment_intent_id"], "amount": amount},
        )
        assert response.status_code == 200, response.text
        await stripe_standin.drain()
        if amount == last - 1:
            assert (await sales.session_counts(sale_id)).revoked == 0
    counts = await sales.session_counts(sale_id)
    assert counts.revoked == 1 and share > 0
    refunds = await payments.refunds_of(sale_id)
    assert [r["sessions_revoked"] for r in refunds] == [0, 1]


async def test_lost_chargeback_exact_figures(
    shop: Shop, stripe_standin: StandIn, portal_webhook: Any
) -> None:
    sale_id, _ = await pay(shop, stripe_standin)
    payment = (await payments.payments_of(sale_id))[0]
    fee = int(payment["fee_cents"])
    dispute = await stripe_standin.open_dispute(payment["charge_id"])
    await stripe_standin.drain()
    row = await Dispute.select().where(Dispute.sale == sale_id).first().run()
    assert row is not None and row["withdrawn_at"] is not None and row["fee_cents"] == 1500
    assert (await sales.get_sale(sale_id))["frozen"]
    assert await _balances(sale_id) == {
        "stripe_clearing": 48713 - fee - 48713 - 1500,
        "disputed_funds": 48713,
        "dispute_fees": 1500,
        "processing_fees": fee,
        "deferred_revenue": 45000,
        "tax_payable": 3713,
    }
    # Refunds wait for the dispute.
    with pytest.raises(payments.Invalid):
        await payments.refund_sale(shop.gateway, shop.manager_user, sale_id, sessions=1, reason="x")
    await stripe_standin.close_dispute(dispute["id"], "lost")
    await stripe_standin.drain()
    sale = await sales.get_sale(sale_id)
    assert not sale["frozen"] and sale["status"] == sales.REFUNDED
    # Revenue and tax reversed as a chargeback; the fees stay spent.
    assert await _balances(sale_id) == {
        "stripe_clearing": -fee - 1500,
        "dispute_fees": 1500,
        "processing_fees": fee,
    }
    # Replaying every event changes nothing.
    for event in portal_webhook.events():
        await stripe_standin.redeliver(event["id"])
    await stripe_standin.drain()
    assert await _balances(sale_id) == {
        "stripe_clearing": -fee - 1500,
        "dispute_fees": 1500,
        "processing_fees": fee,
    }


async def test_won_chargeback_reinstates_the_amount_not_the_fee(
    shop: Shop, stripe_standin: StandIn, portal_webhook: Any
) -> None:
    sale_id, _ = await pay(shop, stripe_standin)
    payment = (await payments.payments_of(sale_id))[0]
    fee = int(payment["fee_cents"])
    dispute = await stripe_standin.open_dispute(payment["charge_id"], amount=10000)
    await stripe_standin.drain()
    await stripe_standin.close_dispute(dispute["id"], "won")
    await stripe_standin.drain()
    row = await Dispute.select().where(Dispute.sale == sale_id).first().run()
    assert row is not None and row["outcome"] == "won" and row["reinstated_at"] is not None
    sale = await sales.get_sale(sale_id)
    assert not sale["frozen"] and sale["status"] == sales.ACTIVE
    assert (await sales.session_counts(sale_id)).available == 5
    assert await _balances(sale_id) == {
        "stripe_clearing": 48713 - fee - 1500,
        "dispute_fees": 1500,
        "processing_fees": fee,
        "deferred_revenue": 45000,
        "tax_payable": 3713,
    }


async def test_checkout_paying_less_than_the_sale_needs_review(
    shop: Shop, stripe_standin: StandIn, portal_webhook: Any
) -> None:
    sale_id, payment = await start_purchase(shop)
    # A correctly signed event for this sale's session, but for less money.
    await stripe_standin.fire_event(
        {
            "type": "checkout.session.completed",
            "data": {
                "object": {
                    "id": payment["checkout_session_id"],
                    "object": "checkout.session",
                    "payment_status": "paid",
                    "amount_total": 100,
                    "currency": "usd",
                    "payment_intent": "pi_forged_for_less",
                    "metadata": {"sale_id": str(sale_id)},
                }
            },
        }
    )
    await stripe_standin.drain()
    sale = await sales.get_sale(sale_id)
    assert sale["status"] == sales.NEEDS_REVIEW
    assert "1.00" in sale["review_reason"] and "487.13" in sale["review_reason"]
    assert await sales.sessions_of(sale_id) == []
    assert await _balances(sale_id) == {}
    row = await Payment.select().where(Payment.sale == sale_id).first().run()
    assert row is not None and row["status"] == payments.PENDING


async def test_a_checkout_session_not_created_for_the_sale_needs_review(
    shop: Shop, stripe_standin: StandIn, portal_webhook: Any
) -> None:
    sale_id, payment = await start_purchase(shop)
    await stripe_standin.fire_event(
        {
            "type": "checkout.session.completed",
            "data": {
                "object": {
                    "id": "cs_test_someone_else",
                    "object": "checkout.session",
                    "payment_status": "paid",
                    "amount_total": 48713,
                    "currency": "usd",
                    "payment_intent": "pi_someone_else",
                    "metadata": {"sale_id": str(sale_id)},
                }
            },
        }
    )
    await stripe_standin.drain()
    sale = await sales.get_sale(sale_id)
    assert sale["status"] == sales.NEEDS_REVIEW and "cs_test_someone_else" in sale["review_reason"]
    # The real payment still activates nothing now: an owner settles it.
    await stripe_standin.complete_session(payment["checkout_session_id"])
    await stripe_standin.drain()
    assert (await sales.get_sale(sale_id))["status"] == sales.NEEDS_REVIEW


@given(
    total=st.integers(min_value=1, max_value=10**7),
    rate=st.integers(min_value=0, max_value=3000),
    cuts=st.lists(st.integers(min_value=1, max_value=10**6), min_size=1, max_size=8),
)
def test_cumulative_tax_never_exceeds_what_was_collected(
    total: int, rate: int, cuts: list[int]
) -> None:
    tax = total * rate // (10_000 + rate)
    returned = 0
    given_back = 0
    for cut in cuts:
        returned = min(total, returned + cut)
        now = payments.cumulative_tax(total_cents=total, tax_cents=tax, returned_cents=returned)
        assert now >= given_back  # each refund's tax is never negative
        given_back = now
        assert given_back <= tax
    if returned == total:
        assert given_back == tax


@given(
    shares=st.lists(st.integers(min_value=1, max_value=50_000), min_size=1, max_size=10),
    pieces=st.lists(st.integers(min_value=1, max_value=60_000), min_size=1, max_size=6),
)
def test_piecemeal_refunds_revoke_as_the_money_covers_shares(
    shares: list[int], pieces: list[int]
) -> None:
    paid = sum(shares)
    available = list(reversed(shares))  # latest first
    revoked_totals = 0
    cumulative = 0
    for piece in pieces:
        cumulative = min(paid, cumulative + piece)
        n = payments.sessions_covered(
            cumulative_cents=cumulative,
            paid_cents=paid,
            revoked_totals=revoked_totals,
            available_totals=available,
        )
        revoked_totals += sum(available[:n])
        available = available[n:]
        # Never revoke more than the money covers, unless everything was refunded.
        assert revoked_totals <= cumulative or cumulative == paid
    if cumulative == paid:
        assert available == []


async def test_owners_see_sales_needing_review_with_the_reason(shop: Shop) -> None:
    from tests import factories

    sale_id, _ = await start_purchase(shop)
    await sales.hold_for_review(sale_id, "Stripe reports 1.00 paid; the sale's total is 487.13.")
    owner = await factories.make_user("owner")
    async with factories.make_client(shop.app) as client:
        await factories.login(client, owner)
        home = await client.get("/")
        assert "Payments that need review" in home.text and f"/sales/{sale_id}" in home.text
        assert "the sale&#39;s total is 487.13" in home.text
        page = await client.get(f"/sales/{sale_id}")
        assert "Needs review:" in page.text and "needs review" in page.text
        listed = await client.get("/sales/", params={"status": "needs_review"})
        assert listed.status_code == 200 and f"/sales/{sale_id}" in listed.text
    async with factories.make_client(shop.app) as client:
        await factories.login(client, shop.manager)
        assert "Payments that need review" not in (await client.get("/")).text


async def test_refund_refusal_is_shown_beside_the_form(shop: Shop) -> None:
    from portal.sales.tables import SaleSession
    from tests import factories

    sale_id = await _cash_sale(shop, shop.package_id)
    # Every session given (set directly: the booking flow is tested elsewhere).
    await (
        SaleSession.update({SaleSession.state: sales.REDEEMED})
        .where(SaleSession.sale == sale_id)
        .run()
    )
    async with factories.make_client(shop.app) as client:
        await factories.login(client, shop.manager)
        response = await factories.post_form(
            client, f"/sales/{sale_id}/refunds", {"sessions": "1", "reason": "again"}
        )
    assert response.status_code == 422
    assert "Every session of this package is used" in response.text
    assert 'class="error-summary"' in response.text
