"""The closed-periods page: close a month with a confirm step, who may, audit, bad input."""

from __future__ import annotations

from contextlib import asynccontextmanager
from datetime import date

import pytest

from portal.audit.tables import AuditLog
from portal.auth.service import ACCOUNTANT, CLIENT, MANAGER, OWNER, THERAPIST
from portal.ledger.tables import ClosedPeriod
from tests import factories


@asynccontextmanager
async def _client(app, role, location_ids=()):
    account = await factories.make_user(role, location_ids=location_ids)
    async with factories.make_client(app) as client:
        await factories.login(client, account)
        yield client, account


def _last_month() -> str:
    today = date.today()
    first = today.replace(day=1)
    previous = date(first.year - (first.month == 1), (first.month - 2) % 12 + 1, 1)
    return previous.strftime("%Y-%m")


@pytest.mark.parametrize("role", [OWNER, ACCOUNTANT])
async def test_close_a_month_through_the_form_with_a_confirm_step(db, app, role):
    loc = await factories.make_location(name="Bravo LA", timezone="America/Los_Angeles")
    month = _last_month()
    async with _client(app, role) as (client, account):
        page = await client.get("/reports/periods")
        assert page.status_code == 200
        assert "Bravo LA" in page.text and "Closed periods" in page.text
        assert 'name="_csrf_token"' in page.text
        # First post: the confirm step, nothing closed yet.
        confirm = await factories.post_form(
            client, "/reports/periods/close", {"location": str(loc), "month": month}
        )
        assert confirm.status_code == 200
        assert "Close" in confirm.text and "Bravo LA" in confirm.text
        assert 'name="confirm" value="yes"' in confirm.text
        assert await ClosedPeriod.count() == 0
        done = await factories.post_form(
            client,
            "/reports/periods/close",
            {"location": str(loc), "month": month, "confirm": "yes"},
        )
        assert done.status_code == 303 and done.headers["location"] == "/reports/periods"
        rows = await ClosedPeriod.select()
        assert [(r["location"], r["month"].strftime("%Y-%m"), r["closed_by"]) for r in rows] == [
            (loc, month, account.id)
        ]
        audit = await AuditLog.select().where(AuditLog.action == "close_period")
        assert len(audit) == 1 and audit[0]["actor_id"] == account.id
        page = await client.get("/reports/periods")
        assert "Closed" in page.text
        # The reports of that month say it is closed.
        start = f"{month}-01"
        for report in ("liability", "trial-balance", "revenue"):
            shown = await client.get(f"/reports/{report}?start={start}&end={start}&location={loc}")
            assert shown.status_code == 200
            assert "closed months" in shown.text and "Bravo LA" in shown.text, report
        # Closing again is refused beside the month field.
        again = await factories.post_form(
            client,
            "/reports/periods/close",
            {"location": str(loc), "month": month, "confirm": "yes"},
        )
        assert again.status_code == 422
        assert "already closed" in (factories.field_error(again.text, "month") or "")


async def test_close_every_location_at_once(db, app):
    await factories.make_location(timezone="America/New_York")
    await factories.make_location(timezone="Europe/London")
    async with _client(app, OWNER) as (client, _):
        done = await factories.post_form(
            client,
            "/reports/periods/close",
            {"location": "all", "month": _last_month(), "confirm": "yes"},
        )
        assert done.status_code == 303
    rows = await ClosedPeriod.select()
    assert len(rows) == 1 and rows[0]["location"] is None


@pytest.mark.parametrize(
    ("month", "message"),
    [
        ("2999-01", "in the future"),
        ("next month", "YYYY-MM"),
        ("2026-00", "YYYY-MM"),
        ("", "YYYY-MM"),
    ],
)
async def test_bad_months_come_back_with_the_message_beside_the_field(db, app, month, message):
    loc = await factories.make_location()
    async with _client(app, ACCOUNTANT) as (client, _):
        for confirm in ("", "yes"):
            response = await factories.post_form(
                client,
                "/reports/periods/close",
                {"location": str(loc), "month": month, "confirm": confirm},
            )
            assert response.status_code == 422
            assert message in (factories.field_error(response.text, "month") or "")
    assert await ClosedPeriod.count() == 0


async def test_unknown_location_is_refused_beside_its_field(db, app):
    async with _client(app, OWNER) as (client, _):
        response = await factories.post_form(
            client, "/reports/periods/close", {"location": "424242", "month": _last_month()}
        )
    assert response.status_code == 422
    assert factories.field_error(response.text, "location")


@pytest.mark.parametrize("role", [MANAGER, THERAPIST, CLIENT])
async def test_others_may_not_close_or_see_the_page(db, app, role):
    loc = await factories.make_location()
    async with _client(app, role, location_ids=(loc,) if role != CLIENT else ()) as (client, _):
        assert (await client.get("/reports/periods")).status_code == 403
        response = await factories.post_form(
            client,
            "/reports/periods/close",
            {"location": str(loc), "month": _last_month(), "confirm": "yes"},
        )
        assert response.status_code == 403
    assert await ClosedPeriod.count() == 0
    assert await AuditLog.count().where(AuditLog.action == "close_period") == 0


async def test_a_closed_month_cannot_be_changed_or_removed_in_the_database(db, app):
    loc = await factories.make_location()
    async with _client(app, OWNER) as (client, _account):
        done = await factories.post_form(
            client,
            "/reports/periods/close",
            {"location": str(loc), "month": _last_month(), "confirm": "yes"},
        )
    assert done.status_code == 303
    with pytest.raises(Exception, match="append-only"):
        await ClosedPeriod.update({ClosedPeriod.month: date(2000, 1, 1)}, force=True).run()
    with pytest.raises(Exception, match="append-only"):
        await ClosedPeriod.delete(force=True).run()
    assert await ClosedPeriod.count() == 1
