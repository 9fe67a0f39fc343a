"""Members pay the member price for packages and extra sessions at their plan's location.

Figures (8.25 % tax on top, 15 % member discount): a 5-session package at $540.00 costs a
member $459.00 + $37.87 tax = $496.87 (non-members $584.55); an extra session at $130.00
costs a member $110.50 + $9.12 tax = $119.62."""

from __future__ import annotations

import inspect
import json
import secrets

from portal.auth.service import CLIENT, MANAGER, CurrentUser
from portal.memberships import controllers, subscriptions
from portal.payments import service as payments
from portal.sales.tables import Sale, SaleSession
from portal.web import admin
from tests import factories
from tests.catalog.helpers import make_package
from tests.memberships.conftest import Club
from tests.memberships.helpers import make_plan


def _client(account: factories.Account) -> CurrentUser:
    return CurrentUser(account.id, account.email, "", CLIENT, frozenset())


async def _join(club: Club, plan: int) -> int:
    membership_id, url = await subscriptions.join(
        club.gateway, _client(club.member), plan, base_url="http://portal.test",
        request_key=secrets.token_urlsafe(24),
    )  # fmt: skip
    await club.standin.complete_session(url.rsplit("/", 1)[-1])
    await club.standin.drain()
    assert (await subscriptions.get_membership(membership_id))["status"] == "active"
    return membership_id


async def _sessions(sale_id: int) -> list[tuple[int, int]]:
    rows = (
        await SaleSession.select(SaleSession.value_cents, SaleSession.total_cents)
        .where(SaleSession.sale == sale_id)
        .order_by(SaleSession.position)
        .run()
    )
    return [(r["value_cents"], r["total_cents"]) for r in rows]


async def test_a_member_buys_packages_and_extra_sessions_at_the_member_price(
    club: Club, club_webhook, member_client
) -> None:
    plan = await make_plan(club.location, club.service, name="Member 15", member_discount_bp=1500)
    package = await make_package(club.service, name="Five", sessions=5, price=54000)
    extra = await make_package(club.service, name="Extra session", sessions=1, price=13000)

    before = await member_client.get(f"/buy/{package}?location=club")
    assert "$584.55" in before.text and "$496.87" not in before.text
    await _join(club, plan)
    page = await member_client.get(f"/buy/{package}?location=club")
    assert page.status_code == 200 and "$496.87" in page.text and "$584.55" not in page.text

    online = await payments.start_checkout(
        club.gateway, client_id=club.member.id, client_email=club.member.email,
        package_id=package, location_id=club.location, base_url="http://portal.test",
    )  # fmt: skip
    sale = await Sale.select().where(Sale.id == online.sale_id).first().run()
    assert (sale["price_cents"], sale["net_cents"], sale["tax_cents"], sale["total_cents"]) == (
        45900, 45900, 3787, 49687,
    )  # fmt: skip
    assert sale["item_name"] == "Five (member price)"
    terms = json.loads(sale["terms"])  # the sessions are written when it is paid
    assert (terms["session_values"], terms["session_totals"]) == (
        [9180] * 5, [9938, 9938, 9937, 9937, 9937],
    )  # fmt: skip

    desk = await factories.make_user(MANAGER, location_ids=[club.location])
    staff = CurrentUser(desk.id, desk.email, "", MANAGER, frozenset({club.location}))
    sale_id = await payments.record_in_clinic_sale(
        staff, client_id=club.member.id, package_id=extra, location_id=club.location,
        method="cash", request_key=secrets.token_urlsafe(24),
    )  # fmt: skip
    sale = await Sale.select().where(Sale.id == sale_id).first().run()
    assert (sale["net_cents"], sale["tax_cents"], sale["total_cents"]) == (11050, 912, 11962)
    assert await _sessions(sale_id) == [(11050, 11962)]


async def test_non_members_and_members_elsewhere_pay_the_full_price(
    club: Club, club_webhook
) -> None:
    plan = await make_plan(club.location, club.service, name="Member 15", member_discount_bp=1500)
    await _join(club, plan)
    package = await make_package(club.service, name="Five", sessions=5, price=54000)
    other = await factories.make_location(slug="elsewhere", tax_rate_bp=825)
    stranger = await factories.make_user(CLIENT)
    for client, location in ((stranger, club.location), (club.member, other)):
        terms = await payments.member_quote(package, location, client.id)
        assert (terms.total_cents, terms.name) == (58455, "Five")


async def test_a_plan_without_a_discount_changes_nothing(club: Club, club_webhook) -> None:
    await _join(club, club.plan)
    package = await make_package(club.service, name="Five", sessions=5, price=54000)
    terms = await payments.member_quote(package, club.location, club.member.id)
    assert terms.total_cents == 58455


def test_membership_pages_take_the_signed_in_user_and_the_admin_grammar_price_form() -> None:
    source = inspect.getsource(controllers)
    assert "current_user(" not in source
    handlers = controllers.PlanController.__mro__[1].__dict__
    price_form = handlers["membership_plan_price"].fn
    # The admin grammar's added-record page (web/admin.py adding_handlers: its "show" act).
    assert price_form.__module__ == admin.__name__ and price_form.__name__ == "show"
