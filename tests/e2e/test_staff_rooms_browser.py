"""A manager adds a therapist with hours and a room with an out-of-service window at
their clinic and sees both on the day view; a manager of another clinic is refused."""

from __future__ import annotations

import re

from playwright.async_api import Page, expect

from portal.demo import DEMO_PASSWORD
from tests.e2e.conftest import LiveServer, sign_in

DAY = "2027-01-12"  # a Tuesday


async def test_manager_adds_therapist_and_room_and_sees_them_on_the_day_view(
    page: Page, live_server: LiveServer
) -> None:
    await sign_in(page, live_server, "manager.portland@demo.clinic", DEMO_PASSWORD)

    # A therapist with hours at Portland.
    await page.get_by_role("link", name="Therapists", exact=True).click()
    await page.get_by_role("button", name="Add therapist").click()
    await page.get_by_label("Name").fill("Noor Haddad")
    await page.get_by_label("Email").fill("noor.haddad@example.com")
    await expect(page.get_by_label("Portland Pearl District")).to_be_checked()
    await page.get_by_label("Licence number").fill("LMT 31415")
    await page.get_by_label("Issuing state").fill("Oregon")
    await page.get_by_label("Licence expiry").fill("2028-05-31")
    await page.get_by_label("Liability insurance expiry").fill("2028-01-31")
    await page.get_by_role("button", name="Add therapist").click()
    await expect(page.get_by_role("status")).to_contain_text("added")
    await expect(page.get_by_role("heading", name=re.compile("Noor Haddad"))).to_be_visible()
    therapist_url = page.url
    assert re.search(r"/therapists/\d+$", therapist_url)

    await page.get_by_role("link", name="Edit hours").click()
    # Bad input first: the message stands beside the field and the input is kept.
    await page.get_by_label("Tuesday, interval 1, start").fill("13:00")
    await page.get_by_label("Tuesday, interval 1, end").fill("09:00")
    await page.get_by_role("button", name="Save hours").click()
    await expect(page.locator("#d1_0_end-error")).to_contain_text("before the start")
    await expect(page.get_by_label("Tuesday, interval 1, start")).to_have_value("13:00")
    await page.get_by_label("Tuesday, interval 1, start").fill("09:00")
    await page.get_by_label("Tuesday, interval 1, end").fill("13:00")
    await page.get_by_label("Tuesday, interval 2, start").fill("14:00")
    await page.get_by_label("Tuesday, interval 2, end").fill("18:00")
    await page.get_by_role("button", name="Save hours").click()
    await expect(page.get_by_role("status")).to_contain_text("Working hours saved")
    await expect(page.get_by_role("cell", name="09:00–13:00, 14:00–18:00")).to_be_visible()

    # A room with an out-of-service window.
    await page.get_by_role("link", name="Rooms", exact=True).click()
    await page.get_by_role("button", name="Add room").click()
    await page.get_by_label("Name").fill("Juniper")
    await page.get_by_label("hot stones").check()
    await page.get_by_role("button", name="Add room").click()
    await expect(page.get_by_role("status")).to_contain_text("Room “Juniper” added")
    await page.get_by_role("button", name="Add out-of-service window").click()
    await page.get_by_label("Start date").fill(DAY)
    await page.get_by_label("Start time").fill("10:00")
    await page.get_by_label("End time").fill("11:30")
    await page.get_by_label("Reason").fill("Table repair")
    await page.get_by_role("button", name="Add window").click()
    await expect(page.get_by_role("status")).to_contain_text("No booked appointments are affected")

    # Both on the day view of that date.
    await page.get_by_role("button", name="Day view").click()
    await page.get_by_label("Date", exact=True).fill(DAY)
    await page.get_by_role("button", name="Go").click()
    await expect(page.get_by_text("Tuesday 12 January 2027")).to_be_visible()
    table = page.locator("#dayview")
    await expect(table.get_by_role("columnheader", name=re.compile("Juniper"))).to_be_visible()
    await expect(table.get_by_role("columnheader", name=re.compile("Noor Haddad"))).to_be_visible()
    outage = table.locator("td.dv-outage[data-column='Juniper']")
    await expect(outage).to_contain_text("10:00–11:30 Table repair")
    assert await outage.get_attribute("rowspan") == "6"
    working = table.locator("td.dv-working[data-column='Noor Haddad']")
    await expect(working).to_have_count(2)
    await expect(working.first).to_contain_text("09:00–13:00")
    await page.get_by_role("button", name="Next day →").click()
    await expect(page.get_by_text("Wednesday 13 January 2027")).to_be_visible()
    await expect(page.locator("td.dv-outage[data-column='Juniper']")).to_have_count(0)

    # The Austin manager may not edit the Portland therapist.
    await page.get_by_text("Marcus Patel").click()
    await page.get_by_role("button", name="Sign out").click()
    await sign_in(page, live_server, "manager.austin@demo.clinic", DEMO_PASSWORD)
    response = await page.goto(f"{therapist_url}/edit")
    assert response is not None and response.status == 403
    await expect(page.get_by_role("heading", name="Access denied")).to_be_visible()
