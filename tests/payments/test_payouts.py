"""Stripe payouts: imported once, with their contents, journalled from clearing to the bank.

Everything goes through the stand-in: a checkout paid on its hosted page, a
refund sent through the gateway, a payout of the balance run by its test
hook, and the signed ``payout.*`` webhooks delivered to the portal's route.
The module has its own stand-in, emptied before each test, because a payout
sweeps the whole Stripe balance (the shared stand-in holds other tests'
payments).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from portal.auth.service import ACCOUNTANT
from portal.ledger import service as ledger
from portal.ledger.tables import JournalEntry, JournalLine
from portal.payments import payouts
from portal.payments import service as payments
from portal.payments.gateway import GatewayError, StripePayout, StripePayoutItem
from portal.payments.tables import Dispute, Payment, Payout, PayoutLine, Refund, StripeEvent
from portal.reports import filters as report_filters
from portal.reports import payouts as payout_report
from portal.sales import service as sales
from stripe_standin import standin_process
from tests import factories
from tests.conftest import TEST_DATABASE_URL
from tests.payments.helpers import TOTAL, Shop, as_user, pay
from tests.stripe_standin import STANDIN_WEBHOOK_SECRET, StandIn, WebhookReceiver

pytestmark = pytest.mark.filterwarnings(
    "ignore:Use 'content=<...>' to upload raw bytes/text content.:DeprecationWarning"
)

PORTAL = str(Path(sys.executable).with_name("portal"))
FEE = round(TOTAL * 0.029 + 30)  # the stand-in's card fee: 2.9 % + 30 cents


@pytest.fixture(scope="module")
def stripe_standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    """This module's own stand-in (overrides the suite's shared one here)."""
    log_file = tmp_path_factory.mktemp("payouts-standin") / "standin.log"
    with standin_process(log_file=log_file, retry_delays=(0.05, 0.1, 0.2)) as base_url:
        yield StandIn(base_url=base_url, webhook_secret=STANDIN_WEBHOOK_SECRET, log_file=log_file)


@pytest.fixture(autouse=True)
async def empty_standin(stripe_standin: StandIn) -> AsyncIterator[None]:
    async with httpx.AsyncClient(base_url=stripe_standin.base_url) as client:
        (await client.post("/_standin/reset")).raise_for_status()
    yield


def _today() -> Any:
    return datetime.now(tz=UTC).date()


async def _paid_and_partly_refunded(shop: Shop, standin: StandIn) -> tuple[int, dict[str, Any]]:
    sale_id, _ = await pay(shop, standin)
    refund = await payments.refund_sale(
        shop.gateway, shop.manager_user, sale_id, sessions=2, reason="Moving away"
    )
    await standin.drain()
    assert refund["status"] == payments.SUCCEEDED and refund["amount_cents"] > 0
    return sale_id, refund


async def _journal_count(kind: str) -> int:
    return await JournalEntry.count().where(JournalEntry.kind == kind).run()


async def _lines(payout_id: int) -> dict[str, dict[str, Any]]:
    rows = await PayoutLine.select().where(PayoutLine.payout == payout_id).run()
    return {str(r["type"]): r for r in rows}


# -- the stand-in, through the gateway -----------------------------------------------------


async def test_the_gateway_reads_a_payout_and_its_transactions_page_by_page(
    shop: Shop, portal_webhook: WebhookReceiver, stripe_standin: StandIn
) -> None:
    sale_id, refund = await _paid_and_partly_refunded(shop, stripe_standin)
    [made] = await stripe_standin.run_payouts()
    assert await stripe_standin.run_payouts() == []  # nothing left to pay out

    payout = await shop.gateway.retrieve_payout(made["id"])
    assert payout.status == "paid" and payout.automatic and payout.currency == "usd"
    assert payout.amount == TOTAL - FEE - refund["amount_cents"]
    assert payout.arrival_date == _today()
    assert [p.id async for p in shop.gateway.iter_payouts(_today())] == [payout.id]

    items = await shop.gateway.list_payout_items(payout.id, page_size=1)
    by_type = {i.type: i for i in items}
    assert sorted(by_type) == ["charge", "refund"]  # the payout's own transaction left out
    charge, refunded = by_type["charge"], by_type["refund"]
    assert (charge.amount, charge.fee, charge.net) == (TOTAL, FEE, TOTAL - FEE)
    payment = await Payment.select().where(Payment.sale == sale_id).first().run()
    assert payment is not None
    assert charge.charge is not None and charge.source_id == payment["charge_id"]
    assert charge.payment_intent_id == payment["payment_intent_id"]
    assert refunded.refund is not None and refunded.source_id == refund["stripe_refund_id"]
    assert (refunded.amount, refunded.fee, refunded.net) == (
        -refund["amount_cents"],
        0,
        -refund["amount_cents"],
    )
    assert sum(i.net for i in items) == payout.amount

    # Stripe lists the contents of automatic payouts only.
    manual = await stripe_standin.api("POST", "/v1/payouts", {"amount": 500, "currency": "eur"})
    with pytest.raises(GatewayError) as refused:
        await shop.gateway.list_payout_items(manual.json()["id"])
    assert refused.value.http_status == 400


# -- webhooks --------------------------------------------------------------------------------


async def test_a_paid_payout_is_imported_once_with_what_it_contained(
    shop: Shop, portal_webhook: WebhookReceiver, stripe_standin: StandIn
) -> None:
    sale_id, refund = await _paid_and_partly_refunded(shop, stripe_standin)
    payment = await Payment.select().where(Payment.sale == sale_id).first().run()
    assert payment is not None and payment["fee_cents"] == FEE
    [made] = await stripe_standin.run_payouts()
    await stripe_standin.drain()

    row = await Payout.select().where(Payout.stripe_payout_id == made["id"]).first().run()
    assert row is not None
    amount = TOTAL - FEE - refund["amount_cents"]
    assert (row["status"], row["amount_cents"], row["currency"]) == ("paid", amount, "USD")
    assert row["itemized"] and row["arrival_date"] == _today()
    lines = await _lines(row["id"])
    assert sorted(lines) == ["charge", "refund"]
    charge, refunded = lines["charge"], lines["refund"]
    assert (charge["gross_cents"], charge["fee_cents"], charge["net_cents"]) == (
        TOTAL,
        FEE,
        TOTAL - FEE,
    )
    assert (charge["payment"], charge["refund"], charge["sale"]) == (payment["id"], None, sale_id)
    assert charge["location"] == shop.location_id
    assert charge["payment_intent_id"] == payment["payment_intent_id"]
    assert (refunded["gross_cents"], refunded["net_cents"]) == (
        -refund["amount_cents"],
        -refund["amount_cents"],
    )
    assert (refunded["payment"], refunded["refund"], refunded["sale"]) == (
        payment["id"],
        refund["id"],
        sale_id,
    )
    assert refunded["location"] == shop.location_id
    assert charge["net_cents"] + refunded["net_cents"] == row["amount_cents"]

    # Clearing emptied into the bank, at the clinic whose money it was.
    assert await _journal_count(payouts.PAYOUT_KIND) == 1
    assert await ledger.balance("bank", location_id=shop.location_id) == amount
    assert await ledger.balance("stripe_clearing", location_id=shop.location_id) == 0
    entry = (
        await JournalEntry.select().where(JournalEntry.kind == payouts.PAYOUT_KIND).first().run()
    )
    assert entry is not None and entry["location"] == shop.location_id
    assert entry["reference"] == f"payout:{made['id']}"

    # Redelivered and re-imported: still one payout, one set of lines and entries.
    [paid_event] = portal_webhook.events("payout.paid")
    lines_before = await JournalLine.count().run()
    await stripe_standin.redeliver(paid_event["id"])
    await stripe_standin.drain()
    assert len(portal_webhook.events("payout.paid")) == 2
    again = await payouts.import_payout(
        shop.gateway, await shop.gateway.retrieve_payout(made["id"])
    )
    assert not again.changed and not again.mismatch
    assert await Payout.count().run() == 1 and await PayoutLine.count().run() == 2
    assert await JournalLine.count().run() == lines_before
    events = await StripeEvent.select().where(StripeEvent.type.like("payout.%")).run()
    assert sorted(e["type"] for e in events) == ["payout.created", "payout.paid"]
    assert all(e["processed_at"] is not None for e in events)


async def test_a_pending_payout_is_journalled_only_once_paid(
    shop: Shop, portal_webhook: WebhookReceiver, stripe_standin: StandIn
) -> None:
    await pay(shop, stripe_standin)
    [made] = await stripe_standin.run_payouts(status="in_transit")
    await stripe_standin.drain()
    row = await Payout.select().where(Payout.stripe_payout_id == made["id"]).first().run()
    assert row is not None and row["status"] == "in_transit" and row["itemized"]
    assert await _journal_count(payouts.PAYOUT_KIND) == 0

    await stripe_standin.pay_payout(made["id"])
    await stripe_standin.drain()
    row = await Payout.select().where(Payout.stripe_payout_id == made["id"]).first().run()
    assert row is not None and row["status"] == "paid"
    assert await ledger.balance("bank") == TOTAL - FEE
    assert await _journal_count(payouts.PAYOUT_KIND) == 1


async def test_a_failed_payout_reverses_and_the_next_payout_returns_the_money(
    shop: Shop, portal_webhook: WebhookReceiver, stripe_standin: StandIn
) -> None:
    await pay(shop, stripe_standin)
    [first] = await stripe_standin.run_payouts()
    await stripe_standin.drain()
    assert await ledger.balance("bank") == TOTAL - FEE

    failed = await stripe_standin.fail_payout(first["id"])
    await stripe_standin.drain()
    row = await Payout.select().where(Payout.stripe_payout_id == first["id"]).first().run()
    assert row is not None and row["status"] == "failed"
    assert row["failure_message"] == "The bank account has been closed."
    assert await _journal_count(payouts.PAYOUT_FAILED_KIND) == 1
    assert await ledger.balance("bank", location_id=shop.location_id) == 0
    assert await ledger.balance("stripe_clearing", location_id=shop.location_id) == TOTAL - FEE

    # A stale "paid" event after the failure changes nothing.
    entries = await JournalEntry.count().run()
    await stripe_standin.fire_event(
        {"type": "payout.paid", "data": {"object": {**failed, "status": "paid"}}}
    )
    await stripe_standin.drain()
    row = await Payout.select().where(Payout.stripe_payout_id == first["id"]).first().run()
    assert row is not None and row["status"] == "failed"
    assert await JournalEntry.count().run() == entries

    # The money went back to the balance; the next payout carries it, placed at the clinic.
    [second] = await stripe_standin.run_payouts()
    await stripe_standin.drain()
    assert second["amount"] == TOTAL - FEE
    again = await Payout.select().where(Payout.stripe_payout_id == second["id"]).first().run()
    assert again is not None
    lines = await _lines(again["id"])
    assert list(lines) == ["payout_failure"]
    assert lines["payout_failure"]["source_id"] == first["id"]
    assert lines["payout_failure"]["location"] is None
    assert await payouts.location_split(again["id"]) == {shop.location_id: TOTAL - FEE}
    assert await ledger.balance("bank", location_id=shop.location_id) == TOTAL - FEE
    assert await ledger.balance("stripe_clearing", location_id=shop.location_id) == 0
    assert await ledger.balance("stripe_clearing") == 0


async def test_a_manual_payout_has_no_listed_contents_and_is_journalled_unplaced(
    shop: Shop, portal_webhook: WebhookReceiver, stripe_standin: StandIn
) -> None:
    made = (
        await stripe_standin.api(
            "POST", "/v1/payouts", {"amount": 2500, "currency": "eur", "status": "paid"}
        )
    ).json()
    await stripe_standin.drain()
    row = await Payout.select().where(Payout.stripe_payout_id == made["id"]).first().run()
    assert row is not None and not row["automatic"] and not row["itemized"]
    assert (row["status"], row["amount_cents"], row["currency"]) == ("paid", 2500, "EUR")
    assert await PayoutLine.count().run() == 0
    bank = await JournalLine.select().where(JournalLine.account == "bank").run()
    assert [(b["debit_cents"], b["location"], b["currency"]) for b in bank] == [(2500, None, "EUR")]


# -- the command -----------------------------------------------------------------------------


def _portal(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PORTAL, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _env(db: Any, standin: StandIn) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "DATABASE_"))}
    url = f"sqlite:///{db.engine.path}" if db.kind == "sqlite" else TEST_DATABASE_URL
    env.update(
        {
            "DATABASE_URL": url,
            "SECRET_KEY": "cli-secret-" + "p" * 40,
            "STRIPE_API_BASE": standin.base_url,
            "STRIPE_WEBHOOK_SECRET": standin.webhook_secret,
        }
    )
    return env


async def test_the_command_imports_a_payout_whose_webhooks_were_missed(
    db: Any, shop: Shop, portal_webhook: WebhookReceiver, stripe_standin: StandIn
) -> None:
    sale_id, refund = await _paid_and_partly_refunded(shop, stripe_standin)
    portal_webhook.forward = None  # from here on the portal hears nothing
    [made] = await stripe_standin.run_payouts()
    await stripe_standin.drain()
    assert await Payout.count().run() == 0
    env = _env(db, stripe_standin)
    today = _today().isoformat()

    first = _portal(env, "stripe", "payouts", "--since", today)
    assert first.returncode == 0, first.stderr
    assert "Stripe: 1 payout(s) arriving since" in first.stdout
    assert f"Imported 1 payout(s):\n  {made['id']}" in first.stdout
    assert "2 transaction(s), journalled" in first.stdout
    row = await Payout.select().where(Payout.stripe_payout_id == made["id"]).first().run()
    assert row is not None and row["status"] == "paid"
    lines = await _lines(row["id"])
    assert lines["refund"]["refund"] == refund["id"] and lines["charge"]["sale"] == sale_id
    assert await ledger.balance("bank") == TOTAL - FEE - refund["amount_cents"]

    second = _portal(env, "stripe", "payouts")
    assert second.returncode == 0, second.stderr
    assert "Nothing to import" in second.stdout
    assert await _journal_count(payouts.PAYOUT_KIND) == 1

    bad = _portal(env, "stripe", "payouts", "--since", "yesterday")
    assert bad.returncode == 2 and "is not a date" in bad.stderr


async def test_a_payout_records_first_the_payment_the_portal_missed(
    shop: Shop, stripe_standin: StandIn
) -> None:
    # No webhook reaches the portal at all: the sale is still pending.
    sale_id, _ = await pay(shop, stripe_standin)
    assert (await sales.get_sale(sale_id))["status"] == sales.PENDING
    await stripe_standin.run_payouts()

    run = await payouts.import_payouts(shop.gateway, _today())
    assert run.seen == 1 and len(run.imported) == 1 and not run.mismatches
    assert any("payment pi_" in note for note in run.settled)
    assert (await sales.get_sale(sale_id))["status"] == sales.ACTIVE
    payment = await Payment.select().where(Payment.sale == sale_id).first().run()
    assert payment is not None and payment["fee_cents"] == FEE
    [line] = await PayoutLine.select().run()
    assert (line["payment"], line["sale"], line["location"]) == (
        payment["id"],
        sale_id,
        shop.location_id,
    )
    assert await ledger.balance("stripe_clearing", location_id=shop.location_id) == 0
    assert await ledger.balance("bank", location_id=shop.location_id) == TOTAL - FEE

    repeat = await payouts.import_payouts(shop.gateway, _today())
    assert repeat.seen == 1 and not (repeat.imported or repeat.updated or repeat.settled)
    assert await Refund.count().run() == 0


# -- what Stripe sends that the portal cannot place ------------------------------------------


def test_money_leaving_the_bank_is_journalled_the_other_way_round() -> None:
    out = payouts._transfer(-500, 7, to_bank=True)
    assert [(line.account, line.debit, line.credit, line.location_id) for line in out] == [
        ("stripe_clearing", 500, 0, 7),
        ("bank", 0, 500, 7),
    ]
    back = payouts._transfer(500, None, to_bank=False)
    assert [(line.account, line.debit, line.credit) for line in back] == [
        ("stripe_clearing", 500, 0),
        ("bank", 0, 500),
    ]


async def test_unplaced_lines_and_a_shortfall_are_kept_without_a_location(db: Any) -> None:

    now = datetime.now(tz=UTC)
    item = StripePayoutItem(
        id="txn_elsewhere", type="charge", amount=1000, fee=100, net=900, currency="usd",
        created=now, description="Not sold through the portal", source_id="ch_elsewhere",
    )  # fmt: skip
    payout = StripePayout(
        id="po_short", amount=1000, currency="usd", status="paid", arrival_date=now.date(),
        created=now, automatic=True,
    )  # fmt: skip
    result = await payouts.record_payout(payout, [item])
    assert result.created and result.lines == 1 and result.posted == "paid"
    assert (
        result.mismatch == "po_short: Stripe's payout is $10.00, its transactions add up to $9.00"
    )
    [line] = await PayoutLine.select().run()
    assert (line["payment"], line["sale"], line["location"]) == (None, None, None)
    bank = await JournalLine.select().where(JournalLine.account == "bank").run()
    assert [(b["debit_cents"], b["location"]) for b in bank] == [(1000, None)]
    again = await payouts.record_payout(payout, [item])
    assert not again.changed and await JournalLine.count().run() == 2

    accountant = as_user(await factories.make_user(ACCOUNTANT))
    day = now.date().isoformat()
    f = await report_filters.parse(accountant, {"start": [day], "end": [day]})
    rows = [r async for r in payout_report.iter_export_rows(f)]
    assert [(r.type, r.net) for r in rows] == [("charge", 900), ("difference", 100)]
    [listed] = (await payout_report.payout_page(f)).rows
    assert not listed.ties and listed.net == 900 and listed.amount == 1000


async def test_a_payout_records_first_the_dispute_the_portal_missed(
    shop: Shop, stripe_standin: StandIn
) -> None:
    # No webhook reaches the portal: the payout brings the payment and the dispute.
    sale_id, _ = await pay(shop, stripe_standin)
    intent = (await stripe_standin.api("GET", "/v1/payment_intents")).json()["data"][0]
    dispute = await stripe_standin.open_dispute(intent["latest_charge"], amount=10000)
    await stripe_standin.run_payouts()

    run = await payouts.import_payouts(shop.gateway, _today())
    assert run.seen == 1 and len(run.imported) == 1 and not run.mismatches
    assert any(f"dispute {dispute['id']}" in note for note in run.settled)
    row = await Dispute.select().where(Dispute.stripe_dispute_id == dispute["id"]).first().run()
    assert row is not None and row["withdrawn_at"] is not None and row["fee_cents"] == 1500
    assert (await sales.get_sale(sale_id))["frozen"]
    # Everything Stripe held for the location went to the bank, the dispute included.
    assert await ledger.balance("stripe_clearing", location_id=shop.location_id) == 0
    assert await ledger.balance("disputed_funds", location_id=shop.location_id) == 10000
