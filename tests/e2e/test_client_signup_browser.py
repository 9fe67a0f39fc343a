"""A visitor signs up and confirms through the emailed link, fills in the intake
(correcting one mistake), forgets the password, and resets it through the emailed
link (the owner's outbox hides both links)."""

from __future__ import annotations

import re
import sqlite3

from playwright.async_api import Page, expect

from portal.demo import DEMO_PASSWORD
from tests.e2e.conftest import LiveServer, sign_in

EMAIL = "robin.vale@example.test"
FIRST_PASSWORD = "first-choice-secret-4"
NEW_PASSWORD = "second-choice-secret-7"


def _stored_link(live_server: LiveServer, path_re: str) -> str:
    """The link in the latest message to EMAIL, read from the database as its mailbox."""
    with sqlite3.connect(live_server.var_dir / "portal.sqlite3") as database:
        (stored,) = database.execute(
            "SELECT body_text FROM email_outbox WHERE to_address = ? ORDER BY id DESC LIMIT 1",
            (EMAIL,),
        ).fetchone()
    match = re.search(r"(http://127\.0\.0\.1:\d+" + path_re + ")", stored)
    assert match, stored
    return match.group(1)


async def _sign_out(page: Page, name: str) -> None:
    await page.locator("details.dropdown summary", has_text=name).click()
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


async def test_visitor_signs_up_fills_intake_and_resets_password(
    page: Page, live_server: LiveServer
) -> None:
    # Sign up from the sign-in page.
    await page.goto(f"{live_server.url}/login")
    await page.get_by_role("link", name="Create an account").click()
    await page.get_by_label("Your name").fill("Robin Vale")
    await page.get_by_label("Email").fill(EMAIL)
    await page.get_by_label("Password", exact=True).fill(FIRST_PASSWORD)
    await page.get_by_label("Repeat the password").fill(FIRST_PASSWORD)
    await page.locator("#consent").check()
    await page.get_by_role("button", name="Create account").click()
    await expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    await expect(page.get_by_role("status")).to_contain_text(
        "Check your email to finish signing up"
    )

    # No account until the link is used; the link is in the stored message (the
    # recipient's mailbox: the owners' outbox hides it).
    await sign_in(page, live_server, EMAIL, FIRST_PASSWORD)
    await expect(page.get_by_text("The email or password is not right.")).to_be_visible()
    await page.goto(_stored_link(live_server, r"/signup/confirm/\S+"))
    await expect(page.get_by_role("heading", name="Confirm your account")).to_be_visible()
    await page.get_by_role("button", name="Confirm my account").click()

    await expect(page.get_by_role("heading", name="My account")).to_be_visible()
    assert page.url.endswith("/account")
    await expect(page.get_by_role("status")).to_contain_text("Your account is ready")
    await expect(page.get_by_text("No appointments booked yet.")).to_be_visible()

    # The intake, with one mistake corrected.
    await page.get_by_role("button", name="Fill in the intake form").click()
    await page.get_by_label("Chronic neck and shoulder tension").check()
    await page.get_by_label("Headaches related to muscle tension").check()
    await page.get_by_label("Where does it hurt?").fill("Right side of the neck, up to the temple")
    await page.get_by_label("Since when?").select_option("3_to_12_months")
    await page.get_by_label("Pain today (0–10)").fill("11")
    await page.locator("#regions-neck").check()
    await page.locator("#regions-upper_trapezius").check()
    await page.get_by_label("At work, you are mostly").select_option("desk")
    await page.get_by_label("What would you like to be able to do again").fill(
        "Work a full day without a headache"
    )
    await page.locator("#pressure-medium").check()
    await page.locator("#consent").check()
    await page.get_by_role("button", name="Save intake").click()

    await expect(page.locator("#pain_level-error")).to_contain_text("0 (none) to 10")
    await expect(page.get_by_label("Pain today (0–10)")).to_have_value("11")
    await expect(page.locator("#regions-upper_trapezius")).to_be_checked()
    await expect(page.get_by_label("What would you like to be able to do again")).to_have_value(
        "Work a full day without a headache"
    )
    await page.get_by_label("Pain today (0–10)").fill("6")
    await page.locator("#consent").check()
    await page.get_by_role("button", name="Save intake").click()

    await expect(page.get_by_role("heading", name="Your intake")).to_be_visible()
    await expect(page.get_by_role("status")).to_contain_text("your intake was saved")
    await expect(page.get_by_text("Version 1 · saved")).to_be_visible()
    await expect(page.get_by_text("Work a full day without a headache")).to_be_visible()
    await expect(page.locator(".region-badge", has_text="Upper trapezius")).to_be_visible()
    await expect(page.get_by_role("navigation", name="Intake versions")).to_contain_text(
        "Version 1 (current)"
    )

    # Forgotten password.
    await _sign_out(page, "Robin Vale")
    await page.get_by_role("link", name="Forgot your password?").click()
    await page.get_by_label("Email").fill(EMAIL)
    await page.get_by_role("button", name="Send me a reset link").click()
    await expect(page.get_by_role("heading", name="Check your email")).to_be_visible()

    # No SMTP server here: the owner reads the message in the outbox.
    await sign_in(page, live_server, "owner@demo.clinic", DEMO_PASSWORD)
    await page.get_by_role("link", name="Outbox").click()
    await page.get_by_label("Recipient").fill(EMAIL)
    await page.get_by_role("button", name="Filter").click()
    await page.get_by_role("link", name="Reset your Clinic Portal password").click()
    body = await page.locator("pre.mail-body").inner_text()
    # The owner sees the message but not the link: that is for the recipient's mailbox,
    # which here is the stored message itself.
    assert "[reset link hidden]" in body and "/password/reset/" not in body, body
    link = _stored_link(live_server, r"/password/reset/\S+")
    await _sign_out(page, "Olivia Owens")

    await page.goto(link)
    await expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    await page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    await page.get_by_label("Repeat the new password").fill(NEW_PASSWORD)
    await page.get_by_role("button", name="Set new password").click()
    await expect(page.get_by_role("heading", name="My account")).to_be_visible()
    await expect(page.get_by_role("status")).to_contain_text("Your password has been changed")

    # The link is spent; the new password signs in, the old one does not.
    response = await page.goto(link)
    assert response is not None and response.status == 410
    await page.goto(f"{live_server.url}/account")
    await _sign_out(page, "Robin Vale")
    await sign_in(page, live_server, EMAIL, FIRST_PASSWORD)
    await expect(page.get_by_text("The email or password is not right.")).to_be_visible()
    await sign_in(page, live_server, EMAIL, NEW_PASSWORD)
    await page.get_by_role("link", name="My account").click()
    await expect(page.get_by_text("Version 1, saved")).to_be_visible()
