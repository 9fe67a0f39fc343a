"""The member's own changes and what follows from them: cancelling with notice and a
minimum term explained first, freezing, booking with membership sessions (earliest expiry
first), and a renewal left unpaid past its grace period refusing those bookings."""

from __future__ import annotations

import json
import re
import secrets
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from portal.audit.tables import AuditLog
from portal.auth.service import CLIENT, CurrentUser
from portal.bookings import service as bookings
from portal.memberships import subscriptions
from portal.rooms.tables import Room
from portal.sales.tables import SaleSession
from portal.timeutil import utcnow
from tests import factories
from tests.bookings.conftest import add_therapist, give_package
from tests.memberships.conftest import Club
from tests.memberships.helpers import make_plan

ZONE = ZoneInfo("America/New_York")


def _member(club: Club) -> CurrentUser:
    return CurrentUser(club.member.id, club.member.email, "", CLIENT, frozenset())


async def _join(club: Club, plan: int) -> dict:
    membership_id, url = await subscriptions.join(
        club.gateway, _member(club), plan, base_url="http://portal.test",
        request_key=secrets.token_urlsafe(24),
    )  # fmt: skip
    await club.standin.complete_session(url.rsplit("/", 1)[-1])
    await club.standin.drain()
    membership = await subscriptions.get_membership(membership_id)
    assert membership["status"] == "active"
    return membership


def _key(html: str) -> str:
    found = re.search(r'name="request_key" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


async def test_cancel_explains_notice_and_minimum_term_then_ends_after_the_last_period(
    club: Club, member_client, club_webhook
) -> None:
    plan = await make_plan(
        club.location, club.service, name="Committed", min_term_periods=3, notice_days=14
    )
    membership = await _join(club, plan)
    first_end = membership["current_period_end"]
    ends = subscriptions.next_period_end(subscriptions.next_period_end(first_end, "month"), "month")
    page = await member_client.get(f"/memberships/{membership['id']}/cancel")
    assert page.status_code == 200
    assert f'data-testid="ends">{ends.astimezone(ZONE):%Y-%m-%d}<' in page.text
    assert "14 days' notice" in page.text and "minimum term is 3 period(s); 1 have" in page.text
    assert "2 more charge(s) of $129.90" in page.text

    answer = await member_client.post(
        f"/memberships/{membership['id']}/cancel",
        data={"request_key": _key(page.text), "_csrf_token": member_client.cookies["portal_csrf"]},
    )
    assert answer.status_code == 303, answer.text
    fresh = await subscriptions.get_membership(membership["id"])
    assert fresh["cancel_at"] == ends
    stripe_side = await club.gateway.retrieve_subscription(str(membership["subscription_id"]))
    assert stripe_side.cancel_at == ends
    (record,) = await AuditLog.select().where(AuditLog.entity == "membership").run()
    assert (record["action"], json.loads(record["after"])) == (
        "cancel", {"cancel_at": ends.isoformat()},
    )  # fmt: skip
    again = await member_client.get(f"/memberships/{membership['id']}/cancel")
    assert "already set to end" in again.text

    for _ in range(3):
        await club.standin.advance_subscription(str(membership["subscription_id"]))
    await club.standin.drain()
    fresh = await subscriptions.get_membership(membership["id"])
    periods = await subscriptions.periods_of(membership["id"])
    assert fresh["status"] == "ended" and [p["status"] for p in periods] == ["paid"] * 3
    assert periods[0]["period_end"] == ends
    assert await subscriptions.sessions_left(membership["id"]) == 6


async def test_notice_longer_than_the_period_left_moves_the_end_one_period(
    club: Club, club_webhook
) -> None:
    plan = await make_plan(club.location, club.service, name="Long notice", notice_days=40)
    membership = await _join(club, plan)
    quote = await subscriptions.quote_cancel(membership)
    assert quote.ends_at == subscriptions.next_period_end(membership["current_period_end"], "month")
    assert (quote.more_charges, quote.billed_periods) == (1, 1)
    no_notice = await _join(club, club.plan)
    quote = await subscriptions.quote_cancel(no_notice)
    assert (quote.ends_at, quote.more_charges) == (no_notice["current_period_end"], 0)


async def test_freeze_skips_the_charge_and_the_sessions_until_resumed(
    club: Club, member_client, club_webhook
) -> None:
    plain = await _join(club, club.plan)
    page = await member_client.get(f"/memberships/{plain['id']}")
    assert "Freeze" not in page.text  # the plan does not allow it
    refused = await member_client.post(
        f"/memberships/{plain['id']}/freeze",
        data={
            "request_key": secrets.token_urlsafe(24),
            "_csrf_token": member_client.cookies["portal_csrf"],
        },
    )
    assert refused.status_code == 422
    assert 'id="form-error">This plan cannot be frozen.' in refused.text
    assert not (await subscriptions.get_membership(plain["id"]))["paused"]

    plan = await make_plan(club.location, club.service, name="Pausable", freeze_allowed=True)
    membership = await _join(club, plan)
    page = await member_client.get(f"/memberships/{membership['id']}")
    answer = await member_client.post(
        f"/memberships/{membership['id']}/freeze",
        data={"request_key": _key(page.text), "_csrf_token": member_client.cookies["portal_csrf"]},
    )
    assert answer.status_code == 303
    assert (await subscriptions.get_membership(membership["id"]))["paused"]
    await club.standin.advance_subscription(str(membership["subscription_id"]))
    await club.standin.drain()
    assert len(await subscriptions.periods_of(membership["id"])) == 1  # nothing charged
    page = await member_client.get(f"/memberships/{membership['id']}")
    assert "None while frozen" in page.text
    await member_client.post(
        f"/memberships/{membership['id']}/resume",
        data={"request_key": _key(page.text), "_csrf_token": member_client.cookies["portal_csrf"]},
    )
    assert not (await subscriptions.get_membership(membership["id"]))["paused"]
    await club.standin.advance_subscription(str(membership["subscription_id"]))
    await club.standin.drain()
    assert [p["status"] for p in await subscriptions.periods_of(membership["id"])] == ["paid"] * 2
    assert await subscriptions.sessions_left(membership["id"]) == 4


async def _bookable(club: Club) -> None:
    await add_therapist("Theresa", club.location, club.service)
    now = utcnow()
    await Room.insert(
        Room(location=club.location, name="Room A", active=True, created_at=now, updated_at=now)
    ).run()


def _slot(days: int, hour: int) -> datetime:
    day = (utcnow().astimezone(ZONE) + timedelta(days=days)).date()
    return datetime.combine(day, time(hour, 0), ZONE)


async def _book(club: Club, start: datetime) -> int:
    appointment = await bookings.book(
        _member(club), client_id=club.member.id, location_id=club.location,
        service_id=club.service, start_at=start, notify_client=False,
    )  # fmt: skip
    credit = (
        await SaleSession.select().where(SaleSession.appointment_id == appointment).first().run()
    )
    assert credit is not None
    return int(credit["sale"])


async def test_booking_takes_the_membership_session_first_as_it_expires_first(
    club: Club, club_webhook
) -> None:
    await _bookable(club)
    package = await give_package(club.member.id, club.location, club.service, sessions=3)
    membership = await _join(club, club.plan)
    (period,) = await subscriptions.periods_of(membership["id"])
    assert await _book(club, _slot(1, 10)) == period["sale_id"]
    assert await _book(club, _slot(1, 12)) == period["sale_id"]
    assert await _book(club, _slot(1, 14)) == package  # the membership's two are used
    assert await subscriptions.sessions_left(membership["id"]) == 0


async def test_after_the_grace_period_membership_sessions_cannot_be_booked_until_paid(
    club: Club, club_webhook
) -> None:
    await _bookable(club)
    membership = await _join(club, club.plan)
    await club.standin.set_card_declines(str(membership["customer_id"]), True)
    failed = await club.standin.advance_subscription(str(membership["subscription_id"]))
    await club.standin.drain()
    fresh = await subscriptions.get_membership(membership["id"])
    assert fresh["status"] == "past_due"
    assert await subscriptions.enforce_arrears(fresh["grace_until"] - timedelta(seconds=1)) == []
    assert await _book(club, _slot(1, 10))  # within the grace period: still bookable

    assert await subscriptions.enforce_arrears(fresh["grace_until"]) == [membership["id"]]
    assert await subscriptions.enforce_arrears(fresh["grace_until"]) == []  # once
    with pytest.raises(bookings.NoCredit):
        await _book(club, _slot(1, 12))

    staff = await factories.make_user("manager", location_ids=[club.location])
    async with factories.make_client(club.app) as manager:
        await factories.login(manager, staff)
        arrears = await manager.get("/memberships?status=past_due")
        assert arrears.status_code == 200 and club.member.email in arrears.text
        assert "grace until" in arrears.text

    await club.standin.set_card_declines(str(membership["customer_id"]), False)
    paid = await club.standin.api("POST", f"/v1/invoices/{failed['invoice']['id']}/pay")
    assert paid.status_code == 200
    await club.standin.drain()
    assert (await subscriptions.get_membership(membership["id"]))["status"] == "active"
    assert await _book(club, _slot(1, 12))  # thawed, and the new period's two as well
    assert await subscriptions.sessions_left(membership["id"]) == 2
