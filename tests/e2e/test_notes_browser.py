"""A therapist writes and signs the note of a completed session; the client's
progress chart shows it.

The demo client's series has one session given (with a signed note) and one
booked for next week. The test moves that booking to earlier today, as if
the session had just taken place: Theresa marks it completed from the
appointment page, writes the note (a bad pain score first, refused beside the
field), reviews it and signs it. Casey's progress page, open before, shows
one session; reloaded, it shows two, with the new scores in the chart and its
table.
"""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime, timedelta

from playwright.async_api import Browser, Page, expect

from portal.demo import DEMO_PASSWORD
from tests.e2e.conftest import LiveServer, sign_in


def _move_booking_to_today(server: LiveServer) -> int:
    """The demo client's booked session, moved to end an hour ago; returns its id."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    with sqlite3.connect(server.var_dir / "portal.sqlite3") as conn:
        row = conn.execute(
            "SELECT a.id FROM appointment a JOIN app_user u ON u.id = a.client "
            "WHERE u.email = 'client@demo.clinic' AND a.status = 'booked' ORDER BY a.start_at"
        ).fetchone()
        assert row is not None, "the demo has a booked session"
        fmt = "%Y-%m-%d %H:%M:%S+00:00"
        conn.execute(
            "UPDATE appointment SET start_at = ?, end_at = ?, busy_until = ? WHERE id = ?",
            (
                start.strftime(fmt),
                (start + timedelta(hours=1)).strftime(fmt),
                (start + timedelta(hours=1, minutes=15)).strftime(fmt),
                row[0],
            ),
        )
    return int(row[0])


async def test_therapist_signs_a_note_and_the_client_sees_the_progress_chart(
    page: Page, browser: Browser, live_server: LiveServer
) -> None:
    appointment_id = _move_booking_to_today(live_server)

    # Casey opens "My progress" from My account: one signed session so far.
    await sign_in(page, live_server, "client@demo.clinic", DEMO_PASSWORD)
    await page.goto(f"{live_server.url}/account")
    await page.get_by_role("button", name="See my progress").click()
    await expect(page.get_by_role("heading", name="My progress")).to_be_visible()
    chart = page.locator("figure.progress-chart svg")
    await expect(chart.locator("circle title")).to_have_count(1)
    await expect(page.locator("table.progress-table tbody tr")).to_have_count(1)

    # Theresa, after the session: complete it, then write the note.
    staff = await browser.new_context(viewport={"width": 1280, "height": 900})
    staff.set_default_timeout(10_000)
    therapist = await staff.new_page()
    try:
        await sign_in(therapist, live_server, "therapist@demo.clinic", DEMO_PASSWORD)
        await therapist.goto(f"{live_server.url}/appointments/{appointment_id}")
        await therapist.get_by_role("button", name="Mark completed").click()
        await therapist.get_by_role("button", name="Treatment note").click()
        await expect(therapist.get_by_role("heading", name="Treatment note")).to_be_visible()
        # The writing page shows the earlier note and the intake beside the form.
        aside = therapist.locator("aside.note-aside")
        await expect(aside).to_contain_text("Session 1 of 5")
        await expect(aside).to_contain_text("Fewer headaches")

        await therapist.get_by_label("What the client reports").fill(
            "Two milder headaches this week. Reversing the car is easier."
        )
        await therapist.get_by_label("Main symptom counted").fill("Headaches")
        await therapist.get_by_label("Times per week").fill("2")
        await therapist.get_by_label("Pain before (0–10)").fill("14")
        for region in ("neck", "upper_trapezius", "levator_scapulae", "scalenes"):
            await therapist.locator(f"#regions-{region}").check()
        await therapist.get_by_label("Trigger point 1: region").select_option("upper_trapezius")
        await therapist.get_by_label("Trigger point 1: side").select_option("right")
        await therapist.get_by_label("Trigger point 1: severity").select_option("2")
        await therapist.get_by_label("Trigger point 1: reproduced", exact=False).check()
        await therapist.get_by_label("Trigger point 1: referral observed").fill("right temple")
        await therapist.get_by_label("Trigger point 2: region").select_option("scalenes")
        await therapist.get_by_label("Trigger point 2: side").select_option("right")
        await therapist.get_by_label("Trigger point 2: severity").select_option("1")
        await therapist.locator("#techniques-ischemic_compression").check()
        await therapist.locator("#techniques-pin_and_stretch").check()
        await therapist.locator("#pressure-firm").check()
        await therapist.get_by_label("Range of motion").fill("Rotation right 65°, 75° after.")
        await therapist.get_by_label("Pain after (0–10)").fill("2")
        await therapist.get_by_label("How the client responded").fill(
            "Upper trapezius less reactive; headaches fewer and milder."
        )
        await therapist.get_by_label("Home-care plan").fill("Add a scalene stretch.")
        await therapist.get_by_role("button", name="Save and review for signing").click()

        # 14 is refused beside the field; everything typed is still there.
        await expect(therapist.locator("#pain_before-error")).to_contain_text("between 0")
        await expect(therapist.get_by_label("Range of motion")).to_have_value(
            "Rotation right 65°, 75° after."
        )
        await expect(therapist.get_by_label("Trigger point 2: region")).to_have_value("scalenes")
        await therapist.get_by_label("Pain before (0–10)").fill("4")
        await therapist.get_by_role("button", name="Save and review for signing").click()

        await expect(therapist.get_by_role("heading", name="Review and sign")).to_be_visible()
        await therapist.get_by_label("I confirm this note is an accurate").check()
        await therapist.get_by_role("button", name="Sign note").click()
        await expect(therapist.locator(".flash")).to_contain_text("Note signed")
        await expect(therapist.locator("h1 .badge")).to_have_text("Signed")
        await expect(therapist.get_by_role("button", name="Edit draft")).to_have_count(0)
    finally:
        await staff.close()

    # Casey reloads the progress page: the second session is in the chart and the table.
    await page.reload()
    await expect(page.get_by_text("2 signed session notes")).to_be_visible()
    await expect(chart.locator("circle title")).to_have_count(2)
    await expect(chart.locator("circle title").nth(1)).to_have_text(
        re.compile(r"^2/5, before: 4 / 10")
    )
    await expect(chart.locator("rect title").nth(1)).to_have_text(
        re.compile(r"^2/5, after: 2 / 10")
    )
    rows = page.locator("table.progress-table tbody tr")
    await expect(rows).to_have_count(2)
    await expect(rows.nth(1)).to_contain_text("2 of 5")
    await expect(page.locator("table.tp-matrix")).to_contain_text("Scalenes")
    # The note itself, from the progress page.
    await page.get_by_role("link", name="Read note").first.click()
    await expect(page.locator(".soap")).to_contain_text("Two milder headaches this week.")
