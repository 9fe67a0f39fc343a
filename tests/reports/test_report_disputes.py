"""Disputes in the cash reports: payments (page, CSV, XLSX, API), fees, revenue.

Stripe withdraws a disputed amount and its dispute fee when the dispute
opens, and puts the amount back (not the fee) if the dispute is won.

Alpha (America/New_York, USD): a 102.00 card sale with a 3.26 fee on
2026-05-10, disputed; Stripe withdrew 102.00 + 15.00 on 2026-06-01 02:00 UTC
= 2026-05-31 22:00 EDT (May), and the dispute was lost. May at Alpha: gross
102.00, disputed 102.00, fees 18.26 (3.26 + 15.00), net −18.26.

Beta (America/Los_Angeles, USD): a 102.00 card sale with a 3.26 fee, disputed
and withdrawn in May (102.00 + 15.00), won: the 102.00 came back on
2026-07-01 03:00 UTC = 2026-06-30 20:00 PDT (June). June at Beta: disputed
−102.00, no fee, net +102.00. Beta also has a cash sale in June.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import openpyxl
import pytest

from portal.auth.service import ACCOUNTANT, CLIENT, MANAGER, OWNER
from portal.payments import totals as payment_totals
from portal.payments.tables import Dispute, Payment
from portal.reports import copy_csv, service
from portal.reports import filters as report_filters
from portal.reports.controllers import PAYMENT_COLUMNS, _payment_rows
from portal.reports.exports import csv_stream
from tests import factories
from tests.reports import helpers

MAY = "start=2026-05-01&end=2026-05-31"
JUNE = "start=2026-06-01&end=2026-06-30"
_seq = itertools.count(1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@dataclass
class Data:
    alpha: int
    beta: int
    lost_sale: int
    won_sale: int
    cash_sale: int
    lost_intent: str
    won_intent: str
    lost_dispute: int
    won_dispute: int


async def _dispute(
    sale_id: int,
    *,
    opened: datetime,
    withdrawn: datetime | None,
    outcome: str = "",
    closed: datetime | None = None,
    reinstated: datetime | None = None,
    amount: int = 10200,
    fee: int = 1500,
) -> int:
    payment = await Payment.select().where(Payment.sale == sale_id).first()
    assert payment is not None
    status = {"won": "won", "lost": "lost"}.get(outcome, "needs_response")
    rows = (
        await Dispute.insert(
            Dispute(
                sale=sale_id, payment=payment["id"], stripe_dispute_id=f"dp_test_{next(_seq)}",
                amount_cents=amount, currency=payment["currency"], reason="fraudulent",
                status=status, outcome=outcome, created_at=opened, closed_at=closed,
                fee_cents=fee, withdrawn_at=withdrawn, reinstated_at=reinstated,
            )
        ).returning(Dispute.id).run()
    )  # fmt: skip
    await payment_totals.added(dispute=int(rows[0]["id"]))
    return int(rows[0]["id"])


async def _build() -> Data:
    alpha = await factories.make_location(
        name="Alpha Clinic", slug="alpha", timezone="America/New_York"
    )
    beta = await factories.make_location(
        name="Beta Clinic", slug="beta", timezone="America/Los_Angeles"
    )
    client = (await factories.make_user(CLIENT, email="client@example.test")).id
    lost = await helpers.make_sale(alpha, client, at=utc(2026, 5, 10, 15), net=10200, fee=326)
    lost_dispute = await _dispute(
        lost, opened=utc(2026, 6, 1, 1), withdrawn=utc(2026, 6, 1, 2), outcome="lost",
        closed=utc(2026, 7, 20, 12),
    )  # fmt: skip
    won = await helpers.make_sale(beta, client, at=utc(2026, 5, 3, 18), net=10200, fee=326)
    won_dispute = await _dispute(
        won, opened=utc(2026, 5, 20, 17), withdrawn=utc(2026, 5, 20, 18), outcome="won",
        closed=utc(2026, 7, 1, 2), reinstated=utc(2026, 7, 1, 3),
    )  # fmt: skip
    # A cash sale at Beta in June, at the instant the won dispute's money came back.
    cash = await helpers.make_sale(beta, client, at=utc(2026, 7, 1, 3), net=5000, method="cash")
    # Opened, not yet withdrawn by Stripe: no money moved, in no report.
    await _dispute(won, opened=utc(2026, 6, 10, 12), withdrawn=None, amount=500, fee=0)
    intents = {}
    for sale_id in (lost, won):
        row = await Payment.select(Payment.payment_intent_id).where(Payment.sale == sale_id)
        intents[sale_id] = str(row[0]["payment_intent_id"])
    return Data(
        alpha, beta, lost, won, cash, intents[lost], intents[won], lost_dispute, won_dispute
    )


async def _filters(role: str = ACCOUNTANT, locations: tuple[int, ...] = (), **params: str):
    query = {k: [v] for k, v in params.items()}
    return await report_filters.parse(helpers.actor(role, locations), query)


async def _bytes(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


@asynccontextmanager
async def _client(app, role, location_ids=()):
    account = await factories.make_user(role, location_ids=location_ids)
    async with factories.make_client(app) as client:
        await factories.login(client, account)
        yield client


_csv = helpers.csv_rows


# -- the service ------------------------------------------------------------------------------


async def test_lost_dispute_month_by_hand(db):
    d = await _build()
    f = await _filters(start="2026-05-01", end="2026-05-31", location=str(d.alpha))
    summary = await service.payment_summary(f)
    t = summary.totals["USD"]
    assert (t.payments, t.disputes, t.reinstatements) == (1, 1, 0)
    assert (t.gross, t.refunded, t.disputed, t.fee, t.dispute_fee, t.net) == (
        10200, 0, 10200, 1826, 1500, -1826)  # fmt: skip
    assert t.processing_fee == 326 and t.tax == 0
    # By day: the payment on the 10th, the withdrawal on the 31st (22:00 EDT).
    by_day = await service.payment_summary(
        await _filters(start="2026-05-01", end="2026-05-31", location=str(d.alpha), group="day")
    )
    assert [(r.start.isoformat(), r.totals.net) for r in by_day.rows] == [
        ("2026-05-10", 10200 - 326), ("2026-05-31", -10200 - 1500)]  # fmt: skip
    lines = (await service.payment_lines(f)).rows
    assert [(x.kind, x.date.isoformat(), x.gross, x.disputed, x.fee, x.net) for x in lines] == [
        ("payment", "2026-05-10", 10200, 0, 326, 9874),
        ("dispute_withdrawn", "2026-05-31", 0, 10200, 1500, -11700),
    ]
    assert lines[1].sale_id == d.lost_sale and lines[1].payment_method == "card"
    assert lines[1].stripe_payment_intent == d.lost_intent and lines[1].tax == 0
    # June in New York: nothing of Alpha's.
    june = await service.payment_summary(
        await _filters(start="2026-06-01", end="2026-06-30", location=str(d.alpha))
    )
    assert june.totals == {}


async def test_won_dispute_reinstated_the_next_month(db):
    d = await _build()
    may = await service.payment_summary(
        await _filters(start="2026-05-01", end="2026-05-31", location=str(d.beta))
    )
    t = may.totals["USD"]
    assert (t.gross, t.disputed, t.fee, t.net) == (10200, 10200, 1826, -1826)
    june_f = await _filters(start="2026-06-01", end="2026-06-30", location=str(d.beta))
    june = (await service.payment_summary(june_f)).totals["USD"]
    # The reinstatement (+102.00, no fee back) and the cash sale of 2026-06-30 PDT.
    assert (june.payments, june.disputes, june.reinstatements) == (1, 0, 1)
    assert (june.gross, june.disputed, june.fee, june.dispute_fee, june.net) == (
        5000, -10200, 0, 0, 5000 + 10200)  # fmt: skip
    lines = (await service.payment_lines(june_f)).rows
    assert [(x.kind, x.date.isoformat(), x.disputed, x.fee, x.net) for x in lines] == [
        ("payment", "2026-06-30", 0, 0, 5000),  # same instant: payments first
        ("dispute_reinstated", "2026-06-30", -10200, 0, 10200),
    ]
    # May and June together: the dispute costs Beta its fee only.
    both = await service.payment_summary(
        await _filters(start="2026-05-01", end="2026-06-30", location=str(d.beta))
    )
    t = both.totals["USD"]
    assert (t.disputed, t.dispute_fee, t.net) == (0, 1500, 10200 + 5000 - 326 - 1500)


async def test_method_and_status_filters(db):
    d = await _build()
    period = {"start": "2026-05-01", "end": "2026-06-30"}
    card = (await service.payment_summary(await _filters(method="card", **period))).totals
    assert (card["USD"].disputes, card["USD"].reinstatements, card["USD"].disputed) == (
        2, 1, 10200)  # fmt: skip
    cash = (await service.payment_summary(await _filters(method="cash", **period))).totals
    assert (cash["USD"].disputes, cash["USD"].disputed, cash["USD"].gross) == (0, 0, 5000)
    anything = (await service.payment_summary(await _filters(status="all", **period))).totals
    assert anything["USD"].disputed == 10200 and anything["USD"].dispute_fee == 3000
    for status in ("pending", "failed"):
        f = await _filters(status=status, **period)
        assert (await service.payment_summary(f)).totals == {}
        assert (await service.payment_lines(f)).rows == []
    assert d.won_dispute and d.lost_dispute


async def test_keyset_pages_walk_every_row_in_order(db):
    d = await _build()
    f = await _filters(start="2026-05-01", end="2026-06-30")
    everything = (await service.payment_lines(f, limit=100)).rows
    assert [x.kind for x in everything] == [
        "payment", "payment", "dispute_withdrawn", "dispute_withdrawn", "payment",
        "dispute_reinstated",
    ]  # fmt: skip
    for limit in (1, 2, 3):
        walked, cursor = [], None
        while True:
            page = await service.payment_lines(f, after=cursor, limit=limit)
            walked += page.rows
            cursor = page.next_cursor
            if cursor is None:
                break
        assert [(x.kind, x.id) for x in walked] == [(x.kind, x.id) for x in everything], limit
    assert {x.sale_id for x in everything} == {d.lost_sale, d.won_sale, d.cash_sale}


async def test_fees_report_lists_dispute_fees(db):
    d = await _build()
    may = await service.fees(await _filters(start="2026-05-01", end="2026-05-31"))
    rows = {r.location.id: r.totals for r in may.rows}
    for loc in (d.alpha, d.beta):
        assert (rows[loc].payments, rows[loc].gross, rows[loc].processing_fee) == (1, 10200, 326)
        assert (rows[loc].disputes, rows[loc].dispute_fee, rows[loc].fee) == (1, 1500, 1826)
    assert may.totals["USD"].dispute_fee == 3000 and may.totals["USD"].fee == 3652
    # The reinstatement brings no fee back: June has no fees at all.
    june = await service.fees(await _filters(start="2026-06-01", end="2026-06-30"))
    assert sum(r.totals.fee for r in june.rows) == 0


async def test_revenue_cash_counts_disputes(db):
    d = await _build()
    may = await service.revenue(
        await _filters(start="2026-05-01", end="2026-05-31", location=str(d.alpha))
    )
    (row,) = may.rows
    assert (row.collected, row.refunded, row.disputed, row.net_cash) == (10200, 0, 10200, 0)
    june = await service.revenue(
        await _filters(start="2026-06-01", end="2026-06-30", location=str(d.beta))
    )
    assert june.totals["USD"].disputed == -10200
    assert june.totals["USD"].net_cash == 5000 + 10200
    assert june.rows[0].as_dict()["disputed"] == -10200


# -- downloads, page and API -------------------------------------------------------------------


async def test_csv_xlsx_page_and_api_show_the_lost_dispute(db, app):
    d = await _build()
    query = f"{MAY}&location={d.alpha}"
    async with _client(app, ACCOUNTANT) as client:
        text = (await client.get(f"/reports/payments.csv?{query}")).text
        xlsx = (await client.get(f"/reports/payments.xlsx?{query}")).content
        page = (await client.get(f"/reports/payments?{query}")).text
        api = (await client.get(f"/api/v1/reports/payments?{query}&group=month")).json()
        fees_csv = _csv((await client.get(f"/reports/fees.csv?{query}")).text)
        fees_api = (await client.get(f"/api/v1/reports/fees?{query}")).json()
        fees_page = (await client.get(f"/reports/fees?{query}")).text
        revenue_csv = _csv((await client.get(f"/reports/revenue.csv?{query}")).text)
        revenue_api = (await client.get(f"/api/v1/reports/revenue?{query}")).json()
    assert text == (
        ",".join(PAYMENT_COLUMNS) + "\r\n"
        f"2026-05-10,Alpha Clinic,Client Person,client@example.test,5 × 60 min neuromuscular,Card (online),102.00,"
        f"0.00,0.00,0.00,3.26,98.74,USD,{d.lost_intent},{d.lost_sale},payment,package\r\n"
        f"2026-05-31,Alpha Clinic,Client Person,client@example.test,5 × 60 min neuromuscular,Card (online),0.00,"
        f"0.00,0.00,102.00,15.00,-117.00,USD,{d.lost_intent},{d.lost_sale},dispute_withdrawn,package\r\n"
    )
    rows = _csv(text)[1:]
    column = {name: i for i, name in enumerate(PAYMENT_COLUMNS)}
    sums = {
        name: sum(Decimal(r[column[name]]) for r in rows)
        for name in ("gross", "refunded", "disputed", "fee", "net")
    }
    assert sums == {
        "gross": Decimal("102.00"), "refunded": 0, "disputed": Decimal("102.00"),
        "fee": Decimal("18.26"), "net": Decimal("-18.26"),
    }  # fmt: skip
    sheet = openpyxl.load_workbook(io.BytesIO(xlsx)).active
    cells = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert [str(c) for c in cells[0]] == list(PAYMENT_COLUMNS)
    assert [
        [Decimal(str(v)).quantize(Decimal("0.01")) for v in r[6:12]] for r in cells[1:]
    ] == [
        [Decimal(v) for v in r[6:12]] for r in rows
    ]  # fmt: skip
    assert [r[15] for r in cells[1:]] == ["payment", "dispute_withdrawn"]
    assert cells[2][0].date().isoformat() == "2026-05-31"
    # The page: the totals, and the withdrawal among the lines.
    for figure in ("$102.00", "$18.26", "-$18.26", "$15.00 dispute fees", "Dispute withdrawn"):
        assert figure in page, figure
    assert "gross − refunds − disputed − fees" in page
    assert api["totals"]["USD"] == {
        "payments": 1, "refunds": 0, "disputes": 1, "reinstatements": 0,
        "gross_cents": 10200, "tax_cents": 0, "refunded_cents": 0, "disputed_cents": 10200,
        "fee_cents": 1826, "dispute_fee_cents": 1500, "net_cents": -1826,
    }  # fmt: skip
    assert [(r["period"], r["disputed_cents"], r["net_cents"]) for r in api["rows"]] == [
        ("2026-05", 10200, -1826)]  # fmt: skip
    # Fees: dispute fees beside processing fees, by the same grouping.
    assert fees_csv[0][5:12] == [
        "payments", "gross", "processing_fees", "disputes", "dispute_fees", "fees", "net",
    ]  # fmt: skip
    assert fees_csv[1][3:13] == [
        "Alpha Clinic", "USD", "1", "102.00", "3.26", "1", "15.00", "18.26", "83.74", "3.20",
    ]  # fmt: skip
    assert fees_api["rows"] == [{
        "period": "2026-05", "location_id": d.alpha, "currency": "USD", "payments": 1,
        "gross_cents": 10200, "processing_fee_cents": 326, "disputes": 1,
        "dispute_fee_cents": 1500, "fee_cents": 1826,
    }]  # fmt: skip
    assert "Dispute fees" in fees_page and "$15.00" in fees_page
    # Revenue: cash collected 102.00, disputed 102.00, net cash 0.
    header = revenue_csv[0]
    alpha = dict(zip(header, revenue_csv[1], strict=True))
    assert (alpha["cash_collected"], alpha["disputed"], alpha["net_cash"]) == (
        "102.00", "102.00", "0.00")  # fmt: skip
    (rev,) = revenue_api["rows"]
    assert (rev["disputed_cents"], rev["net_cash_cents"]) == (10200, 0)


async def test_june_shows_the_reinstatement(db, app):
    d = await _build()
    async with _client(app, OWNER) as client:
        text = (await client.get(f"/reports/payments.csv?{JUNE}&location={d.beta}")).text
        page = (await client.get(f"/reports/payments?{JUNE}&location={d.beta}")).text
        api = (await client.get(f"/api/v1/reports/payments?{JUNE}&location={d.beta}")).json()
    rows = _csv(text)
    assert rows[2] == [
        "2026-06-30", "Beta Clinic", "Client Person", "client@example.test", "5 × 60 min neuromuscular", "Card (online)",
        "0.00", "0.00", "0.00", "-102.00", "0.00", "102.00", "USD", d.won_intent,
        str(d.won_sale), "dispute_reinstated", "package",
    ]  # fmt: skip
    assert "Dispute reinstated" in page
    totals = api["totals"]["USD"]
    assert (totals["disputed_cents"], totals["reinstatements"], totals["net_cents"]) == (
        -10200, 1, 15200)  # fmt: skip


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"status": "all"},
        {"status": "pending"},
        {"method": "card"},
        {"method": "cash"},
        {"group": "month"},
        {"location": "{alpha}"},
        {"start": "2026-05-31", "end": "2026-05-31"},
    ],
)
async def test_csv_writers_agree_byte_for_byte_with_disputes(db, params):
    d = await _build()
    params = {
        "start": "2026-05-01", "end": "2026-06-30",
        **{k: v.format(alpha=d.alpha) for k, v in params.items()},
    }  # fmt: skip
    f = await _filters(**params)
    python = await _bytes(csv_stream(PAYMENT_COLUMNS, _payment_rows(f)))
    if params.get("status") != "pending" and params.get("method") != "cash":
        assert b"dispute_withdrawn" in python
    copied = copy_csv.payments_csv(f, PAYMENT_COLUMNS)
    if db.kind == "sqlite":
        assert copied is None
    else:
        assert copied is not None and await _bytes(copied) == python


async def test_manager_of_another_location_does_not_see_them(db, app):
    d = await _build()
    async with _client(app, MANAGER, [d.beta]) as client:
        text = (await client.get(f"/reports/payments.csv?{MAY}")).text
        page = (await client.get(f"/reports/payments?{MAY}")).text
        api = (await client.get(f"/api/v1/reports/payments?{MAY}")).json()
        fees = (await client.get(f"/api/v1/reports/fees?{MAY}")).json()
        other = await client.get(f"/reports/payments.csv?{MAY}&location={d.alpha}")
        other_api = await client.get(f"/api/v1/reports/payments?{MAY}&location={d.alpha}")
    rows = _csv(text)[1:]
    assert {r[1] for r in rows} == {"Beta Clinic"}
    assert [r[-2:] for r in rows] == [["payment", "package"], ["dispute_withdrawn", "package"]]
    assert str(d.lost_sale) not in {r[13] for r in rows}
    assert "Alpha Clinic" not in page and f"/sales/{d.lost_sale}" not in page
    assert api["totals"]["USD"]["disputed_cents"] == 10200  # Beta's own only
    assert [r["location_id"] for r in api["rows"]] == [d.beta] * len(api["rows"])
    assert sum(r["dispute_fee_cents"] for r in fees["rows"]) == 1500
    assert other.status_code == 403 and other_api.status_code == 403
    # The service, scoped to Beta the same way.
    f = await _filters(MANAGER, (d.beta,), start="2026-05-01", end="2026-05-31")
    assert {x.sale_id for x in (await service.payment_lines(f)).rows} == {d.won_sale}
