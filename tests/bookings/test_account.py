"""My account for clients: packages (remaining, used, expiry warning), upcoming
appointments with cancel links, receipts, and the booking entry points."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from portal.bookings import account
from portal.bookings import service as bookings
from portal.sales.tables import Sale
from portal.staff import hours as h
from tests import factories

NY = ZoneInfo("America/New_York")


def ny(day: date, hour: int) -> datetime:
    return h.wall_to_utc(day, hour * 60, NY)


def future_day(days: int = 10) -> date:
    return (datetime.now(NY) + timedelta(days=days)).date()


def _count(html: str, name: str) -> int:
    match = re.search(rf'data-count="{name}">(\d+)<', html)
    assert match, f"no {name} count on the page"
    return int(match.group(1))


async def test_the_account_shows_packages_appointments_and_receipts(app, clinic):
    day = future_day()
    given = await bookings.book(
        clinic.as_client(), client_id=clinic.client.id, location_id=clinic.location_id,
        service_id=clinic.service_id, start_at=ny(day, 9), notify_client=False,
    )  # fmt: skip
    await bookings.complete(clinic.as_manager(), given, now=ny(day, 10))
    upcoming = await bookings.book(
        clinic.as_client(), client_id=clinic.client.id, location_id=clinic.location_id,
        service_id=clinic.service_id, start_at=ny(day, 14), notify_client=False,
    )  # fmt: skip
    async with factories.make_client(app) as http:
        await factories.login(http, clinic.client)
        page = await http.get("/account")
        assert page.status_code == 200
        # 5 sessions: 1 given, 1 booked, 3 free to book; 4 remain.
        assert (_count(page.text, "left"), _count(page.text, "used")) == (4, 1)
        assert (_count(page.text, "free"), _count(page.text, "booked")) == (3, 1)
        assert "Expires soon" not in page.text
        assert f'href="/appointments/{upcoming}#cancel"' in page.text
        assert f'href="/appointments/{given}#cancel"' not in page.text  # past, given
        assert (
            f'href="/appointments/new?location={clinic.location_id}&amp;service={clinic.service_id}"'
            in page.text
        )
        assert (
            f'href="/appointments/series/new?location={clinic.location_id}&amp;'
            f'service={clinic.service_id}&amp;count=3"' in page.text
        )
        assert f'href="/sales/{clinic.sale_id}/receipt"' in page.text
        assert "$450.00" in page.text
        # Sign-in lands here: "/" is the client's account, not the staff dashboard.
        home = await http.get("/")
        assert home.status_code == 200 and "Session packages" in home.text
        assert f'href="/appointments/{upcoming}#cancel"' in home.text
        # The series entry point prefills the number of sessions left.
        series = await http.get(
            f"/appointments/series/new?location={clinic.location_id}&service={clinic.service_id}"
            "&count=3"
        )
        assert factories.input_value(series.text, "count") == "3"
        # Cancelling early puts the session back: 4 free to book.
        await factories.post_form(http, f"/appointments/{upcoming}/cancel")
        page = await http.get("/account")
        assert (_count(page.text, "free"), _count(page.text, "left")) == (4, 4)
        assert "No appointments booked yet." in page.text
    async with factories.make_client(app) as http:
        await factories.login(http, clinic.manager)
        assert "Session packages" not in (await http.get("/")).text


async def test_a_package_ending_within_14_days_warns(app, clinic):
    soon = datetime.now(UTC) + timedelta(days=10)
    await Sale.update({Sale.valid_until: soon}).where(Sale.id == clinic.sale_id).run()
    async with factories.make_client(app) as http:
        await factories.login(http, clinic.client)
        page = await http.get("/account")
        assert "Expires soon." in page.text and "5 sessions must be used by" in page.text
        later = datetime.now(UTC) + timedelta(days=20)
        await Sale.update({Sale.valid_until: later}).where(Sale.id == clinic.sale_id).run()
        assert "Expires soon." not in (await http.get("/account")).text
        gone = datetime.now(UTC) - timedelta(days=1)
        await Sale.update({Sale.valid_until: gone}).where(Sale.id == clinic.sale_id).run()
        page = await http.get("/account")
        assert "Expired" in page.text
        assert f"service={clinic.service_id}" not in page.text  # nothing to book with it


async def test_summary_counts(clinic):
    summary = await account.summary(clinic.client.id)
    package = summary["packages"][0]
    assert (package["total"], package["left"], package["free"], package["used"]) == (
        5, 5, 5, 0,
    )  # fmt: skip
    assert package["days_left"] in (178, 179) and not package["expiring_soon"]
    assert summary["appointments"] == [] and len(summary["receipts"]) == 1
