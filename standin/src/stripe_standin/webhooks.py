"""Webhook events of the stand-in: creation, signing and delivery.

Every event the stand-in produces (localstripe's own ``payment_intent.*`` and
the extension's ``checkout.session.*``, ``charge.*``, ``refund.*``,
``charge.dispute.*``) goes through :func:`emit`, which stores it as a
localstripe ``Event`` (so ``GET /v1/events/{id}`` works like on Stripe) and
hands it to the :class:`Dispatcher`.

Delivery imitates Stripe closely enough for the portal's webhook endpoint to
be tested for real:

* the ``Stripe-Signature`` header is ``t=<unix time>,v1=<hex HMAC-SHA256 of
  "<t>.<raw body>" keyed by the endpoint secret>``, computed at each attempt
  (as Stripe does), so ``stripe.Webhook.construct_event`` accepts it even on a
  late retry;
* delivery is asynchronous: the API call that caused the event has already
  answered when the endpoint receives it;
* connection errors, timeouts, HTTP 429 and 5xx are retried a few times with
  a growing pause; any other answer ends the delivery;
* one FIFO queue per endpoint, so the order of events is deterministic in
  tests (Stripe itself guarantees no order: tests that need a different
  order fire events explicitly through ``POST /_standin/events``).

Endpoints are localstripe's own registry (``POST /_config/webhooks/{id}``)
plus the ones given on the command line, which are registered in it at
start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp
from localstripe import resources as ls_resources
from localstripe import webhooks as ls_webhooks

from stripe_standin.constants import API_VERSION

log = logging.getLogger("stripe_standin.webhooks")

# Pause before each retry; the first attempt is immediate. Short, because the
# stand-in serves tests and a developer's machine, not the internet.
RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0)
ATTEMPT_TIMEOUT_SECONDS = 5.0
DELIVERY_LOG_SIZE = 2000


@dataclass(frozen=True)
class DeliveryRecord:
    """One delivery attempt, kept so tests and developers can see what was sent."""

    event_id: str
    event_type: str
    endpoint_id: str
    url: str
    attempt: int
    status: int | None
    error: str | None
    final: bool
    at: float


@dataclass(frozen=True)
class _Delivery:
    event_id: str
    event_type: str
    payload: bytes


class Dispatcher:
    """Queues events per endpoint and posts them, signed, with retries."""

    def __init__(
        self,
        retry_delays: Sequence[float] = RETRY_DELAYS,
        attempt_timeout: float = ATTEMPT_TIMEOUT_SECONDS,
    ) -> None:
        self._retry_delays = tuple(retry_delays)
        self._attempt_timeout = attempt_timeout
        self._queues: dict[str, asyncio.Queue[_Delivery]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None
        self.log: deque[DeliveryRecord] = deque(maxlen=DELIVERY_LOG_SIZE)

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self._attempt_timeout)
        self._session = aiohttp.ClientSession(timeout=timeout)

    async def close(self) -> None:
        for task in self._workers.values():
            task.cancel()
        for task in self._workers.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers.clear()
        self._queues.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- sending -----------------------------------------------------------

    def dispatch(self, event: dict[str, Any]) -> int:
        """Queue ``event`` for every endpoint that wants its type; returns how many."""
        payload = json.dumps(event, indent=2, sort_keys=True).encode("utf-8")
        delivery = _Delivery(
            event_id=str(event["id"]), event_type=str(event["type"]), payload=payload
        )
        queued = 0
        for endpoint_id, endpoint in list(_endpoints().items()):
            if endpoint.events is not None and delivery.event_type not in endpoint.events:
                continue
            self._queue(endpoint_id).put_nowait(delivery)
            queued += 1
        return queued

    async def drain(self, wait_seconds: float) -> bool:
        """Wait until every queued delivery is finished; False if that takes too long."""
        waits = [queue.join() for queue in self._queues.values()]
        if not waits:
            return True
        try:
            await asyncio.wait_for(asyncio.gather(*waits), wait_seconds)
        except TimeoutError:
            return False
        return True

    def pending(self) -> int:
        return sum(queue.qsize() for queue in self._queues.values())

    def forget(self) -> None:
        """Drop the delivery log (used by ``POST /_standin/reset``)."""
        self.log.clear()

    def _queue(self, endpoint_id: str) -> asyncio.Queue[_Delivery]:
        queue = self._queues.get(endpoint_id)
        if queue is None:
            queue = asyncio.Queue()
            self._queues[endpoint_id] = queue
            self._workers[endpoint_id] = asyncio.create_task(
                self._work(endpoint_id, queue), name=f"webhooks:{endpoint_id}"
            )
        return queue

    async def _work(self, endpoint_id: str, queue: asyncio.Queue[_Delivery]) -> None:
        while True:
            delivery = await queue.get()
            try:
                await self._deliver(endpoint_id, delivery)
            except Exception:  # a bug here must not stop later deliveries
                log.exception("delivering %s failed unexpectedly", delivery.event_id)
            finally:
                queue.task_done()

    async def _deliver(self, endpoint_id: str, delivery: _Delivery) -> None:
        attempts = len(self._retry_delays) + 1
        for attempt in range(1, attempts + 1):
            endpoint = _endpoints().get(endpoint_id)
            if endpoint is None:  # unregistered meanwhile
                return
            status, error = await self._post(endpoint.url, endpoint.secret, delivery.payload)
            transient = error is not None or status is None or status == 429 or status >= 500
            final = not transient or attempt == attempts
            self.log.append(
                DeliveryRecord(
                    event_id=delivery.event_id,
                    event_type=delivery.event_type,
                    endpoint_id=endpoint_id,
                    url=endpoint.url,
                    attempt=attempt,
                    status=status,
                    error=error,
                    final=final,
                    at=time.time(),
                )
            )
            log.info(
                "webhook %s %s -> %s: %s (attempt %d)",
                delivery.event_type,
                delivery.event_id,
                endpoint.url,
                status if error is None else error,
                attempt,
            )
            if final:
                return
            await asyncio.sleep(self._retry_delays[attempt - 1])

    async def _post(self, url: str, secret: str, payload: bytes) -> tuple[int | None, str | None]:
        assert self._session is not None, "Dispatcher.start() was not awaited"
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": signature_header(payload, secret),
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        }
        try:
            async with self._session.post(url, data=payload, headers=headers) as response:
                await response.read()
                return response.status, None
        except (aiohttp.ClientError, TimeoutError) as exc:
            return None, f"{type(exc).__name__}: {exc}"


def signature_header(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header value Stripe would send for ``payload``."""
    t = int(time.time()) if timestamp is None else timestamp
    signed = f"{t}.".encode() + payload
    digest = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


# -- endpoints -------------------------------------------------------------


def _endpoints() -> dict[str, Any]:
    """localstripe's registry of endpoints: id -> object with url, secret, events."""
    registry: dict[str, Any] = ls_webhooks._webhooks
    return registry


def register_endpoint(endpoint_id: str, url: str, secret: str, events: list[str] | None) -> None:
    ls_webhooks.register_webhook(endpoint_id, url, secret, events)


def unregister_endpoint(endpoint_id: str) -> bool:
    return _endpoints().pop(endpoint_id, None) is not None


def endpoint_ids() -> list[str]:
    return list(_endpoints())


# -- events ----------------------------------------------------------------

_dispatcher: Dispatcher | None = None


def install(dispatcher: Dispatcher | None) -> None:
    """Make ``dispatcher`` the one every event goes to (one per process)."""
    global _dispatcher
    _dispatcher = dispatcher


def _stripe_like(event: Any) -> Any:
    """Give a localstripe Event the fields a Stripe event of our API version has."""
    event.api_version = API_VERSION
    if not hasattr(event, "pending_webhooks"):
        event.pending_webhooks = len(_endpoints())
    if not hasattr(event, "request"):
        event.request = {"id": None, "idempotency_key": None}
    return event


def schedule(event: Any) -> None:
    """Replacement for localstripe's ``schedule_webhook`` (see ``patches``)."""
    _stripe_like(event)
    if _dispatcher is not None:
        _dispatcher.dispatch(event._export())


def emit(event_type: str, obj: Any) -> Any:
    """Create the event ``event_type`` about ``obj`` (a snapshot now) and send it."""
    event = ls_resources.Event(event_type, obj)
    schedule(event)
    return event


def redeliver(event: Any) -> int:
    """Send a stored event again, same id and body, as Stripe's "Resend" does."""
    if _dispatcher is None:
        return 0
    return _dispatcher.dispatch(_stripe_like(event)._export())


def records(event_id: str | None = None, event_type: str | None = None) -> list[dict[str, Any]]:
    if _dispatcher is None:
        return []
    return [
        asdict(r)
        for r in _dispatcher.log
        if (event_id is None or r.event_id == event_id)
        and (event_type is None or r.event_type == event_type)
    ]
