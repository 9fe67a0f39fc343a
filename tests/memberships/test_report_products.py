"""The journal listing tells membership lines from package lines (a Product column computed
from each line's sale or entry), and the two together are the whole journal."""

from __future__ import annotations

from datetime import timedelta

from portal.auth.service import ACCOUNTANT
from portal.ledger import service as ledger
from portal.memberships import subscriptions
from portal.reports import filters as report_filters
from portal.reports import service
from portal.timeutil import utcnow
from tests import factories
from tests.bookings.conftest import give_package
from tests.memberships.conftest import Club, joined
from tests.reports import helpers


async def test_journal_lines_say_membership_or_package(club: Club, club_webhook) -> None:
    membership = await joined(club)
    # Two sessions at $90.00, paid (journalled by the sale).
    package_sale = await give_package(club.member.id, club.location, club.service, sessions=2)
    await ledger.post(
        event_key="test:payout", kind="payout_paid", currency="USD", location_id=club.location,
        lines=[ledger.debit("bank", 500), ledger.credit("stripe_clearing", 500)],
    )  # fmt: skip
    today = utcnow().date()
    f = await report_filters.parse(
        helpers.actor(ACCOUNTANT),
        {"start": [(today - timedelta(days=2)).isoformat()],
         "end": [(today + timedelta(days=2)).isoformat()], "location": [str(club.location)]},
    )  # fmt: skip
    rows, _ = await service.journal_lines(f, limit=1000)
    by_product: dict[str, int] = {}
    for row in rows:
        by_product[row.product] = by_product.get(row.product, 0) + row.debit
    period_sale = (await subscriptions.periods_of(membership["id"]))[0]["sale_id"]
    membership_lines = [r for r in rows if r.sale_id == period_sale]
    assert membership_lines and {r.product for r in membership_lines} == {"memberships"}
    assert {r.product for r in rows if r.sale_id == package_sale} == {"packages"}
    assert by_product["packages"] == 18000 and by_product[""] == 500
    # $129.90 paid, Stripe's fee 2.9 % + 30¢ = $4.07.
    assert by_product["memberships"] == 12990 + 407
    assert sum(by_product.values()) == sum(r.debit for r in rows)

    lines = (await service.payment_lines(f)).rows
    # The package above was given without a payment row; the membership's period was paid.
    assert [(line.sale_id, line.product) for line in lines] == [(period_sale, "memberships")]

    async with factories.make_client(club.app) as web:
        await factories.login(web, await factories.make_user(ACCOUNTANT))
        page = await web.get(
            "/reports/journal",
            params={"start": f.period.start.isoformat(), "end": f.period.end.isoformat()},
        )
        payments = await web.get(
            "/reports/payments",
            params={"start": f.period.start.isoformat(), "end": f.period.end.isoformat()},
        )
    assert page.status_code == 200
    assert '<th scope="col">Product</th>' in page.text
    assert "<td>Membership</td>" in page.text and "<td>Package</td>" in page.text
    assert payments.text.count('<span class="badge">Membership</span>') == 1
