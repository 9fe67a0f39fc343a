"""The gateway's parts that need no Stripe: parsing, errors, signatures, config."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator

import pytest

from bench.load import free_port
from portal.payments import gateway as gw
from portal.settings import ConfigurationError, Settings
from stripe_standin import constants
from stripe_standin.webhooks import signature_header

pytestmark = pytest.mark.filterwarnings(
    # The SDK's httpx client posts form bodies as ``data=str``.
    "ignore:Use 'content=<...>' to upload raw bytes/text content.:DeprecationWarning"
)

SECRET = "whsec_unit_test_secret"


def make_gateway(**options: object) -> gw.StripeGateway:
    return gw.StripeGateway(
        api_key="sk_test_unit", webhook_secret=SECRET, api_base="http://127.0.0.1:9", **options
    )


def event_body(event_id: str = "evt_1", event_type: str = "checkout.session.completed") -> bytes:
    event = {
        "id": event_id,
        "object": "event",
        "type": event_type,
        "api_version": gw.API_VERSION,
        "created": 1700000000,
        "data": {"object": {"id": "cs_test_1", "object": "checkout.session"}},
    }
    return json.dumps(event).encode()


def test_stand_in_and_gateway_agree_on_the_api_version_and_key() -> None:
    assert gw.API_VERSION == constants.API_VERSION
    assert gw.STANDIN_API_KEY == constants.STANDIN_API_KEY


def test_settings_without_key_use_the_stand_in(settings: Settings) -> None:
    local = dataclasses.replace(settings, stripe_api_base="http://127.0.0.1:8420")
    gateway = gw.StripeGateway.from_settings(local)
    assert gateway.uses_standin
    assert gateway.api_base == "http://127.0.0.1:8420"


def test_settings_with_key_use_real_stripe(settings: Settings) -> None:
    real = dataclasses.replace(settings, stripe_secret_key="sk_test_real", stripe_api_base="")
    assert not gw.StripeGateway.from_settings(real).uses_standin


def test_settings_with_neither_key_nor_stand_in_are_refused(settings: Settings) -> None:
    bare = dataclasses.replace(settings, stripe_secret_key="", stripe_api_base="")
    with pytest.raises(ConfigurationError, match="STRIPE_SECRET_KEY"):
        gw.StripeGateway.from_settings(bare)


# -- webhook signatures ---------------------------------------------------------


def test_a_signed_event_is_verified_and_returned_as_a_dict() -> None:
    body = event_body()
    event = make_gateway().verify_webhook(body, signature_header(body, SECRET))
    assert event["id"] == "evt_1"
    assert event["data"]["object"]["id"] == "cs_test_1"


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda body, header: (body + b" ", header), id="tampered body"),
        pytest.param(
            lambda body, header: (body, signature_header(body, "whsec_other")), id="wrong secret"
        ),
        pytest.param(
            lambda body, header: (body, signature_header(body, SECRET, timestamp=1_000_000_000)),
            id="too old",
        ),
        pytest.param(lambda body, header: (body, ""), id="missing header"),
        pytest.param(lambda body, header: (body, "garbage"), id="garbage header"),
    ],
)
def test_bad_signatures_are_refused(mangle: object) -> None:
    body = event_body()
    bad_body, bad_header = mangle(body, signature_header(body, SECRET))  # type: ignore[operator]
    with pytest.raises(gw.WebhookSignatureError):
        make_gateway().verify_webhook(bad_body, bad_header)


def test_a_signed_body_that_is_not_an_event_is_refused() -> None:
    body = b'{"hello": "world"}'
    with pytest.raises(gw.WebhookSignatureError, match="not a Stripe event"):
        make_gateway().verify_webhook(body, signature_header(body, SECRET))


def test_without_a_webhook_secret_every_webhook_is_refused() -> None:
    gateway = gw.StripeGateway(api_key="sk_test_unit", api_base="http://127.0.0.1:9")
    body = event_body()
    with pytest.raises(gw.WebhookSignatureError, match="not configured"):
        gateway.verify_webhook(body, signature_header(body, SECRET))


# -- reading Stripe objects -----------------------------------------------------------

CHARGE = {
    "id": "ch_1",
    "object": "charge",
    "amount": 12500,
    "amount_refunded": 2500,
    "currency": "usd",
    "status": "succeeded",
    "paid": True,
    "refunded": False,
    "payment_intent": "pi_1",
    "created": 1700000000,
    "balance_transaction": {
        "id": "txn_1",
        "object": "balance_transaction",
        "amount": 12500,
        "fee": 393,
        "net": 12107,
        "currency": "usd",
        "status": "available",
    },
}


@pytest.mark.parametrize(
    "latest_charge", [pytest.param("ch_1", id="id (Stripe)"), pytest.param(CHARGE, id="expanded")]
)
def test_latest_charge_is_read_as_an_id_or_an_object(latest_charge: object) -> None:
    intent = gw._payment_intent(
        {
            "id": "pi_1",
            "object": "payment_intent",
            "amount": 12500,
            "currency": "usd",
            "status": "succeeded",
            "metadata": {"sale_id": "7"},
            "created": 1700000000,
            "latest_charge": latest_charge,
        }
    )
    assert intent.latest_charge_id == "ch_1"
    assert intent.metadata == {"sale_id": "7"}
    if isinstance(latest_charge, dict):
        assert intent.latest_charge is not None
        assert intent.latest_charge.refundable == 10000
        assert intent.balance_transaction is not None
        assert (intent.balance_transaction.fee, intent.balance_transaction.net) == (393, 12107)
    else:
        assert intent.latest_charge is None


def test_an_unexpected_answer_is_a_gateway_error_not_a_crash() -> None:
    with pytest.raises(gw.GatewayError, match="does not understand"):
        gw._refund({"id": "re_1", "object": "refund", "amount": "lots", "currency": "usd"})


# -- unreachable Stripe ----------------------------------------------------------------


async def test_nothing_listening_is_gateway_unavailable() -> None:
    gateway = gw.StripeGateway(
        api_key="sk_test_unit", api_base=f"http://127.0.0.1:{free_port()}", max_network_retries=0
    )
    try:
        with pytest.raises(gw.GatewayUnavailable) as caught:
            await gateway.retrieve_checkout_session("cs_test_missing")
    finally:
        await gateway.aclose()
    assert caught.value.retryable
    assert "try again" in caught.value.message


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """Accepts connections and never answers: a Stripe that hangs."""

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes
        writer.close()

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield port
    server.close()
    await server.wait_closed()


async def test_a_timeout_is_gateway_unavailable(silent_server: int) -> None:
    gateway = gw.StripeGateway(
        api_key="sk_test_unit",
        api_base=f"http://127.0.0.1:{silent_server}",
        timeout_seconds=0.3,
        max_network_retries=0,
    )
    try:
        with pytest.raises(gw.GatewayUnavailable):
            await gateway.create_refund(
                payment_intent_id="pi_1", amount_cents=100, idempotency_key="refund:1"
            )
    finally:
        await gateway.aclose()


async def test_bad_arguments_fail_before_any_request() -> None:
    gateway = make_gateway()
    with pytest.raises(ValueError, match="exactly one"):
        await gateway.create_refund(amount_cents=100, idempotency_key="refund:x")
    with pytest.raises(ValueError, match="positive"):
        await gateway.create_refund(charge_id="ch_1", amount_cents=0, idempotency_key="refund:y")
    await gateway.aclose()
