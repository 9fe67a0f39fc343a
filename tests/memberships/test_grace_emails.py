"""A failed renewal emails the member once; a reminder goes out once before the grace
period ends; both through the outbox, in the location's time."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from portal.email.tables import OutboxMessage
from portal.memberships import subscriptions
from tests.memberships.conftest import Club, joined


async def _past_due(club: Club) -> dict:
    membership = await joined(club)
    await club.standin.set_card_declines(str(membership["customer_id"]), True)
    await club.standin.advance_subscription(str(membership["subscription_id"]))
    await club.standin.drain()
    membership = await subscriptions.get_membership(membership["id"])
    assert membership["status"] == "past_due"
    return membership


async def _mail(kind: str) -> list[dict]:
    return await OutboxMessage.select().where(OutboxMessage.kind == kind).run()


async def test_a_failed_renewal_emails_the_member_once_then_a_reminder_before_arrears(
    club: Club, club_webhook
) -> None:
    membership = await _past_due(club)
    (failed,) = await _mail("membership_payment_failed")
    assert failed["to_address"] == club.member.email
    assert failed["subject"] == "Your Monthly 60 min membership payment failed"
    assert "Amount due: $129.90" in failed["body_text"]
    grace = membership["grace_until"].astimezone(ZoneInfo("America/New_York"))
    assert f"until {grace:%Y-%m-%d %H:%M}" in failed["body_text"]
    assert f"/memberships/{membership['id']}" in failed["body_text"]
    for event in club_webhook.events():  # the events again: no second message
        await club.standin.redeliver(event["id"])
    await club.standin.drain()
    assert len(await _mail("membership_payment_failed")) == 1

    end = membership["grace_until"]
    too_early = end - subscriptions.GRACE_REMINDER - timedelta(seconds=1)
    assert await subscriptions.remind_grace_ending(too_early) == []
    assert await _mail("membership_grace_ending") == []
    for _ in range(2):  # the hourly job twice: one reminder
        assert await subscriptions.remind_grace_ending(end - timedelta(hours=1)) == [
            membership["id"]
        ]
    (reminder,) = await _mail("membership_grace_ending")
    assert reminder["subject"] == "Your Monthly 60 min membership is still unpaid"
    assert await subscriptions.remind_grace_ending(end) == []  # past it: arrears instead


async def test_a_paid_renewal_sends_nothing(club: Club, club_webhook) -> None:
    membership = await joined(club)
    await club.standin.advance_subscription(str(membership["subscription_id"]))
    await club.standin.drain()
    assert await _mail("membership_payment_failed") == []
    assert await subscriptions.remind_grace_ending(membership["current_period_end"]) == []
