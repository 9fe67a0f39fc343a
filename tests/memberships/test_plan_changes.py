"""A change of plan at a period end: scheduled by the member or staff, shown on the
account page, cancellable before it applies, applied once at the boundary whatever the
order of Stripe's events; for a desk member at the next period paid at the desk.

Plans at the club (8.25 % tax): "Monthly 60 min" $120.00 → $129.90 for 2 sessions;
"Monthly 4 × 60" $200.00 → $216.50 for 4 sessions ($50.00 each)."""

from __future__ import annotations

import itertools
import json
import re
import secrets
from collections import Counter
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from portal.audit.tables import AuditLog
from portal.auth.service import MANAGER
from portal.errors import Invalid
from portal.memberships import changes, desk, subscriptions
from portal.sales.tables import Sale, SaleSession
from tests import factories
from tests.memberships.conftest import Club
from tests.memberships.helpers import age, make_plan
from tests.memberships.test_desk_billing import NoStripe, _staff
from tests.memberships.test_join_online import journal_of
from tests.memberships.test_webhook_orders import _by_type, _deliver, _joined, _member
from tests.stripe_standin import WebhookReceiver

BIG_TOTAL, BIG_NET, BIG_TAX = 21650, 20000, 1650
ZONE = ZoneInfo("America/New_York")  # the club's (the factories' default)
RENEWAL_EVENTS = ("invoice.paid", "customer.subscription.updated")


def _key(html: str, action: str) -> str:
    form = re.search(rf'action="{re.escape(action)}".*?</form>', html, re.S)
    assert form is not None, f"no form posting to {action}"
    found = re.search(r'name="request_key" value="([^"]+)"', form.group(0))
    assert found is not None
    return found.group(1)


async def _bigger(club: Club) -> int:
    return await make_plan(club.location, club.service, name="Monthly 4 × 60", sessions=4,
                           price=20000)  # fmt: skip


async def _period_sales(membership_id: int) -> list[dict]:
    periods = list(reversed(await subscriptions.periods_of(membership_id)))
    return [
        await Sale.select().where(Sale.id == p["sale_id"]).first().run()
        for p in periods
        if p["sale_id"]
    ]


async def test_a_member_changes_plan_on_the_account_page_from_the_next_period(
    club: Club, member_client, club_webhook
) -> None:
    bigger = await _bigger(club)
    elsewhere = await factories.make_location(slug="elsewhere")
    await make_plan(elsewhere, club.service, name="Not here")
    membership_id, _ = await _joined(club, club_webhook)
    membership = await subscriptions.get_membership(membership_id)
    page = await member_client.get(f"/memberships/{membership_id}")
    assert "Change plan" in page.text and "Monthly 4 × 60, $216.50" in page.text
    assert "Not here" not in page.text and "Monthly 60 min, $129.90</option>" not in page.text
    action = f"/memberships/{membership_id}/plan"
    csrf = member_client.cookies["portal_csrf"]
    answer = await member_client.post(
        action, data={"request_key": _key(page.text, action), "plan_id": str(bigger),
                      "_csrf_token": csrf},
    )  # fmt: skip
    assert answer.status_code == 303
    fresh = await subscriptions.get_membership(membership_id)
    assert (fresh["next_plan"], fresh["changes_at"]) == (bigger, membership["current_period_end"])
    assert (fresh["plan"], fresh["total_cents"]) == (club.plan, 12990)  # this period unchanged
    stripe_side = await club.gateway.retrieve_subscription(str(membership["subscription_id"]))
    assert stripe_side.unit_amount == BIG_TOTAL
    assert stripe_side.current_period_end == membership["current_period_end"]
    shown = await member_client.get(f"/memberships/{membership_id}")
    day = f"{membership['current_period_end'].astimezone(ZONE):%Y-%m-%d}"
    assert f"Changes to Monthly 4 × 60 (4 sessions, $216.50 per period) on {day}" in shown.text
    assert "Keep Monthly 60 min" in shown.text and 'id="change-title"' not in shown.text

    await club.standin.advance_subscription(str(membership["subscription_id"]))
    await club.standin.drain()
    fresh = await subscriptions.get_membership(membership_id)
    assert (fresh["plan"], fresh["name"], fresh["total_cents"], fresh["next_plan"]) == (
        bigger, "Monthly 4 × 60", BIG_TOTAL, None,
    )  # fmt: skip
    assert fresh["sessions_per_period"] == 4 and fresh["review_reason"] == ""
    first, second = await _period_sales(membership_id)
    assert (first["total_cents"], first["sessions_total"]) == (12990, 2)
    assert (second["total_cents"], second["sessions_total"]) == (BIG_TOTAL, 4)
    paid = await journal_of([second["id"]])
    assert paid[("deferred_revenue", 0, BIG_NET)] == 1 and paid[("tax_payable", 0, BIG_TAX)] == 1
    assert paid[("stripe_clearing", BIG_TOTAL, 0)] == 1
    values = await SaleSession.select(SaleSession.value_cents).where(
        SaleSession.sale == second["id"]
    )
    assert [int(v["value_cents"]) for v in values] == [5000] * 4
    (record,) = await AuditLog.select().where(AuditLog.action == "change_plan").run()
    assert json.loads(record["after"])["next_plan_id"] == bigger


@pytest.mark.parametrize(("first", "second"), list(itertools.permutations(RENEWAL_EVENTS, 2)))
async def test_the_switch_applies_once_whatever_the_order_of_the_renewals_events(
    club: Club, webhook_receiver: WebhookReceiver, first: str, second: str
) -> None:
    bigger = await _bigger(club)
    membership_id, events = await _joined(club, webhook_receiver)
    await _deliver(club, *events.values())
    membership = await subscriptions.get_membership(membership_id)
    await changes.schedule(
        club.gateway, _member(club), membership_id, bigger, request_key=secrets.token_urlsafe(24)
    )
    mark = len(webhook_receiver.deliveries)
    await club.standin.advance_subscription(str(membership["subscription_id"]))
    await club.standin.drain()
    later = _by_type(webhook_receiver, mark)
    assert await _deliver(club, later[first], later[second]) == ["processed", "processed"]
    await _deliver(club, later[second], later[first], *later.values(), *events.values())
    fresh = await subscriptions.get_membership(membership_id)
    assert (fresh["plan"], fresh["total_cents"], fresh["review_reason"]) == (bigger, BIG_TOTAL, "")
    periods = await subscriptions.periods_of(membership_id)
    assert sorted((p["status"], p["amount_cents"]) for p in periods) == [
        ("paid", 12990), ("paid", BIG_TOTAL),
    ]  # fmt: skip
    assert await subscriptions.sessions_left(membership_id) == 6


async def test_a_scheduled_change_can_be_called_off_before_it_applies(
    club: Club, member_client, club_webhook
) -> None:
    bigger = await _bigger(club)
    membership_id, _ = await _joined(club, club_webhook)
    membership = await subscriptions.get_membership(membership_id)
    await changes.schedule(
        club.gateway, _member(club), membership_id, bigger, request_key=secrets.token_urlsafe(24)
    )
    page = await member_client.get(f"/memberships/{membership_id}")
    action = f"/memberships/{membership_id}/plan/keep"
    kept = await member_client.post(
        action, data={"request_key": _key(page.text, action),
                      "_csrf_token": member_client.cookies["portal_csrf"]},
    )  # fmt: skip
    assert kept.status_code == 303
    fresh = await subscriptions.get_membership(membership_id)
    assert (fresh["next_plan"], fresh["next_terms"], fresh["changes_at"]) == (None, None, None)
    stripe_side = await club.gateway.retrieve_subscription(str(membership["subscription_id"]))
    assert stripe_side.unit_amount == 12990
    with pytest.raises(Invalid, match="No change of plan"):
        await changes.keep_plan(club.gateway, _member(club), membership_id, request_key="k" * 24)
    await club.standin.advance_subscription(str(membership["subscription_id"]))
    await club.standin.drain()
    fresh = await subscriptions.get_membership(membership_id)
    assert (fresh["plan"], fresh["total_cents"]) == (club.plan, 12990)
    (_, second) = await _period_sales(membership_id)
    assert (second["total_cents"], second["sessions_total"]) == (12990, 2)
    actions = await AuditLog.select(AuditLog.action).where(AuditLog.entity == "membership").run()
    assert [a["action"] for a in actions] == ["change_plan", "keep_plan"]


async def test_plans_of_another_location_and_ending_memberships_cannot_be_chosen(
    club: Club, club_webhook
) -> None:
    elsewhere = await factories.make_location(slug="elsewhere")
    theirs = await make_plan(elsewhere, club.service, name="Not here")
    bigger = await _bigger(club)
    membership_id, _ = await _joined(club, club_webhook)
    for plan in (theirs, club.plan):
        with pytest.raises(Invalid, match="Choose one of the plans offered"):
            await changes.schedule(club.gateway, _member(club), membership_id, plan,
                                   request_key=secrets.token_urlsafe(24))  # fmt: skip
    await subscriptions.cancel(club.gateway, _member(club), membership_id,
                               request_key=secrets.token_urlsafe(24))  # fmt: skip
    with pytest.raises(Invalid, match="set to end"):
        await changes.schedule(club.gateway, _member(club), membership_id, bigger,
                               request_key=secrets.token_urlsafe(24))  # fmt: skip
    assert (await subscriptions.get_membership(membership_id))["next_plan"] is None


async def test_a_desk_member_switches_at_the_next_period_paid_at_the_desk(club: Club) -> None:
    bigger = await _bigger(club)
    manager = await factories.make_user(MANAGER, location_ids=[club.location])
    staff = _staff(manager, club.location)
    membership_id = await desk.enrol(
        staff, club.member.id, club.plan, "cash", request_key=secrets.token_urlsafe(24)
    )
    membership = await subscriptions.get_membership(membership_id)
    at = await changes.schedule(NoStripe(), staff, membership_id, bigger,  # type: ignore[arg-type]
                                request_key=secrets.token_urlsafe(24))  # fmt: skip
    assert at == membership["current_period_end"]
    await age(membership_id, 26)
    due = await desk.next_due(await subscriptions.get_membership(membership_id))
    assert (due.start, due.amount_cents, due.reason) == (at - timedelta(days=26), BIG_TOTAL, "")
    sale_id = await desk.record_payment(
        staff, membership_id, "cash", request_key=secrets.token_urlsafe(24)
    )
    fresh = await subscriptions.get_membership(membership_id)
    assert (fresh["plan"], fresh["total_cents"], fresh["next_plan"]) == (bigger, BIG_TOTAL, None)
    assert await journal_of([sale_id]) == Counter(
        {("cash_on_hand", BIG_TOTAL, 0): 1, ("deferred_revenue", 0, BIG_NET): 1,
         ("tax_payable", 0, BIG_TAX): 1}
    )  # fmt: skip
    assert await subscriptions.sessions_left(membership_id) == 6


async def test_a_desk_member_owing_the_new_plans_first_period_owes_its_price(club: Club) -> None:
    bigger = await _bigger(club)
    manager = await factories.make_user(MANAGER, location_ids=[club.location])
    staff = _staff(manager, club.location)
    membership_id = await desk.enrol(
        staff, club.member.id, club.plan, "cash", request_key=secrets.token_urlsafe(24)
    )
    await changes.schedule(NoStripe(), staff, membership_id, bigger,  # type: ignore[arg-type]
                           request_key=secrets.token_urlsafe(24))  # fmt: skip
    await age(membership_id, 35)
    assert await desk.fall_due() == [membership_id]
    fresh = await subscriptions.get_membership(membership_id)
    assert (fresh["status"], fresh["plan"], fresh["total_cents"]) == ("past_due", bigger, BIG_TOTAL)
    (owed, _) = await subscriptions.periods_of(membership_id)
    assert (owed["status"], owed["amount_cents"]) == ("open", BIG_TOTAL)
