"""`portal stripe reconcile`: what Stripe has and the portal missed is recorded, once.

These tests run against a stand-in of their own, emptied before each test:
reconciliation lists *every* payment in a window, and the suite's shared
stand-in holds other tests' payments, whose sale ids repeat from one test
database to the next.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from portal.ledger import service as ledger
from portal.ledger.tables import JournalEntry
from portal.payments import service as payments
from portal.payments import webhooks
from portal.payments.gateway import StripeGateway
from portal.payments.tables import Payment, Refund, StripeEvent
from portal.sales import service as sales
from stripe_standin import standin_process
from tests.conftest import TEST_DATABASE_URL
from tests.payments.helpers import SESSION_VALUE, TOTAL, Shop, pay, start_purchase
from tests.stripe_standin import STANDIN_WEBHOOK_SECRET, StandIn, WebhookReceiver

PORTAL = str(Path(sys.executable).with_name("portal"))
FEE = round(TOTAL * 0.029 + 30)  # the stand-in's card fee: 2.9 % + 30 cents


@pytest.fixture(scope="module")
def stripe_standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    """This module's own stand-in (overrides the suite's shared one here)."""
    log_file = tmp_path_factory.mktemp("reconcile-standin") / "standin.log"
    with standin_process(log_file=log_file, retry_delays=(0.05, 0.1, 0.2)) as base_url:
        yield StandIn(base_url=base_url, webhook_secret=STANDIN_WEBHOOK_SECRET, log_file=log_file)


@pytest.fixture(autouse=True)
async def empty_standin(stripe_standin: StandIn) -> AsyncIterator[None]:
    async with httpx.AsyncClient(base_url=stripe_standin.base_url) as client:
        (await client.post("/_standin/reset")).raise_for_status()
    yield


def _window() -> tuple[datetime, datetime]:
    now = datetime.now(tz=UTC)
    return now - timedelta(days=1), now + timedelta(minutes=1)


async def _reconcile(shop: Shop) -> payments.ReconcileReport:
    return await payments.reconcile(shop.gateway, *_window())


async def _snapshot(sale_id: int) -> tuple[Any, ...]:
    sale = await sales.get_sale(sale_id)
    pays = [
        (p["status"], p["amount_cents"], p["fee_cents"], p["charge_id"])
        for p in await payments.payments_of(sale_id)
    ]
    refunds = [
        (r["status"], r["amount_cents"], r["sessions_revoked"], r["external"])
        for r in await payments.refunds_of(sale_id)
    ]
    sessions = [r["state"] for r in await sales.sessions_of(sale_id)]
    return sale["status"], pays, refunds, sessions, await JournalEntry.count().run()


async def test_lost_webhooks_lose_nothing(shop: Shop, stripe_standin: StandIn) -> None:
    # Paid on the hosted page, but no webhook reaches the portal.
    sale_id, _ = await pay(shop, stripe_standin)
    assert (await sales.get_sale(sale_id))["status"] == sales.PENDING
    assert await StripeEvent.count().run() == 0

    report = await _reconcile(shop)
    assert report.payments_seen == 1 and not report.mismatches
    assert report.count("payment") == 1 and report.count("fee") == 1
    assert any("the sale is active" in text for _, text in report.changes)
    sale = await sales.get_sale(sale_id)
    assert sale["status"] == sales.ACTIVE
    assert (await sales.session_counts(sale_id)).available == 5
    payment = (await payments.payments_of(sale_id))[0]
    assert payment["status"] == payments.SUCCEEDED and payment["payment_intent_id"]
    assert (payment["fee_cents"], payment["net_cents"]) == (FEE, TOTAL - FEE)
    assert await ledger.balance("processing_fees", sale_id=sale_id) == FEE
    assert await ledger.balance("stripe_clearing", sale_id=sale_id) == TOTAL - FEE
    assert await ledger.balance("deferred_revenue", sale_id=sale_id) == 5 * SESSION_VALUE

    # A second run over the same window changes nothing.
    before = await _snapshot(sale_id)
    again = await _reconcile(shop)
    assert not again.changed and not again.mismatches
    assert "Nothing to record" in "\n".join(again.lines())
    assert await _snapshot(sale_id) == before


async def test_missing_fee_is_filled_from_the_balance_transaction(
    shop: Shop, stripe_standin: StandIn, webhook_receiver: WebhookReceiver
) -> None:
    sale_id, _ = await pay(shop, stripe_standin)
    # The webhook arrived while Stripe could not be asked for the charge:
    # the sale is active, the fee unknown.
    (completed,) = webhook_receiver.events("checkout.session.completed")
    dead = StripeGateway(api_key="sk_test_x", api_base="http://127.0.0.1:9", max_network_retries=0)
    try:
        assert await webhooks.handle_event(dead, completed) == "processed"
    finally:
        await dead.aclose()
    payment = (await payments.payments_of(sale_id))[0]
    assert payment["status"] == payments.SUCCEEDED and payment["fee_cents"] is None
    assert payment["charge_id"] is None

    report = await _reconcile(shop)
    assert [kind for kind, _ in report.changes] == ["fee"]
    payment = (await payments.payments_of(sale_id))[0]
    assert payment["fee_cents"] == FEE and payment["charge_id"]
    assert await ledger.balance("processing_fees", sale_id=sale_id) == FEE
    assert not (await _reconcile(shop)).changed


async def test_dashboard_refund_missed_is_recorded(shop: Shop, stripe_standin: StandIn) -> None:
    sale_id, _ = await pay(shop, stripe_standin)
    await _reconcile(shop)
    payment = (await payments.payments_of(sale_id))[0]
    # Two sessions' worth refunded in the dashboard; no webhook reaches the portal.
    amount = 2 * (TOTAL // 5)
    response = await stripe_standin.api(
        "POST", "/v1/refunds", {"payment_intent": payment["payment_intent_id"], "amount": amount}
    )
    assert response.status_code == 200, response.text
    assert await Refund.count().run() == 0

    report = await _reconcile(shop)
    assert report.count("refund") == 1 and report.count("payment") == 0, report.changes
    (refund,) = await payments.refunds_of(sale_id)
    assert refund["external"] and refund["status"] == payments.SUCCEEDED
    assert refund["amount_cents"] == amount and refund["sessions_revoked"] == 2
    assert refund["stripe_refund_id"] == response.json()["id"]
    assert (await sales.session_counts(sale_id)).available == 3
    assert await ledger.balance("deferred_revenue", sale_id=sale_id) == 3 * SESSION_VALUE

    before = await _snapshot(sale_id)
    assert not (await _reconcile(shop)).changed
    assert await _snapshot(sale_id) == before


async def _pending_refund_that_reached_stripe(shop: Shop, sale_id: int) -> dict[str, Any]:
    """A staff refund whose answer was lost: pending here, made in Stripe."""
    dead = StripeGateway(api_key="sk_test_x", api_base="http://127.0.0.1:9", max_network_retries=0)
    try:
        refund = await payments.refund_sale(
            dead, shop.manager_user, sale_id, sessions=2, reason="Moving away", rule="pro_rata"
        )
    finally:
        await dead.aclose()
    assert refund["status"] == payments.PENDING
    payment = (await payments.payments_of(sale_id))[0]
    # What the lost request did at Stripe: the same call, the same idempotency key.
    await shop.gateway.create_refund(
        amount_cents=int(refund["amount_cents"]),
        idempotency_key=await payments.idempotency_key("refund", refund["id"], Refund),
        payment_intent_id=payment["payment_intent_id"],
        metadata={"refund_id": str(refund["id"]), "sale_id": str(sale_id)},
        reason="requested_by_customer",
    )
    # A pending refund holds the sessions it would revoke (reserved, not yet journalled).
    counts = await sales.session_counts(sale_id)
    assert counts.available == 3 and counts.revoked == 2
    return refund


async def test_pending_refund_that_stripe_made_is_completed(
    shop: Shop, stripe_standin: StandIn
) -> None:
    sale_id, _ = await pay(shop, stripe_standin)
    await _reconcile(shop)
    refund = await _pending_refund_that_reached_stripe(shop, sale_id)

    report = await _reconcile(shop)
    assert [kind for kind, _ in report.changes] == ["completed"], report.changes
    (row,) = await payments.refunds_of(sale_id)  # completed, not recorded a second time
    assert row["id"] == refund["id"] and row["status"] == payments.SUCCEEDED
    assert not row["external"] and row["stripe_refund_id"] and row["sessions_revoked"] == 2
    assert (await sales.session_counts(sale_id)).available == 3
    assert await ledger.balance("deferred_revenue", sale_id=sale_id) == 3 * SESSION_VALUE
    before = await _snapshot(sale_id)
    assert not (await _reconcile(shop)).changed
    assert await _snapshot(sale_id) == before


async def test_refund_webhook_completes_a_pending_refund(
    shop: Shop, stripe_standin: StandIn, portal_webhook: WebhookReceiver
) -> None:
    sale_id, _ = await pay(shop, stripe_standin)
    assert (await sales.get_sale(sale_id))["status"] == sales.ACTIVE
    refund = await _pending_refund_that_reached_stripe(shop, sale_id)
    await stripe_standin.drain()
    (row,) = await payments.refunds_of(sale_id)
    assert row["id"] == refund["id"] and row["status"] == payments.SUCCEEDED
    assert (await sales.session_counts(sale_id)).available == 3
    assert not (await _reconcile(shop)).changed


async def test_mismatches_are_reported_not_recorded(shop: Shop, stripe_standin: StandIn) -> None:
    sale_id, _ = await start_purchase(shop)

    async def paid_elsewhere(metadata: dict[str, str], amount: int) -> str:
        session = await shop.gateway.create_checkout_session(
            amount_cents=amount,
            currency="usd",
            product_name="Not from this portal",
            success_url="http://testserver/ok",
            cancel_url="http://testserver/no",
            client_reference_id="x",
            metadata=metadata,
            payment_intent_metadata=metadata,
            idempotency_key=f"test:{metadata}:{amount}",
        )
        return str((await stripe_standin.complete_session(session.id))["payment_intent"])

    unknown = await paid_elsewhere({"sale_id": "99999"}, 1000)
    wrong_amount = await paid_elsewhere({"sale_id": str(sale_id)}, TOTAL - 1)
    await paid_elsewhere({"order": "shop-42"}, 2500)  # another use of the account

    report = await _reconcile(shop)
    assert not report.changed
    assert report.payments_seen == 3 and report.not_ours == 1
    text = "\n".join(report.mismatches)
    assert len(report.mismatches) == 2, text
    assert f"{unknown}: $10.00 paid for sale 99999, unknown here" in text
    assert f"{wrong_amount}: $487.12 paid for sale {sale_id}, whose total is $487.13" in text
    assert (await sales.get_sale(sale_id))["status"] == sales.PENDING
    assert await Payment.count().where(Payment.status == payments.SUCCEEDED).run() == 0


# -- the command ------------------------------------------------------------------------


def _portal(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PORTAL, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _env(db: Any, standin: StandIn | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "DATABASE_"))}
    url = f"sqlite:///{db.engine.path}" if db.kind == "sqlite" else TEST_DATABASE_URL
    env.update({"DATABASE_URL": url, "SECRET_KEY": "cli-secret-" + "r" * 40})
    if standin is not None:
        env.update(
            {"STRIPE_API_BASE": standin.base_url, "STRIPE_WEBHOOK_SECRET": standin.webhook_secret}
        )
    return env


async def test_command_prints_what_it_changed_and_is_idempotent(
    db: Any, shop: Shop, stripe_standin: StandIn
) -> None:
    sale_id, _ = await pay(shop, stripe_standin)
    env = _env(db, stripe_standin)
    today = datetime.now(tz=UTC).date().isoformat()

    first = _portal(env, "stripe", "reconcile", "--since", today)
    assert first.returncode == 0, first.stderr
    assert "1 payment(s), 0 refund(s) listed" in first.stdout
    assert "1 missed payment(s), 1 missing fee(s)" in first.stdout
    assert f"sale {sale_id}: payment pi_" in first.stdout
    assert (await sales.get_sale(sale_id))["status"] == sales.ACTIVE

    second = _portal(env, "stripe", "reconcile", "--since", today, "--until", today)
    assert second.returncode == 0, second.stderr
    assert "Nothing to record" in second.stdout
    assert len(await payments.payments_of(sale_id)) == 1

    # A payment for a sale the portal does not know: reported, exit status 3.
    await start_purchase(shop)  # another sale, so that the unknown id is really unknown
    session = await shop.gateway.create_checkout_session(
        amount_cents=500, currency="usd", product_name="?", success_url="http://x/ok",
        cancel_url="http://x/no", client_reference_id="x", metadata={"sale_id": "777"},
        payment_intent_metadata={"sale_id": "777"}, idempotency_key="test:cli:777",
    )  # fmt: skip
    await stripe_standin.complete_session(session.id)
    third = _portal(env, "stripe", "reconcile", "--since", today)
    assert third.returncode == 3, third.stderr
    assert "1 mismatch(es) to settle by hand" in third.stdout
    assert "paid for sale 777, unknown here" in third.stdout


async def test_command_says_when_stripe_cannot_be_reached(db: Any) -> None:
    env = _env(db, None)
    env["STRIPE_API_BASE"] = "http://127.0.0.1:9"
    result = _portal(env, "stripe", "reconcile", "--since", "2026-01-01")
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Stripe could not be read" in lines[0], result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["stripe", "reconcile"], "required: --since"),
        (["stripe", "reconcile", "--since", "2026-13-01"], "is not a date (YYYY-MM-DD)"),
        (["stripe", "reconcile", "--since", "01/02/2026"], "is not a date (YYYY-MM-DD)"),
        (["stripe", "reconcile", "--since", "2026-02-01", "--until", "2026-01-31"], "--until is before --since"),
        (["stripe", "reconcile", "--since", "2999-01-01"], "in the future"),
        (["stripe"], "required: stripe_command"),
        (["sales"], "required: sales_command"),
        (["sales", "expire", "--now"], "unrecognized arguments"),
    ],
)  # fmt: skip
def test_command_bad_arguments_exit_2_with_one_line(args: list[str], message: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRIPE_")}
    env["STRIPE_API_BASE"] = "http://127.0.0.1:9"
    result = _portal(env, *args)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_command_without_stripe_settings_exits_2() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRIPE_")}
    result = _portal(env, "stripe", "reconcile", "--since", "2026-01-01")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "STRIPE_SECRET_KEY" in lines[0], result.stderr
