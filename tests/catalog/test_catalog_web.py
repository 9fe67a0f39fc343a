"""Catalog pages: owners create and price, managers override their own locations only,
bad input is refused beside the field, everything is audited."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest

from portal.audit.tables import AuditLog
from portal.auth.service import ACCOUNTANT, MANAGER, THERAPIST
from portal.catalog.tables import Package, PackagePrice, Service, ServicePrice
from portal.timeutil import to_local, utcnow
from tests import factories
from tests.catalog.helpers import add_price, make_package, make_service

SERVICE = {
    "name": "Neuromuscular massage, 60 min",
    "treatment_type": "Neuromuscular",
    "duration_minutes": "60",
    "buffer_after_minutes": "15",
    "required_equipment": "Hydraulic table,  hot stones, hydraulic table",
    "description": "Trigger point work.",
    "price": "120",
    "currency": "usd",
}
PACKAGE = {
    "name": "5 × 60 min neuromuscular",
    "sessions": "5",
    "validity_days": "180",
    "description": "Our most chosen series.",
    "sellable_online": "on",
    "price": "540.00",
    "currency": "USD",
}


async def _counts() -> tuple[int, int, int, int, int]:
    return (
        await Service.count().run(),
        await ServicePrice.count().run(),
        await Package.count().run(),
        await PackagePrice.count().run(),
        await AuditLog.count().run(),
    )


async def test_owner_creates_service_and_package_audited(owner_client, owner) -> None:
    response = await factories.post_form(owner_client, "/catalog/services", SERVICE)
    assert response.status_code == 303, response.text
    svc = await Service.select().first().run()
    assert svc["required_equipment"] == "hydraulic table, hot stones"
    prices = await ServicePrice.select().run()
    assert [(p["amount_cents"], p["currency"]) for p in prices] == [(12000, "USD")]

    response = await factories.post_form(
        owner_client, "/catalog/packages", {**PACKAGE, "service_id": str(svc["id"])}
    )
    assert response.status_code == 303, response.text
    package = await Package.select().first().run()
    assert response.headers["location"] == f"/catalog/packages/{package['id']}"
    assert (package["sessions"], package["validity_days"], package["sellable_online"]) == (
        5,
        180,
        True,
    )
    page = await owner_client.get(response.headers["location"])
    assert page.status_code == 200
    assert "Package “5 × 60 min neuromuscular” created." in page.text
    assert "$540.00" in page.text and "$108.00 per session" in page.text
    assert "Save $60.00 (10 %)" in page.text  # against 5 × $120

    audit = await AuditLog.select().order_by(AuditLog.id).run()
    assert [(a["entity"], a["action"], a["actor_id"]) for a in audit] == [
        ("service", "create", owner.id),
        ("package", "create", owner.id),
    ]
    after = json.loads(audit[1]["after"])
    assert after["base_price_cents"] == 54000 and after["sessions"] == 5
    assert after["base_price_currency"] == "USD"

    history = await owner_client.get(f"/catalog/packages/{package['id']}/history")
    assert history.status_code == 200 and "Created" in history.text


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("sessions", "0", "at least 1"),
        ("sessions", "-3", "at least 1"),
        ("validity_days", "0", "at least 1"),
        ("validity_days", "-30", "at least 1"),
        ("price", "0", "greater than zero"),
        ("price", "-540", "greater than zero"),
        ("price", "5.405", "at most 2 decimals"),
        ("price", "lots", "such as"),
        ("currency", "XYZ", "ISO 4217"),
        ("name", "", "Name is required."),
        ("service_id", "", "Choose a service."),
        ("service_id", "99999", "from the list"),
    ],
)
async def test_bad_package_input_is_refused_beside_the_field(
    owner_client, field, value, message
) -> None:
    svc = await make_service()
    before = await _counts()
    data = {**PACKAGE, "service_id": str(svc), field: value}
    response = await factories.post_form(owner_client, "/catalog/packages", data)
    assert response.status_code == 422
    error = factories.field_error(response.text, field)
    assert error is not None and message in error, response.text[:2000]
    assert 'role="alert"' in response.text
    if field != "name":
        assert factories.input_value(response.text, "name") == PACKAGE["name"]
    assert await _counts() == before


async def test_duplicate_names_are_refused_case_insensitively(owner_client) -> None:
    svc = await make_service("Sports recovery, 60 min")
    await make_package(svc, name="5 × 60 min neuromuscular")
    before = await _counts()
    response = await factories.post_form(
        owner_client,
        "/catalog/packages",
        {**PACKAGE, "name": "5 × 60 MIN Neuromuscular", "service_id": str(svc)},
    )
    assert response.status_code == 422
    assert "already has this name" in factories.field_error(response.text, "name")
    response = await factories.post_form(
        owner_client, "/catalog/services", {**SERVICE, "name": "sports recovery, 60 min"}
    )
    assert response.status_code == 422
    assert "already has this name" in factories.field_error(response.text, "name")
    assert await _counts() == before


async def test_new_base_price_version_now_and_scheduled(owner_client, locations) -> None:
    svc = await make_service()
    package = await make_package(svc, price=54000)
    page = await owner_client.get(f"/catalog/packages/{package}/price")
    assert page.status_code == 200
    # The zone list offers the locations' zones; the first is the default.
    assert 'value="America/New_York" selected' in page.text
    response = await factories.post_form(
        owner_client,
        f"/catalog/packages/{package}/price",
        {"price": "560", "currency": "USD", "effective_local": "", "note": "2027 prices"},
    )
    assert response.status_code == 303
    rows = await PackagePrice.select().order_by(PackagePrice.id).run()
    assert [r["amount_cents"] for r in rows] == [54000, 56000]
    assert rows[1]["note"] == "2027 prices"
    assert utcnow() - rows[1]["effective_from"] < timedelta(minutes=1)

    tomorrow = to_local(utcnow() + timedelta(days=1), "Europe/London").strftime("%Y-%m-%dT%H:%M")
    response = await factories.post_form(
        owner_client,
        f"/catalog/packages/{package}/price",
        {
            "price": "580",
            "currency": "USD",
            "effective_local": tomorrow,
            "effective_zone": "Europe/London",
        },
    )
    assert response.status_code == 303
    scheduled = await PackagePrice.select().order_by(PackagePrice.id, ascending=False).first().run()
    assert (
        to_local(scheduled["effective_from"], "Europe/London").strftime("%Y-%m-%dT%H:%M")
        == tomorrow
    )
    detail = await owner_client.get(f"/catalog/packages/{package}")
    assert "Scheduled" in detail.text and "$580.00" in detail.text
    # The page shows the price in effect now, not the scheduled one.
    assert re.search(r'class="price-big">\$560\.00<', detail.text)
    audit = await AuditLog.select().where(AuditLog.action == "price").run()
    assert len(audit) == 2


async def test_effective_time_in_the_past_is_refused(owner_client, locations) -> None:
    svc = await make_service()
    package = await make_package(svc)
    before = await _counts()
    yesterday = to_local(utcnow() - timedelta(days=1), "America/New_York").strftime(
        "%Y-%m-%dT%H:%M"
    )
    for url in (f"/catalog/packages/{package}/price", f"/catalog/services/{svc}/price"):
        response = await factories.post_form(
            owner_client,
            url,
            {
                "price": "560",
                "currency": "USD",
                "effective_local": yesterday,
                "effective_zone": "America/New_York",
            },
        )
        assert response.status_code == 422
        assert "in the past" in factories.field_error(response.text, "effective_local")
        assert factories.input_value(response.text, "price") == "560"
    # A time that does not exist (clocks skip 02:00–03:00 in New York).
    response = await factories.post_form(
        owner_client,
        f"/catalog/packages/{package}/price",
        {
            "price": "560",
            "currency": "USD",
            "effective_local": "2030-03-10T02:30",
            "effective_zone": "America/New_York",
        },
    )
    assert response.status_code == 422
    assert "does not exist" in factories.field_error(response.text, "effective_local")
    assert await _counts() == before


async def test_manager_sets_override_for_own_location_only(
    app, manager_client, manager, locations
) -> None:
    own, other = locations
    svc = await make_service()
    package = await make_package(svc, price=54000)
    page = await manager_client.get(f"/catalog/packages/{package}/locations/{own}")
    assert page.status_code == 200 and "Set a price override" in page.text
    response = await factories.post_form(
        manager_client,
        f"/catalog/packages/{package}/locations/{own}",
        {"price": "565", "currency": "USD", "note": "Rent"},
    )
    assert response.status_code == 303
    override = await PackagePrice.select().where(PackagePrice.location == own).first().run()
    assert (override["amount_cents"], override["created_by"]) == (56500, manager.id)
    audit = await AuditLog.select().where(AuditLog.action == "override").first().run()
    assert audit["actor_id"] == manager.id and json.loads(audit["after"])["location_id"] == own

    # The other location: refused on every route, with nothing written.
    before = await _counts()
    assert (
        await manager_client.get(f"/catalog/packages/{package}/locations/{other}")
    ).status_code == 403
    response = await factories.post_form(
        manager_client,
        f"/catalog/packages/{package}/locations/{other}",
        {"price": "1", "currency": "USD"},
    )
    assert response.status_code == 403
    response = await factories.post_form(
        manager_client, f"/catalog/packages/{package}/locations/{other}/end", {}
    )
    assert response.status_code == 403
    # Guessed ids: an unknown location is 404, never a write.
    response = await factories.post_form(
        manager_client,
        f"/catalog/packages/{package}/locations/99999",
        {"price": "1", "currency": "USD"},
    )
    assert response.status_code in (403, 404)
    # Managers read the catalog but do not change base prices or packages.
    for url in (f"/catalog/packages/{package}/price", f"/catalog/packages/{package}/edit"):
        assert (await manager_client.get(url)).status_code == 403
        assert (await factories.post_form(manager_client, url, {"price": "1"})).status_code == 403
    assert (
        await factories.post_form(manager_client, "/catalog/packages", PACKAGE)
    ).status_code == 403
    assert await _counts() == before
    # The package page lists only the manager's locations.
    detail = await manager_client.get(f"/catalog/packages/{package}")
    assert "Alpha Clinic" in detail.text and "Beta Clinic" not in detail.text


async def test_override_currency_must_match_the_location(owner_client, locations) -> None:
    own, _ = locations
    package = await make_package(await make_service())
    before = await _counts()
    response = await factories.post_form(
        owner_client,
        f"/catalog/packages/{package}/locations/{own}",
        {"price": "565", "currency": "EUR"},
    )
    assert response.status_code == 422
    assert "in USD" in factories.field_error(response.text, "currency")
    assert factories.input_value(response.text, "price") == "565"
    # The override's time is read in the location's zone, and never in the past.
    an_hour_ago = to_local(utcnow() - timedelta(hours=1), "America/New_York")
    response = await factories.post_form(
        owner_client,
        f"/catalog/packages/{package}/locations/{own}",
        {"price": "565", "currency": "USD", "effective_local": f"{an_hour_ago:%Y-%m-%dT%H:%M}"},
    )
    assert response.status_code == 422
    assert "in the past" in factories.field_error(response.text, "effective_local")
    assert await _counts() == before


async def test_ending_an_override_returns_to_the_base_price(manager_client, locations) -> None:
    own, _ = locations
    package = await make_package(await make_service(), price=54000)
    response = await factories.post_form(
        manager_client, f"/catalog/packages/{package}/locations/{own}/end", {}
    )
    assert response.status_code == 422 and "no override to end" in response.text
    await add_price(package, 56500, utcnow() - timedelta(days=1), location=own)
    page = await manager_client.get(f"/catalog/packages/{package}/locations/{own}")
    assert "$565.00" in page.text and "Override" in page.text
    response = await factories.post_form(
        manager_client, f"/catalog/packages/{package}/locations/{own}/end", {"note": "Promo over"}
    )
    assert response.status_code == 303
    page = await manager_client.get(f"/catalog/packages/{package}/locations/{own}")
    assert re.search(r'class="price-big">\$540\.00<', page.text)
    assert "Back to the base price" in page.text
    assert await AuditLog.count().where(AuditLog.action == "end_override").run() == 1


async def test_roles_reading_and_refused(app, locations) -> None:
    own, _ = locations
    package = await make_package(await make_service())
    accountant = await factories.make_user(ACCOUNTANT)
    therapist = await factories.make_user(THERAPIST, location_ids=[own])
    async with factories.make_client(app) as client:
        await factories.login(client, accountant)
        assert (await client.get("/catalog/packages")).status_code == 200
        page = await client.get(f"/catalog/packages/{package}/locations/{own}")
        assert page.status_code == 200 and "Set a price override" not in page.text
        response = await factories.post_form(
            client,
            f"/catalog/packages/{package}/locations/{own}",
            {"price": "1", "currency": "USD"},
        )
        assert response.status_code == 403
        assert (await client.get(f"/catalog/packages/{package}/history")).status_code == 403
    async with factories.make_client(app) as client:
        await factories.login(client, therapist)
        for url in ("/catalog/packages", "/catalog/services", f"/catalog/packages/{package}"):
            assert (await client.get(url)).status_code == 403
        assert (await client.get("/api/v1/catalog/packages")).status_code == 403


async def test_lists_search_filter_and_paginate(owner_client) -> None:
    nmt = await make_service("Neuromuscular massage, 60 min")
    sports = await make_service("Sports recovery, 60 min")
    for n in (3, 5, 10):
        await make_package(nmt, name=f"NMT {n:02d} × 60", sessions=n)
    await make_package(sports, name="Sports 5 × 60", online=False)
    await make_package(sports, name="Old sports 3 × 60", active=False)
    page = await owner_client.get("/catalog/packages")
    assert all(f"NMT {n:02d}" in page.text for n in (3, 5, 10))
    assert "Old sports" not in page.text
    page = await owner_client.get("/catalog/packages", params={"online": "no"})
    assert "Sports 5 × 60" in page.text and "NMT" not in page.text
    page = await owner_client.get("/catalog/packages", params={"q": "nmt 1"})
    assert "NMT 10" in page.text and "NMT 05" not in page.text
    page = await owner_client.get(
        "/catalog/packages", params={"service": str(sports), "status": "all"}
    )
    assert "Old sports" in page.text and "NMT" not in page.text
    page = await owner_client.get("/catalog/services", params={"q": "sports"})
    assert "Sports recovery" in page.text and "Neuromuscular" not in page.text

    from portal.catalog import service

    first = await service.list_packages(limit=2, status="all")
    assert [r["name"] for r in first.rows] == ["NMT 03 × 60", "NMT 05 × 60"]
    second = await service.list_packages(limit=2, status="all", after=first.next_cursor)
    assert [r["name"] for r in second.rows] == ["NMT 10 × 60", "Old sports 3 × 60"]
    third = await service.list_packages(limit=2, status="all", after=second.next_cursor)
    assert [r["name"] for r in third.rows] == ["Sports 5 × 60"] and third.next_cursor is None
    # The pager link carries the cursor.
    assert (
        await owner_client.get("/catalog/packages", params={"after": first.next_cursor})
    ).status_code == 200


async def test_deactivate_with_confirmation_and_reactivate(owner_client, owner, locations) -> None:
    svc = await make_service()
    package = await make_package(svc)
    confirm = await owner_client.get(f"/catalog/packages/{package}/deactivate")
    assert confirm.status_code == 200 and "Deactivate package" in confirm.text
    response = await factories.post_form(owner_client, f"/catalog/packages/{package}/deactivate")
    assert response.status_code == 303
    assert not (await Package.select().first().run())["active"]
    public = await owner_client.get("/book/alpha")
    assert "No packages are on sale" in public.text
    await factories.post_form(owner_client, f"/catalog/packages/{package}/reactivate")
    await factories.post_form(owner_client, f"/catalog/services/{svc}/deactivate")
    public = await owner_client.get("/book/alpha")
    assert "No packages are on sale" in public.text  # the service is inactive
    actions = [r["action"] for r in await AuditLog.select().order_by(AuditLog.id).run()]
    assert actions == ["deactivate", "reactivate", "deactivate"]


async def test_service_edit_and_list_price(owner_client, locations) -> None:
    svc = await make_service("Trigger point, 30 min", price=6000)
    page = await owner_client.get(f"/catalog/services/{svc}/edit")
    assert factories.input_value(page.text, "name") == "Trigger point, 30 min"
    data = {
        "name": "Trigger point therapy, 30 min",
        "treatment_type": "Trigger point",
        "duration_minutes": "30",
        "buffer_after_minutes": "10",
    }
    response = await factories.post_form(owner_client, f"/catalog/services/{svc}/edit", data)
    assert response.status_code == 303
    response = await factories.post_form(
        owner_client, f"/catalog/services/{svc}/edit", {**data, "duration_minutes": "0"}
    )
    assert response.status_code == 422
    assert "at least 5" in factories.field_error(response.text, "duration_minutes")
    response = await factories.post_form(
        owner_client, f"/catalog/services/{svc}/price", {"price": "65", "currency": "USD"}
    )
    assert response.status_code == 303
    detail = await owner_client.get(f"/catalog/services/{svc}")
    assert "Trigger point therapy, 30 min" in detail.text
    assert re.search(r'class="price-big">\$65\.00<', detail.text)
    history = await owner_client.get(f"/catalog/services/{svc}/history")
    assert "Changed" in history.text and "price" in history.text


async def test_managers_cannot_see_another_location_in_the_api(manager_client, locations) -> None:
    own, other = locations
    package = await make_package(await make_service())
    ok = await manager_client.get(f"/api/v1/catalog/locations/{own}/prices")
    assert ok.status_code == 200
    assert ok.json()["items"][0]["price_cents"] == 54000
    denied = await manager_client.get(f"/api/v1/catalog/locations/{other}/prices")
    assert denied.status_code == 403 and denied.json()["status_code"] == 403
    denied = await manager_client.get(f"/api/v1/catalog/locations/{other}/packages/{package}/quote")
    assert denied.status_code == 403
    detail = await manager_client.get(f"/api/v1/catalog/packages/{package}")
    assert [loc["location_id"] for loc in detail.json()["locations"]] == [own]


@pytest.mark.parametrize("role", [MANAGER])
async def test_api_lists_and_quote(owner_client, locations, role) -> None:
    own, _ = locations
    svc = await make_service("Neuromuscular massage, 60 min")
    package = await make_package(svc, name="NMT 5 × 60", price=54000)
    services = (await owner_client.get("/api/v1/catalog/services")).json()
    assert services["items"][0]["list_price"]["amount_cents"] == 12000
    packages = (await owner_client.get("/api/v1/catalog/packages", params={"q": "NMT"})).json()
    assert packages["items"][0]["base_price"]["amount_cents"] == 54000
    # Each row says what it is, in this order, with its price in effect last.
    assert list(services["items"][0]) == [
        "id", "name", "description", "treatment_type", "duration_minutes",
        "buffer_after_minutes", "required_equipment", "active", "list_price",
    ]  # fmt: skip
    assert list(packages["items"][0]) == [
        "id", "name", "description", "service_id", "service_name", "sessions",
        "validity_days", "sellable_online", "redeemable", "active", "base_price",
    ]  # fmt: skip
    assert packages["items"][0]["service_id"] == svc and packages["items"][0]["active"] is True
    quote = await owner_client.get(f"/api/v1/catalog/locations/{own}/packages/{package}/quote")
    assert quote.status_code == 200
    body = quote.json()
    assert body["session_values"] == [10800] * 5 and body["total_cents"] == 54000
    past = await owner_client.get(
        f"/api/v1/catalog/locations/{own}/packages/{package}/quote",
        params={"at": "2010-01-01T00:00:00Z"},
    )
    assert past.status_code == 409 and "No price" in past.json()["detail"]
    bad = await owner_client.get(f"/api/v1/catalog/locations/{own}/prices", params={"at": "soon"})
    assert bad.status_code == 400 and bad.headers["content-type"].startswith("application/json")
    missing = await owner_client.get("/api/v1/catalog/packages/99999")
    assert missing.status_code == 404 and missing.json()["status_code"] == 404
