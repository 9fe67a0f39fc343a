"""The front desk's membership forms in Chromium, on a 390 px phone: the Portland manager
enrols Casey in the monthly plan paid in cash from her record; she is then a member with
her period's sessions; later the manager freezes the membership at the desk, the plan's
freeze fee shown and recorded paid. The pages fit the phone's width."""

from __future__ import annotations

import re
import sqlite3

from playwright.async_api import Browser, Page, expect

from portal.demo import DEMO_PASSWORD
from tests.e2e.conftest import LiveServer, sign_in

PLAN = "Monthly neuromuscular"


async def _fits(page: Page) -> None:
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, (page.url, width)


async def test_manager_enrols_a_client_paying_cash_then_freezes_with_the_fee(
    browser: Browser, live_server: LiveServer
) -> None:
    # The demo plan allows freezing; here it charges $15.00 a frozen period (no tax).
    with sqlite3.connect(live_server.var_dir / "portal.sqlite3") as database:
        database.execute(
            "UPDATE membership_plan SET freeze_fee_cents = 1500 WHERE name = ?", (PLAN,)
        )
    context = await browser.new_context(viewport={"width": 390, "height": 844})
    try:
        page = await context.new_page()
        await sign_in(page, live_server, "manager.portland@demo.clinic", DEMO_PASSWORD)
        await page.goto(f"{live_server.url}/clients?q=Casey")
        await page.get_by_role("link", name="Casey Morgan").click()
        await page.get_by_role("button", name="Start a membership").click()
        await expect(page.get_by_role("heading", level=1)).to_contain_text("Casey Morgan")
        await _fits(page)
        plan = page.get_by_label("Plan")
        option = plan.locator("option", has_text=PLAN)
        await plan.select_option(value=await option.get_attribute("value"))
        await page.get_by_label("How the client pays").select_option("cash")
        await page.get_by_role("button", name="Start the membership").click()

        await expect(page.locator(".flash")).to_contain_text(
            "Enrolled. The first period is paid (cash)"
        )
        await expect(page.get_by_test_id("status")).to_contain_text("Active")
        await expect(page.get_by_test_id("sessions-left")).to_have_text("2")
        membership_url = page.url.split("?")[0]
        await expect(page.locator("main")).to_contain_text("At the front desk, each period")

        # Casey is among the members, with her plan.
        await page.goto(f"{live_server.url}/memberships")
        row = page.locator("tr", has_text="Casey Morgan").filter(has_text=PLAN)
        await expect(row.first).to_be_visible()
        await _fits(page)

        # The freeze at the desk: the fee shown, how it was paid chosen, recorded once.
        await page.goto(membership_url)
        await expect(page.get_by_test_id("freeze-fee")).to_contain_text(
            "Freeze fee $15.00 for the frozen period from"
        )
        await _fits(page)
        await page.get_by_label("Fee paid by").select_option("cheque")
        await page.get_by_role("button", name="Freeze and record $15.00 paid").click()
        await expect(page.locator(".flash")).to_contain_text(
            "Frozen: the freeze fee of $15.00 is recorded paid"
        )
        await expect(page.get_by_role("button", name="Resume")).to_be_visible()
        await expect(page.get_by_test_id("freeze-fee")).to_have_count(0)
        await expect(page.get_by_test_id("next-due")).to_contain_text(
            re.compile("frozen: nothing is due", re.IGNORECASE)
        )
        await expect(page.get_by_test_id("sessions-left")).to_have_text("2")

        await page.goto(f"{live_server.url}/reports/memberships")
        await expect(page.get_by_test_id("joins-by-channel")).to_contain_text("at the desk")
        await _fits(page)
    finally:
        await context.close()
