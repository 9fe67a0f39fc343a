"""The public catalog: each location lists what it sells online, at its own price."""

from __future__ import annotations

import re
from datetime import timedelta

from litestar.exceptions import NoRouteMatchFoundException

from portal.catalog.tables import Package
from portal.locations.tables import Location
from portal.timeutil import utcnow
from tests import factories
from tests.catalog.helpers import add_price, make_package, make_service


def _cards(html: str) -> dict[str, str]:
    """Package name → its card's HTML."""
    cards = {}
    for card in re.findall(r'<article class="package-card".*?</article>', html, re.S):
        name = re.search(r"<h2>(.*?)</h2>", card)
        assert name is not None
        cards[name.group(1)] = card
    return cards


def _price(card: str) -> str:
    match = re.search(r'data-testid="price">([^<]*)<', card)
    assert match is not None
    return match.group(1)


def _has_route(app, name: str) -> bool:
    try:
        app.route_reverse(name, package_id=1)
    except NoRouteMatchFoundException:
        return False
    return True


async def test_two_locations_show_their_own_prices_without_sign_in(app, client, db) -> None:
    portland = await factories.make_location(name="Portland Pearl", slug="portland-pearl")
    brooklyn = await factories.make_location(name="Brooklyn Park Slope", slug="brooklyn-park-slope")
    austin = await factories.make_location(name="Austin SoCo", slug="austin-soco", tax_rate_bp=825)
    nmt = await make_service("Neuromuscular massage, 60 min", price=12000)
    five = await make_package(nmt, name="NMT 5 × 60 min", sessions=5, price=54000)
    await make_package(nmt, name="NMT 10 × 60 min", sessions=10, price=102000)
    await make_package(nmt, name="Front desk only", online=False)
    await make_package(nmt, name="Retired", active=False)
    await add_price(five, 56500, utcnow() - timedelta(minutes=5), location=brooklyn)
    # A price scheduled for next week does not show yet.
    await add_price(five, 99900, utcnow() + timedelta(days=7), location=portland)

    page = await client.get("/book/portland-pearl")
    assert page.status_code == 200
    assert "Sign in" in page.text and "Dashboard" not in page.text  # public header
    cards = _cards(page.text)
    assert set(cards) == {"NMT 5 × 60 min", "NMT 10 × 60 min"}
    assert _price(cards["NMT 5 × 60 min"]) == "$540.00"
    assert "$108.00 per session" in cards["NMT 5 × 60 min"]
    assert "You save $60.00 (10 %)" in cards["NMT 5 × 60 min"]
    assert "Valid for 180 days" in cards["NMT 5 × 60 min"]
    assert "You save $180.00 (15 %)" in cards["NMT 10 × 60 min"]
    # "Buy" leads to the purchase page when the app has one, else it is disabled:
    # never a link to a missing page.
    buy = re.search(r'<a href="([^"]+)" role="button">Buy 5 sessions</a>', cards["NMT 5 × 60 min"])
    if _has_route(app, "buy"):
        assert buy is not None
        assert buy.group(1) == f"/buy/{five}?location=portland-pearl"
        target = await client.get(buy.group(1))
        assert target.status_code != 404  # anonymous: sent to sign in
    else:
        assert buy is None
        assert re.search(r"<button[^>]*disabled", cards["NMT 5 × 60 min"])

    page = await client.get("/book/brooklyn-park-slope")
    cards = _cards(page.text)
    assert _price(cards["NMT 5 × 60 min"]) == "$565.00"
    assert "$113.00 per session" in cards["NMT 5 × 60 min"]
    assert "You save $35.00 (5.83 %)" in cards["NMT 5 × 60 min"]
    assert _price(cards["NMT 10 × 60 min"]) == "$1,020.00"

    page = await client.get("/book/austin-soco")
    cards = _cards(page.text)
    assert "Plus 8.25 % tax: $584.55 in total" in cards["NMT 5 × 60 min"]
    assert austin


async def test_currency_decides_what_a_location_sells(client, db) -> None:
    await factories.make_location(name="Dublin", slug="dublin", currency="EUR")
    nmt = await make_service(price=12000)
    usd_only = await make_package(nmt, name="Dollar package", price=54000)
    euro = await make_package(nmt, name="Euro package", price=49000, currency="EUR")
    assert usd_only and euro
    page = await client.get("/book/dublin")
    cards = _cards(page.text)
    assert set(cards) == {"Euro package"}
    assert _price(cards["Euro package"]) == "€490.00"
    # The list price is in dollars: no saving is claimed in euros.
    assert "save" not in cards["Euro package"].lower()


async def test_unknown_or_inactive_location_is_a_404_page(client, db) -> None:
    closed = await factories.make_location(name="Closed", slug="closed")
    await Location.update({Location.active: False}).where(Location.id == closed).run()
    for slug in ("nowhere", "closed"):
        page = await client.get(f"/book/{slug}")
        assert page.status_code == 404
        assert "Page not found" in page.text and "could not find this clinic" in page.text


async def test_each_card_states_where_the_sessions_can_be_booked(app, client, db) -> None:
    await factories.make_location(name="Portland Pearl", slug="portland-pearl")
    nmt = await make_service("Neuromuscular massage, 60 min", price=12000)
    here = await make_package(nmt, name="Here only", sessions=5, price=54000)
    await make_package(nmt, name="Anywhere", sessions=5, price=55000)
    await Package.update({Package.redeemable: "selling_clinic"}).where(Package.id == here).run()
    cards = _cards((await client.get("/book/portland-pearl")).text)
    assert "Sessions can be booked only at Portland Pearl." in cards["Here only"]
    assert "Sessions can be booked at every clinic." in cards["Anywhere"]
