"""Every request has an id: made here, or handed in by a trusted proxy only; echoed in
the ``X-Request-ID`` header, on the error pages ("quote this reference") and in the
request's log lines."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from portal.dashboard import controllers as dashboard
from tests import factories
from tests.conftest import shared_app
from tests.operations.helpers import captured, client_from

GENERATED = re.compile(r"[0-9a-f]{16}")
PEER = "203.0.113.7"  # factories.make_client's peer address


def proxied(settings, trusted: str = PEER):
    """The app as deployed behind a reverse proxy at ``trusted``."""
    return shared_app(replace(settings, forwarded_allow_ips=trusted))


async def test_each_request_gets_a_new_id_echoed_in_the_header(client):
    first = await client.get("/login")
    second = await client.get("/login")
    ids = [first.headers["x-request-id"], second.headers["x-request-id"]]
    assert all(GENERATED.fullmatch(i) for i in ids)
    assert ids[0] != ids[1]


async def test_an_id_sent_by_anyone_but_the_proxy_is_ignored(client):
    response = await client.get("/login", headers={"x-request-id": "planted-by-a-visitor"})
    assert response.headers["x-request-id"] != "planted-by-a-visitor"
    assert GENERATED.fullmatch(response.headers["x-request-id"])


async def test_the_trusted_proxys_id_is_kept(settings, db):
    async with factories.make_client(proxied(settings)) as via_proxy:
        response = await via_proxy.get("/login", headers={"x-request-id": "edge-4f1c.77:a"})
    assert response.headers["x-request-id"] == "edge-4f1c.77:a"


@pytest.mark.parametrize("incoming", ["", "has space", "x" * 129, 'quote"d', "-leading-dash"])
async def test_a_proxys_malformed_id_is_replaced(settings, db, incoming):
    async with factories.make_client(proxied(settings)) as via_proxy:
        response = await via_proxy.get("/login", headers={"x-request-id": incoming})
    assert GENERATED.fullmatch(response.headers["x-request-id"])


async def test_a_proxy_in_a_trusted_network_is_believed_a_peer_outside_is_not(settings, db):
    app = proxied(settings, "203.0.113.0/28, 10.0.0.5")
    async with factories.make_client(app) as inside:
        assert (await inside.get("/login", headers={"x-request-id": "abc123"})).headers[
            "x-request-id"
        ] == "abc123"
    async with client_from(app, "203.0.113.99") as outside:
        response = await outside.get("/login", headers={"x-request-id": "abc123"})
    assert response.headers["x-request-id"] != "abc123"


async def test_the_404_page_quotes_the_reference(client):
    response = await client.get("/no/such/page")
    assert response.status_code == 404
    reference = response.headers["x-request-id"]
    assert f'quote this reference: <code class="reference">{reference}</code>' in response.text


async def test_the_403_page_quotes_the_reference(app, db):
    visitor = await factories.make_user("client")
    async with factories.make_client(app) as client:
        await factories.login(client, visitor)
        response = await client.get("/outbox")
    assert response.status_code == 403
    assert response.headers["x-request-id"] in response.text
    assert "quote this reference" in response.text


async def test_the_500_page_quotes_the_reference_its_traceback_carries(owner_client, monkeypatch):
    async def broken() -> dict:
        raise RuntimeError("the dashboard's figures could not be built")

    monkeypatch.setattr(dashboard.service, "owner_summary", broken)
    with captured() as log:
        response = await owner_client.get("/")
    assert response.status_code == 500
    reference = response.headers["x-request-id"]
    assert "quote this reference" in response.text and reference in response.text
    assert "could not be built" not in response.text  # no internal detail on the page
    lines = log.json_lines()
    crash = next(line for line in lines if line["logger"] == "portal.errors")
    assert crash["request_id"] == reference
    assert "RuntimeError: the dashboard's figures could not be built" in crash["exception"]
    request = next(line for line in lines if line["logger"] == "portal.request")
    assert (request["request_id"], request["status"], request["level"]) == (
        reference,
        500,
        "error",
    )


async def test_json_errors_carry_the_reference_too(client):
    response = await client.get("/api/v1/no-such-thing")
    assert response.status_code == 404
    assert response.json()["reference"] == response.headers["x-request-id"]
