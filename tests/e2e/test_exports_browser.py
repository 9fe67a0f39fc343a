"""The owner exports the chain's data from the browser: ticks the notes choice, asks, watches
the page follow the job by itself (htmx, no reload), and downloads the ZIP."""

from __future__ import annotations

import io
import time
import zipfile
from types import SimpleNamespace

from playwright.async_api import Browser, Page, expect

from portal.demo import DEMO_PASSWORD
from portal.imports import layouts
from tests.e2e.conftest import sign_in
from tests.e2e.test_jobs_browser import SlowMailServer, jobs_server  # noqa: F401  (fixture)


async def test_owner_exports_and_downloads_the_archive(
    page: Page,
    jobs_server: tuple[str, SlowMailServer],  # noqa: F811
) -> None:
    url, _ = jobs_server
    await sign_in(page, SimpleNamespace(url=url), "owner@demo.clinic", DEMO_PASSWORD)  # type: ignore[arg-type]
    await page.goto(url)
    await page.get_by_role("link", name="Data export").first.click()
    await expect(page.get_by_role("heading", name="Data export")).to_be_visible()
    await page.get_by_label("Include treatment notes").check()
    await page.get_by_role("button", name="Export the chain's data").click()

    # The export's page follows the job by itself.
    await expect(page.locator(".job-run")).to_be_visible()
    await page.evaluate("window.__notReloaded = true")
    link = page.get_by_role("button", name="Download the archive")
    await expect(link).to_be_visible(timeout=30_000)
    await expect(page.locator(".job-run")).to_contain_text("Treatment notes included.")
    assert await page.evaluate("window.__notReloaded === true")

    async with page.expect_download() as waiting:
        await link.click()
    download = await waiting.value
    path = await download.path()
    with zipfile.ZipFile(io.BytesIO(path.read_bytes())) as archive:
        names = set(archive.namelist())
        clients = archive.read("clients.csv").decode("utf-8-sig").splitlines()
    assert {"clients.csv", "balances.csv", "appointments_upcoming.csv", "notes.csv"} <= names
    assert clients[0] == ",".join(layouts.CLIENTS.headers)
    assert len(clients) > 1  # the demo's clients

    # The list of my exports offers it again.
    await page.get_by_role("link", name="All my exports").click()
    await expect(page.get_by_role("link", name="Download")).to_be_visible()


async def test_without_javascript_the_page_says_reload_then_offers_the_download(
    browser: Browser,
    jobs_server: tuple[str, SlowMailServer],  # noqa: F811
) -> None:
    url, _ = jobs_server
    context = await browser.new_context(
        viewport={"width": 390, "height": 844}, java_script_enabled=False
    )
    try:
        page = await context.new_page()
        await sign_in(page, SimpleNamespace(url=url), "owner@demo.clinic", DEMO_PASSWORD)  # type: ignore[arg-type]
        await page.goto(f"{url}/exports/")
        await page.get_by_role("button", name="Export the chain's data").click()
        await expect(page.locator(".job-run")).to_be_visible()
        link = page.get_by_role("button", name="Download the archive")
        deadline = time.monotonic() + 30
        while not await link.count():
            assert time.monotonic() < deadline, await page.content()
            await page.get_by_role("link", name="reload").click()
        await expect(page.locator(".job-run")).to_contain_text("Treatment notes not included.")
        async with page.expect_download() as waiting:
            await link.click()
        path = await (await waiting.value).path()
        with zipfile.ZipFile(io.BytesIO(path.read_bytes())) as archive:
            assert "notes.csv" not in archive.namelist()
    finally:
        await context.close()
