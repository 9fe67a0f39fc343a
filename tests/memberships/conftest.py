"""A clinic selling a monthly plan, the portal app wired to the Stripe stand-in, a member."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from portal.auth.service import CLIENT, CurrentUser
from portal.memberships import subscriptions
from portal.payments.gateway import StripeGateway
from tests import factories
from tests.catalog.helpers import make_service
from tests.conftest import using_app
from tests.memberships.helpers import make_plan
from tests.stripe_standin import StandIn, WebhookReceiver


@dataclass
class Club:
    location: int
    service: int
    plan: int
    member: factories.Account
    app: Any
    gateway: StripeGateway
    standin: StandIn


@pytest.fixture
async def club(db, stripe_settings, stripe_gateway, stripe_standin) -> AsyncIterator[Club]:
    """$120.00 a month plus 8.25 % tax ($129.90) for 2 sessions of a 60-minute service."""
    location = await factories.make_location(slug="club", tax_rate_bp=825)
    service = await make_service("Neuromuscular, 60 min")
    plan = await make_plan(location, service, name="Monthly 60 min", sessions=2, price=12000)
    member = await factories.make_user(CLIENT)
    async with using_app(stripe_settings) as app:
        yield Club(location, service, plan, member, app, stripe_gateway, stripe_standin)


async def joined(club: Club, plan: int | None = None) -> dict[str, Any]:
    """The member joins ``plan`` (the club's) and pays on the stand-in's page; the
    membership as the portal then has it (webhooks forwarded: ``club_webhook``)."""
    member = CurrentUser(club.member.id, club.member.email, "", CLIENT, frozenset())
    membership_id, url = await subscriptions.join(
        club.gateway, member, plan or club.plan, base_url="http://portal.test",
        request_key=secrets.token_urlsafe(24),
    )  # fmt: skip
    await club.standin.complete_session(url.rsplit("/", 1)[-1])
    await club.standin.drain()
    return await subscriptions.get_membership(membership_id)


@pytest.fixture
async def member_client(club: Club) -> AsyncIterator[httpx.AsyncClient]:
    async with factories.make_client(club.app) as client:
        await factories.login(client, club.member)
        yield client


@pytest.fixture
async def club_webhook(
    club: Club, webhook_receiver: WebhookReceiver
) -> AsyncIterator[WebhookReceiver]:
    """Deliveries from the stand-in are passed to the portal's real webhook route."""
    async with factories.make_client(club.app) as client:

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
