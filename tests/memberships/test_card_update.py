"""The member updates the card on Stripe's hosted page (the stand-in's billing portal):
the portal only redirects there and back, and the unpaid renewal is paid with the new
card, which ends the arrears."""

from __future__ import annotations

import re

import httpx

from portal.memberships import subscriptions
from tests.memberships.conftest import Club, joined


async def _past_due(club: Club) -> dict:
    membership = await joined(club)
    await club.standin.set_card_declines(str(membership["customer_id"]), True)
    await club.standin.advance_subscription(str(membership["subscription_id"]))
    await club.standin.drain()
    return await subscriptions.get_membership(membership["id"])


async def test_a_member_in_arrears_updates_the_card_on_stripes_page_and_is_paid_up(
    club: Club, member_client, club_webhook
) -> None:
    membership = await _past_due(club)
    assert membership["status"] == "past_due"
    page = await member_client.get(f"/memberships/{membership['id']}")
    assert "Update card and pay" in page.text
    answer = await member_client.post(
        f"/memberships/{membership['id']}/card",
        data={"_csrf_token": member_client.cookies["portal_csrf"]},
    )
    assert answer.status_code == 303
    hosted = answer.headers["location"]
    assert re.fullmatch(re.escape(club.standin.base_url) + r"/billing_portal/bps_\w+", hosted)
    async with httpx.AsyncClient() as browser:
        form = await browser.get(hosted)
        assert form.status_code == 200 and "Update your card" in form.text
        assert "card number" not in page.text.lower()  # nothing of the card in the portal
        declined = await browser.post(hosted, data={"action": "decline"})
        assert declined.status_code == 303
        await club.standin.drain()
        assert (await subscriptions.get_membership(membership["id"]))["status"] == "past_due"
        saved = await browser.post(hosted, data={"action": "save"})
    assert saved.status_code == 303
    assert saved.headers["location"] == f"{club.app.state.settings.base_url}/memberships/" + str(
        membership["id"]
    )
    await club.standin.drain()
    fresh = await subscriptions.get_membership(membership["id"])
    assert (fresh["status"], fresh["grace_until"]) == ("active", None)
    periods = await subscriptions.periods_of(membership["id"])
    assert [p["status"] for p in periods] == ["paid", "paid"]
    assert await subscriptions.sessions_left(membership["id"]) == 4


async def test_an_ended_membership_has_no_card_to_update(
    club: Club, member_client, club_webhook
) -> None:
    membership = await _past_due(club)
    await club.standin.api("DELETE", f"/v1/subscriptions/{membership['subscription_id']}")
    await club.standin.drain()
    answer = await member_client.post(
        f"/memberships/{membership['id']}/card",
        data={"_csrf_token": member_client.cookies["portal_csrf"]},
    )
    assert answer.status_code == 303 and answer.headers["location"].endswith(
        f"/memberships/{membership['id']}"
    )
    page = await member_client.get(answer.headers["location"])
    assert "no card to update" in page.text
