"""One meaning of "sessions left" (sales.sessions_left: not yet given or forfeited, none
after expiry) and one wording, on every page a client reads it."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from portal.bookings import service as bookings
from portal.sales.tables import Sale
from portal.staff import hours as h
from tests import factories
from tests.notes.conftest import given_session

NY = ZoneInfo("America/New_York")
PAGES = ("/account", "/account/purchases", "/account/progress")


def _left(html: str) -> list[str]:
    return [
        " ".join(re.sub(r"<[^>]+>", " ", m).split())
        for m in re.findall(r'<span class="sessions-left">(.*?)</span>', html, re.S)
    ]


async def test_every_page_counts_and_words_sessions_left_the_same(app, clinic):
    await given_session(clinic, 2)  # one given
    day = (datetime.now(NY) + timedelta(days=4)).date()
    await bookings.book(
        clinic.as_client(), client_id=clinic.client.id, location_id=clinic.location_id,
        service_id=clinic.service_id, start_at=h.wall_to_utc(day, 11 * 60, NY),
    )  # one booked, three free to book  # fmt: skip
    async with factories.make_client(app) as client:
        await factories.login(client, clinic.client)
        for path in PAGES:
            page = await client.get(path)
            assert page.status_code == 200, path
            assert _left(page.text) == ["4 of 5 sessions left"], path
            words = " ".join(re.sub(r"<[^>]+>", " ", page.text).split())
            assert "remaining" not in words and "sessions used" not in words, path
        # An expired package has none left, wherever it is shown.
        await (
            Sale.update({Sale.valid_until: datetime.now(NY) - timedelta(days=1)})
            .where(Sale.id == clinic.sale_id)
            .run()
        )
        page = await client.get("/account/purchases")
        assert _left(page.text) in ([], ["0 of 5 sessions left"])
