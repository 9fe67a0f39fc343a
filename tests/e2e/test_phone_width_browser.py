"""The owner's pages this change added or reworked fit a 390 px phone, with and
without JavaScript: no sideways scrolling (wide tables scroll inside their box)."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser

from portal.demo import DEMO_PASSWORD
from tests.e2e.conftest import LiveServer, sign_in

PAGES = (
    "/", "/reports/periods", "/reports/revenue", "/account/two-step",
    "/account/two-step/totp", "/account/two-step/passkeys/names", "/settings/two-step", "/locations", "/rooms",
    "/therapists", "/catalog/services", "/users", "/sales/", "/audit", "/reports/payments",
    "/outbox", "/exports/",
)  # fmt: skip


@pytest.mark.parametrize("javascript", [True, False])
async def test_owner_pages_fit_a_phone(
    browser: Browser, live_server: LiveServer, javascript: bool
) -> None:
    context = await browser.new_context(
        viewport={"width": 390, "height": 844}, java_script_enabled=javascript
    )
    try:
        page = await context.new_page()
        await sign_in(page, live_server, "owner@demo.clinic", DEMO_PASSWORD)
        too_wide = []
        for path in PAGES:
            response = await page.goto(f"{live_server.url}{path}")
            assert response is not None and response.status == 200, path
            width = await page.evaluate("document.documentElement.scrollWidth")
            if width > 390:
                too_wide.append((path, width))
        assert too_wide == []
    finally:
        await context.close()


@pytest.mark.parametrize("javascript", [True, False])
async def test_the_note_writing_page_fits_a_phone(
    browser: Browser, live_server: LiveServer, javascript: bool
) -> None:
    """The therapist's home lists the sessions still to write up; the note form of one
    (its trigger-point table scrolls inside its box) fits the screen."""
    context = await browser.new_context(
        viewport={"width": 390, "height": 844}, java_script_enabled=javascript
    )
    try:
        page = await context.new_page()
        await sign_in(page, live_server, "therapist@demo.clinic", DEMO_PASSWORD)
        links = await page.eval_on_selector_all(
            "main a[href^='/notes/appointment/']", "els => els.map(a => a.getAttribute('href'))"
        )
        assert links, "the demo leaves the therapist a note to write"
        response = await page.goto(f"{live_server.url}{links[0]}")
        assert response is not None and response.status == 200
        assert await page.locator("form.note-form").count() == 1
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        await context.close()
