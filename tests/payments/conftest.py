"""The Stripe stand-in fixtures come from the plugin ``tests.stripe_standin``,
loaded for the whole suite by the top-level conftest. Here: the shop the
payments tests sell from, and the portal's webhook route wired to the stand-in."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import pytest

from portal.auth.service import CLIENT
from tests import factories
from tests.conftest import using_app
from tests.payments.helpers import Shop, make_package
from tests.stripe_standin import WebhookReceiver


@pytest.fixture
async def shop(db, stripe_settings, stripe_gateway) -> AsyncIterator[Shop]:
    location = await factories.make_location(slug="shop", tax_rate_bp=825)
    package = await make_package()
    client = await factories.make_user(CLIENT)
    manager = await factories.make_user("manager", location_ids=[location])
    async with using_app(stripe_settings) as app:
        yield Shop(location, package, client, manager, app, stripe_gateway)


@pytest.fixture
async def portal_webhook(
    shop: Shop, webhook_receiver: WebhookReceiver
) -> AsyncIterator[WebhookReceiver]:
    """Deliveries from the stand-in are passed to the portal's real webhook route."""
    async with factories.make_client(shop.app) as client:

        async def forward(body: bytes, headers: Mapping[str, str]) -> int:
            response = await client.post(
                "/stripe/webhook",
                content=body,
                headers={
                    "stripe-signature": headers.get("Stripe-Signature", ""),
                    "content-type": "application/json",
                },
            )
            return response.status_code

        webhook_receiver.forward = forward
        yield webhook_receiver
