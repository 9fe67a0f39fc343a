"""The owner creates a "5 × 60 min neuromuscular" package; the Portland manager sets a
price override for Portland; Portland's public page shows it, Austin's does not."""

from __future__ import annotations

import re

from playwright.async_api import Page, expect

from portal.demo import DEMO_PASSWORD
from tests.e2e.conftest import LiveServer, sign_in

NAME = "5 × 60 min neuromuscular"


async def test_owner_creates_package_manager_overrides_public_page_shows_it(
    page: Page, live_server: LiveServer
) -> None:
    await sign_in(page, live_server, "owner@demo.clinic", DEMO_PASSWORD)
    await page.get_by_role("link", name="Catalog", exact=True).click()
    await expect(page.get_by_role("heading", name="Packages")).to_be_visible()
    await page.get_by_role("button", name="New package").click()

    await page.get_by_role("textbox", name="Name", exact=True).fill(NAME)
    await page.get_by_label("Service").select_option(label="Neuromuscular massage, 60 min")
    await page.get_by_role("spinbutton", name="Sessions", exact=True).fill("0")
    await page.get_by_label("Validity (days from purchase)").fill("180")
    await page.get_by_label("Price of all sessions").fill("525")
    await page.get_by_role("button", name="Create package").click()

    # Bad input: the message stands beside the field and the input is kept.
    await expect(page.locator("#sessions-error")).to_contain_text("at least 1")
    await expect(page.get_by_role("textbox", name="Name", exact=True)).to_have_value(NAME)
    await page.get_by_role("spinbutton", name="Sessions", exact=True).fill("5")
    await page.get_by_role("button", name="Create package").click()

    await expect(page.get_by_role("status")).to_contain_text("created")
    await expect(page.get_by_role("heading", name=re.compile(re.escape(NAME)))).to_be_visible()
    await expect(page.locator(".price-card")).to_contain_text("$525.00")
    await expect(page.locator(".price-card")).to_contain_text("$105.00 per session")
    await expect(page.locator(".price-card")).to_contain_text("Save $75.00 (12.5 %)")
    package_url = page.url
    assert re.search(r"/catalog/packages/\d+$", package_url)

    await page.get_by_text("Olivia Owens").click()
    await page.get_by_role("button", name="Sign out").click()

    # The Portland manager overrides the price for Portland only.
    await sign_in(page, live_server, "manager.portland@demo.clinic", DEMO_PASSWORD)
    await page.goto(package_url)
    rows = page.locator("table.location-prices tbody tr")
    await expect(rows).to_have_count(1)  # only the manager's own location
    await rows.first.get_by_role("link", name="Override…").click()
    await expect(
        page.get_by_role("heading", level=1, name=re.compile("Portland Pearl District"))
    ).to_be_visible()
    await page.get_by_label("Override price").fill("549")
    await page.get_by_label("Note (optional)").fill("Pearl District pricing")
    await page.get_by_role("button", name="Save override").click()
    await expect(page.get_by_role("status")).to_contain_text("Price override for Portland")
    await expect(page.locator(".price-card")).to_contain_text("$549.00")
    await expect(page.locator("table.price-history")).to_contain_text("Pearl District pricing")

    # Another location's override page is refused (a guessed id: 2 is Austin in the demo).
    response = await page.goto(f"{package_url}/locations/2")
    assert response is not None and response.status == 403

    # The public pages, signed out: Portland shows the override, Austin the base price.
    public = await page.context.browser.new_context()  # type: ignore[union-attr]
    visitor = await public.new_page()
    try:
        await visitor.goto(f"{live_server.url}/book/portland-pearl")
        card = visitor.locator("article.package-card", has_text=NAME)
        await expect(card.get_by_test_id("price")).to_have_text("$549.00")
        await expect(card).to_contain_text("$109.80 per session")
        await expect(card).to_contain_text("Valid for 180 days")
        await visitor.goto(f"{live_server.url}/book/austin-soco")
        card = visitor.locator("article.package-card", has_text=NAME)
        await expect(card.get_by_test_id("price")).to_have_text("$525.00")
        await expect(card).to_contain_text("Plus 8.25 % tax")
    finally:
        await public.close()
