"""A freeze fee's refund form clicked four times at once, paid at the desk (cash handed
back) and by the member's card (a Stripe refund): one refund, one Stripe refund, every
click answered with the first one's result; and two managers refunding parts of one fee at
once never give back more than was paid."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from bench import load
from portal.memberships import desk
from portal.memberships.tables import Membership
from portal.payments.tables import Refund
from portal.sales.tables import Sale
from tests import factories
from tests.memberships.helpers import make_plan
from tests.memberships.test_desk_freeze_fee import freeze_or_resume
from tests.races.conftest import Clinic, at_once, describe
from tests.races.invariants import assert_whole
from tests.races.test_refunds import _stripe_refunds
from tests.servers import Portal, refusal_message

CLICKS = 4
FEE = 1000  # the race clinic charges no tax


async def _desk_fee(clinic: Clinic) -> int:
    plan = await make_plan(
        clinic.location_id, clinic.service_id, name="Desk pausable", sessions=2,
        freeze_allowed=True, freeze_fee=FEE,
    )  # fmt: skip
    manager = clinic.as_manager()
    membership_id = await desk.enrol(
        manager, clinic.client.id, plan, "cash", request_key=secrets.token_urlsafe(24)
    )
    await freeze_or_resume(manager, membership_id, True, secrets.token_urlsafe(24), "cash")
    return await _fee_sale_of(membership_id)


async def _card_fee(portal: Portal, clinic: Clinic) -> int:
    """A member who joined online freezes; the next period's fee is charged on the card."""
    plan = await make_plan(
        clinic.location_id, clinic.service_id, name="Card pausable", sessions=2,
        freeze_allowed=True, freeze_fee=FEE,
    )  # fmt: skip
    member = await portal.signed_in(clinic.client, "member")
    path = f"/memberships/join/{plan}"
    joined = await member.post(path, await member.form(f"/book/{clinic.slug}/memberships", path))
    assert joined.status_code == 303, joined.text[:300]
    await portal.standin.complete_session(joined.headers["location"].rsplit("/", 1)[-1])
    await portal.standin.drain(timeout=30)
    membership = await Membership.select().where(Membership.plan == plan).first().run()
    assert membership is not None and membership["status"] == "active", membership
    page, action = f"/memberships/{membership['id']}", f"/memberships/{membership['id']}/freeze"
    frozen = await member.post(action, await member.form(page, action))
    assert frozen.status_code == 303, frozen.text[:300]
    await portal.standin.advance_subscription(str(membership["subscription_id"]))
    await portal.standin.drain(timeout=30)
    return await _fee_sale_of(int(membership["id"]))


async def _fee_sale_of(membership_id: int) -> int:
    (sale,) = (
        await Sale.select(Sale.id)
        .where(Sale.item_name.like(f"Freeze fee of membership {membership_id} %"))
        .run()
    )
    return int(sale["id"])


async def _refunds(sale_id: int) -> list[dict[str, Any]]:
    return await Refund.select().where(Refund.sale == sale_id).order_by(Refund.id).run()


async def _confirmed(browser: Any, sale_id: int, amount: str, reason: str) -> dict[str, str]:
    """The fee's refund form filled and sent once (the confirm step); its confirmed form."""
    action = f"/sales/{sale_id}/refunds"
    form = {**await browser.form(f"/sales/{sale_id}", action), "amount": amount,
            "reason": reason}  # fmt: skip
    review = await browser.post(action, form)
    assert review.status_code == 200, review.text[:300]
    confirm = load.form_fields(review.text, action)
    assert confirm is not None and confirm["confirmed"] == "1"
    assert (confirm["request_key"], confirm["amount"]) == (form["request_key"], amount)
    return confirm


@pytest.mark.parametrize("paid_by", ["cash", "card"])
async def test_a_fee_refund_clicked_many_times_refunds_once(
    portal: Portal, clinic: Clinic, paid_by: str
) -> None:
    sale_id = await (_desk_fee(clinic) if paid_by == "cash" else _card_fee(portal, clinic))
    manager = await portal.signed_in(clinic.manager)
    action = f"/sales/{sale_id}/refunds"
    form = await _confirmed(manager, sale_id, "10.00", "Frozen by mistake")

    answers = await at_once(manager.post(action, form, process=i) for i in range(CLICKS))
    await portal.standin.drain(timeout=30)

    refunds = await _refunds(sale_id)
    assert [(r["status"], r["amount_cents"], r["rule"]) for r in refunds] == [
        ("succeeded", FEE, "amount")
    ], f"{CLICKS} clicks of one form made these refunds: {refunds}"
    if paid_by == "card":
        assert [r.amount for r in await _stripe_refunds(portal, sale_id)] == [FEE]
    sale = await Sale.select(Sale.status).where(Sale.id == sale_id).first().run()
    assert sale is not None and sale["status"] == "refunded"
    assert {(a.status_code, a.headers.get("location")) for a in answers} == {
        (303, f"/sales/{sale_id}")
    }, describe(answers)
    await assert_whole(portal)


@pytest.mark.parametrize("paid_by", ["cash", "card"])
async def test_managers_refunding_parts_of_a_fee_at_once_never_refund_more_than_paid(
    portal: Portal, clinic: Clinic, paid_by: str
) -> None:
    """Four forms of $6.00 each (two managers, two tabs each) on a $10.00 fee: one is done,
    the others refused beside the amount (at most $4.00 is left)."""
    sale_id = await (_desk_fee(clinic) if paid_by == "cash" else _card_fee(portal, clinic))
    managers = [
        await portal.signed_in(clinic.manager, "manager 1"),
        await portal.signed_in(clinic.manager2, "manager 2"),
    ]
    sends = []
    for n in range(CLICKS):
        browser = managers[n % 2]
        sends.append((browser, await _confirmed(browser, sale_id, "6.00", f"Tab {n}")))
    action = f"/sales/{sale_id}/refunds"

    answers = await at_once(
        browser.post(action, form, process=i) for i, (browser, form) in enumerate(sends)
    )
    await portal.standin.drain(timeout=30)

    assert not [a for a in answers if a.status_code >= 500], describe(answers)
    refunds = await _refunds(sale_id)
    assert [(r["status"], r["amount_cents"]) for r in refunds] == [("succeeded", 600)], refunds
    if paid_by == "card":
        assert [r.amount for r in await _stripe_refunds(portal, sale_id)] == [600]
    done = [a for a in answers if a.status_code == 303]
    refused = [a for a in answers if a.status_code != 303]
    assert len(done) == 1, describe(answers)
    for answer in refused:
        assert answer.status_code == 422, describe(answers)
        assert "At most $4.00 is left to refund." in refusal_message(answer.text), answer.text
        assert factories.field_error(answer.text, "amount") == "At most $4.00 is left to refund."
        assert factories.input_value(answer.text, "amount") == "6.00"  # what was sent, kept
    await assert_whole(portal)
