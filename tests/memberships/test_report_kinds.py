"""The liability and revenue reports separate memberships from packages (the Kind filter:
All, Packages, Memberships), on the page and in the downloads, from the daily totals,
which keep each figure's product; `portal reports verify` still finds no difference.

At the club (8.25 % tax): a desk membership paid in cash, $120.00 + $9.90 for 2 sessions
($60.00 each), and a package of 2 sessions at $90.00 (no tax)."""

from __future__ import annotations

import secrets
from datetime import timedelta

from portal.auth.service import ACCOUNTANT, MANAGER
from portal.ledger.tables import CreditDay, LedgerDay
from portal.memberships import desk, subscriptions
from portal.payments.states import insert_payment
from portal.reports import filters as report_filters
from portal.reports import service, totals
from portal.timeutil import utcnow
from tests import factories
from tests.bookings.conftest import give_package
from tests.memberships.conftest import Club
from tests.memberships.helpers import make_plan
from tests.memberships.test_desk_billing import _staff
from tests.memberships.test_desk_freeze_fee import freeze_or_resume
from tests.reports import helpers


async def _filters(club: Club, product: str) -> report_filters.Filters:
    today = utcnow().date()
    return await report_filters.parse(
        helpers.actor(ACCOUNTANT),
        {"start": [(today - timedelta(days=3)).isoformat()],
         "end": [(today + timedelta(days=1)).isoformat()], "location": [str(club.location)],
         "product": [product]},
    )  # fmt: skip


async def frozen_with_a_fee(club: Club) -> int:
    """A desk member of a plan with a freeze fee ($10.00 + $0.83 tax), frozen with the fee
    taken in cash; the membership."""
    manager = await factories.make_user(MANAGER, location_ids=[club.location])
    staff = _staff(manager, club.location)
    plan = await make_plan(
        club.location, club.service, name="Pausable", freeze_allowed=True, freeze_fee=1000
    )
    membership_id = await desk.enrol(staff, club.member.id, plan, "cash",
                                     request_key=secrets.token_urlsafe(24))  # fmt: skip
    await freeze_or_resume(staff, membership_id, True, secrets.token_urlsafe(24), "cash")
    return membership_id


async def paid_package(club: Club) -> int:
    """A package of 2 sessions sold to the member, paid $180.00 in cash now."""
    package_sale = await give_package(club.member.id, club.location, club.service, sessions=2)
    now = utcnow()
    await insert_payment(
        package_sale, provider="in_clinic", method="cash", status="succeeded",
        amount_cents=18000, currency="USD", fee_cents=0, net_cents=18000,
        created_at=now, succeeded_at=now,
    )  # fmt: skip
    return package_sale


async def test_liability_and_revenue_by_kind_add_up_to_the_whole(club: Club) -> None:
    manager = await factories.make_user(MANAGER, location_ids=[club.location])
    await desk.enrol(_staff(manager, club.location), club.member.id, club.plan, "cash",
                     request_key=secrets.token_urlsafe(24))  # fmt: skip
    await give_package(club.member.id, club.location, club.service, sessions=2)

    figures = {}
    for product in ("", "packages", "memberships"):
        (row,) = await service.liability(await _filters(club, product))
        assert row.balanced, product
        figures[product] = (row.sold, row.sold_sessions, row.closing, row.closing_sessions)
    assert figures == {
        "": (30000, 4, 30000, 4),
        "packages": (18000, 2, 18000, 2),
        "memberships": (12000, 2, 12000, 2),
    }
    collected = {}
    for product in ("", "packages", "memberships"):
        result = await service.revenue(await _filters(club, product))
        collected[product] = sum(r.collected for r in result.rows)
    assert collected == {"": 12990, "packages": 0, "memberships": 12990}
    products = {r["product"] for r in await LedgerDay.select(LedgerDay.product).run()}
    assert products == {"packages", "memberships"}
    credits = await CreditDay.select(CreditDay.product, CreditDay.sessions).run()
    assert sorted((c["product"], c["sessions"]) for c in credits) == [
        ("memberships", 2), ("packages", 2),
    ]  # fmt: skip
    assert (await totals.verify()).differences == []
    await totals.rebuild()
    assert (await totals.verify()).differences == []
    (row,) = await service.liability(await _filters(club, "memberships"))
    assert (row.sold, row.sold_sessions) == (12000, 2)


async def test_the_kind_filter_on_the_pages_and_in_the_downloads(club: Club) -> None:
    manager = await factories.make_user(MANAGER, location_ids=[club.location])
    await desk.enrol(_staff(manager, club.location), club.member.id, club.plan, "cash",
                     request_key=secrets.token_urlsafe(24))  # fmt: skip
    await give_package(club.member.id, club.location, club.service, sessions=2)
    f = await _filters(club, "memberships")
    params = {"start": f.period.start.isoformat(), "end": f.period.end.isoformat(),
              "location": str(club.location)}  # fmt: skip
    async with factories.make_client(club.app) as web:
        await factories.login(web, await factories.make_user(ACCOUNTANT))
        page = await web.get("/reports/liability", params={**params, "product": "memberships"})
        revenue = await web.get("/reports/revenue", params={**params, "product": "packages"})
        members_csv = await web.get(
            "/reports/liability.csv", params={**params, "product": "memberships"}
        )
        packages_csv = await web.get(
            "/reports/liability.csv", params={**params, "product": "packages"}
        )
        drill = await web.get(
            f"/reports/liability/{club.location}/sales",
            params={**params, "product": "memberships", "column": "sold"},
        )
        bad = await web.get("/reports/liability", params={**params, "product": "gift cards"})
    assert page.status_code == 200
    assert '<option value="memberships" selected>Memberships</option>' in page.text
    assert '<label for="product">Kind</label>' in revenue.text
    assert '<option value="packages" selected>Packages</option>' in revenue.text
    (header, members_row) = members_csv.text.strip().splitlines()
    assert header.startswith("location,currency,opening,sold,")
    assert members_row.split(",")[2:4] == ["0.00", "120.00"]  # opening, sold
    (_, packages_row) = packages_csv.text.strip().splitlines()
    assert packages_row.split(",")[2:4] == ["0.00", "180.00"]
    assert drill.status_code == 200 and "Monthly 60 min" in drill.text
    assert "2 × 60" not in drill.text
    assert bad.status_code in (400, 422) and "Choose All, Packages or Memberships." in bad.text


async def test_the_kind_filter_in_the_json_api(club: Club) -> None:
    """A desk member frozen with the plan's fee ($10.00 + $0.83 tax, earned at once) beside
    the package: the fee is the memberships' service revenue."""
    await frozen_with_a_fee(club)
    await give_package(club.member.id, club.location, club.service, sessions=2)
    f = await _filters(club, "")
    params = {"start": f.period.start.isoformat(), "end": f.period.end.isoformat(),
              "location": str(club.location)}  # fmt: skip
    liability, revenue = {}, {}
    async with factories.make_client(club.app) as api:
        await factories.login(api, await factories.make_user(ACCOUNTANT))
        for kind in ("", "all", "packages", "memberships"):
            query = {**params, "product": kind} if kind else params
            answer = (await api.get("/api/v1/reports/liability", params=query)).json()
            (row,) = answer["rows"]
            liability[kind] = (answer["product"], row["sold_cents"], row["sold_sessions"],
                               row["closing_cents"], row["balanced"])  # fmt: skip
            answer = (await api.get("/api/v1/reports/revenue", params=query)).json()
            revenue[kind] = (
                answer["product"],
                sum(r["cash_collected_cents"] for r in answer["rows"]),
                sum(r["service_revenue_cents"] for r in answer["rows"]),
            )
        bad = await api.get("/api/v1/reports/liability", params={**params, "product": "gifts"})
        bad_revenue = await api.get("/api/v1/reports/revenue", params={**params, "product": "x"})
    assert liability == {
        "": ("all", 30000, 4, 30000, True),
        "all": ("all", 30000, 4, 30000, True),
        "packages": ("packages", 18000, 2, 18000, True),
        "memberships": ("memberships", 12000, 2, 12000, True),
    }
    # Cash collected is the period's payment ($129.90) and the fee's ($10.83); the fee is
    # service revenue at once.
    assert revenue == {
        "": ("all", 14073, 1000),
        "all": ("all", 14073, 1000),
        "packages": ("packages", 0, 0),
        "memberships": ("memberships", 14073, 1000),
    }
    assert bad.status_code == 400 and "Choose All, Packages or Memberships." in bad.text
    assert bad_revenue.status_code == 400


async def test_the_downloads_carry_a_kind_column(club: Club) -> None:
    """The desk membership's first period ($129.90 in cash) beside a package of 2 sessions
    paid $180.00 in cash: each download row says which it is about, and with no kind
    chosen the liability and revenue rows of a location come one per kind."""
    manager = await factories.make_user(MANAGER, location_ids=[club.location])
    await desk.enrol(_staff(manager, club.location), club.member.id, club.plan, "cash",
                     request_key=secrets.token_urlsafe(24))  # fmt: skip
    await paid_package(club)
    f = await _filters(club, "")
    params = {"start": f.period.start.isoformat(), "end": f.period.end.isoformat(),
              "location": str(club.location)}  # fmt: skip
    async with factories.make_client(club.app) as web:
        await factories.login(web, await factories.make_user(ACCOUNTANT))
        payments = helpers.csv_rows((await web.get("/reports/payments.csv", params=params)).text)
        liability = helpers.csv_rows((await web.get("/reports/liability.csv", params=params)).text)
        revenue = helpers.csv_rows((await web.get("/reports/revenue.csv", params=params)).text)
        members_only = helpers.csv_rows(
            (
                await web.get("/reports/revenue.csv", params={**params, "product": "memberships"})
            ).text
        )
    column = {name: i for i, name in enumerate(payments[0])}
    assert payments[0][-1] == "kind"
    assert sorted((r[column["gross"]], r[column["kind"]]) for r in payments[1:]) == [
        ("129.90", "membership"), ("180.00", "package"),
    ]  # fmt: skip
    header = liability[0]
    assert header[-1] == "kind"
    sold = header.index("sold")
    assert [(r[sold], r[header.index("sold_sessions")], r[-1]) for r in liability[1:]] == [
        ("180.00", "2", "package"), ("120.00", "2", "membership"),
    ]  # fmt: skip
    header = revenue[0]
    collected = header.index("cash_collected")
    assert header[-1] == "kind"
    assert [(r[collected], r[-1]) for r in revenue[1:]] == [
        ("180.00", "package"), ("129.90", "membership"),
    ]  # fmt: skip
    assert [(r[collected], r[-1]) for r in members_only[1:]] == [("129.90", "membership")]


async def test_the_payments_summary_and_revenue_by_therapist_downloads_carry_a_kind_column(
    club: Club,
) -> None:
    """A desk member's first period ($129.90 in cash) and freeze fee ($10.83 in cash, $10.00
    of it service revenue not attributed to a therapist), one of the period's sessions
    given by Dana ($60.00), beside a package of 2 sessions paid $180.00 in cash, one of
    them given by Dana ($90.00): each row of the payments summary and of revenue by
    therapist says which kind it is about, the package's row before the membership's."""
    membership_id = await frozen_with_a_fee(club)
    package_sale = await paid_package(club)
    now = utcnow()
    dana = await helpers.make_therapist("Dana")
    await helpers.redeem(package_sale, 1, at=now, therapist_id=dana)
    (period,) = await subscriptions.periods_of(membership_id)
    await helpers.redeem(int(period["sale_id"]), 1, at=now, therapist_id=dana)
    f = await _filters(club, "")
    params = {"start": f.period.start.isoformat(), "end": f.period.end.isoformat(),
              "location": str(club.location), "group": "month"}  # fmt: skip
    summary, therapists, api = {}, {}, {}
    async with factories.make_client(club.app) as web:
        await factories.login(web, await factories.make_user(ACCOUNTANT))
        for kind in ("", "packages", "memberships"):
            query = {**params, "product": kind} if kind else params
            summary[kind] = helpers.csv_rows(
                (await web.get("/reports/payments.csv", params={**query, "by": "period"})).text
            )
            therapists[kind] = helpers.csv_rows(
                (await web.get("/reports/revenue.csv", params={**query, "by": "therapist"})).text
            )
            answer = (await web.get("/api/v1/reports/payments", params=query)).json()
            api[kind] = (answer["product"], answer["totals"]["USD"]["gross_cents"],
                         answer["totals"]["USD"]["payments"])  # fmt: skip
        xlsx = await web.get("/reports/payments.xlsx", params={**params, "by": "period"})
    header = summary[""][0]
    assert header[-1] == "kind" and header[:5] == ["period", "start", "end", "location", "currency"]
    payments, gross = header.index("payments"), header.index("gross")
    assert [(r[payments], r[gross], r[-1]) for r in summary[""][1:]] == [
        ("1", "180.00", "package"), ("2", "140.73", "membership"),
    ]  # fmt: skip
    assert [(r[gross], r[-1]) for r in summary["packages"][1:]] == [("180.00", "package")]
    assert [(r[gross], r[-1]) for r in summary["memberships"][1:]] == [("140.73", "membership")]
    assert xlsx.status_code == 200
    header = therapists[""][0]
    assert header == [
        "period", "location", "currency", "therapist", "service_revenue", "kind",
    ]  # fmt: skip
    assert [r[3:] for r in therapists[""][1:]] == [
        ["Dana", "90.00", "package"],
        ["Dana", "60.00", "membership"],
        ["Not attributed", "10.00", "membership"],
    ]
    assert [r[3:] for r in therapists["packages"][1:]] == [["Dana", "90.00", "package"]]
    assert [r[3:] for r in therapists["memberships"][1:]] == [
        ["Dana", "60.00", "membership"], ["Not attributed", "10.00", "membership"],
    ]  # fmt: skip
    # The payments API takes the same kind filter and says which it answered.
    assert api == {
        "": ("all", 32073, 3),
        "packages": ("packages", 18000, 1),
        "memberships": ("memberships", 14073, 2),
    }
