"""A working day per role, walked end to end in Chromium, asserting what each person sees.

The manager finds a client by phone, sells at the desk, books her and sees the booking
with her health flags on the day view; the client, on a 390 × 844 phone, books from her
package and cancels within the policy; the therapist opens today's session from her home
page and signs its note; the accountant filters the payments report and downloads its CSV;
the owner reads the home page, searches the audit log and downloads a data export.

One browser and one live server (with its in-process job worker) for the whole module;
each walk leaves the others' assertions true whatever order they run in. With
``SCREENSHOTS=1`` each walk saves its key screens to ``docs/screenshots/<role>-<step>.png``
(the viewport only); otherwise nothing is written.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import sqlite3
import zipfile
from collections.abc import AsyncIterator, Awaitable, Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import Browser, Page, expect

from portal.demo import DEMO_PASSWORD
from portal.jobs.catalog import JOBS
from tests.e2e.conftest import LiveServer, _env, free_port, serving, sign_in
from tests.e2e.test_booking_browser import _move_to_the_past
from tests.stripe_standin import StandIn

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PORTLAND = ZoneInfo("America/Los_Angeles")
LOCATION = "Portland Pearl District"
CLIENT = "Casey Morgan"
AUSTIN = "Austin South Congress"
FLAGGED = "Maria Gonzalez"  # pregnant: her intake flags it
FLAGGED_EMAIL = "maria.gonzalez@demo.clinic"
SERVICE = "Neuromuscular massage, 60 min · 60 min"
STARTER = "Neuromuscular series — 3 × 60 min"
SERIES = "Neuromuscular series — 5 × 60 min"
DESK = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def day_server(
    e2e_template: Path, tmp_path_factory: pytest.TempPathFactory, stripe_standin: StandIn
) -> Iterator[LiveServer]:
    """The demo portal with its job worker in process (nothing scheduled runs by itself)."""
    tmp = tmp_path_factory.mktemp("day-walks")
    var_dir = tmp / "var"
    var_dir.mkdir()
    (var_dir / "portal.sqlite3").write_bytes(e2e_template.read_bytes())
    port = free_port()
    env = _env(var_dir, port)
    env.pop("STRIPE_SECRET_KEY", None)
    env.update(
        {
            "STRIPE_API_BASE": stripe_standin.base_url,
            "STRIPE_WEBHOOK_SECRET": stripe_standin.webhook_secret,
            "JOBS_IN_PROCESS": "1",
            **{f"JOB_SCHEDULE_{spec.name.upper()}": "off" for spec in JOBS},
        }
    )
    with serving(env, port, tmp) as url:
        yield LiveServer(url=url, env=env, var_dir=var_dir, stripe=stripe_standin)


@contextlib.asynccontextmanager
async def _as(
    browser: Browser, server: LiveServer, email: str, viewport: dict[str, int] = DESK
) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport=viewport, accept_downloads=True)  # type: ignore[arg-type]
    context.set_default_timeout(10_000)
    try:
        page = await context.new_page()
        await sign_in(page, server, email, DEMO_PASSWORD)
        yield page
    finally:
        await context.close()


async def shot(page: Page, name: str) -> None:
    """The screen as the user sees it, saved only when screenshots are being refreshed."""
    if os.environ.get("SCREENSHOTS") == "1":
        await page.screenshot(path=SHOTS / f"{name}.png")


def _db(server: LiveServer) -> sqlite3.Connection:
    return sqlite3.connect(server.var_dir / "portal.sqlite3")


def _weekday_ahead(days: int) -> date:
    """A weekday at least ``days`` ahead in Portland (Theresa works Monday to Friday)."""
    day = datetime.now(PORTLAND).date() + timedelta(days=days)
    while day.weekday() > 4:
        day += timedelta(days=1)
    return day


async def _reload_with(page: Page, choice: Awaitable[object]) -> None:
    """Make a choice in the booking form and wait for htmx to have swapped in and wired
    up the page it reloads (the next choice made on a half-swapped page is lost)."""
    async with page.expect_response(re.compile(r"/appointments/new\?")):
        await choice
    await page.wait_for_function(
        "() => !document.body.matches('.htmx-request, .htmx-swapping, .htmx-settling')"
    )


async def _left(page: Page) -> int:
    card = page.locator("section.package-item", has_text=SERIES).first
    return int(await card.locator('[data-count="free"]').inner_text())


async def test_manager_day(browser: Browser, day_server: LiveServer) -> None:
    day = _weekday_ahead(9)
    async with _as(browser, day_server, "manager.austin@demo.clinic") as page:
        # The client on the phone: found by her number the way she says it.
        await page.get_by_role("link", name="Clients", exact=True).first.click()
        await page.get_by_label("Search").fill("(512) 555-0148")
        await page.get_by_role("button", name="Filter").click()
        await page.get_by_role("link", name=FLAGGED).click()
        await expect(page.get_by_role("heading", level=1)).to_contain_text(FLAGGED)
        await expect(page.locator("#health-flags")).to_contain_text("Pregnancy")
        await expect(page.locator("#packages")).to_contain_text("No package.")
        await shot(page, "manager-client-record")

        # A first series, paid at the desk by card terminal.
        await page.get_by_role("button", name="Sell", exact=True).click()
        await expect(page.get_by_label("Client")).to_have_value(FLAGGED_EMAIL)
        await page.get_by_label("Location").select_option(label=AUSTIN)
        await page.get_by_label("Package").select_option(label=STARTER)
        await page.get_by_label("Payment").select_option(label="Card terminal in the clinic")
        await page.get_by_role("button", name="Record the sale").click()
        await expect(page.locator(".flash")).to_be_visible()
        await expect(page.locator("main")).to_contain_text(STARTER)
        await shot(page, "manager-sale")

        # Her record now holds three sessions; she is booked from it.
        await page.goto(f"{day_server.url}/clients?q=512-555-0148")
        await page.get_by_role("link", name=FLAGGED).click()
        await expect(page.locator("#packages")).to_contain_text("3 of 3")
        await page.get_by_role("button", name="Book", exact=True).click()
        await expect(page.get_by_label("Client")).to_have_value(FLAGGED_EMAIL)
        # Each choice reloads the form with the free times (htmx); one at a time.
        await _reload_with(page, page.get_by_label("Clinic").select_option(label=AUSTIN))
        await _reload_with(page, page.get_by_label("Service").select_option(label=SERVICE))
        if await page.get_by_label("Day", exact=True).input_value() != day.isoformat():
            await _reload_with(page, page.get_by_label("Day", exact=True).fill(day.isoformat()))
        await expect(page.locator("nav.slot-day-nav")).to_contain_text(day.strftime("%A %d %B %Y"))
        slot = page.get_by_role("list", name="Free times").get_by_role("button").first
        time = (await slot.inner_text()).strip()[:5]
        await slot.click()
        await expect(page.locator(".flash")).to_contain_text("Booked")

        # The day view shows the booking with her health flag.
        await page.get_by_role("link", name=f"← {AUSTIN}, {day:%a %d %b}").click()
        await expect(page.get_by_role("heading", level=1)).to_contain_text(AUSTIN)
        row = page.locator("tr", has_text=FLAGGED).filter(has_text=time)
        await expect(row).to_have_count(1)
        await expect(row).to_contain_text("Pregnancy")
        await shot(page, "manager-day-view")


async def test_client_day_on_a_phone(browser: Browser, day_server: LiveServer) -> None:
    day = _weekday_ahead(3)
    async with _as(browser, day_server, "client@demo.clinic", PHONE) as page:
        await expect(page.get_by_role("heading", name="My account")).to_be_visible()
        card = page.locator("section.package-item", has_text=SERIES).first
        await expect(card.locator(".package-remaining")).to_contain_text("left")
        free = await _left(page)
        await shot(page, "client-sessions-left")

        await card.get_by_role("button", name="Book a session").click()
        await page.get_by_label("Day", exact=True).fill(day.isoformat())
        await expect(page.locator("nav.slot-day-nav")).to_contain_text(day.strftime("%A %d %B %Y"))
        # The week's strip: seven days side by side on the phone, each a link to its times.
        strip = page.get_by_role("navigation", name="Free times this week").get_by_role("link")
        await expect(strip).to_have_count(7)
        boxes = [await strip.nth(i).bounding_box() for i in range(7)]
        assert all(b is not None for b in boxes)
        lefts = [b["x"] for b in boxes if b]
        rights = [b["x"] + b["width"] for b in boxes if b]
        assert len({round(b["y"]) for b in boxes if b}) == 1  # one row
        assert all(rights[i] <= lefts[i + 1] for i in range(6)), boxes  # none overlaps
        assert rights[-1] - lefts[0] >= 0.9 * (PHONE["width"] - 32), boxes  # the page's width
        other = day + timedelta(days=1 if day.weekday() < 6 else -1)
        await strip.nth(other.weekday()).click()
        await expect(page.locator("nav.slot-day-nav")).to_contain_text(f"{other:%A %d %B %Y}")
        await strip.nth(day.weekday()).click()
        await expect(page.locator("nav.slot-day-nav")).to_contain_text(day.strftime("%A %d %B %Y"))
        slots = page.get_by_role("list", name="Free times")
        await slots.get_by_role("button", name=re.compile(r"^09:00")).click()
        await expect(page.locator(".flash")).to_contain_text("Booked. See you then!")
        await expect(page.locator("hgroup p")).to_contain_text(f"{day:%A %d %B %Y}, 09:00–10:00")
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"]
        await shot(page, "client-booked")

        await expect(page.locator("#cancel")).to_contain_text("returns the session to the package")
        await page.get_by_label("Reason (optional)").fill("Work trip")
        await page.get_by_role("button", name="Cancel the appointment").click()
        await expect(page.locator(".flash")).to_contain_text("the session is back in your package")
        await expect(page.locator("h1 .badge")).to_have_text("Cancelled")
        await shot(page, "client-cancelled")
        await page.get_by_role("link", name="← My account").click()
        assert await _left(page) == free


def _demo_session_to_this_morning(server: LiveServer) -> None:
    """The demo's booked session with Theresa, as if it had just been given."""
    with _db(server) as conn:
        (appointment,) = conn.execute(
            "SELECT a.id FROM appointment a JOIN app_user u ON u.id = a.client "
            "WHERE u.email = 'client@demo.clinic' AND a.status = 'booked' ORDER BY a.id"
        ).fetchone()
    _move_to_the_past(server, appointment)


async def test_therapist_day(browser: Browser, day_server: LiveServer) -> None:
    _demo_session_to_this_morning(day_server)
    async with _as(browser, day_server, "therapist@demo.clinic") as page:
        today = page.locator("section[aria-labelledby='agenda-heading']")
        row = today.locator("tr", has_text=CLIENT)
        await expect(row).to_have_count(1)
        await shot(page, "therapist-home")

        await row.get_by_role("link").first.click()
        await expect(page.get_by_role("heading", level=1)).to_contain_text("Booked")
        await expect(page.locator("main")).to_contain_text(CLIENT)
        await page.get_by_role("button", name="Mark completed").click()
        await page.get_by_role("button", name="Treatment note").click()
        await expect(page.locator("aside.note-aside")).to_contain_text("Session 1 of 5")
        await page.get_by_label("What the client reports").fill("Fewer headaches this week.")
        await page.get_by_label("Pain before (0–10)").fill("5")
        await page.locator("#regions-upper_trapezius").check()
        await page.locator("#techniques-ischemic_compression").check()
        await page.locator("#pressure-firm").check()
        await page.get_by_label("Pain after (0–10)").fill("2")
        await page.get_by_label("How the client responded").fill("Trapezius softer.")
        await page.get_by_label("Home-care plan").fill("Chin tucks twice a day.")
        await page.get_by_role("button", name="Save and review for signing").click()
        await expect(page.get_by_role("heading", name="Review and sign")).to_be_visible()
        await page.get_by_label("I confirm this note is an accurate").check()
        await page.get_by_role("button", name="Sign note").click()
        await expect(page.locator(".flash")).to_contain_text("Note signed")
        await expect(page.locator("h1 .badge")).to_have_text("Signed")
        await expect(page.locator("main")).to_contain_text("Session 2 of 5")
        await shot(page, "therapist-note-signed")


async def test_accountant_day(browser: Browser, day_server: LiveServer) -> None:
    first = datetime.now(PORTLAND).date().replace(day=1)
    last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    async with _as(browser, day_server, "accountant@demo.clinic") as page:
        await page.get_by_role("link", name="Reports", exact=True).click()
        await expect(page.get_by_role("heading", level=1, name="Overview")).to_be_visible()
        await expect(page.locator("svg.chart-svg").first).to_be_visible()
        await shot(page, "accountant-overview")

        nav = page.get_by_role("navigation", name="Reports")
        await nav.get_by_role("link", name="Payments").click()
        await page.get_by_label("From").fill(first.isoformat())
        await page.get_by_label("To", exact=True).fill(last.isoformat())
        await page.locator("#location summary").click()
        await page.get_by_role("checkbox", name=re.compile(LOCATION)).check()
        await page.locator("#location summary").click()
        await page.get_by_role("button", name="Apply").click()
        await expect(page.locator(".report-meta")).to_contain_text(LOCATION)
        # Today's gross at Portland, as the screen shows it, is the CSV's figure too.
        today = datetime.now(PORTLAND).date().isoformat()
        line = page.locator("table.report-table").first.locator("tbody tr", has_text=today)
        await expect(line).to_contain_text(LOCATION)
        gross = (await line.locator("td").nth(4).inner_text()).strip()
        assert re.fullmatch(r"\$[\d,]+\.\d\d", gross), gross
        await shot(page, "accountant-payments")

        async with page.expect_download() as info:
            await page.get_by_role("link", name="CSV").nth(1).click()
        download = await info.value
        assert download.suggested_filename == (
            f"payments_portland-pearl_{first.isoformat()}_{last.isoformat()}.csv"
        )
        text = Path(await download.path()).read_text(encoding="utf-8-sig")
        rows = list(csv.DictReader(io.StringIO(text)))
        assert {row["location"] for row in rows} == {LOCATION}
        assert any(SERIES in row["item"] for row in rows), rows
        cents = sum(round(float(r["gross"]) * 100) for r in rows if r["date"].startswith(today))
        assert f"${cents / 100:,.2f}" == gross


async def test_owner_day(browser: Browser, day_server: LiveServer) -> None:
    async with _as(browser, day_server, "owner@demo.clinic") as page:
        glance = page.locator("section[aria-labelledby='glance-heading']")
        await expect(glance.locator(".kpi", has_text="Revenue this month")).to_be_visible()
        await expect(glance.locator(".kpi", has_text="Package liability")).to_be_visible()
        await expect(glance.locator("figure svg").first).to_be_visible()
        await shot(page, "owner-home")

        await page.get_by_role("link", name="Audit log").first.click()
        await page.get_by_label("Who").fill("owner@demo.clinic")
        await page.get_by_role("button", name="Filter").click()
        rows = page.locator("table.audit-table tbody tr")
        await expect(rows.first).to_contain_text("owner@demo.clinic")
        assert "who=owner" in page.url
        await shot(page, "owner-audit-log")

        await page.get_by_role("link", name="Data export").first.click()
        await page.get_by_role("button", name="Export the chain's data").click()
        link = page.get_by_role("button", name="Download the archive")
        await expect(link).to_be_visible(timeout=30_000)
        await shot(page, "owner-export")
        async with page.expect_download() as waiting:
            await link.click()
        path = await (await waiting.value).path()
        archive = zipfile.ZipFile(io.BytesIO(path.read_bytes()))
        clients = archive.read("clients.csv").decode("utf-8-sig")
        assert "client@demo.clinic" in clients
