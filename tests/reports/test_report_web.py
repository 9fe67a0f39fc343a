"""Report pages, downloads and the JSON API: access, formats, audit, on both databases."""

from __future__ import annotations

import io
import json
from contextlib import asynccontextmanager
from decimal import Decimal

import openpyxl
import pytest

from portal.audit.tables import AuditLog
from portal.auth.service import ACCOUNTANT, CLIENT, MANAGER, OWNER, THERAPIST
from tests import factories
from tests.reports import helpers
from tests.reports.scenario import build

MARCH = "start=2026-03-01&end=2026-03-31"
PAGES = [
    "/reports",
    "/reports/payments",
    "/reports/liability",
    "/reports/revenue",
    "/reports/fees",
    "/reports/journal",
    "/reports/trial-balance",
]
EXPORTS = ["payments", "liability", "revenue", "fees", "journal", "trial-balance"]
APIS = ["payments", "liability", "revenue", "fees", "trial-balance"]


@asynccontextmanager
async def _client(app, role, location_ids=()):
    account = await factories.make_user(role, location_ids=location_ids)
    async with factories.make_client(app) as client:
        await factories.login(client, account)
        yield client, account


_csv = helpers.csv_rows


async def test_accountant_reads_every_report_and_download(db, app):
    sc = await build()
    async with _client(app, ACCOUNTANT) as (client, _):
        for page in PAGES:
            response = await client.get(f"{page}?{MARCH}")
            assert response.status_code == 200, page
            assert "Alpha Clinic" in response.text and "Beta Clinic" in response.text, page
            assert " style=" not in response.text and "<script>" not in response.text
        for name in EXPORTS:
            for fmt in ("csv", "xlsx"):
                response = await client.get(f"/reports/{name}.{fmt}?{MARCH}")
                assert response.status_code == 200, (name, fmt)
                assert "attachment" in response.headers["content-disposition"]
        drill = await client.get(f"/reports/liability/{sc.alpha}/sales?{MARCH}&column=sold")
        assert drill.status_code == 200 and f"/sales/{sc.s2}" in drill.text
        for api in APIS:
            response = await client.get(f"/api/v1/reports/{api}?{MARCH}")
            assert response.status_code == 200, api
            assert response.headers["content-type"].startswith("application/json")


async def test_the_period_rows_and_lines_link_and_mark_as_the_pages_did(db, app):
    """The payments, fees and revenue tables' rows (written in Python) carry their
    drill-down links and badges as markup, the rows' own text escaped."""
    sc = await build()
    async with _client(app, ACCOUNTANT) as (client, _):
        payments = (await client.get(f"/reports/payments?{MARCH}&group=month")).text
        fees = (await client.get(f"/reports/fees?{MARCH}")).text
        revenue = (await client.get(f"/reports/revenue?{MARCH}")).text
    row = f"start=2026-03-01&amp;end=2026-03-31&amp;location={sc.alpha}"
    assert f'href="/reports/payments?{row}&amp;group=day#lines"' in payments
    assert '<span class="badge badge-refund">Refund</span>' in payments
    assert f'href="/reports/payments?{row}&amp;group=day&amp;method=card#lines"' in fees
    accounts = "&amp;account=service_revenue&amp;account=breakage_revenue"
    assert f'href="/reports/journal?{row}{accounts}&amp;account=revenue_reversals"' in revenue
    assert f'href="/reports/payments?{row}&amp;group=day"' in revenue
    for page in (payments, fees, revenue):
        assert "&lt;span" not in page and "&amp;amp;" not in page


async def test_payments_csv_columns_and_values(db, app):
    sc = await build()
    async with _client(app, OWNER) as (client, _):
        response = await client.get(f"/reports/payments.csv?{MARCH}")
    assert response.headers["content-type"].startswith("text/csv")
    rows = _csv(response.text)
    assert rows[0] == [
        "date", "location", "client", "client_email", "item", "payment_method", "gross", "tax", "refunded",
        "disputed", "fee", "net", "currency", "stripe_payment_intent", "sale_id", "type", "kind",
    ]  # fmt: skip
    body = rows[1:]
    assert [r[0] for r in body] == ["2026-03-07", "2026-03-08", "2026-03-29"]
    refund, payment, cash = body
    # The client by name, as the page shows them; the email in a column of its own.
    assert refund[1:4] == ["Alpha Clinic", "Client Person", sc.client_email]
    assert refund[5:13] == [
        "Card (online)",
        "0.00",
        "-10.00",
        "110.00",
        "0.00",
        "0.00",
        "-110.00",
        "USD",
    ]
    assert refund[13].startswith("pi_test_") and refund[14:] == [str(sc.s1), "refund", "package"]
    assert payment[4:13] == [
        "3 × 60 min neuromuscular", "Card (online)", "330.00", "30.00", "0.00", "0.00", "9.87", "320.13",
        "USD",
    ]  # fmt: skip
    assert payment[14:] == [str(sc.s2), "payment", "package"]
    assert cash[1] == "Beta Clinic" and cash[5:14] == [
        "Cash", "240.00", "40.00", "0.00", "0.00", "0.00", "240.00", "GBP", "",
    ]  # fmt: skip


async def test_other_csv_headers(db, app):
    await build()
    async with _client(app, ACCOUNTANT) as (client, _):
        liability = _csv((await client.get(f"/reports/liability.csv?{MARCH}")).text)
        journal = _csv((await client.get(f"/reports/journal.csv?{MARCH}")).text)
        revenue = _csv((await client.get(f"/reports/revenue.csv?{MARCH}")).text)
        therapists = _csv((await client.get(f"/reports/revenue.csv?{MARCH}&by=therapist")).text)
        trial = _csv((await client.get(f"/reports/trial-balance.csv?{MARCH}")).text)
    assert liability[0] == [
        "location", "currency", "opening", "sold", "redeemed", "expired", "refunded", "closing",
        "opening_sessions", "sold_sessions", "redeemed_sessions", "expired_sessions",
        "refunded_sessions", "closing_sessions", "kind",
    ]  # fmt: skip
    # A row per location and kind: packages only here, memberships all zero.
    assert liability[1] == [
        "Alpha Clinic", "USD", "700.00", "300.00", "300.00", "200.00", "100.00", "400.00",
        "7", "3", "3", "2", "1", "4", "package",
    ]  # fmt: skip
    assert liability[2] == ["Alpha Clinic", "USD", *["0.00"] * 6, *["0"] * 6, "membership"]
    assert liability[3][:8] == ["Beta Clinic", "GBP", "0.00", "200.00", "100.00", "0.00",
                                "0.00", "100.00"]  # fmt: skip
    assert [r[-1] for r in liability[3:]] == ["package", "membership"]
    assert journal[0] == [
        "entry", "date", "account", "debit", "credit", "location", "memo", "reference",
    ]  # fmt: skip
    debits = sum(Decimal(r[3]) for r in journal[1:] if r[3])
    credits = sum(Decimal(r[4]) for r in journal[1:] if r[4])
    assert debits == credits
    assert revenue[0][:4] == ["period", "location", "currency", "service_revenue"]
    assert ["2026-03", "Alpha Clinic", "USD", "Therapist One", "200.00", "package"] in therapists
    totals = [r for r in trial[1:] if r[3] == "USD"]
    assert sum(Decimal(r[8]) for r in totals) == sum(Decimal(r[9]) for r in totals)


async def test_xlsx_opens_with_the_same_numbers(db, app):
    await build()
    async with _client(app, ACCOUNTANT) as (client, _):
        text = (await client.get(f"/reports/payments.csv?{MARCH}")).text
        content = (await client.get(f"/reports/payments.xlsx?{MARCH}")).content
        liability = (await client.get(f"/reports/liability.xlsx?{MARCH}")).content
    sheet = openpyxl.load_workbook(io.BytesIO(content)).active
    cells = [list(row) for row in sheet.iter_rows(values_only=True)]
    rows = _csv(text)
    assert [str(c) for c in cells[0]] == rows[0]
    assert len(cells) == len(rows)
    for got, want in zip(cells[1:], rows[1:], strict=True):
        assert got[0].date().isoformat() == want[0]
        assert [Decimal(str(v)).quantize(Decimal("0.01")) for v in got[6:12]] == [
            Decimal(v) for v in want[6:12]
        ]
        assert got[12] == want[12] and str(got[14]) == want[14] and got[15] == want[15]
    sheet = openpyxl.load_workbook(io.BytesIO(liability)).active
    first = [c for c in next(sheet.iter_rows(min_row=2, values_only=True))]
    assert first[0] == "Alpha Clinic" and first[2:8] == [700, 300, 300, 200, 100, 400]


async def test_exports_are_audited(db, app):
    await build()
    async with _client(app, ACCOUNTANT) as (client, account):
        await client.get(f"/reports/payments.csv?{MARCH}&group=week&method=card")
        await client.get(f"/reports/liability.xlsx?{MARCH}")
        await client.get(f"/reports/payments?{MARCH}")  # viewing a page is not an export
    rows = await AuditLog.select().where(AuditLog.action == "export").order_by(AuditLog.id).run()
    assert [(r["entity"], r["entity_id"], r["actor_id"]) for r in rows] == [
        ("report", "payments", account.id),
        ("report", "liability", account.id),
    ]
    after = json.loads(rows[0]["after"])
    assert after["start"] == "2026-03-01" and after["end"] == "2026-03-31"
    assert after["method"] == "card" and after["group"] == "week" and after["format"] == "csv"
    assert len(after["locations"]) == 2
    assert json.loads(rows[1]["after"])["format"] == "xlsx"


async def test_manager_sees_own_location_only(db, app):
    sc = await build()
    async with _client(app, MANAGER, [sc.alpha]) as (client, _):
        for page in PAGES:
            response = await client.get(f"{page}?{MARCH}")
            assert response.status_code == 200, page
            assert "Alpha Clinic" in response.text and "Beta Clinic" not in response.text, page
        rows = _csv((await client.get(f"/reports/payments.csv?{MARCH}")).text)
        assert {r[1] for r in rows[1:]} == {"Alpha Clinic"}
        api = (await client.get(f"/api/v1/reports/liability?{MARCH}")).json()
        assert [r["location_id"] for r in api["rows"]] == [sc.alpha]
        # Another location's id, in the query string or the path: 403 everywhere.
        other = f"{MARCH}&location={sc.beta}"
        for page in PAGES:
            assert (await client.get(f"{page}?{other}")).status_code == 403, page
        for name in EXPORTS:
            for fmt in ("csv", "xlsx"):
                response = await client.get(f"/reports/{name}.{fmt}?{other}")
                assert response.status_code == 403, (name, fmt)
        for api_name in APIS:
            response = await client.get(f"/api/v1/reports/{api_name}?{other}")
            assert response.status_code == 403, api_name
            assert response.json()["status_code"] == 403
        mixed = await client.get(
            f"/reports/payments?{MARCH}&location={sc.alpha}&location={sc.beta}"
        )
        assert mixed.status_code == 403
        drill = await client.get(f"/reports/liability/{sc.beta}/sales?{MARCH}")
        assert drill.status_code == 403
        assert (await client.get(f"/reports/liability/{sc.alpha}/sales?{MARCH}")).status_code == 200
    rows = await AuditLog.select().where(AuditLog.action == "export").run()
    assert len(rows) == 1  # only the download that was allowed


@pytest.mark.parametrize("role", [THERAPIST, CLIENT])
async def test_therapists_and_clients_get_403(db, app, role):
    sc = await build()
    async with _client(app, role, [sc.alpha] if role == THERAPIST else []) as (client, _):
        for page in [*PAGES, "/reports/payments.csv", f"/reports/liability/{sc.alpha}/sales"]:
            assert (await client.get(page)).status_code == 403, page
        response = await client.get("/api/v1/reports/payments")
        assert response.status_code == 403 and response.json()["status_code"] == 403


async def test_anonymous_api_gets_401_json(db, app):
    async with factories.make_client(app) as client:
        response = await client.get("/api/v1/reports/liability")
        page = await client.get("/reports/payments")
    assert response.status_code == 401 and response.json()["status_code"] == 401
    assert page.status_code == 303 and page.headers["location"].startswith("/login")


async def test_api_matches_the_page(db, app):
    sc = await build()
    async with _client(app, ACCOUNTANT) as (client, _):
        payments = (await client.get(f"/api/v1/reports/payments?{MARCH}&group=month")).json()
        liability = (await client.get(f"/api/v1/reports/liability?{MARCH}")).json()
        page = (await client.get(f"/reports/liability?{MARCH}")).text
        bad = await client.get("/api/v1/reports/payments?start=2026-13-01")
        bad_location = await client.get("/api/v1/reports/payments?location=abc")
    assert payments["totals"]["USD"] == {
        "payments": 1, "refunds": 1, "disputes": 0, "reinstatements": 0, "gross_cents": 33000,
        "tax_cents": 2000, "refunded_cents": 11000, "disputed_cents": 0, "fee_cents": 987,
        "dispute_fee_cents": 0, "net_cents": 21013,
    }  # fmt: skip
    assert [(r["period"], r["location_id"]) for r in payments["rows"]] == [
        ("2026-03", sc.alpha), ("2026-03", sc.beta)]  # fmt: skip
    alpha = next(r for r in liability["rows"] if r["location_id"] == sc.alpha)
    assert (alpha["opening_cents"], alpha["closing_cents"], alpha["closing_sessions"]) == (
        70000, 40000, 4)  # fmt: skip
    assert alpha["balanced"] is True
    assert "$700.00" in page and "$400.00" in page
    assert bad.status_code == 400 and "start" in bad.json()["detail"]
    assert bad_location.status_code == 400


def _therapist_section(page):
    return page.split('id="by-therapist"', 1)[1].split("</section>", 1)[0]


async def test_revenue_page_at_several_locations_names_each_ones_leading_therapists(db, app):
    sc = await build()
    async with _client(app, ACCOUNTANT) as (client, _):
        every = _therapist_section((await client.get(f"/reports/revenue?{MARCH}")).text)
        by_day = _therapist_section((await client.get(f"/reports/revenue?{MARCH}&group=day")).text)
        one = (await client.get(f"/reports/revenue?{MARCH}&location={sc.alpha}")).text
        csv_rows = _csv((await client.get(f"/reports/revenue.csv?{MARCH}&by=therapist")).text)
    # Several locations: a location's therapists over the whole period, most revenue
    # first, each group linking to the location on its own; revenue not attributed to
    # a therapist (Beta's) stays in the table by location.
    for section in (every, by_day):
        assert section.index("Therapist One") < section.index("$200.00")
        assert section.index("$200.00") < section.index("Therapist Two")
        assert section.index("Therapist Two") < section.index("$100.00")
        assert "Not attributed" not in section and "Beta Clinic" not in section
        assert f"&amp;location={sc.alpha}" in section and '#by-therapist">All 2' in section
    assert "All 2 therapists by month" in every and "All 2 therapists by day" in by_day
    assert "<td>2026-03</td>" not in every
    # One location: every therapist by period, as the download lists them.
    single = _therapist_section(one)
    assert "<td>2026-03</td>" in single and "Therapist One" in single and "All 2" not in single
    assert ["2026-03", "Beta Clinic", "GBP", "Not attributed", "100.00", "package"] in csv_rows


async def test_bad_filters_rerender_with_messages(db, app):
    async with _client(app, OWNER) as (client, _):
        response = await client.get("/reports/payments?start=2026-03-31&end=2026-03-01&group=x")
        download = await client.get("/reports/payments.csv?start=nonsense")
    assert response.status_code == 400
    assert factories.field_error(response.text, "end") == (
        "The end date must not be before the start date."
    )
    assert factories.field_error(response.text, "group") == "Group by day, week or month."
    assert 'value="2026-03-31"' in response.text
    assert download.status_code == 400


async def test_openapi_describes_the_report_api(db, app):
    async with _client(app, OWNER) as (client, _):
        schema = (await client.get("/api/v1/schema/openapi.json")).json()
    paths = schema["paths"]
    for name in APIS:
        assert f"/api/v1/reports/{name}" in paths
    names = {p["name"] for p in paths["/api/v1/reports/payments"]["get"]["parameters"]}
    assert {"start", "end", "location", "group", "status"} <= names


async def test_payments_summary_download_follows_group_by(db, app):
    await build()
    async with _client(app, ACCOUNTANT) as (client, _):
        page = (await client.get(f"/reports/payments?{MARCH}&group=week")).text
        assert "&amp;by=period" in page
        weekly = _csv(
            (await client.get(f"/reports/payments.csv?{MARCH}&group=week&by=period")).text
        )
        monthly = _csv(
            (await client.get(f"/reports/payments.csv?{MARCH}&group=month&by=period")).text
        )
    assert weekly[0][:5] == ["period", "start", "end", "location", "currency"]
    assert {r[0] for r in weekly[1:]} == {"2026-W10", "2026-W13"}
    assert [r[0] for r in monthly[1:]] == ["2026-03", "2026-03"]
    alpha = next(r for r in monthly[1:] if r[3] == "Alpha Clinic")
    assert alpha[5:8] == ["1", "1", "330.00"]
    assert sum(Decimal(r[7]) for r in weekly[1:] if r[4] == "USD") == Decimal("330.00")


async def test_fee_rate_and_counts_are_numbers_in_xlsx(db, app):
    await build()
    async with _client(app, ACCOUNTANT) as (client, _):
        content = (await client.get(f"/reports/fees.xlsx?{MARCH}")).content
    sheet = openpyxl.load_workbook(io.BytesIO(content)).active
    cells = [list(row) for row in sheet.iter_rows(values_only=True)]
    rate = cells[0].index("fee_rate_percent")
    alpha = next(r for r in cells[1:] if r[3] == "Alpha Clinic")
    assert alpha[rate] == pytest.approx(2.99)
    for row in cells[1:]:
        for value in row[5:]:
            assert value is None or isinstance(value, (int, float)), row


async def test_download_names_carry_the_locations_and_the_period(db, app):
    sc = await build()

    def name(response):
        return response.headers["content-disposition"].split('filename="')[1].rstrip('"')

    async with _client(app, OWNER) as (client, _):
        everywhere = await client.get(f"/reports/journal.csv?{MARCH}")
        one = await client.get(f"/reports/fees.xlsx?{MARCH}&location={sc.alpha}")
        both = await client.get(
            f"/reports/revenue.csv?{MARCH}&location={sc.alpha}&location={sc.beta}"
        )
    assert name(everywhere) == "journal_all-locations_2026-03-01_2026-03-31.csv"
    assert name(one) == "fees_alpha_2026-03-01_2026-03-31.xlsx"
    assert name(both) == "revenue_alpha+beta_2026-03-01_2026-03-31.csv"
    async with _client(app, MANAGER, (sc.beta,)) as (client, _):
        mine = await client.get(f"/reports/liability.csv?{MARCH}")
    assert name(mine) == "liability_beta_2026-03-01_2026-03-31.csv"
