"""Payouts on the "Fees and payouts" report: page, drill-down, CSV, XLSX and API agree.

One payout, made by the stand-in, sweeps a payment and a partial refund at
the shop and a payment at a second clinic; the portal imports it from the
webhooks. Accountants see all of it, a manager only the lines of their
clinic, therapists and clients nothing.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import openpyxl
import pytest

from portal.audit.tables import AuditLog
from portal.auth.service import ACCOUNTANT, CLIENT, MANAGER, OWNER, THERAPIST
from portal.ledger import service as ledger
from portal.payments import service as payments
from portal.payments.tables import Payment, Payout
from portal.web.templating import money as money_filter
from stripe_standin import standin_process
from tests import factories
from tests.payments.helpers import TOTAL, Shop, pay
from tests.stripe_standin import STANDIN_WEBHOOK_SECRET, StandIn, WebhookReceiver

pytestmark = pytest.mark.filterwarnings(
    "ignore:Use 'content=<...>' to upload raw bytes/text content.:DeprecationWarning"
)

FEE = round(TOTAL * 0.029 + 30)
HEADER = [
    "payout", "arrival_date", "status", "type", "location", "client", "client_email", "sale_id",
    "stripe_payment_intent", "gross", "fee", "net", "currency", "stripe_balance_transaction",
]  # fmt: skip


@pytest.fixture(scope="module")
def stripe_standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    log_file = tmp_path_factory.mktemp("payout-report-standin") / "standin.log"
    with standin_process(log_file=log_file, retry_delays=(0.05, 0.1, 0.2)) as base_url:
        yield StandIn(base_url=base_url, webhook_secret=STANDIN_WEBHOOK_SECRET, log_file=log_file)


@pytest.fixture(autouse=True)
async def empty_standin(stripe_standin: StandIn) -> AsyncIterator[None]:
    async with httpx.AsyncClient(base_url=stripe_standin.base_url) as client:
        (await client.post("/_standin/reset")).raise_for_status()
    yield


@dataclass
class World:
    shop: Shop
    other_location: int
    payout_id: int
    stripe_payout_id: str
    amount: int
    shop_net: int
    other_net: int
    refund: dict[str, Any]
    shop_sale: int
    other_sale: int
    other_client: factories.Account
    today: str


@pytest.fixture
async def world(shop: Shop, portal_webhook: WebhookReceiver, stripe_standin: StandIn) -> World:
    other = await factories.make_location(name="Harbour Clinic", slug="harbour")
    other_client = await factories.make_user(CLIENT)
    shop_sale, _ = await pay(shop, stripe_standin)
    refund = await payments.refund_sale(
        shop.gateway, shop.manager_user, shop_sale, sessions=1, reason="Injury"
    )
    checkout = await payments.start_checkout(
        shop.gateway,
        client_id=other_client.id,
        client_email=other_client.email,
        package_id=shop.package_id,
        location_id=other,
        base_url="http://testserver",
    )
    payment = await Payment.select().where(Payment.id == checkout.payment_id).first().run()
    assert payment is not None
    await stripe_standin.complete_session(payment["checkout_session_id"])
    await stripe_standin.drain()
    other_total = int(
        (await Payment.select().where(Payment.id == checkout.payment_id).first().run() or {})[
            "amount_cents"
        ]
    )
    other_fee = round(other_total * 0.029 + 30)
    [made] = await stripe_standin.run_payouts()
    await stripe_standin.drain()
    row = await Payout.select().where(Payout.stripe_payout_id == made["id"]).first().run()
    assert row is not None and row["status"] == "paid"
    shop_net = TOTAL - FEE - int(refund["amount_cents"])
    other_net = other_total - other_fee
    assert row["amount_cents"] == shop_net + other_net
    return World(
        shop=shop, other_location=other, payout_id=int(row["id"]), stripe_payout_id=made["id"],
        amount=int(row["amount_cents"]), shop_net=shop_net, other_net=other_net, refund=refund,
        shop_sale=shop_sale, other_sale=checkout.sale_id, other_client=other_client,
        today=datetime.now(tz=UTC).date().isoformat(),
    )  # fmt: skip


@asynccontextmanager
async def _client(w: World, role: str, location_ids: tuple[int, ...] = ()):
    account = await factories.make_user(role, location_ids=location_ids)
    async with factories.make_client(w.shop.app) as client:
        await factories.login(client, account)
        yield client, account


def _cents(text: str) -> int:
    return int(Decimal(text) * 100)


def money(cents: int) -> str:
    return str(money_filter(cents, "USD"))


def _period(w: World) -> str:
    return f"start={w.today}&end={w.today}"


async def test_page_csv_xlsx_and_api_agree_for_an_accountant(world: World) -> None:
    w = world
    async with _client(w, ACCOUNTANT) as (client, account):
        page = await client.get(f"/reports/fees?{_period(w)}")
        assert page.status_code == 200
        assert "Payouts are not imported yet" not in page.text
        assert w.stripe_payout_id in page.text and "✓ Ties" in page.text
        assert f"/reports/payouts/{w.payout_id}?" in page.text
        assert " style=" not in page.text and "<script>" not in page.text

        drill = await client.get(f"/reports/payouts/{w.payout_id}?{_period(w)}")
        assert drill.status_code == 200
        assert f"/sales/{w.shop_sale}" in drill.text and f"/sales/{w.other_sale}" in drill.text
        assert w.shop.client.email in drill.text and w.other_client.email in drill.text
        assert "Harbour Clinic" in drill.text and f"Refund {w.refund['id']}" in drill.text

        response = await client.get(f"/reports/payouts.csv?{_period(w)}")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        assert "attachment" in response.headers["content-disposition"]
        rows = list(csv.reader(io.StringIO(response.text)))
        assert rows[0] == HEADER
        body = rows[1:]
        assert len(body) == 3 and {r[0] for r in body} == {w.stripe_payout_id}
        assert {r[1] for r in body} == {w.today} and {r[2] for r in body} == {"paid"}
        assert sorted(r[3] for r in body) == ["charge", "charge", "refund"]
        assert sum(_cents(r[11]) for r in body) == w.amount
        by_sale: dict[str, int] = {}
        for r in body:
            by_sale[r[7]] = by_sale.get(r[7], 0) + _cents(r[11])
            assert _cents(r[9]) - _cents(r[10]) == _cents(r[11]) and r[12] == "USD"
        assert by_sale == {str(w.shop_sale): w.shop_net, str(w.other_sale): w.other_net}
        refund_row = next(r for r in body if r[3] == "refund")
        assert _cents(refund_row[11]) == -w.refund["amount_cents"]
        assert (
            refund_row[4]
            and refund_row[5] == "Client Person"
            and refund_row[6] == w.shop.client.email
        )

        xlsx = await client.get(f"/reports/payouts.xlsx?{_period(w)}")
        assert xlsx.status_code == 200
        sheet = openpyxl.load_workbook(io.BytesIO(xlsx.content)).active
        assert sheet is not None
        cells = list(sheet.iter_rows(values_only=True))
        assert list(cells[0]) == HEADER and len(cells) == 4
        assert round(sum(Decimal(str(c[11])) for c in cells[1:]) * 100) == w.amount

        api = (await client.get(f"/api/v1/reports/fees?{_period(w)}")).json()
        assert api["payouts"]["imported"] is True
        [listed] = api["payouts"]["rows"]
        assert listed["stripe_payout_id"] == w.stripe_payout_id and listed["status"] == "paid"
        assert listed["amount_cents"] == listed["lines_net_cents"] == w.amount
        assert listed["lines"] == 3 and not listed["partial"]
        assert api["payouts"]["totals"]["USD"]["paid_cents"] == w.amount
        detail = (await client.get(f"/api/v1/reports/payouts/{w.payout_id}")).json()
        assert sum(line["net_cents"] for line in detail["lines"]) == w.amount
        assert {line["sale_id"] for line in detail["lines"]} == {w.shop_sale, w.other_sale}

    exports = await AuditLog.select().where(AuditLog.action == "export").run()
    assert [(r["entity"], r["entity_id"], r["actor_id"]) for r in exports] == [
        ("report", "payouts", account.id),
        ("report", "payouts", account.id),
    ]
    assert json.loads(exports[0]["after"])["format"] == "csv"
    # The journal: each clinic's clearing emptied into the bank by its own share.
    assert await ledger.balance("bank", location_id=w.shop.location_id) == w.shop_net
    assert await ledger.balance("bank", location_id=w.other_location) == w.other_net
    for location in (w.shop.location_id, w.other_location):
        assert await ledger.balance("stripe_clearing", location_id=location) == 0


async def test_a_manager_sees_only_the_lines_of_their_clinic(world: World) -> None:
    w = world
    async with _client(w, MANAGER, (w.shop.location_id,)) as (client, _):
        page = await client.get(f"/reports/fees?{_period(w)}")
        assert page.status_code == 200 and w.stripe_payout_id in page.text
        assert "share</small>" in page.text and money(w.amount) not in page.text
        drill = await client.get(f"/reports/payouts/{w.payout_id}?{_period(w)}")
        assert drill.status_code == 200 and f"/sales/{w.shop_sale}" in drill.text
        assert f"/sales/{w.other_sale}" not in drill.text
        assert w.other_client.email not in drill.text and "Harbour Clinic" not in drill.text
        assert money(w.shop_net) in drill.text and money(w.amount) not in drill.text
        rows = list(
            csv.reader(io.StringIO((await client.get(f"/reports/payouts.csv?{_period(w)}")).text))
        )[1:]
        assert sorted(r[3] for r in rows) == ["charge", "refund"]
        assert sum(_cents(r[11]) for r in rows) == w.shop_net
        api = (await client.get(f"/api/v1/reports/fees?{_period(w)}")).json()
        [listed] = api["payouts"]["rows"]
        assert listed["partial"] and listed["lines_net_cents"] == w.shop_net
        assert listed["amount_cents"] == w.shop_net  # not the whole payout's amount
        assert api["payouts"]["totals"]["USD"]["paid_cents"] == w.shop_net
        detail = (await client.get(f"/api/v1/reports/payouts/{w.payout_id}")).json()
        assert {line["sale_id"] for line in detail["lines"]} == {w.shop_sale}
        other = await client.get(f"/reports/fees?{_period(w)}&location={w.other_location}")
        assert other.status_code == 403

    async with _client(w, MANAGER, (w.other_location,)) as (client, _):
        rows = list(
            csv.reader(io.StringIO((await client.get(f"/reports/payouts.csv?{_period(w)}")).text))
        )[1:]
        assert [r[7] for r in rows] == [str(w.other_sale)]

    lonely = await factories.make_location(name="Quiet Clinic", slug="quiet")
    async with _client(w, MANAGER, (lonely,)) as (client, _):
        assert (await client.get(f"/reports/payouts/{w.payout_id}")).status_code == 403
        assert (await client.get(f"/api/v1/reports/payouts/{w.payout_id}")).status_code == 403
        page = await client.get(f"/reports/fees?{_period(w)}")
        assert page.status_code == 200 and w.stripe_payout_id not in page.text

    async with _client(w, OWNER) as (client, _):
        assert (await client.get("/reports/payouts/999999")).status_code == 404


@pytest.mark.parametrize("role", [THERAPIST, CLIENT])
async def test_therapists_and_clients_see_no_payouts(world: World, role: str) -> None:
    w = world
    locations = (w.shop.location_id,) if role == THERAPIST else ()
    async with _client(w, role, locations) as (client, _):
        for url in (
            f"/reports/fees?{_period(w)}",
            f"/reports/payouts.csv?{_period(w)}",
            f"/reports/payouts.xlsx?{_period(w)}",
            f"/reports/payouts/{w.payout_id}",
            f"/api/v1/reports/payouts/{w.payout_id}",
        ):
            assert (await client.get(url)).status_code == 403, url
    assert await AuditLog.count().where(AuditLog.action == "export").run() == 0
