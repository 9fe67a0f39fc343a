"""Refund caps as properties: never negative, never more than is still refundable, never
more than the paid share of the sessions refunded; sessions revoked never exceed unused."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portal.money import split_evenly
from portal.payments import service as payments
from portal.payments.tables import Refund
from portal.sales import service as sales
from portal.sales.tables import SaleSession
from tests.payments.helpers import TOTAL, Shop


@st.composite
def refund_cases(draw: st.DrawFn) -> dict[str, Any]:
    sessions_total = draw(st.integers(min_value=1, max_value=24))
    paid = draw(st.integers(min_value=sessions_total, max_value=5_000_00))
    totals = split_evenly(paid, sessions_total)  # the paid share of each session
    revoked_before = draw(st.integers(min_value=0, max_value=sessions_total))
    used = draw(st.integers(min_value=0, max_value=sessions_total - revoked_before))
    unused = sessions_total - revoked_before - used
    # Revocation takes the latest sessions first.
    unused_totals = list(reversed(totals[used : used + unused]))
    already = draw(st.integers(min_value=0, max_value=paid + 10_000))
    return {
        "rule": draw(st.sampled_from([payments.RULE_LIST_PRICE, payments.RULE_PRO_RATA, "?"])),
        "paid_cents": paid,
        "already_refunded_cents": already,
        "sessions_total": sessions_total,
        "revoked_before": revoked_before,
        "unused_totals": unused_totals,
        "refund_sessions": draw(st.integers(min_value=0, max_value=unused)),
        "unit_list_price_gross": draw(st.none() | st.integers(min_value=0, max_value=paid * 2)),
    }


@pytest.mark.nodb
@settings(max_examples=600, deadline=None)
@given(refund_cases())
def test_refund_is_capped(case: dict[str, Any]) -> None:
    amount, explanation = payments.compute_refund(**case)
    refundable = max(case["paid_cents"] - case["already_refunded_cents"], 0)
    paid_share = sum(case["unused_totals"][: case["refund_sessions"]])
    assert 0 <= amount <= refundable
    assert amount <= paid_share
    assert explanation
    if case["rule"] != payments.RULE_LIST_PRICE or case["unit_list_price_gross"] is None:
        assert amount == min(paid_share, refundable)  # pro rata: exactly the paid share
    if case["refund_sessions"] == 0:
        assert amount == 0


@pytest.mark.nodb
@settings(max_examples=300, deadline=None)
@given(refund_cases())
def test_list_price_rule_never_refunds_more_than_pro_rata(case: dict[str, Any]) -> None:
    list_rule = payments.compute_refund(**{**case, "rule": payments.RULE_LIST_PRICE})[0]
    pro_rata = payments.compute_refund(**{**case, "rule": payments.RULE_PRO_RATA})[0]
    assert list_rule <= pro_rata


@pytest.mark.nodb
@settings(max_examples=400, deadline=None)
@given(refund_cases(), st.data())
def test_refunding_in_two_steps_returns_what_one_refund_would(
    case: dict[str, Any], data: st.DataObject
) -> None:
    """Nothing refunded before: k sessions at once = k1 sessions, then the next k − k1."""
    case = {**case, "already_refunded_cents": 0}
    k = case["refund_sessions"]
    k1 = data.draw(st.integers(min_value=0, max_value=k))
    once = payments.compute_refund(**case)[0]
    first = payments.compute_refund(**{**case, "refund_sessions": k1})[0]
    second = payments.compute_refund(
        **{
            **case,
            "already_refunded_cents": first,
            "revoked_before": case["revoked_before"] + k1,
            "unused_totals": case["unused_totals"][k1:],
            "refund_sessions": k - k1,
        }
    )[0]
    assert first + second == once


# -- the same caps through the service, on a real database --------------------------------

steps = st.lists(
    st.tuples(
        st.integers(min_value=-1, max_value=7),  # sessions asked for (some invalid)
        st.sampled_from([payments.RULE_LIST_PRICE, payments.RULE_PRO_RATA]),
        st.integers(min_value=0, max_value=2),  # sessions given before this refund
    ),
    min_size=1,
    max_size=5,
)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(plan=steps)
async def test_refund_sequences_respect_the_caps(shop: Shop, plan: list[Any]) -> None:
    # Each example sells a fresh package (cash: no Stripe round trip), then refunds.
    sale_id = await payments.record_in_clinic_sale(
        shop.manager_user,
        client_id=shop.client.id,
        package_id=shop.package_id,
        location_id=shop.location_id,
        method="cash",
    )
    for asked, rule, give in plan:
        available = (
            await SaleSession.select(SaleSession.id)
            .where((SaleSession.sale == sale_id) & (SaleSession.state == sales.AVAILABLE))
            .run()
        )
        for row in available[:give]:
            await (
                SaleSession.update({SaleSession.state: sales.REDEEMED})
                .where(SaleSession.id == row["id"])
                .run()
            )
        before = await sales.session_counts(sale_id)
        sale = await sales.get_sale(sale_id)
        quote = (
            await payments.quote_refund(sale, asked, rule)
            if sale["status"] == sales.ACTIVE
            else None
        )
        if quote is not None:
            assert 0 <= quote.sessions <= before.available
        try:
            refund = await payments.refund_sale(
                None, shop.manager_user, sale_id, sessions=asked, reason="Property", rule=rule
            )
        except payments.Invalid:
            assert await sales.session_counts(sale_id) == before  # nothing changed
            continue
        assert quote is not None and refund["amount_cents"] == quote.amount_cents
        after = await sales.session_counts(sale_id)
        assert refund["sessions_revoked"] == asked <= before.available
        assert after.revoked == before.revoked + asked
    refunds = await Refund.select().where(Refund.sale == sale_id).run()
    assert sum(int(r["amount_cents"]) for r in refunds) <= TOTAL
    assert all(int(r["amount_cents"]) >= 0 for r in refunds)
    counts = await sales.session_counts(sale_id)
    assert counts.revoked == sum(int(r["sessions_revoked"]) for r in refunds) <= counts.total
