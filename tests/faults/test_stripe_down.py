"""The Stripe stand-in is down (connection refused) or silent (a timeout)
while someone buys or refunds: a clear message, nothing marked paid or
refunded, no journal lines, and the same action works once Stripe is back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from portal.ledger.tables import JournalLine
from portal.payments import service as payments
from portal.payments.gateway import StripeGateway
from portal.payments.tables import Payment, Refund
from portal.sales import service as sales
from portal.sales.tables import Sale, SaleSession
from tests import factories
from tests.payments.conftest import portal_webhook, shop
from tests.payments.helpers import Shop, pay
from tests.stripe_standin import StandIn, WebhookReceiver

__all__ = ["portal_webhook", "shop"]  # the payments tests' fixtures

DOWN = "http://127.0.0.1:9"  # nothing listens on the discard port


@pytest.fixture
async def silent_stripe() -> AsyncIterator[str]:
    """A server that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.close()
    for writer in held:
        writer.transport.abort()


def _gateway(api_base: str) -> StripeGateway:
    return StripeGateway(
        api_key="sk_test_x", api_base=api_base, max_network_retries=0, timeout_seconds=0.5
    )


async def test_checkout_while_stripe_is_down(shop: Shop) -> None:
    shop.app.state.stripe_gateway = _gateway(DOWN)
    async with factories.make_client(shop.app) as client:
        await factories.login(client, shop.client)
        online = await factories.post_form(client, f"/buy/{shop.package_id}", {"location": "shop"})
    async with factories.make_client(shop.app) as desk:
        await factories.login(desk, shop.manager)
        front_desk = await factories.post_form(
            desk,
            "/sales",
            {
                "client_email": shop.client.email,
                "location_id": str(shop.location_id),
                "package_id": str(shop.package_id),
                "method": "checkout_link",
            },
        )
    # The buyer and the desk are told, in words; the pages are not errors.
    assert online.status_code == 503, online.status_code
    assert "could not be reached" in online.text and "try again" in online.text.lower()
    assert front_desk.status_code == 422
    assert "could not be reached" in front_desk.text
    # Nothing is paid: the pending sales were cancelled, their payments failed.
    rows = await Sale.select(Sale.id, Sale.status).run()
    assert len(rows) == 2 and {r["status"] for r in rows} == {sales.CANCELLED}
    statuses = {p["status"] for p in await Payment.select(Payment.status).run()}
    assert statuses == {payments.FAILED}
    assert await SaleSession.count().run() == 0
    assert await JournalLine.count().run() == 0

    # Stripe is back: the same purchase goes through to its checkout page.
    shop.app.state.stripe_gateway = shop.gateway
    async with factories.make_client(shop.app) as client:
        await factories.login(client, shop.client)
        again = await factories.post_form(client, f"/buy/{shop.package_id}", {"location": "shop"})
    assert again.status_code == 303 and again.headers["location"].startswith(
        str(shop.gateway.api_base)
    )


@pytest.mark.parametrize("outage", ["down", "silent"])
async def test_refund_while_stripe_is_unreachable(
    shop: Shop,
    stripe_standin: StandIn,
    portal_webhook: WebhookReceiver,
    silent_stripe: str,
    outage: str,
) -> None:
    sale_id, _ = await pay(shop, stripe_standin)
    assert (await sales.get_sale(sale_id))["status"] == sales.ACTIVE
    lines = await JournalLine.count().where(JournalLine.sale_id == sale_id).run()

    shop.app.state.stripe_gateway = _gateway(DOWN if outage == "down" else silent_stripe)
    async with factories.make_client(shop.app) as desk:
        await factories.login(desk, shop.manager)
        response = await factories.post_form(
            desk,
            f"/sales/{sale_id}/refunds",
            {
                "sessions": "2",
                "reason": "Moving away",
                "rule": payments.RULE_PRO_RATA,
                "confirmed": "1",
            },
        )
        assert response.status_code == 303
        page = await desk.get(response.headers["location"])
    assert "The refund is pending; retry it below." in page.text
    refund = (await payments.refunds_of(sale_id))[0]
    # Whether Stripe made it is unknown: pending, its two sessions reserved (nobody
    # books or refunds them meanwhile), nothing journalled.
    assert refund["status"] == payments.PENDING and refund["error"]
    counts = await sales.session_counts(sale_id)
    assert (counts.available, counts.revoked) == (3, 2)
    assert await JournalLine.count().where(JournalLine.sale_id == sale_id).run() == lines
    assert (await sales.get_sale(sale_id))["status"] == sales.ACTIVE

    # Back: the retry sends the same idempotency key; one refund, once.
    shop.app.state.stripe_gateway = shop.gateway
    async with factories.make_client(shop.app) as desk:
        await factories.login(desk, shop.manager)
        retried = await factories.post_form(
            desk, f"/sales/{sale_id}/refunds/{refund['id']}/retry", {}
        )
        assert retried.status_code == 303
    await stripe_standin.drain()
    assert [r["status"] for r in await payments.refunds_of(sale_id)] == [payments.SUCCEEDED]
    assert await Refund.count().where(Refund.sale == sale_id).run() == 1
    assert (await sales.session_counts(sale_id)).revoked == 2
    payment = (await payments.payments_of(sale_id))[0]
    assert len(await shop.gateway.list_refunds_for_charge(payment["charge_id"])) == 1
