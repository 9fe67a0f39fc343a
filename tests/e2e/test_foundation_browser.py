"""The owner signs in through the form and creates a location; a manager of
another location cannot open it."""

from __future__ import annotations

import re

from playwright.async_api import Page, expect

from portal.demo import DEMO_PASSWORD
from tests.e2e.conftest import LiveServer, sign_in


async def test_owner_creates_location_other_manager_is_refused(
    page: Page, live_server: LiveServer
) -> None:
    await sign_in(page, live_server, "owner@demo.clinic", DEMO_PASSWORD)
    await expect(page.get_by_role("heading", name=re.compile("Welcome"))).to_be_visible()

    await page.get_by_role("link", name="Locations", exact=True).click()
    await page.get_by_role("button", name="New location").click()
    await page.get_by_label("Name").fill("Seattle Capitol Hill")
    await page.get_by_label("Slug").fill("seattle-capitol-hill")
    await page.get_by_label("Address").fill("600 E Pine St, Seattle, WA 98122")
    await page.get_by_label("Time zone").fill("Not/AZone")
    await page.get_by_label("Tax rate (basis points)").fill("1025")
    await page.get_by_role("button", name="Create location").click()

    # Bad input: the message stands beside the field, the input is kept.
    await expect(page.locator("#timezone-error")).to_contain_text("time zone")
    await expect(page.get_by_label("Name")).to_have_value("Seattle Capitol Hill")
    await page.get_by_label("Time zone").fill("America/Los_Angeles")
    await page.get_by_role("button", name="Create location").click()

    await expect(page.get_by_role("status")).to_contain_text("created")
    await expect(
        page.get_by_role("heading", name=re.compile("Seattle Capitol Hill"))
    ).to_be_visible()
    location_url = page.url
    assert re.search(r"/locations/\d+$", location_url)

    # Sign out, then the Austin manager tries the new location's page.
    await page.get_by_text("Olivia Owens").click()
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await sign_in(page, live_server, "manager.austin@demo.clinic", DEMO_PASSWORD)
    response = await page.goto(location_url)
    assert response is not None and response.status == 403
    await expect(page.get_by_role("heading", name="Access denied")).to_be_visible()
    # Their own location opens.
    await page.goto(f"{live_server.url}/locations")
    await expect(page.get_by_role("link", name="Austin South Congress")).to_be_visible()
    await expect(page.get_by_role("link", name="Seattle Capitol Hill")).to_have_count(0)
