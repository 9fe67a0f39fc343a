"""Memberships paid at the front desk ("invoiced for cash"): enrolled with the first period
paid in cash, each next period taken at the desk, arrears like a failed renewal, freeze and
cancel under the plan's rules, and never a call to Stripe.

The club's plan: $120.00 a month + 8.25 % tax = $129.90 for 2 sessions ($60.00 each)."""

from __future__ import annotations

import json
import re
import secrets
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest

from portal.audit.tables import AuditLog
from portal.auth.service import MANAGER, CurrentUser
from portal.email.tables import OutboxMessage
from portal.errors import Forbidden, Invalid
from portal.memberships import desk, subscriptions
from portal.memberships.tables import Membership
from portal.payments.tables import Payment
from portal.sales import service as sales
from portal.sales.tables import Sale, SaleSession
from portal.timeutil import utcnow
from tests import factories
from tests.memberships.conftest import Club
from tests.memberships.helpers import age, make_plan
from tests.memberships.test_desk_join import _manager_of
from tests.memberships.test_join_online import journal_of

TOTAL, NET, TAX = 12990, 12000, 990


class NoStripe:
    """A gateway that must not be used: desk memberships never call Stripe."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"Stripe called for a desk membership: {name}")


def _staff(account: factories.Account, location: int) -> CurrentUser:
    return CurrentUser(account.id, account.email, "", MANAGER, frozenset({location}))


def _key(html: str) -> str:
    found = re.search(r'name="request_key" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


async def _periods(membership_id: int) -> list[tuple[str, int]]:
    rows = await subscriptions.periods_of(membership_id)
    return [(str(p["status"]), int(p["amount_cents"])) for p in reversed(rows)]


async def _sale_ids(membership_id: int) -> list[int]:
    rows = await subscriptions.periods_of(membership_id)
    return [int(p["sale_id"]) for p in reversed(rows) if p["sale_id"]]


async def _enrol(club: Club, plan: int | None = None, method: str = "cash") -> tuple[int, Any]:
    manager = await factories.make_user(MANAGER, location_ids=[club.location])
    staff = _staff(manager, club.location)
    membership_id = await desk.enrol(
        staff, club.member.id, plan or club.plan, method, request_key=secrets.token_urlsafe(24)
    )
    return membership_id, staff


async def test_a_manager_enrols_a_client_paying_cash_at_the_desk(club: Club) -> None:
    manager = await _manager_of(club)
    async with factories.make_client(club.app) as staff:
        await factories.login(staff, manager)
        page = await staff.get(f"/memberships/desk/{club.member.id}")
        assert page.status_code == 200 and 'value="cash"' in page.text
        csrf = staff.cookies["portal_csrf"]
        form = {"request_key": _key(page.text), "plan_id": str(club.plan), "method": "cash",
                "_csrf_token": csrf}  # fmt: skip
        bad = await staff.post(
            f"/memberships/desk/{club.member.id}", data={**form, "method": "bitcoin"}
        )
        assert bad.status_code == 400 and "Choose how the client pays." in bad.text
        assert 'value="bitcoin"' not in bad.text and f'value="{club.plan}" selected' in bad.text
        answer = await staff.post(f"/memberships/desk/{club.member.id}", data=form)
        assert answer.status_code == 303, answer.text
        again = await staff.post(f"/memberships/desk/{club.member.id}", data=form)
        assert again.headers["location"] == answer.headers["location"]  # one enrolment
        (membership,) = await Membership.select().where(Membership.client == club.member.id).run()
        assert answer.headers["location"] == f"/memberships/{membership['id']}"
        shown = await staff.get(f"/memberships/{membership['id']}")
    assert "At the front desk, each period" in shown.text
    assert "$129.90 for the period from" in shown.text and "payable from" in shown.text
    assert "Record $129.90 paid" not in shown.text  # the next period is a month away

    assert (membership["status"], membership["billing"], membership["subscription_id"]) == (
        "active", "desk", None,
    )  # fmt: skip
    assert membership["current_period_end"] == subscriptions.next_period_end(
        membership["current_period_start"], "month"
    )
    assert await _periods(membership["id"]) == [("paid", TOTAL)]
    (sale_id,) = await _sale_ids(membership["id"])
    sale = await Sale.select().where(Sale.id == sale_id).first().run()
    assert (sale["channel"], sale["payment_method"], sale["sold_by"], sale["total_cents"]) == (
        "membership", "cash", manager.id, TOTAL,
    )  # fmt: skip
    assert sale["valid_until"] == membership["current_period_end"]
    (payment,) = await Payment.select().where(Payment.sale == sale_id).run()
    assert (payment["provider"], payment["method"], payment["status"]) == (
        "in_clinic", "cash", "succeeded",
    )  # fmt: skip
    assert (payment["amount_cents"], payment["fee_cents"], payment["net_cents"]) == (
        TOTAL, 0, TOTAL,
    )  # fmt: skip
    assert await journal_of([sale_id]) == Counter(
        {("cash_on_hand", TOTAL, 0): 1, ("deferred_revenue", 0, NET): 1, ("tax_payable", 0, TAX): 1}
    )
    values = await SaleSession.select(SaleSession.value_cents).where(SaleSession.sale == sale_id)
    assert sorted(int(v["value_cents"]) for v in values) == [6000, 6000]
    assert await subscriptions.sessions_left(membership["id"]) == 2
    (record,) = await AuditLog.select().where(AuditLog.action == "desk_join").run()
    assert json.loads(record["after"])["method"] == "cash"
    receipts = await OutboxMessage.select().where(OutboxMessage.to_address == club.member.email)
    assert len(receipts) == 1


async def test_each_next_period_is_taken_once_at_the_desk(club: Club) -> None:
    membership_id, staff = await _enrol(club)
    with pytest.raises(Invalid, match="not payable yet"):
        await desk.record_payment(staff, membership_id, "cash", request_key="k" * 24)
    await age(membership_id, 25)  # the next period begins in 5 or 6 days
    key = secrets.token_urlsafe(24)
    sale_id = await desk.record_payment(staff, membership_id, "terminal", request_key=key)
    assert await desk.record_payment(staff, membership_id, "terminal", request_key=key) == sale_id
    with pytest.raises(Invalid, match="not payable yet"):  # another form: not two ahead
        await desk.record_payment(
            staff, membership_id, "cash", request_key=secrets.token_urlsafe(24)
        )
    assert await _periods(membership_id) == [("paid", TOTAL), ("paid", TOTAL)]
    first, second = await _sale_ids(membership_id)
    assert second == sale_id
    assert await journal_of([sale_id]) == Counter(
        {("cash_on_hand", TOTAL, 0): 1, ("deferred_revenue", 0, NET): 1, ("tax_payable", 0, TAX): 1}
    )
    assert await Payment.count().where(Payment.sale.is_in([first, second])) == 2
    assert await subscriptions.sessions_left(membership_id) == 4
    membership = await subscriptions.get_membership(membership_id)
    # Paid ahead: the current period stays the first until the second begins.
    period1, period2 = reversed(await subscriptions.periods_of(membership_id))
    assert membership["current_period_end"] == period1["period_end"] == period2["period_start"]
    sale = await Sale.select(Sale.valid_until).where(Sale.id == sale_id).first().run()
    assert sale["valid_until"] == period2["period_end"]
    assert await desk.fall_due(period1["period_end"] + timedelta(hours=1)) == []
    membership = await subscriptions.get_membership(membership_id)
    assert (membership["status"], membership["current_period_end"]) == (
        "active", period2["period_end"],
    )  # fmt: skip
    with pytest.raises(Forbidden):
        client = CurrentUser(club.member.id, club.member.email, "", "client", frozenset())
        await desk.record_payment(client, membership_id, "cash", request_key="c" * 24)


async def test_an_unpaid_desk_period_falls_into_arrears_like_a_failed_renewal(
    club: Club,
) -> None:
    membership_id, staff = await _enrol(club)
    await age(membership_id, 40)  # the first period ended some 10 days ago
    end = (await subscriptions.get_membership(membership_id))["current_period_end"]
    now = utcnow()
    assert await desk.fall_due(now) == [membership_id]
    assert await desk.fall_due(now) == []  # the hourly run again: nothing more
    membership = await subscriptions.get_membership(membership_id)
    assert (membership["status"], membership["grace_until"]) == (
        "past_due",
        end + subscriptions.GRACE,
    )
    assert membership["current_period_start"] == end
    assert await _periods(membership_id) == [("paid", TOTAL), ("open", TOTAL)]
    manager = await factories.make_user(MANAGER, location_ids=[club.location])
    async with factories.make_client(club.app) as browser:
        await factories.login(browser, manager)
        arrears = await browser.get("/memberships?status=past_due")
        page = await browser.get(f"/memberships/{membership_id}")
    assert f'href="/memberships/{membership_id}"' in arrears.text
    assert "this period is unpaid" in page.text and ", due now" in page.text
    # Past the grace (ended some 3 days ago): the sessions cannot be booked; no card email.
    assert await subscriptions.remind_grace_ending(now) == []
    assert await subscriptions.enforce_arrears(now) == [membership_id]
    (first_sale,) = await _sale_ids(membership_id)
    assert (await Sale.select(Sale.frozen).where(Sale.id == first_sale).first().run())["frozen"]

    sale_id = await desk.record_payment(
        staff, membership_id, "cash", request_key=secrets.token_urlsafe(24)
    )
    membership = await subscriptions.get_membership(membership_id)
    assert (membership["status"], membership["grace_until"]) == ("active", None)
    assert await _periods(membership_id) == [("paid", TOTAL), ("paid", TOTAL)]
    owed = (await subscriptions.periods_of(membership_id))[0]
    assert (owed["period_start"], owed["sale_id"]) == (end, sale_id)
    assert not (await Sale.select(Sale.frozen).where(Sale.id == first_sale).first().run())["frozen"]
    assert await journal_of([sale_id]) == Counter(
        {("cash_on_hand", TOTAL, 0): 1, ("deferred_revenue", 0, NET): 1, ("tax_payable", 0, TAX): 1}
    )
    assert await subscriptions.sessions_left(membership_id) == 4
    await sales.expire_due()  # the first period's two end as breakage: this period's two left
    assert await subscriptions.sessions_left(membership_id) == 2
    assert await journal_of([first_sale]) == Counter(
        {("cash_on_hand", TOTAL, 0): 1, ("deferred_revenue", 0, NET): 1, ("tax_payable", 0, TAX): 1,
         ("deferred_revenue", NET, 0): 1, ("breakage_revenue", 0, NET): 1}
    )  # fmt: skip


async def test_a_desk_member_freezes_then_resumes_without_stripe(club: Club) -> None:
    plan = await make_plan(club.location, club.service, name="Pausable", freeze_allowed=True)
    membership_id, staff = await _enrol(club, plan)
    await subscriptions.set_frozen(NoStripe(), staff, membership_id, True, request_key="f" * 24)  # type: ignore[arg-type]
    membership = await subscriptions.get_membership(membership_id)
    assert membership["paused"]
    due = await desk.next_due(membership)
    assert due.reason == "The membership is frozen: nothing is due."
    await age(membership_id, 35)
    end = (await subscriptions.get_membership(membership_id))["current_period_end"]
    assert await desk.fall_due() == []  # a frozen period begins uncharged
    membership = await subscriptions.get_membership(membership_id)
    assert (membership["status"], membership["current_period_start"]) == ("active", end)
    assert await _periods(membership_id) == [("paid", TOTAL)]
    await subscriptions.set_frozen(NoStripe(), staff, membership_id, False, request_key="r" * 24)  # type: ignore[arg-type]
    membership = await subscriptions.get_membership(membership_id)
    assert not membership["paused"]
    due = await desk.next_due(membership)  # the frozen period runs on; the next one is due
    assert (due.start, due.payable_from) == (
        membership["current_period_end"], membership["current_period_end"] - desk.ADVANCE,
    )  # fmt: skip
    actions = await AuditLog.select(AuditLog.action).where(AuditLog.entity == "membership").run()
    assert [a["action"] for a in actions] == ["desk_join", "freeze", "resume"]


async def test_a_desk_member_cancels_with_notice_and_minimum_term(club: Club) -> None:
    plan = await make_plan(
        club.location, club.service, name="Committed", min_term_periods=2, notice_days=14
    )
    membership_id, staff = await _enrol(club, plan)
    membership = await subscriptions.get_membership(membership_id)
    quote = await subscriptions.quote_cancel(membership)
    second_end = subscriptions.next_period_end(membership["current_period_end"], "month")
    assert (quote.ends_at, quote.billed_periods, quote.more_charges) == (second_end, 1, 1)
    ends = await subscriptions.cancel(NoStripe(), staff, membership_id, request_key="x" * 24)  # type: ignore[arg-type]
    assert ends == second_end
    with pytest.raises(Invalid, match="already set to end"):
        await subscriptions.cancel(NoStripe(), staff, membership_id, request_key="y" * 24)  # type: ignore[arg-type]
    await age(membership_id, 25)
    await desk.record_payment(staff, membership_id, "cash", request_key=secrets.token_urlsafe(24))
    membership = await subscriptions.get_membership(membership_id)
    assert (await desk.next_due(membership)).reason == "The membership ends before another period."
    await age(membership_id, 70)  # past the second period's end, so the cancel date
    assert await desk.fall_due() == []
    membership = await subscriptions.get_membership(membership_id)
    assert membership["status"] == "ended" and membership["ended_at"] == membership["cancel_at"]
    assert await _periods(membership_id) == [("paid", TOTAL), ("paid", TOTAL)]


async def test_cancel_page_and_form_for_a_desk_member(club: Club) -> None:
    membership_id, _ = await _enrol(club)
    manager = await factories.make_user(MANAGER, location_ids=[club.location])
    async with factories.make_client(club.app) as browser:
        await factories.login(browser, manager)
        page = await browser.get(f"/memberships/{membership_id}/cancel")
        assert page.status_code == 200
        answer = await browser.post(
            f"/memberships/{membership_id}/cancel",
            data={"request_key": _key(page.text), "_csrf_token": browser.cookies["portal_csrf"]},
        )
    assert answer.status_code == 303, answer.text
    membership = await subscriptions.get_membership(membership_id)
    assert membership["cancel_at"] == membership["current_period_end"]


async def test_the_payment_form_on_the_membership_page(club: Club) -> None:
    membership_id, _ = await _enrol(club)
    await age(membership_id, 27)
    manager = await factories.make_user(MANAGER, location_ids=[club.location])
    other = await factories.make_user(
        MANAGER, location_ids=[await factories.make_location(slug="other")]
    )
    async with factories.make_client(club.app) as browser:
        await factories.login(browser, other)
        assert (await browser.get(f"/memberships/{membership_id}")).status_code == 403
        refused = await factories.post_form(
            browser, f"/memberships/{membership_id}/payment",
            {"request_key": secrets.token_urlsafe(24), "method": "cash"},
        )  # fmt: skip
        assert refused.status_code == 403
    async with factories.make_client(club.app) as browser:
        await factories.login(browser, manager)
        page = await browser.get(f"/memberships/{membership_id}")
        assert "Record $129.90 paid" in page.text
        form = {"request_key": _key(page.text), "method": "terminal",
                "_csrf_token": browser.cookies["portal_csrf"]}  # fmt: skip
        wrong = await browser.post(
            f"/memberships/{membership_id}/payment", data={**form, "method": "iou"}
        )
        assert wrong.status_code == 422  # the page again, the reason beside the field
        assert '<small class="field-error" id="method-error">Choose how the client paid.' in (
            wrong.text
        )
        assert 'aria-describedby="method-error"' in wrong.text
        assert await _periods(membership_id) == [("paid", TOTAL)]
        answer = await browser.post(f"/memberships/{membership_id}/payment", data=form)
        assert answer.status_code == 303
        again = await browser.post(f"/memberships/{membership_id}/payment", data=form)
        assert again.status_code == 303
        shown = await browser.get(f"/memberships/{membership_id}")
    assert "Record $129.90 paid" not in shown.text
    assert await _periods(membership_id) == [("paid", TOTAL), ("paid", TOTAL)]
    (_, second) = await _sale_ids(membership_id)
    sale = await Sale.select(Sale.payment_method).where(Sale.id == second).first().run()
    assert sale["payment_method"] == "terminal"


async def test_the_first_period_paid_at_the_desk_ends_a_month_later(club: Club) -> None:
    before = utcnow()
    membership_id, _ = await _enrol(club, method="cheque")
    membership = await subscriptions.get_membership(membership_id)
    start: datetime = membership["current_period_start"]
    assert before <= start <= utcnow()
    assert membership["current_period_end"] == subscriptions.next_period_end(start, "month")
