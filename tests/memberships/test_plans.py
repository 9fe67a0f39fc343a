"""Membership plans: created and priced on the admin grammar, scoped to their location,
versioned prices quoted exactly, bad input refused beside the field, everything audited."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from portal.audit.tables import AuditLog
from portal.memberships import service
from portal.memberships.tables import MembershipPlan, MembershipPlanPrice
from portal.timeutil import to_local, utcnow
from tests import factories
from tests.catalog.helpers import make_service
from tests.memberships.helpers import add_plan_price, make_plan

PLAN = {
    "name": "Monthly 60 min",
    "description": "Two sessions every month.",
    "interval": "month",
    "sessions_per_period": "2",
    "rollover_cap": "1",
    "min_term_periods": "3",
    "notice_days": "14",
    "freeze_allowed": "on",
    "freeze_fee": "10",
    "member_discount_bp": "1000",
    "sellable_online": "on",
    "price": "120",
}


async def _counts() -> tuple[int, int, int]:
    return (
        await MembershipPlan.count().run(),
        await MembershipPlanPrice.count().run(),
        await AuditLog.count().run(),
    )


async def _taxed_location(**overrides) -> int:
    return await factories.make_location(
        name="Taxed Clinic", slug="taxed", tax_rate_bp=825, **overrides
    )


async def test_owner_creates_a_plan_with_exact_terms_and_audit(owner_client, owner) -> None:
    location = await _taxed_location()
    svc = await make_service("Neuromuscular, 60 min")
    response = await factories.post_form(
        owner_client,
        "/memberships/plans",
        {**PLAN, "location_id": str(location), "service_id": str(svc)},
    )
    assert response.status_code == 303, response.text
    plan = await MembershipPlan.select().first().run()
    assert response.headers["location"] == f"/memberships/plans/{plan['id']}"
    assert (
        plan["sessions_per_period"], plan["rollover_cap"], plan["min_term_periods"],
        plan["notice_days"], plan["freeze_fee_cents"], plan["member_discount_bp"],
    ) == (2, 1, 3, 14, 1000, 1000)  # fmt: skip
    prices = await MembershipPlanPrice.select().run()
    assert [(p["amount_cents"], p["currency"]) for p in prices] == [(12000, "USD")]

    page = await owner_client.get(response.headers["location"])
    assert page.status_code == 200
    assert "$129.90" in page.text and "$9.90 tax" in page.text  # 8.25 % on $120.00
    assert "Up to 1 unused session" in page.text and "$10.00 per frozen period" in page.text

    terms = await service.quote_plan(plan["id"], utcnow(), online=True)
    assert (terms.price_cents, terms.net_cents, terms.tax_cents, terms.total_cents) == (
        12000, 12000, 990, 12990,
    )  # fmt: skip
    assert terms.session_values == (6000, 6000) and terms.session_totals == (6495, 6495)
    assert terms.price_version_id == prices[0]["id"]

    audit = await AuditLog.select().run()
    assert [(a["entity"], a["action"], a["actor_id"]) for a in audit] == [
        ("membership_plan", "create", owner.id)
    ]
    after = json.loads(audit[0]["after"])
    assert after["price_cents"] == 12000 and after["location_id"] == location
    history = await owner_client.get(f"/memberships/plans/{plan['id']}/history")
    assert history.status_code == 200 and "Created" in history.text
    listing = await owner_client.get("/memberships/plans")
    assert "Monthly 60 min" in listing.text and "$120.00" in listing.text


async def test_tax_inclusive_three_sessions_split_to_the_cent(db) -> None:
    location = await factories.make_location(
        currency="EUR", tax_rate_bp=2000, prices_include_tax=True
    )
    plan = await make_plan(location, await make_service(), sessions=3, price=10000, currency="EUR")
    terms = await service.quote_plan(plan, utcnow())
    assert (terms.net_cents, terms.tax_cents, terms.total_cents) == (8333, 1667, 10000)
    assert terms.session_values == (2778, 2778, 2777)
    assert terms.session_totals == (3334, 3333, 3333)
    assert terms.currency == "EUR"


async def test_price_versions_take_effect_on_their_date_and_are_append_only(
    owner_client, owner
) -> None:
    location = await factories.make_location(timezone="Europe/London")
    plan = await make_plan(location, await make_service(), price=9900)
    later = (utcnow() + timedelta(days=10)).replace(second=0, microsecond=0)
    response = await factories.post_form(
        owner_client,
        f"/memberships/plans/{plan}/price",
        {
            "price": "110",
            "effective_local": to_local(later, "Europe/London").strftime("%Y-%m-%dT%H:%M"),
            "note": "2027 list",
        },
    )
    assert response.status_code == 303, response.text
    assert (await service.quote_plan(plan, utcnow())).price_cents == 9900
    assert (await service.quote_plan(plan, later)).price_cents == 11000
    page = await owner_client.get(f"/memberships/plans/{plan}")
    assert "Scheduled" in page.text and "2027 list" in page.text

    past = await factories.post_form(
        owner_client,
        f"/memberships/plans/{plan}/price",
        {"price": "80", "effective_local": "2020-01-01T09:00"},
    )
    assert past.status_code == 422
    assert "in the past" in factories.field_error(past.text, "effective_local")
    assert await MembershipPlanPrice.count().where(MembershipPlanPrice.plan == plan).run() == 2

    with pytest.raises(Exception):
        await MembershipPlanPrice.update({MembershipPlanPrice.amount_cents: 1}).run()
    with pytest.raises(Exception):
        await MembershipPlanPrice.delete(force=True).run()
    actions = await AuditLog.select(AuditLog.action).where(AuditLog.entity_id == str(plan)).run()
    assert [a["action"] for a in actions] == ["price"]


async def test_managers_run_the_plans_of_their_own_locations_only(
    manager_client, manager, locations
) -> None:
    own, other = locations
    svc = await make_service()
    made = await factories.post_form(
        manager_client,
        "/memberships/plans",
        {**PLAN, "location_id": str(own), "service_id": str(svc)},
    )
    assert made.status_code == 303, made.text
    before = await _counts()
    refused = await factories.post_form(
        manager_client,
        "/memberships/plans",
        {**PLAN, "name": "Elsewhere", "location_id": str(other), "service_id": str(svc)},
    )
    assert refused.status_code == 403
    theirs = await make_plan(other, svc, name="Beta monthly")
    for url in (f"/memberships/plans/{theirs}/edit", f"/memberships/plans/{theirs}/price"):
        assert (await factories.post_form(manager_client, url, PLAN)).status_code == 403
    assert (await manager_client.get(f"/memberships/plans/{theirs}")).status_code == 403
    listing = await manager_client.get("/memberships/plans")
    assert "Monthly 60 min" in listing.text and "Beta monthly" not in listing.text
    assert await _counts() == (before[0] + 1, before[1] + 1, before[2])


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "", "Name is required."),
        ("interval", "weekly", "how often"),
        ("sessions_per_period", "0", "at least 1"),
        ("sessions_per_period", "many", "whole number"),
        ("rollover_cap", "3", "one period"),
        ("notice_days", "-1", "at least 0"),
        ("freeze_fee", "ten", "such as"),
        ("member_discount_bp", "10001", "at most 10000"),
        ("ends_local", "2020-01-01T00:00", "future"),
        ("price", "0", "greater than zero"),
        ("price", "", "Enter an amount."),
        ("service_id", "", "Choose a service."),
        ("location_id", "", "Choose a location."),
    ],
)
async def test_bad_plan_input_is_refused_beside_the_field(
    owner_client, locations, field, value, message
) -> None:
    svc = await make_service()
    before = await _counts()
    data = {**PLAN, "location_id": str(locations[0]), "service_id": str(svc), field: value}
    response = await factories.post_form(owner_client, "/memberships/plans", data)
    assert response.status_code == 422
    error = factories.field_error(response.text, field)
    assert error is not None and message in error, response.text[:3000]
    if field != "name":
        assert factories.input_value(response.text, "name") == PLAN["name"]
    assert await _counts() == before


async def test_names_are_unique_per_location_regardless_of_case(owner_client, locations) -> None:
    own, other = locations
    svc = await make_service()
    await make_plan(own, svc, name="Monthly 60 min")
    before = await _counts()
    clash = await factories.post_form(
        owner_client,
        "/memberships/plans",
        {**PLAN, "name": "MONTHLY 60 MIN", "location_id": str(own), "service_id": str(svc)},
    )
    assert clash.status_code == 422
    assert "already has a plan" in factories.field_error(clash.text, "name")
    assert await _counts() == before
    elsewhere = await factories.post_form(
        owner_client,
        "/memberships/plans",
        {**PLAN, "location_id": str(other), "service_id": str(svc)},
    )
    assert elsewhere.status_code == 303


async def test_edit_changes_terms_for_new_joins_and_audits_only_the_change(
    owner_client, owner, locations
) -> None:
    plan = await make_plan(locations[0], await make_service(), name="Monthly", sessions=2)
    response = await factories.post_form(
        owner_client,
        f"/memberships/plans/{plan}/edit",
        {**PLAN, "name": "Monthly", "sessions_per_period": "4", "rollover_cap": "0",
         "min_term_periods": "0", "notice_days": "0", "freeze_allowed": "", "freeze_fee": "",
         "member_discount_bp": "0", "description": "", "sellable_online": "on"},
    )  # fmt: skip
    assert response.status_code == 303, response.text
    assert (await service.quote_plan(plan, utcnow())).sessions_per_period == 4
    audit = await AuditLog.select().where(AuditLog.action == "update").first().run()
    assert json.loads(audit["before"]) == {"sessions_per_period": 2}
    assert json.loads(audit["after"]) == {"sessions_per_period": 4}


async def test_a_deactivated_or_ended_plan_cannot_be_joined(owner_client, locations) -> None:
    svc = await make_service()
    plan = await make_plan(locations[0], svc)
    response = await factories.post_form(owner_client, f"/memberships/plans/{plan}/deactivate")
    assert response.status_code == 303
    with pytest.raises(service.NotAvailable, match="inactive"):
        await service.quote_plan(plan, utcnow())
    offline = await make_plan(locations[0], svc, online=False)
    with pytest.raises(service.NotAvailable, match="online"):
        await service.quote_plan(offline, utcnow(), online=True)
    unpriced = await make_plan(locations[0], svc, price=None)
    await add_plan_price(unpriced, 5000, utcnow() + timedelta(days=1))
    with pytest.raises(service.NotAvailable, match="No price"):
        await service.quote_plan(unpriced, utcnow())
    page = await owner_client.get(f"/memberships/plans/{unpriced}")
    assert "Not available to join now: No price is in effect yet." in page.text
