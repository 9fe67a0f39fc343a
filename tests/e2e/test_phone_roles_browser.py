"""Every page of every role fits a 390 × 844 phone: no sideways scrolling, the
menu behind a labelled button, Sign out reachable, a skip-to-content link.

One browser; a context per role. The pages are the role's own menu (read from
the page, so it is exactly what the role is offered) and the detail pages those
lists link to.
"""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, Page

from portal.demo import DEMO_PASSWORD
from tests.e2e.conftest import LiveServer, sign_in

PHONE = {"width": 390, "height": 844}
ROLES = (
    "owner@demo.clinic",
    "manager.portland@demo.clinic",
    "therapist@demo.clinic",
    "accountant@demo.clinic",
    "client@demo.clinic",
)
# Detail pages: the first link on the role's pages whose path matches one of these.
DETAILS = (
    re.compile(r"^/clients/\d+$"),
    re.compile(r"^/appointments/\d+$"),
    re.compile(r"^/notes/\d+$"),
    re.compile(r"^/sales/\d+$"),
    re.compile(r"^/account/purchases/\d+$"),
    re.compile(r"^/therapists/\d+$"),
    re.compile(r"^/rooms/\d+$"),
    re.compile(r"^/locations/\d+$"),
    re.compile(r"^/progress/\d+$"),
    re.compile(r"^/account/progress$"),
    re.compile(r"^/notes/appointment/\d+$"),
    re.compile(r"^/catalog/packages/\d+$"),
    re.compile(r"^/memberships/\d+$"),
    re.compile(r"^/users/\d+$"),
    re.compile(r"^/jobs/.+$"),
)


async def _links(page: Page, selector: str) -> list[str]:
    hrefs: list[str] = await page.eval_on_selector_all(
        selector, "els => els.map(a => a.getAttribute('href'))"
    )
    return [h.split("?")[0].split("#")[0] for h in hrefs if h and h.startswith("/")]


async def _too_wide(page: Page) -> int | None:
    width: int = await page.evaluate("document.documentElement.scrollWidth")
    return width if width > PHONE["width"] else None


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "nojs"])
async def test_every_role_every_page_fits_a_phone(
    browser: Browser, live_server: LiveServer, javascript: bool
) -> None:
    too_wide: list[tuple[str, str, int]] = []
    opened: dict[str, int] = {}
    charted: list[str] = []
    for email in ROLES:
        context = await browser.new_context(viewport=PHONE, java_script_enabled=javascript)
        context.set_default_timeout(10_000)
        try:
            page = await context.new_page()
            await sign_in(page, live_server, email, DEMO_PASSWORD)
            # The menu is folded behind a labelled button; opening it shows the sections.
            menu_button = page.get_by_text("Menu", exact=True)
            await menu_button.click()
            first = page.locator("ul.mainnav a").first
            assert await first.is_visible(), email
            box = await first.bounding_box()
            assert box is not None and box["x"] + box["width"] <= PHONE["width"], email
            sign_out = page.get_by_role("button", name="Sign out")
            if not await sign_out.is_visible():
                await page.locator("details.account-menu > summary").click()
            assert await sign_out.is_visible(), email
            box = await sign_out.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
            menu = await _links(page, "ul.mainnav a")
            assert menu, email
            details: list[str] = []
            seen: set[str] = set()
            # The appointment list (staff) leads to the appointments' own pages.
            lists = ["/appointments/list"] if "/clients" in menu or "/notes" in menu else []
            for path in menu + lists:
                if path in seen:
                    continue
                seen.add(path)
                response = await page.goto(f"{live_server.url}{path}")
                assert response is not None and response.status == 200, (email, path)
                if width := await _too_wide(page):
                    too_wide.append((email, path, width))
                for href in await _links(page, "main a"):
                    if href not in seen and href not in details:
                        for pattern in DETAILS:
                            if pattern.match(href) and not any(pattern.match(d) for d in details):
                                details.append(href)
            for path in details:
                response = await page.goto(f"{live_server.url}{path}")
                assert response is not None and response.status == 200, (email, path)
                if width := await _too_wide(page):
                    too_wide.append((email, path, width))
                # Every page starts with a skip link to its content.
                skip = page.locator("a.skip-link")
                assert await skip.get_attribute("href") == "#content"
                assert await page.locator("#content").count() == 1
                # The progress chart takes the width of the screen, not a thumbnail.
                for chart in await page.locator("svg.pain-chart").all():
                    charted.append(path)
                    box = await chart.bounding_box()
                    assert box is not None and box["width"] >= 300, (email, path, box)
            opened[email] = len(seen) + len(details)
        finally:
            await context.close()
    assert too_wide == [], "\n".join(map(str, too_wide))
    assert all(count >= 3 for count in opened.values()), opened
    assert any("progress" in path for path in charted), charted
