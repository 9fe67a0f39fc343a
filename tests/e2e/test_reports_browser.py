"""An accountant filters the payments report to one location and one month and downloads it."""

from __future__ import annotations

import csv
import re
from datetime import timedelta
from pathlib import Path

from playwright.async_api import Browser, Page, expect

from portal.demo import DEMO_PASSWORD
from portal.timeutil import to_local, utcnow
from tests.e2e.conftest import LiveServer, sign_in

LOCATION = "Portland Pearl District"


async def test_accountant_filters_payments_and_downloads_csv(
    page: Page, live_server: LiveServer
) -> None:
    # The demo sells a package at Portland today (a card-terminal payment).
    today = to_local(utcnow(), "America/Los_Angeles").date()
    first = today.replace(day=1)
    last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)

    await sign_in(page, live_server, "accountant@demo.clinic", DEMO_PASSWORD)
    await page.get_by_role("link", name="Reports", exact=True).click()
    await expect(page.get_by_role("heading", level=1, name="Overview")).to_be_visible()
    await expect(page.locator("svg.chart-svg").first).to_be_visible()
    await (
        page.get_by_role("navigation", name="Reports").get_by_role("link", name="Payments").click()
    )
    await expect(page.get_by_role("heading", level=1, name="Payments")).to_be_visible()

    await page.get_by_label("From").fill(first.isoformat())
    await page.get_by_label("To", exact=True).fill(last.isoformat())
    await page.locator("#location summary").click()
    box = page.get_by_role("checkbox", name=re.compile(LOCATION))
    await box.check()
    # A small box with its clinic's name on one line beside it, inside the open list.
    shape = await box.bounding_box()
    text = await page.locator("#location li label", has_text=LOCATION).bounding_box()
    assert shape is not None and text is not None
    assert shape["width"] <= 24 and shape["height"] <= 24
    assert text["height"] <= 2 * shape["height"] + 8
    assert text["x"] <= shape["x"] and text["x"] + text["width"] > shape["x"] + shape["width"]
    await page.locator("#location summary").click()  # close the dropdown
    await page.get_by_label("Group by").select_option("month")
    await page.get_by_role("button", name="Apply").click()

    await expect(page.locator(".report-meta")).to_contain_text(LOCATION)
    await expect(page.locator(".report-meta")).to_contain_text(first.isoformat())
    summary = page.locator("table.report-table").first
    await expect(summary.locator("tbody tr")).to_have_count(1)
    await expect(summary.locator("tbody tr").first).to_contain_text(LOCATION)
    assert f"start={first.isoformat()}" in page.url and "location=" in page.url

    async with page.expect_download() as info:
        await page.get_by_role("link", name="CSV").nth(1).click()  # every line
    download = await info.value
    assert download.suggested_filename == (
        f"payments_portland-pearl_{first.isoformat()}_{last.isoformat()}.csv"
    )
    path = Path(await download.path())
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == [
        "date", "location", "client", "client_email", "item", "payment_method", "gross", "tax",
        "refunded", "disputed", "fee", "net", "currency", "stripe_payment_intent", "sale_id",
        "type", "kind",
    ]  # fmt: skip
    assert len(rows) >= 2
    for row in rows[1:]:
        assert row[1] == LOCATION
        assert first.isoformat() <= row[0] <= last.isoformat()
        assert re.fullmatch(r"-?\d+\.\d{2}", row[6])


async def test_locations_filter_works_without_javascript(
    browser: Browser, live_server: LiveServer
) -> None:
    context = await browser.new_context(java_script_enabled=False)
    page = await context.new_page()
    try:
        await sign_in(page, live_server, "accountant@demo.clinic", DEMO_PASSWORD)
        await page.goto(f"{live_server.url}/reports/payments")
        await page.locator("#location summary").click()
        await page.get_by_role("checkbox", name=re.compile(LOCATION)).check()
        await page.get_by_role("button", name="Apply").click()
        await expect(page.locator(".report-meta")).to_contain_text(LOCATION)
        assert "location=" in page.url
    finally:
        await context.close()
