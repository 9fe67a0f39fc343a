"""Locations: forms, validation, scope, audit."""

from __future__ import annotations

import json

import pytest

from portal.audit.tables import AuditLog
from portal.locations.tables import Location
from tests import factories

VALID = {
    "name": "Denver Highlands",
    "slug": "denver-highlands",
    "address": "3300 W 32nd Ave, Denver, CO 80211",
    "phone": "+1 303 555 0100",
    "timezone": "America/Denver",
    "currency": "usd",
    "tax_rate_bp": "481",
    "cancellation_window_hours": "24",
    "prices_include_tax": "on",
}


async def test_owner_creates_location_and_it_is_audited(owner_client, owner):
    response = await factories.post_form(owner_client, "/locations", VALID)
    assert response.status_code == 303
    row = await Location.select().where(Location.slug == "denver-highlands").first().run()
    assert row["currency"] == "USD" and row["tax_rate_bp"] == 481 and row["prices_include_tax"]
    assert response.headers["location"] == f"/locations/{row['id']}"
    page = await owner_client.get(response.headers["location"])
    assert "Location “Denver Highlands” created." in page.text
    audit = await AuditLog.select().where(AuditLog.entity == "location").run()
    assert len(audit) == 1
    assert audit[0]["action"] == "create" and audit[0]["actor_id"] == owner.id
    assert json.loads(audit[0]["after"])["timezone"] == "America/Denver"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "", "Name is required."),
        ("slug", "Not A Slug", "lowercase letters"),
        ("timezone", "Mars/Olympus_Mons", "IANA"),
        ("timezone", "", "Time zone is required."),
        # A folder of zones and an overlong name used to crash the page (500).
        ("timezone", "America", "IANA"),
        ("timezone", "Etc", "IANA"),
        ("timezone", "Europe/" + "x" * 300, "IANA"),
        ("currency", "XXY", "ISO 4217"),
        ("tax_rate_bp", "-1", "at least 0"),
        ("tax_rate_bp", "12.5", "whole number"),
        ("cancellation_window_hours", "500", "at most 168"),
        ("phone", "call me maybe", "digits"),
    ],
)
async def test_invalid_location_is_refused_with_message_beside_field(
    owner_client, field, value, message
):
    data = {**VALID, field: value}
    response = await factories.post_form(owner_client, "/locations", data)
    assert response.status_code == 422
    error = factories.field_error(response.text, field)
    assert error is not None and message in error
    assert 'role="alert"' in response.text  # the error summary
    # The user's input is kept.
    for kept in ("name", "address"):
        if kept != field:
            assert VALID[kept] in response.text
    assert await Location.count().run() == 0
    assert await AuditLog.count().run() == 0


async def test_duplicate_slug_is_refused(owner_client, locations):
    response = await factories.post_form(owner_client, "/locations", {**VALID, "slug": "alpha"})
    assert response.status_code == 422
    assert "already uses this slug" in factories.field_error(response.text, "slug")
    assert await Location.count().run() == 2


async def test_manager_edits_own_location_only(manager_client, locations):
    own, other = locations
    response = await factories.post_form(
        manager_client,
        f"/locations/{own}/edit",
        {**VALID, "slug": "alpha", "name": "Alpha Renamed"},
    )
    assert response.status_code == 303
    assert (await Location.select(Location.name).where(Location.id == own).first().run())[
        "name"
    ] == "Alpha Renamed"
    for url in (f"/locations/{other}", f"/locations/{other}/edit"):
        assert (await manager_client.get(url)).status_code == 403
    response = await factories.post_form(
        manager_client, f"/locations/{other}/edit", {**VALID, "slug": "beta"}
    )
    assert response.status_code == 403
    assert (await Location.select(Location.name).where(Location.id == other).first().run())[
        "name"
    ] == "Beta Clinic"
    # Managers cannot create or deactivate.
    assert (await factories.post_form(manager_client, "/locations", VALID)).status_code == 403
    assert (
        await factories.post_form(manager_client, f"/locations/{own}/deactivate")
    ).status_code == 403


async def test_manager_list_and_api_show_only_their_locations(manager_client, locations):
    page = await manager_client.get("/locations")
    assert "Alpha Clinic" in page.text and "Beta Clinic" not in page.text
    api = (await manager_client.get("/api/v1/locations")).json()
    assert [item["slug"] for item in api["items"]] == ["alpha"]
    assert (await manager_client.get(f"/api/v1/locations/{locations[1]}")).status_code == 403


async def test_accountant_reads_every_location_but_cannot_edit(app, locations):
    accountant = await factories.make_user("accountant")
    async with factories.make_client(app) as client:
        await factories.login(client, accountant)
        page = await client.get("/locations")
        assert "Alpha Clinic" in page.text and "Beta Clinic" in page.text
        assert (await client.get(f"/locations/{locations[1]}")).status_code == 200
        assert (await client.get(f"/locations/{locations[1]}/edit")).status_code == 403


async def test_deactivate_needs_confirmation_and_keeps_history(owner_client, locations):
    own, _ = locations
    confirm = await owner_client.get(f"/locations/{own}/deactivate")
    assert confirm.status_code == 200 and "Deactivate Alpha Clinic?" in confirm.text
    assert (await Location.select(Location.active).where(Location.id == own).first().run())[
        "active"
    ]
    response = await factories.post_form(owner_client, f"/locations/{own}/deactivate")
    assert response.status_code == 303
    assert not (await Location.select(Location.active).where(Location.id == own).first().run())[
        "active"
    ]
    # Deactivated locations are listed under "Inactive", not under "Active".
    assert "Alpha Clinic" not in (await owner_client.get("/locations")).text
    assert "Alpha Clinic" in (await owner_client.get("/locations?status=inactive")).text
    await factories.post_form(owner_client, f"/locations/{own}/reactivate")
    history = await owner_client.get(f"/locations/{own}/history")
    assert history.status_code == 200
    assert "Deactivated" in history.text and "Reactivated" in history.text
    actions = [
        r["action"]
        for r in await AuditLog.select(AuditLog.action)
        .where(AuditLog.entity_id == str(own))
        .order_by(AuditLog.id)
        .run()
    ]
    assert actions == ["deactivate", "reactivate"]


async def test_update_writes_before_and_after(owner_client, locations):
    own, _ = locations
    await factories.post_form(
        owner_client,
        f"/locations/{own}/edit",
        {**VALID, "slug": "alpha", "name": "Alpha Clinic", "tax_rate_bp": "700"},
    )
    row = await AuditLog.select().where(AuditLog.action == "update").first().run()
    assert json.loads(row["before"])["tax_rate_bp"] == 0
    assert json.loads(row["after"])["tax_rate_bp"] == 700


async def test_keyset_pagination_walks_every_location_once(owner_client, db):
    for i in range(130):
        await factories.make_location(name=f"Clinic {i:03d}", slug=f"page-{i:03d}")
    seen: list[str] = []
    url = "/api/v1/locations"
    while url:
        data = (await owner_client.get(url)).json()
        seen.extend(item["slug"] for item in data["items"])
        url = f"/api/v1/locations?after={data['next']}" if data["next"] else ""
    assert len(seen) == 130 and len(set(seen)) == 130
    html = await owner_client.get("/locations")
    assert "Next page" in html.text


async def test_audit_log_is_append_only_in_the_database(db, owner):
    from portal.audit import service as audit

    await audit.record(None, "create", "location", 1, after={"a": 1})
    with pytest.raises(Exception, match="append-only"):
        await AuditLog.update({AuditLog.action: "tampered"}, force=True).run()
    with pytest.raises(Exception, match="append-only"):
        await AuditLog.delete(force=True).run()
    assert (await AuditLog.select(AuditLog.action).first().run())["action"] == "create"
