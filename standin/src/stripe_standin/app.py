"""The stand-in's web application: localstripe's API plus the portal's extension.

One aiohttp application on one port serves:

* ``/v1/...`` — localstripe's Stripe API (with the fixes of ``patches``) and
  the extension's Checkout Sessions (``/v1/checkout/sessions``) and Disputes
  (read-only), authenticated with any ``sk_...`` key like localstripe;
  ``Idempotency-Key`` is honoured on every POST, as on Stripe;
* ``/checkout/pay/{id}`` — the hosted payment page a session's ``url`` points to;
* ``/billing_portal/{id}`` — the hosted card update a billing portal session's
  ``url`` points to (``POST /v1/billing_portal/sessions``);
* ``/_config/webhooks/{id}`` — localstripe's runtime webhook registration
  (POST ``url``, ``secret``, optional ``events[]``), plus DELETE to remove one;
* ``/_standin/...`` — test hooks: complete/decline/expire a session without a
  browser, fire any event, redeliver one, open/close a dispute, run a
  payout of the balance (and pay or fail it), see the delivery log, wait for
  deliveries to finish, reset all data.

localstripe's own application object is not served: its routes are copied
onto this one so the middlewares (no pickle persistence, idempotency, Stripe
error shapes) are ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from aiohttp.typedefs import Handler
from localstripe import __version__ as localstripe_version
from localstripe import resources as ls
from localstripe import server as ls_server
from localstripe.errors import UserError

from stripe_standin import billing, page, patches, webhooks
from stripe_standin.resources import (
    PAYOUT_FAILURES,
    AutomaticPayout,
    CheckoutSession,
    Dispute,
    InjectedEvent,
    run_payouts,
)
from stripe_standin.webhooks import RETRY_DELAYS, Dispatcher

log = logging.getLogger("stripe_standin")

CLI_ENDPOINT_PREFIX = "cli-"


@dataclass(frozen=True)
class StandInConfig:
    """How one stand-in process is set up (see ``__main__`` for the CLI)."""

    public_url: str
    webhook_urls: tuple[str, ...] = ()
    webhook_secret: str | None = None
    expiry_check_seconds: float = 1.0
    retry_delays: tuple[float, ...] = RETRY_DELAYS


@dataclass
class _IdempotentResult:
    fingerprint: tuple[Any, ...]
    done: asyncio.Event = field(default_factory=asyncio.Event)
    status: int = 0
    body: bytes = b""
    content_type: str = "application/json"


CONFIG = web.AppKey("config", StandInConfig)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
IDEMPOTENCY = web.AppKey("idempotency", dict)


def _json(data: Any, status: int = 200) -> web.Response:
    response: web.Response = ls_server.json_response(data, status=status)
    return response


def _error_response(error: UserError) -> web.Response:
    body = error.body
    if error.code == 402:  # Stripe's type for declines; localstripe says invalid_request_error
        body["error"]["type"] = "card_error"
    return _json(body, status=error.code)


def _stripe_error(
    status: int, message: str, error_type: str = "invalid_request_error"
) -> web.Response:
    return _json({"error": {"type": error_type, "message": message}}, status=status)


# -- middlewares -------------------------------------------------------------


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Stripe-shaped JSON errors under /v1, whatever went wrong."""
    try:
        return await handler(request)
    except UserError as exc:
        return _error_response(exc)
    except web.HTTPException as exc:
        if request.path.startswith("/v1/") and exc.status in (404, 405):
            return _stripe_error(
                404, f"Unrecognized request URL ({request.method}: {request.path})."
            )
        raise
    except Exception:
        if not request.path.startswith("/v1/"):
            raise
        log.exception("%s %s failed", request.method, request.path)
        return _stripe_error(500, "The local Stripe stand-in failed; see its log.", "api_error")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The API needs a secret key (localstripe's check); pages and hooks do not."""
    if request.path.startswith("/v1/"):
        response: web.StreamResponse = await ls_server.auth_middleware(request, handler)
        return response
    return await handler(request)


def _fingerprint(request: web.Request, body: bytes) -> tuple[Any, ...]:
    if request.content_type == "application/x-www-form-urlencoded":
        params = sorted(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        return (request.path, tuple(params))
    return (request.path, body)


@web.middleware
async def idempotency_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Stripe's idempotent requests: same key and parameters, same answer.

    Like Stripe, a key reused with other parameters is an ``idempotency_error``,
    a concurrent duplicate waits for the first request, and results that did
    not start a change (validation errors, 5xx) are not kept, so a retry runs
    again. Successes and card declines (402) are kept and replayed.
    """
    key = request.headers.get("Idempotency-Key")
    if request.method != "POST" or not key or not request.path.startswith("/v1/"):
        return await handler(request)
    body = await request.read()
    fingerprint = _fingerprint(request, body)
    scope = (request.headers.get("Authorization", ""), key)
    cache: dict[tuple[str, str], _IdempotentResult] = request.app[IDEMPOTENCY]
    while (entry := cache.get(scope)) is not None:
        if not entry.done.is_set():
            await entry.done.wait()
            continue
        if entry.fingerprint != fingerprint:
            return _json(
                {
                    "error": {
                        "type": "idempotency_error",
                        "message": "Keys for idempotent requests can only be used with the same "
                        "parameters they were first used with. Try using a key other than "
                        f"'{key}' if you meant to execute a different request.",
                    }
                },
                status=400,
            )
        return web.Response(
            status=entry.status,
            body=entry.body,
            content_type=entry.content_type,
            headers={"Idempotent-Replayed": "true", "Idempotency-Key": key},
        )
    entry = _IdempotentResult(fingerprint=fingerprint)
    cache[scope] = entry
    keep = False
    try:
        try:
            response = await handler(request)
        except UserError as exc:
            response = _error_response(exc)
        if isinstance(response, web.Response) and isinstance(response.body, bytes):
            keep = 200 <= response.status < 300 or response.status == 402
            entry.status = response.status
            entry.body = response.body
            entry.content_type = response.content_type
        return response
    finally:
        if not keep:
            cache.pop(scope, None)
        entry.done.set()


# -- request helpers -----------------------------------------------------------


async def _form(request: web.Request) -> dict[str, Any]:
    """Parameters as the Stripe SDK sends them (form-encoded, bracketed keys)."""
    data = await ls_server.get_post_data(request)
    return dict(data) if data else {}


def _query(request: web.Request) -> dict[str, Any]:
    data = ls_server.unflatten_data(request.query)
    return dict(data) if data else {}


async def _body(request: web.Request) -> dict[str, Any]:
    """JSON or form body of a test hook; empty when there is none."""
    if not request.can_read_body:
        return {}
    if request.content_type == "application/json":
        try:
            data = await request.json()
        except json.JSONDecodeError as exc:
            raise UserError(400, f"Invalid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise UserError(400, "Expected a JSON object")
        return data
    return await _form(request)


def _session(request: web.Request) -> CheckoutSession:
    return CheckoutSession._get(request.match_info["id"])


# -- Checkout Sessions API -----------------------------------------------------


async def create_session(request: web.Request) -> web.Response:
    data = await _form(request)
    expand = data.pop("expand", None)
    session = CheckoutSession(public_url=request.app[CONFIG].public_url, **data)
    return _json(session._export(expand=expand))


async def retrieve_session(request: web.Request) -> web.Response:
    expand = _query(request).pop("expand", None)
    return _json(_session(request)._export(expand=expand))


async def list_sessions(request: web.Request) -> web.Response:
    params = _query(request)
    expand = params.pop("expand", None)
    payment_intent = params.pop("payment_intent", None)
    status = params.pop("status", None)
    client_reference_id = params.pop("client_reference_id", None)
    now = time.time()
    for session in CheckoutSession._all():
        session._expire_if_due(now)
    result = patches.windowed_list(
        CheckoutSession.object,
        "/v1/checkout/sessions",
        limit=params.pop("limit", None),
        starting_after=params.pop("starting_after", None),
        created=params.pop("created", None),
        extra=params,
        where=[
            lambda s: payment_intent is None or s.payment_intent == payment_intent,
            lambda s: status is None or s.status == status,
            lambda s: client_reference_id is None or s.client_reference_id == client_reference_id,
        ],
    )
    return _json(result._export(expand=expand))


async def expire_session(request: web.Request) -> web.Response:
    data = await _form(request)
    expand = data.pop("expand", None)
    session = _session(request)
    session._expire()
    return _json(session._export(expand=expand))


async def session_line_items(request: web.Request) -> web.Response:
    return _json(_session(request)._line_items_list())


# -- Disputes API (read-only; opened and closed through test hooks) ------------


async def retrieve_dispute(request: web.Request) -> web.Response:
    expand = _query(request).pop("expand", None)
    dispute = ls.store.get("dispute:" + request.match_info["id"])
    if dispute is None:
        raise UserError(
            404,
            f"No such dispute: '{request.match_info['id']}'",
            {"code": "resource_missing", "param": "dispute"},
        )
    return _json(dispute._export(expand=expand))


async def list_disputes(request: web.Request) -> web.Response:
    params = _query(request)
    expand = params.pop("expand", None)
    charge = params.pop("charge", None)
    payment_intent = params.pop("payment_intent", None)
    result = patches.windowed_list(
        Dispute.object,
        "/v1/disputes",
        limit=params.pop("limit", None),
        starting_after=params.pop("starting_after", None),
        created=params.pop("created", None),
        extra=params,
        where=[
            lambda d: charge is None or d.charge == charge,
            lambda d: payment_intent is None or d.payment_intent == payment_intent,
        ],
    )
    return _json(result._export(expand=expand))


# -- Billing: subscriptions and their invoices (billing.py) ----------------------------


async def retrieve_subscription(request: web.Request) -> web.Response:
    expand = _query(request).pop("expand", None)
    return _json(billing.Subscription._get(request.match_info["id"])._export(expand=expand))


async def update_subscription(request: web.Request) -> web.Response:
    data = await _form(request)
    expand = data.pop("expand", None)
    subscription = billing.Subscription._get(request.match_info["id"])
    subscription._update(**data)
    return _json(subscription._export(expand=expand))


async def cancel_subscription(request: web.Request) -> web.Response:
    subscription = billing.Subscription._get(request.match_info["id"])
    subscription._cancel()
    return _json(subscription._export())


async def retrieve_invoice(request: web.Request) -> web.Response:
    expand = _query(request).pop("expand", None)
    return _json(billing.Invoice._get(request.match_info["id"])._export(expand=expand))


async def list_invoices(request: web.Request) -> web.Response:
    params = _query(request)
    subscription = params.pop("subscription", None)
    if not isinstance(subscription, str):
        raise UserError(
            400, "The stand-in lists invoices of one subscription", {"param": "subscription"}
        )
    invoices = sorted(billing.Invoice._of(subscription), key=lambda i: i.created, reverse=True)
    return _json(
        {
            "object": "list",
            "data": [i._export() for i in invoices],
            "has_more": False,
            "url": "/v1/invoices",
        }
    )


async def create_invoice_item(request: web.Request) -> web.Response:
    return _json(billing.add_invoice_item(await _form(request)))


async def create_invoice(request: web.Request) -> web.Response:
    return _json(billing.create_invoice(await _form(request))._export())


async def pay_invoice(request: web.Request) -> web.Response:
    invoice = billing.Invoice._get(request.match_info["id"])
    invoice._pay()
    return _json(invoice._export())


async def create_portal_session(request: web.Request) -> web.Response:
    data = await _form(request)
    session = billing.PortalSession(
        customer=data.get("customer", ""),
        return_url=data.get("return_url", ""),
        public_url=request.app[CONFIG].public_url,
    )
    return _json(session._export())


async def show_card_page(request: web.Request) -> web.Response:
    try:
        session = billing.PortalSession._get(request.match_info["id"])
    except UserError:
        return _html(page.not_found(request.match_info["id"]), status=404)
    return _html(page.card_page(session))


async def submit_card_page(request: web.Request) -> web.StreamResponse:
    try:
        session = billing.PortalSession._get(request.match_info["id"])
    except UserError:
        return _html(page.not_found(request.match_info["id"]), status=404)
    action = (await request.post()).get("action")
    if action not in ("save", "decline"):
        return _html(page.card_page(session), status=400)
    session._save_card(declines=action == "decline")
    raise web.HTTPSeeOther(session.return_url)


async def hook_advance_subscription(request: web.Request) -> web.Response:
    """End the subscription's current period now (renew, skip when paused, or end it);
    answers the subscription and the renewal invoice (None when none was charged)."""
    subscription = billing.Subscription._get(request.match_info["id"])
    invoice = subscription._advance()
    return _json(
        {
            "subscription": subscription._export(),
            "invoice": invoice._export() if invoice is not None else None,
        }
    )


async def hook_customer_card(request: web.Request) -> web.Response:
    """Swap the customer's card: JSON ``{"declines": true}`` makes the next charges fail."""
    data = await _body(request)
    customer = ls.Customer._api_retrieve(request.match_info["id"])
    customer._card_declines = bool(data.get("declines"))
    return _json({"id": customer.id, "declines": customer._card_declines})


# -- hosted page -------------------------------------------------------------------


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html")


async def show_page(request: web.Request) -> web.Response:
    try:
        session = _session(request)
    except UserError:
        return _html(page.not_found(request.match_info["id"]), status=404)
    return _html(page.render(session, session._decline_message))


async def submit_page(request: web.Request) -> web.StreamResponse:
    try:
        session = _session(request)
    except UserError:
        return _html(page.not_found(request.match_info["id"]), status=404)
    form = await request.post()
    action = form.get("action")
    email = form.get("email")
    email_text = email.strip() if isinstance(email, str) and email.strip() else None
    if session.status != "open":
        return _html(page.render(session), status=409)
    if action == "pay":
        session._pay(email_text)
        raise web.HTTPSeeOther(session._success_redirect())
    if action == "decline":
        message = session._decline(email_text)
        return _html(page.render(session, message))
    return _html(page.render(session, "Choose Pay or Decline."), status=400)


# -- test hooks ---------------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    return _json(
        {
            "status": "ok",
            "localstripe": localstripe_version,
            "webhook_endpoints": webhooks.endpoint_ids(),
            "pending_deliveries": request.app[DISPATCHER].pending(),
        }
    )


async def hook_complete(request: web.Request) -> web.Response:
    data = await _body(request)
    session = _session(request)
    session._pay(data.get("email"))
    return _json(session._export(expand=data.get("expand")))


async def hook_decline(request: web.Request) -> web.Response:
    data = await _body(request)
    session = _session(request)
    session._decline(data.get("email"))
    return _json(session._export(expand=data.get("expand")))


async def hook_expire_now(request: web.Request) -> web.Response:
    session = _session(request)
    session._expire()
    return _json(session._export())


async def fire_event(request: web.Request) -> web.Response:
    """Send any event as given (ids, created and order chosen by the test)."""
    event = InjectedEvent(await _body(request))
    webhooks.schedule(event)
    return _json(event._export())


async def redeliver_event(request: web.Request) -> web.Response:
    event = ls.Event._api_retrieve(request.match_info["id"])
    queued = webhooks.redeliver(event)
    return _json({"id": event.id, "type": event.type, "queued": queued})


async def deliveries(request: web.Request) -> web.Response:
    return _json(
        {
            "object": "list",
            "data": webhooks.records(
                event_id=request.query.get("event_id"), event_type=request.query.get("type")
            ),
            "pending": request.app[DISPATCHER].pending(),
        }
    )


async def drain(request: web.Request) -> web.Response:
    """Answer once every queued webhook has been delivered (or has given up)."""
    try:
        timeout = float(request.query.get("timeout", "10"))
    except ValueError as exc:
        raise UserError(400, "timeout must be a number of seconds") from exc
    finished = await request.app[DISPATCHER].drain(timeout)
    return _json({"drained": finished}, status=200 if finished else 504)


async def open_dispute(request: web.Request) -> web.Response:
    """Open a dispute on a charge: ``charge``, optional ``amount`` (default: all that is left)
    and ``reason``; withdraws the amount and the dispute fee like Stripe."""
    data = await _body(request)
    charge_id = data.get("charge")
    if not isinstance(charge_id, str):
        raise UserError(400, "charge is required", {"param": "charge"})
    charge = ls.Charge._api_retrieve(charge_id)
    amount = ls.try_convert_to_int(data.get("amount"))
    if amount is not None and (not isinstance(amount, int) or isinstance(amount, bool)):
        raise UserError(
            400,
            f"Invalid integer: {data.get('amount')}",
            {"param": "amount", "code": "parameter_invalid_integer"},
        )
    dispute = Dispute._open(charge, amount, str(data.get("reason") or "fraudulent"))
    return _json(dispute._export())


async def close_dispute(request: web.Request) -> web.Response:
    data = await _body(request)
    dispute = ls.store.get("dispute:" + request.match_info["id"])
    if not isinstance(dispute, Dispute):
        raise UserError(404, f"No such dispute: '{request.match_info['id']}'")
    dispute._close(str(data.get("status") or ""))
    return _json(dispute._export())


def _automatic_payout(request: web.Request) -> AutomaticPayout:
    payout = ls.store.get("payout:" + request.match_info["id"])
    if not isinstance(payout, AutomaticPayout):
        raise UserError(404, f"No such automatic payout: '{request.match_info['id']}'")
    return payout


async def hook_run_payouts(request: web.Request) -> web.Response:
    """Pay out the available balance now: one automatic payout per currency.

    JSON body, all optional: ``currency`` (only that one), ``arrival_date``
    (Unix time; default today 00:00 UTC), ``status`` (``paid``, the default,
    sends ``payout.created`` and ``payout.paid``; ``pending`` or
    ``in_transit`` only ``payout.created``). Answers the list of payouts made
    (empty when there was nothing to pay out).
    """
    data = await _body(request)
    currency = data.get("currency")
    if currency is not None and not (isinstance(currency, str) and len(currency) == 3):
        raise UserError(400, "currency must be a three-letter code", {"param": "currency"})
    arrival = ls.try_convert_to_int(data.get("arrival_date"))
    if arrival is not None and not isinstance(arrival, int):
        raise UserError(400, "arrival_date must be a Unix time", {"param": "arrival_date"})
    payouts = run_payouts(
        currency.lower() if isinstance(currency, str) else None,
        arrival,
        str(data.get("status") or "paid"),
    )
    return _json({"object": "list", "data": [p._export() for p in payouts]})


async def hook_pay_payout(request: web.Request) -> web.Response:
    payout = _automatic_payout(request)
    payout._pay()
    return _json(payout._export())


async def hook_fail_payout(request: web.Request) -> web.Response:
    data = await _body(request)
    code = str(data.get("failure_code") or "account_closed")
    if code not in PAYOUT_FAILURES:
        raise UserError(
            400,
            f"failure_code must be one of {', '.join(PAYOUT_FAILURES)}",
            {"param": "failure_code"},
        )
    payout = _automatic_payout(request)
    payout._fail(code)
    return _json(payout._export())


async def unregister_webhook(request: web.Request) -> web.Response:
    if not webhooks.unregister_endpoint(request.match_info["id"]):
        raise UserError(404, "No such webhook endpoint")
    return web.Response()


async def reset(request: web.Request) -> web.Response:
    """Forget every object, event, idempotency key and delivery; keep the endpoints."""
    await request.app[DISPATCHER].drain(5.0)
    ls.store.clear()
    request.app[IDEMPOTENCY].clear()
    request.app[DISPATCHER].forget()
    return _json({"reset": True})


# -- assembly --------------------------------------------------------------------


def _add_extension_routes(app: web.Application) -> None:
    router = app.router
    router.add_post("/v1/checkout/sessions", create_session)
    router.add_get("/v1/checkout/sessions", list_sessions)
    router.add_get("/v1/checkout/sessions/{id}", retrieve_session)
    router.add_post("/v1/checkout/sessions/{id}/expire", expire_session)
    router.add_get("/v1/checkout/sessions/{id}/line_items", session_line_items)
    router.add_get("/v1/disputes", list_disputes)
    router.add_get("/v1/disputes/{id}", retrieve_dispute)

    router.add_get("/v1/subscriptions/{id}", retrieve_subscription)
    router.add_post("/v1/subscriptions/{id}", update_subscription)
    router.add_delete("/v1/subscriptions/{id}", cancel_subscription)
    router.add_get("/v1/invoices", list_invoices)
    router.add_post("/v1/invoices", create_invoice)
    router.add_post("/v1/invoiceitems", create_invoice_item)
    router.add_get("/v1/invoices/{id}", retrieve_invoice)
    router.add_post("/v1/invoices/{id}/pay", pay_invoice)

    router.add_post("/v1/billing_portal/sessions", create_portal_session)
    router.add_get("/billing_portal/{id}", show_card_page)
    router.add_post("/billing_portal/{id}", submit_card_page)
    router.add_get("/checkout/pay/{id}", show_page)
    router.add_post("/checkout/pay/{id}", submit_page)

    router.add_delete("/_config/webhooks/{id}", unregister_webhook)
    router.add_get("/_standin/health", health)
    router.add_post("/_standin/checkout/sessions/{id}/complete", hook_complete)
    router.add_post("/_standin/checkout/sessions/{id}/decline", hook_decline)
    router.add_post("/_standin/checkout/sessions/{id}/expire-now", hook_expire_now)
    router.add_post("/_standin/events", fire_event)
    router.add_post("/_standin/events/{id}/redeliver", redeliver_event)
    router.add_get("/_standin/deliveries", deliveries)
    router.add_post("/_standin/webhooks/drain", drain)
    router.add_post("/_standin/disputes", open_dispute)
    router.add_post("/_standin/disputes/{id}/close", close_dispute)
    router.add_post("/_standin/payouts", hook_run_payouts)
    router.add_post("/_standin/payouts/{id}/pay", hook_pay_payout)
    router.add_post("/_standin/payouts/{id}/fail", hook_fail_payout)
    router.add_post("/_standin/subscriptions/{id}/advance", hook_advance_subscription)
    router.add_post("/_standin/customers/{id}/card", hook_customer_card)
    router.add_post("/_standin/reset", reset)


def _add_localstripe_routes(app: web.Application) -> None:
    for route in ls_server.app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if path is None:
            continue
        app.router.add_route(route.method, path, route.handler)


async def _expire_sessions(interval: float) -> None:
    """Expire open sessions whose ``expires_at`` passed, as Stripe does on its own."""
    while True:
        await asyncio.sleep(interval)
        now = time.time()
        for session in CheckoutSession._all():
            session._expire_if_due(now)


def create_app(config: StandInConfig) -> web.Application:
    """The stand-in application; state is process-wide, so one per process."""
    patches.apply()
    ls.store.clear()
    app = web.Application(middlewares=[error_middleware, auth_middleware, idempotency_middleware])
    app[CONFIG] = config
    dispatcher = Dispatcher(retry_delays=config.retry_delays)
    app[DISPATCHER] = dispatcher
    app[IDEMPOTENCY] = {}
    for index, url in enumerate(config.webhook_urls):
        if not config.webhook_secret:
            raise ValueError("a webhook URL needs a webhook secret")
        webhooks.register_endpoint(
            f"{CLI_ENDPOINT_PREFIX}{index}", url, config.webhook_secret, None
        )
    _add_extension_routes(app)
    _add_localstripe_routes(app)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await dispatcher.start()
        webhooks.install(dispatcher)
        expiry = asyncio.create_task(_expire_sessions(config.expiry_check_seconds))
        yield
        expiry.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await expiry
        webhooks.install(None)
        await dispatcher.close()

    app.cleanup_ctx.append(lifecycle)
    return app
