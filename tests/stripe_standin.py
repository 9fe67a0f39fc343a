"""Pytest plugin: the local Stripe stand-in and a webhook receiver for tests.

Load it from the top-level conftest with ``pytest_plugins = ["tests.stripe_standin"]``.

Fixtures:

* ``stripe_standin`` (session): one stand-in process on a free port for the
  whole run, as a :class:`StandIn` (base URL, webhook secret, async helpers
  for the test hooks). Tests share it, so they filter what they look at by
  their own ids (session, payment intent).
* ``stripe_settings``: the suite's ``settings`` pointed at the stand-in
  (``stripe_api_base`` and ``stripe_webhook_secret`` set, no secret key).
* ``stripe_gateway``: a ``StripeGateway`` built from ``stripe_settings``.
* ``webhook_receiver``: a real HTTP server on 127.0.0.1 (free port), registered
  with the stand-in for the duration of one test, recording every delivery.
  ``WebhookReceiver.forward`` can pass each delivery on (e.g. to the portal's
  webhook route through an in-process client) and answer with its status.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from portal.payments.gateway import StripeGateway
from portal.settings import Settings
from stripe_standin import STANDIN_API_KEY, standin_process

STANDIN_WEBHOOK_SECRET = "whsec_test_standin_0123456789abcdef"


@dataclass(frozen=True)
class StandIn:
    """A running stand-in and the test hooks it offers."""

    base_url: str
    webhook_secret: str
    log_file: Path

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=10)

    async def _post(self, path: str, payload: Mapping[str, Any] | None = None) -> dict[str, Any]:
        async with self._client() as client:
            response = await client.post(path, json=dict(payload or {}))
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    async def api(
        self, method: str, path: str, data: Mapping[str, Any] | None = None
    ) -> httpx.Response:
        """A raw Stripe API call (form-encoded), as the dashboard or a script would make."""
        async with self._client() as client:
            return await client.request(
                method,
                path,
                data=dict(data) if data else None,
                headers={"Authorization": f"Bearer {STANDIN_API_KEY}"},
            )

    async def complete_session(self, session_id: str, email: str | None = None) -> dict[str, Any]:
        """Pay a Checkout Session as if the client pressed "Pay"."""
        return await self._post(
            f"/_standin/checkout/sessions/{session_id}/complete", {"email": email} if email else {}
        )

    async def advance_subscription(self, subscription_id: str) -> dict[str, Any]:
        """End the subscription's current period now: renew it, skip it (paused) or end it."""
        return await self._post(f"/_standin/subscriptions/{subscription_id}/advance")

    async def set_card_declines(self, customer_id: str, declines: bool) -> dict[str, Any]:
        """Swap the customer's saved card for one that declines (or pays) from now on."""
        return await self._post(f"/_standin/customers/{customer_id}/card", {"declines": declines})

    async def decline_session(self, session_id: str) -> dict[str, Any]:
        return await self._post(f"/_standin/checkout/sessions/{session_id}/decline")

    async def expire_session_now(self, session_id: str) -> dict[str, Any]:
        return await self._post(f"/_standin/checkout/sessions/{session_id}/expire-now")

    async def fire_event(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Send an arbitrary event (``type``, ``data.object``; ``id``/``created`` optional)."""
        return await self._post("/_standin/events", event)

    async def redeliver(self, event_id: str) -> dict[str, Any]:
        return await self._post(f"/_standin/events/{event_id}/redeliver")

    async def open_dispute(
        self, charge_id: str, amount: int | None = None, reason: str = "fraudulent"
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {"charge": charge_id, "reason": reason}
        if amount is not None:
            payload["amount"] = amount
        return await self._post("/_standin/disputes", payload)

    async def close_dispute(self, dispute_id: str, status: str) -> dict[str, Any]:
        return await self._post(f"/_standin/disputes/{dispute_id}/close", {"status": status})

    async def run_payouts(self, **options: Any) -> list[dict[str, Any]]:
        """Pay out the available balance (``currency``, ``arrival_date``, ``status``)."""
        data: list[dict[str, Any]] = (await self._post("/_standin/payouts", options))["data"]
        return data

    async def pay_payout(self, payout_id: str) -> dict[str, Any]:
        return await self._post(f"/_standin/payouts/{payout_id}/pay")

    async def fail_payout(self, payout_id: str, code: str = "account_closed") -> dict[str, Any]:
        return await self._post(f"/_standin/payouts/{payout_id}/fail", {"failure_code": code})

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until every webhook queued so far has been delivered (or given up)."""
        async with self._client() as client:
            response = await client.post("/_standin/webhooks/drain", params={"timeout": timeout})
        response.raise_for_status()

    async def deliveries(self, event_id: str | None = None) -> list[dict[str, Any]]:
        async with self._client() as client:
            params = {"event_id": event_id} if event_id else {}
            response = await client.get("/_standin/deliveries", params=params)
        response.raise_for_status()
        records: list[dict[str, Any]] = response.json()["data"]
        return records

    async def register_webhook(
        self, endpoint_id: str, url: str, events: list[str] | None = None
    ) -> None:
        data: dict[str, Any] = {"url": url, "secret": self.webhook_secret}
        if events:
            data["events[]"] = events
        async with self._client() as client:
            response = await client.post(f"/_config/webhooks/{endpoint_id}", data=data)
        response.raise_for_status()

    async def unregister_webhook(self, endpoint_id: str) -> None:
        async with self._client() as client:
            await client.delete(f"/_config/webhooks/{endpoint_id}")


@dataclass(frozen=True)
class Delivery:
    """One webhook request as the receiver got it (raw body, for signature checks)."""

    body: bytes
    headers: Mapping[str, str]

    @property
    def signature(self) -> str:
        return self.headers.get("Stripe-Signature", "")

    @property
    def event(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass
class WebhookReceiver:
    """A small real HTTP server standing in for the portal's webhook endpoint."""

    url: str = ""
    deliveries: list[Delivery] = field(default_factory=list)
    pages: list[str] = field(default_factory=list)
    # Statuses to answer with, in order, before falling back to 200.
    scripted_statuses: list[int] = field(default_factory=list)
    forward: Callable[[bytes, Mapping[str, str]], Awaitable[int]] | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        return [
            d.event for d in self.deliveries if event_type is None or d.event["type"] == event_type
        ]

    async def wait_for(
        self,
        event_type: str,
        where: Callable[[dict[str, Any]], bool] = lambda event: True,
        timeout: float = 5.0,
        count: int = 1,
    ) -> list[Delivery]:
        """The deliveries of ``event_type`` matching ``where``, once ``count`` have arrived."""
        deadline = time.monotonic() + timeout
        while True:
            found = [d for d in self.deliveries if d.event["type"] == event_type and where(d.event)]
            if len(found) >= count:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = [d.event["type"] for d in self.deliveries]
                raise AssertionError(f"no {event_type} webhook within {timeout}s; got {seen}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    async def _handle_webhook(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.deliveries.append(Delivery(body=body, headers=dict(request.headers)))
        self._arrived.set()
        if self.scripted_statuses:
            return web.Response(status=self.scripted_statuses.pop(0))
        if self.forward is not None:
            return web.Response(status=await self.forward(body, request.headers))
        return web.Response(text="ok")

    async def _handle_page(self, request: web.Request) -> web.Response:
        self.pages.append(str(request.rel_url))
        return web.Response(text=f"landed on {request.path}")


@pytest.fixture(scope="session")
def stripe_standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    log_file = tmp_path_factory.mktemp("stripe-standin") / "standin.log"
    with standin_process(log_file=log_file, retry_delays=(0.05, 0.1, 0.2)) as base_url:
        yield StandIn(base_url=base_url, webhook_secret=STANDIN_WEBHOOK_SECRET, log_file=log_file)


@pytest.fixture
def stripe_settings(settings: Settings, stripe_standin: StandIn) -> Settings:
    return dataclasses.replace(
        settings,
        stripe_secret_key="",
        stripe_api_base=stripe_standin.base_url,
        stripe_webhook_secret=stripe_standin.webhook_secret,
    )


@pytest.fixture
async def stripe_gateway(stripe_settings: Settings) -> AsyncIterator[StripeGateway]:
    gateway = StripeGateway.from_settings(stripe_settings, max_network_retries=0)
    yield gateway
    await gateway.aclose()


@pytest.fixture
async def webhook_receiver(stripe_standin: StandIn) -> AsyncIterator[WebhookReceiver]:
    """Receives webhooks at ``{url}/webhook``; any other path is a landing page."""
    receiver = WebhookReceiver()
    app = web.Application()
    app.router.add_post("/webhook", receiver._handle_webhook)
    app.router.add_get("/{tail:.*}", receiver._handle_page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    receiver.url = f"http://127.0.0.1:{port}"
    endpoint_id = f"test-{uuid.uuid4().hex[:12]}"
    await stripe_standin.register_webhook(endpoint_id, f"{receiver.url}/webhook")
    try:
        yield receiver
    finally:
        await stripe_standin.unregister_webhook(endpoint_id)
        await runner.cleanup()
