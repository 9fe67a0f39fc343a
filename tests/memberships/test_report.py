"""The memberships report: members by location and plan, joins, cancellations, freezes,
churn and recurring revenue by month, with charts; the managers of other locations see
none of it. Memberships and their invoices are written directly at chosen times
(New York), so every figure is exact."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

from portal.audit.tables import AuditLog
from portal.auth.service import CLIENT, MANAGER, OWNER
from portal.memberships.tables import Membership, MembershipPeriod
from portal.reports import memberships as report
from portal.reports.filters import Filters, Loc
from portal.reports.periods import Period
from portal.timeutil import utcnow
from tests import factories
from tests.catalog.helpers import make_service
from tests.conftest import using_app
from tests.memberships.helpers import make_plan

NY = ZoneInfo("America/New_York")


def _at(day: str, hour: int = 12) -> datetime:
    return datetime.fromisoformat(f"{day}T{hour:02d}:00").replace(tzinfo=NY)


async def _member(
    location: int,
    plan: int,
    joined: str,
    *,
    ended: str | None = None,
    paid: tuple = (),
    billing: str = "stripe",
) -> int:
    client = await factories.make_user(CLIENT)
    rows = (
        await Membership.insert(
            Membership(
                client=client.id, plan=plan, location=location, name="Monthly",
                terms=json.dumps({}), currency="USD", total_cents=12990,
                sessions_per_period=2, status="ended" if ended else "active", billing=billing,
                created_at=_at(joined), joined_at=_at(joined),
                ended_at=_at(ended) if ended else None,
            )
        )
        .returning(Membership.id)
        .run()
    )  # fmt: skip
    membership_id = int(rows[0]["id"])
    for n, day in enumerate(paid):
        await MembershipPeriod.insert(
            MembershipPeriod(
                membership=membership_id, invoice_id=f"in_{membership_id}_{n}",
                period_start=_at(day), period_end=_at(day), amount_cents=12990,
                currency="USD", status="paid", paid_at=_at(day), created_at=utcnow(),
            )
        ).run()  # fmt: skip
    return membership_id


async def _scenario() -> tuple[int, int]:
    here = await factories.make_location(name="Uptown", slug="uptown")
    there = await factories.make_location(name="Harbour", slug="harbour")
    service = await make_service("Neuromuscular, 60 min")
    monthly = await make_plan(here, service, name="Monthly")
    premium = await make_plan(here, service, name="Premium")
    elsewhere = await make_plan(there, service, name="Harbour monthly")
    await _member(here, monthly, "2025-12-10", paid=("2025-12-10", "2026-01-10", "2026-02-10"))
    await _member(here, monthly, "2026-01-05", ended="2026-02-05", paid=("2026-01-05",))
    frozen = await _member(here, premium, "2026-01-31", paid=("2026-01-31",))
    await _member(there, elsewhere, "2026-01-15", paid=("2026-01-15",))
    # A freeze on the last evening of January in New York (February in UTC).
    await AuditLog.insert(
        AuditLog(at=_at("2026-01-31", 22), action="freeze", entity="membership",
                 entity_id=str(frozen))
    ).run()  # fmt: skip
    return here, there


def _january_and_february(here: int, there: int) -> Filters:
    locations = (
        Loc(here, "Uptown", "uptown", "America/New_York", "USD"),
        Loc(there, "Harbour", "harbour", "America/New_York", "USD"),
    )
    period = Period(datetime(2026, 1, 1).date(), datetime(2026, 2, 28).date())
    return Filters(period=period, locations=locations)


async def test_months_plans_and_totals_exact(db) -> None:
    here, there = await _scenario()
    result = await report.memberships(_january_and_february(here, there))
    rows = {(r.month.month, r.location.name): r for r in result.months}
    jan, feb = rows[(1, "Uptown")], rows[(2, "Uptown")]
    assert (jan.active_at_start, jan.joins, jan.cancellations, jan.freezes, jan.active) == (
        1, 2, 0, 1, 3,
    )  # fmt: skip
    assert jan.recurring == {"USD": 3 * 12990}
    assert (feb.active_at_start, feb.joins, feb.cancellations, feb.active) == (3, 0, 1, 2)
    assert feb.churn_percent == 33.3 and feb.recurring == {"USD": 12990}
    assert (rows[(1, "Harbour")].joins, rows[(1, "Harbour")].churn_percent) == (1, None)
    assert result.totals == {"joins": 3, "cancellations": 1, "freezes": 1, "active": 3}
    assert result.recurring == {"USD": 5 * 12990}
    assert [(p.location.name, p.plan, p.active) for p in result.plans] == [
        ("Harbour", "Harbour monthly", 1), ("Uptown", "Monthly", 1), ("Uptown", "Premium", 1),
    ]  # fmt: skip
    assert result.active_series[0].values[here] == [3, 2]


async def test_the_page_with_charts_in_scope(db, settings) -> None:
    here, there = await _scenario()
    manager = await factories.make_user(MANAGER, location_ids=[there])
    owner = await factories.make_user(OWNER)
    async with using_app(settings) as app:
        async with factories.make_client(app) as client:
            await factories.login(client, owner)
            page = await client.get("/reports/memberships?start=2026-01-01&end=2026-02-28")
            assert page.status_code == 200
            assert 'data-testid="joins">3<' in page.text and "$649.50" in page.text
            assert "members-chart-title" in page.text and "recurring-chart-0-title" in page.text
            assert "33.3 %" in page.text and "Premium" in page.text
        async with factories.make_client(app) as client:
            await factories.login(client, manager)
            page = await client.get("/reports/memberships?start=2026-01-01&end=2026-02-28")
            assert page.status_code == 200 and 'data-testid="joins">1<' in page.text
            assert "Premium" not in page.text
            refused = await client.get(
                f"/reports/memberships?start=2026-01-01&end=2026-02-28&location={here}"
            )
            assert refused.status_code == 403


async def test_joins_and_recurring_revenue_by_channel(db, settings) -> None:
    """The scenario's members are Stripe's (online); one more joins Uptown at the desk on
    3 February and pays its first period ($129.90) there."""
    here, there = await _scenario()
    desk_plan = await make_plan(here, await make_service("Desk 60 min"), name="Desk monthly")
    await _member(here, desk_plan, "2026-02-03", paid=("2026-02-03",), billing="desk")
    result = await report.memberships(_january_and_february(here, there))
    rows = {(r.month.month, r.location.name): r for r in result.months}
    assert rows[(1, "Uptown")].joins_by == {"desk": 0, "online": 2}
    assert rows[(1, "Harbour")].joins_by == {"desk": 0, "online": 1}
    assert rows[(2, "Uptown")].joins_by == {"desk": 1, "online": 0}
    # January: four online invoices; February: one online (10 Feb), one at the desk.
    assert rows[(1, "Uptown")].recurring_by == {"desk": {}, "online": {"USD": 3 * 12990}}
    assert rows[(2, "Uptown")].recurring_by == {"desk": {"USD": 12990}, "online": {"USD": 12990}}
    assert result.joins_by == {"desk": 1, "online": 3} and result.totals["joins"] == 4
    assert result.recurring_by == {"desk": {"USD": 12990}, "online": {"USD": 5 * 12990}}
    assert result.channel_joins is not None
    assert result.channel_joins.values == {"desk": [0, 1], "online": [3, 0]}
    (usd,) = result.channel_recurring
    assert (usd.unit, usd.values) == ("USD", {"desk": [0, 12990], "online": [4 * 12990, 12990]})

    owner = await factories.make_user(OWNER)
    async with using_app(settings) as app, factories.make_client(app) as client:
        await factories.login(client, owner)
        page = (await client.get("/reports/memberships?start=2026-01-01&end=2026-02-28")).text
    assert 'data-testid="joins-by-channel">1 at the desk, 3 online<' in page
    assert "channel-chart-0-title" in page and "channel-chart-1-title" in page
    joins_table = page[page.index('data-testid="channel-members"') :].split("</table>")[0]
    assert 'Jan 26</th><td class="num">0</td><td class="num">3</td>' in joins_table
    assert 'Feb 26</th><td class="num">1</td><td class="num">0</td>' in joins_table
    usd_table = page[page.index('data-testid="channel-USD"') :].split("</table>")[0]
    assert "$519.60" in usd_table and usd_table.count("$129.90") == 2
    assert '<th scope="col" class="num">Joins at the desk</th>' in page
