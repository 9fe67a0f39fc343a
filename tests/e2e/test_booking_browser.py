"""A client with a package books a session, cancels it early (the session comes back),
books the series and sees which date failed; the therapist completes the first session
of the series, and the client's remaining sessions go down while the journal moves the
session's value from deferred to service revenue.

The demo client (Casey Morgan) holds "5 × 60 min" from Portland: one session given,
one booked next week at 10:00 with Theresa Nguyen, three free to book.
"""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from playwright.async_api import Browser, Page, expect

from portal.demo import DEMO_PASSWORD
from tests.e2e.conftest import LiveServer, sign_in

PORTLAND = ZoneInfo("America/Los_Angeles")
PACKAGE = "Neuromuscular series — 5 × 60 min"
FMT = "%Y-%m-%d %H:%M:%S+00:00"


def _db(server: LiveServer) -> sqlite3.Connection:
    return sqlite3.connect(server.var_dir / "portal.sqlite3")


def _demo_booking_day(server: LiveServer) -> date:
    """The local day of the demo client's booked session (10:00 with Theresa)."""
    with _db(server) as conn:
        row = conn.execute(
            "SELECT a.start_at FROM appointment a JOIN app_user u ON u.id = a.client "
            "WHERE u.email = 'client@demo.clinic' AND a.status = 'booked'"
        ).fetchone()
    assert row is not None, "the demo has a booked session"
    start = datetime.strptime(row[0], FMT).replace(tzinfo=UTC)
    return start.astimezone(PORTLAND).date()


def _free_weekday(avoid: set[date]) -> date:
    """A weekday at least two days ahead (Theresa works Monday to Friday)."""
    day = datetime.now(PORTLAND).date() + timedelta(days=2)
    while day.weekday() > 4 or day in avoid:
        day += timedelta(days=1)
    return day


def _move_to_the_past(server: LiveServer, appointment_id: int) -> None:
    """As if the session had just been given: it started two hours ago."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    with _db(server) as conn:
        conn.execute(
            "UPDATE appointment SET start_at = ?, end_at = ?, busy_until = ? WHERE id = ?",
            (
                start.strftime(FMT),
                (start + timedelta(hours=1)).strftime(FMT),
                (start + timedelta(hours=1, minutes=15)).strftime(FMT),
                appointment_id,
            ),
        )


def _ledger(server: LiveServer, appointment_id: int) -> list[tuple[str, str, int, int]]:
    with _db(server) as conn:
        return conn.execute(
            "SELECT e.kind, l.account, l.debit_cents, l.credit_cents FROM journal_line l "
            "JOIN journal_entry e ON e.id = l.entry WHERE e.reference = ? ORDER BY l.id",
            (f"appointment:{appointment_id}",),
        ).fetchall()


async def _counts(page: Page) -> dict[str, int]:
    card = page.locator("section.package-item", has_text=PACKAGE)
    counts = {}
    for name in ("left", "free", "booked", "used"):
        counts[name] = int(await card.locator(f'[data-count="{name}"]').inner_text())
    return counts


async def test_client_books_cancels_books_a_series_and_the_therapist_completes(
    page: Page, browser: Browser, live_server: LiveServer
) -> None:
    demo_day = _demo_booking_day(live_server)
    series_days = {demo_day + timedelta(weeks=k) for k in range(4)}
    single_day = _free_weekday(series_days)

    # Sign-in lands on My account.
    await sign_in(page, live_server, "client@demo.clinic", DEMO_PASSWORD)
    await expect(page.get_by_role("heading", name="My account")).to_be_visible()
    assert await _counts(page) == {"left": 4, "free": 3, "booked": 1, "used": 1}

    # Book one session from the package.
    card = page.locator("section.package-item", has_text=PACKAGE)
    await card.get_by_role("button", name="Book a session").click()
    await expect(page.get_by_role("heading", name="Book a session")).to_be_visible()
    await page.get_by_label("Day", exact=True).fill(single_day.isoformat())
    slots = page.get_by_role("list", name="Free times")
    await expect(page.locator("nav.slot-day-nav")).to_contain_text(
        single_day.strftime("%A %d %B %Y")
    )
    await slots.get_by_role("button", name=re.compile(r"^09:00")).click()
    await expect(page.locator(".flash")).to_contain_text("Booked. See you then!")
    await expect(page.locator("hgroup p")).to_contain_text(f"{single_day:%A %d %B %Y}, 09:00–10:00")
    booked_url = page.url
    await page.get_by_role("link", name="My account", exact=True).click()
    assert await _counts(page) == {"left": 4, "free": 2, "booked": 2, "used": 1}

    # Cancel it early: the session goes back to the package.
    await page.goto(booked_url)
    await expect(page.locator("#cancel")).to_contain_text("returns the session to the package")
    await page.get_by_label("Reason (optional)").fill("Work trip")
    await page.get_by_role("button", name="Cancel the appointment").click()
    await expect(page.locator(".flash")).to_contain_text("the session is back in your package")
    await expect(page.locator("h1 .badge")).to_have_text("Cancelled")
    await page.get_by_role("link", name="My account", exact=True).click()
    assert await _counts(page) == {"left": 4, "free": 3, "booked": 1, "used": 1}

    # Book the series: weekly at 10:00 with Theresa from the day of the demo booking,
    # four dates for three free sessions. The first date clashes with that booking.
    card = page.locator("section.package-item", has_text=PACKAGE)
    await card.get_by_role("button", name="Book the series").click()
    await expect(page.get_by_role("heading", name="Book a series")).to_be_visible()
    await expect(page.get_by_label("Number of sessions")).to_have_value("3")
    await page.get_by_label("Therapist").select_option(label="Theresa Nguyen")
    await page.get_by_label("First session").fill(demo_day.isoformat())
    await page.get_by_label("Time").fill("10:00")
    await page.get_by_label("How often").select_option(label="Every week")
    await page.get_by_label("Number of sessions").fill("4")
    await page.get_by_role("button", name="Book the series").click()
    result = page.locator("section.series-result")
    await expect(result.get_by_role("heading")).to_have_text("3 of 4 sessions booked")
    failed = result.locator("tr.series-failed")
    await expect(failed).to_have_count(1)
    await expect(failed).to_contain_text(demo_day.strftime("%a %d %b %Y"))
    await expect(failed).to_contain_text("Theresa Nguyen is already booked then.")
    await expect(result.locator("tr.series-ok")).to_have_count(3)
    first_link = result.locator("tr.series-ok").first.get_by_role("link")
    first_id = int((await first_link.get_attribute("href") or "").rsplit("/", 1)[1])
    await page.get_by_role("button", name="Back to My account").click()
    assert await _counts(page) == {"left": 4, "free": 0, "booked": 4, "used": 1}

    # The first session of the series takes place (moved into the past), and
    # Theresa marks it completed from her schedule.
    _move_to_the_past(live_server, first_id)
    assert _ledger(live_server, first_id) == []
    staff = await browser.new_context(viewport={"width": 1280, "height": 900})
    staff.set_default_timeout(10_000)
    therapist = await staff.new_page()
    try:
        await sign_in(therapist, live_server, "therapist@demo.clinic", DEMO_PASSWORD)
        await therapist.locator("header").get_by_role("link", name="My schedule").click()
        await therapist.locator(f'a[href="/appointments/{first_id}"]').click()
        await therapist.get_by_role("button", name="Mark completed").click()
        await expect(therapist.locator(".flash")).to_contain_text("Session completed.")
        await expect(therapist.locator("h1 .badge")).to_have_text("Completed")
    finally:
        await staff.close()

    await page.reload()
    assert await _counts(page) == {"left": 3, "free": 0, "booked": 3, "used": 2}
    # The journal moved the session's value: deferred revenue → service revenue.
    lines = _ledger(live_server, first_id)
    assert [(kind, account) for kind, account, _, _ in lines] == [
        ("session_completed", "deferred_revenue"),
        ("session_completed", "service_revenue"),
    ]
    value = lines[0][2]
    assert value > 0 and lines[0][3] == 0 and lines[1] == ("session_completed",
                                                             "service_revenue", 0, value)  # fmt: skip
    with _db(live_server) as conn:
        state = conn.execute(
            "SELECT s.state, s.value_cents FROM sale_session s JOIN appointment a "
            "ON a.sale_session = s.id WHERE a.id = ?",
            (first_id,),
        ).fetchone()
    assert state == ("redeemed", value)
