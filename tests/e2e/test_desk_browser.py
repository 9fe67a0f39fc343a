"""The front desk in Chromium: the Portland manager finds Casey by typing her phone the
way she says it into the sale form (htmx offers her as one types), opens her record
and sells from it with her chosen; without JavaScript the record's links still work."""

from __future__ import annotations

from playwright.async_api import Browser, Page, expect

from portal.demo import DEMO_PASSWORD
from tests.e2e.conftest import LiveServer, sign_in

CLIENT = "client@demo.clinic"


async def test_manager_finds_a_client_by_phone_and_sells_from_the_record(
    page: Page, live_server: LiveServer
) -> None:
    await sign_in(page, live_server, "manager.portland@demo.clinic", DEMO_PASSWORD)
    await page.goto(f"{live_server.url}/sales/new")
    field = page.get_by_label("Client")
    await field.press_sequentially("(503) 555-0199", delay=20)
    option = page.locator("#client-matches option")
    await expect(option).to_have_count(1)
    await expect(option).to_have_attribute("value", CLIENT)
    await expect(option).to_contain_text("Casey Morgan")

    await page.goto(f"{live_server.url}/clients?q=503.555.0199")
    await page.get_by_role("link", name="Casey Morgan").click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text("Casey Morgan")
    await expect(page.locator("#packages")).to_contain_text("Sessions left")
    await page.get_by_role("button", name="Sell", exact=True).click()
    await expect(page.get_by_label("Client")).to_have_value(CLIENT)


async def test_the_record_works_without_javascript(browser: Browser, live_server: LiveServer):
    context = await browser.new_context(java_script_enabled=False)
    try:
        page = await context.new_page()
        await sign_in(page, live_server, "manager.portland@demo.clinic", DEMO_PASSWORD)
        await page.goto(f"{live_server.url}/clients?q=Casey")
        await page.get_by_role("link", name="Casey Morgan").click()
        await page.get_by_role("button", name="Book", exact=True).click()
        await expect(page.get_by_label("Client")).to_have_value(CLIENT)
    finally:
        await context.close()
