"""A client joins Portland's monthly membership online through the stand-in's hosted
payment page, books a session with it (the membership's session goes first: it expires
before the client's package), and cancels, the minimum term explained first."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from playwright.async_api import Page, expect

from portal.demo import DEMO_PASSWORD
from tests.e2e.conftest import LiveServer, sign_in

PORTLAND = ZoneInfo("America/Los_Angeles")
PLAN = "Monthly neuromuscular"


def _weekday_ahead() -> str:
    """A weekday at least two days ahead (Theresa works Monday to Friday)."""
    day = datetime.now(PORTLAND).date() + timedelta(days=2)
    while day.weekday() > 4:
        day += timedelta(days=1)
    return day.isoformat()


async def test_client_joins_books_with_a_membership_session_and_cancels(
    page: Page, live_server: LiveServer
) -> None:
    await sign_in(page, live_server, "client@demo.clinic", DEMO_PASSWORD)
    await page.goto(f"{live_server.url}/book/portland-pearl/memberships")
    card = page.locator("article.package-card", has_text=PLAN)
    await expect(card.get_by_test_id("price")).to_contain_text("$170.00")
    await card.get_by_role("button", name="Join for $170.00").click()
    await page.wait_for_url(re.compile(re.escape(live_server.stripe.base_url) + r"/checkout/pay/"))
    await page.get_by_role("button", name="Pay 170.00 USD").click()

    # Back on the portal: active once the webhook is heard.
    await page.wait_for_url(re.compile(re.escape(live_server.url) + r"/memberships/\d+"))
    membership_url = page.url.split("?")[0]
    status = page.get_by_test_id("status")
    for _ in range(40):
        if "Active" in await status.inner_text():
            break
        await page.wait_for_timeout(250)
        await page.reload()
    await expect(status).to_contain_text("Active")
    await expect(page.get_by_test_id("sessions-left")).to_have_text("2")

    # Book a session from My account: the membership's period offers it.
    await page.get_by_role("link", name="My account", exact=True).click()
    period = page.locator("section.package-item", has_text=f"{PLAN} — membership period")
    await period.get_by_role("button", name="Book a session").click()
    await page.get_by_label("Day", exact=True).fill(_weekday_ahead())
    slots = page.get_by_role("list", name="Free times")
    await slots.get_by_role("button", name=re.compile(r"^09:00")).click()
    await expect(page.locator(".flash")).to_contain_text("Booked. See you then!")
    await page.goto(membership_url)
    await expect(page.get_by_test_id("sessions-left")).to_have_text("1")

    # Cancel: the minimum term and notice explained, then the end date confirmed.
    await page.get_by_role("button", name="Cancel…").click()
    await expect(page.locator("main")).to_contain_text("Its minimum term is 3 period(s)")
    await expect(page.locator("main")).to_contain_text("14 days' notice")
    ends = await page.get_by_test_id("ends").inner_text()
    await page.get_by_role("button", name="Cancel the membership").click()
    await expect(page.locator(".flash")).to_contain_text(
        f"Cancelled: the membership ends on {ends}."
    )
    await expect(page.get_by_role("button", name="Cancel…")).to_have_count(0)
