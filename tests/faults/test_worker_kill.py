"""A worker killed (SIGKILL) while sales are being written: nothing lost, nothing doubled.

The portal runs as a real server process (``uvicorn portal.asgi:app``) on the
test's database — SQLite and PostgreSQL. Many requests that create money are
in flight when the process is killed; a new process is started on the same
port and the requests are sent again, as a browser or Stripe would:

* front-desk cash sales: every form is posted again with the same fields (its
  one-time ``request_key`` included), those that were answered too (a
  double submit);
* online checkouts paid in the Stripe stand-in: the webhook deliveries cut
  by the kill are redelivered, and then every event once more.

Afterwards every sale a client was told about exists and is paid exactly
once, each form made one sale, no payment or journal entry is doubled, no
sale is half-written (credits, payment and journal lines all there or none),
and the journal balances.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench import load
from portal.auth.service import CLIENT, MANAGER
from portal.ledger.tables import JournalEntry, JournalLine
from portal.payments.tables import Payment, StripeEvent
from portal.reports import totals
from portal.sales.tables import Sale, SaleSession
from tests import factories
from tests.conftest import TEST_DATABASE_URL, Database
from tests.payments.helpers import make_package
from tests.servers import SERVER_POOL
from tests.stripe_standin import StandIn

FRONT_DESK_SALES = 16
CHECKOUTS = 8
SESSIONS = 5


@dataclass
class Shop:
    location_id: int
    package_id: int
    client: factories.Account
    manager: factories.Account


@pytest.fixture
async def shop(db: Database) -> Shop:
    location = await factories.make_location(slug="killed", tax_rate_bp=825)
    package = await make_package(sessions=SESSIONS)
    client = await factories.make_user(CLIENT)
    manager = await factories.make_user(MANAGER, location_ids=[location])
    return Shop(location, package, client, manager)


class Server:
    """The portal in its own process on a fixed port, which can be killed and started again."""

    def __init__(self, database_url: str, standin: StandIn, log_dir: Path) -> None:
        self.port = load.free_port()
        self.env = load.app_env(database_url, self.port, standin.base_url, **SERVER_POOL)
        self.log_dir = log_dir
        self.starts = 0
        self.process: load.AppProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        self.process = load.AppProcess(
            self.port, self.env, self.log_dir / f"server-{self.starts}.log"
        )
        self.process.start()
        self.process.wait_ready()

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.stop()  # closes the log

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@pytest.fixture
def database_url(db: Database) -> str:
    if db.kind == "sqlite":
        assert db.engine is not None
        return f"sqlite:///{db.engine.connection_kwargs['database']}"
    return TEST_DATABASE_URL


@pytest.fixture
def server(
    database_url: str, stripe_standin: StandIn, tmp_path: Path, shop: Shop
) -> Iterator[Server]:
    server = Server(database_url, stripe_standin, tmp_path)
    server.start()
    endpoint = f"kill-{server.port}"
    load.register_webhook(stripe_standin.base_url, endpoint, f"{server.url}/stripe/webhook")
    try:
        yield server
    finally:
        load.unregister_webhook(stripe_standin.base_url, endpoint)
        server.stop()


@contextlib.asynccontextmanager
async def signed_in(server: Server, account: factories.Account) -> AsyncIterator[httpx.AsyncClient]:
    # No keep-alive: after the restart every request opens a fresh connection.
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as client:
        page = await client.get("/login")
        fields = load.form_fields(page.text, "/login") or {}
        fields.update(email=account.email, password=account.password)
        assert (await client.post("/login", data=fields)).status_code == 303
        yield client


async def _sales_of(client_id: int) -> list[dict[str, Any]]:
    return await Sale.select().where(Sale.client == client_id).order_by(Sale.id).run()


async def _assert_paid_once(sale_id: int, lines: int) -> None:
    """Active, one succeeded payment, all its credits, its journal lines once.

    ``lines``: 3 for the sale (cash or clearing / deferred revenue / tax), 2 more
    for a card payment's Stripe fee.
    """
    sale = await Sale.select().where(Sale.id == sale_id).first().run()
    assert sale is not None, f"sale {sale_id} was answered but does not exist"
    assert sale["status"] == "active", sale
    payments = await Payment.select().where(Payment.sale == sale_id).run()
    assert [p["status"] for p in payments] == ["succeeded"], payments
    assert await SaleSession.count().where(SaleSession.sale == sale_id).run() == SESSIONS
    assert await JournalEntry.exists().where(JournalEntry.event_key == f"sale:{sale_id}:paid").run()
    assert await JournalLine.count().where(JournalLine.sale_id == sale_id).run() == lines


async def _assert_whole(database_url: str) -> None:
    assert await load.integrity_problems(database_url) == {}
    # A killed worker leaves no row without its daily total, nor a total without its row.
    assert [d.line() for d in (await totals.verify()).differences] == []


async def test_front_desk_sales_survive_a_killed_worker(
    shop: Shop, server: Server, database_url: str
) -> None:
    async with signed_in(server, shop.manager) as http:
        forms = []
        for _ in range(FRONT_DESK_SALES):
            page = await http.get(f"/sales/new?location={shop.location_id}")
            fields = load.form_fields(page.text, "/sales")
            assert fields and fields.get("request_key"), "the form carries a one-time token"
            fields.update(
                client_email=shop.client.email,
                location_id=str(shop.location_id),
                package_id=str(shop.package_id),
                method="cash",
            )
            forms.append(fields)
        assert len({f["request_key"] for f in forms}) == FRONT_DESK_SALES

        async def send(fields: dict[str, str], n: int) -> int | None:
            """The sale the answer names, or None when the answer never came.

            The forms go out 25 ms apart, so that when the first answer arrives
            and the worker is killed, later ones are still on their way (sent
            at once, a fast machine answers all sixteen before the kill lands).
            """
            await asyncio.sleep(n * 0.025)
            try:
                response = await http.post("/sales", data=fields)
            except httpx.TransportError:
                return None
            assert response.status_code == 303, response.text[:300]
            match = load.SALE_RE.match(response.headers["location"])
            assert match, response.headers["location"]
            return int(match.group(1))

        tasks = [asyncio.create_task(send(fields, n)) for n, fields in enumerate(forms)]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        server.kill()  # the others are in flight
        first = await asyncio.gather(*tasks)
        answered = {i: sale for i, sale in enumerate(first) if sale is not None}
        assert answered, "one sale was answered before the kill"
        assert len(answered) < FRONT_DESK_SALES, "the kill came while sales were in flight"
        # Whatever the kill cut is either all there or not at all.
        await _assert_whole(database_url)
        written = await _sales_of(shop.client.id)
        assert len(answered) <= len(written) <= FRONT_DESK_SALES

        server.start()
        # The browser resends what got no answer; the impatient clerk resends the rest.
        again = [await send(fields, 0) for fields in forms]

    assert all(sale is not None for sale in again)
    for i, sale_id in answered.items():
        assert again[i] == sale_id, "a resent form names the sale it already made"
    sales = await _sales_of(shop.client.id)
    assert len(sales) == FRONT_DESK_SALES, "one sale per form, none lost, none doubled"
    assert sorted(s["id"] for s in sales) == sorted(again)  # type: ignore[type-var]
    assert {s["request_key"] for s in sales} == {f["request_key"] for f in forms}
    for sale in sales:
        await _assert_paid_once(int(sale["id"]), lines=3)
    await _assert_whole(database_url)


async def _deliveries(standin: StandIn, endpoint: str) -> list[dict[str, Any]]:
    return [d for d in await standin.deliveries() if d["endpoint_id"] == endpoint]


async def test_checkout_webhooks_survive_a_killed_worker(
    shop: Shop, server: Server, database_url: str, stripe_standin: StandIn
) -> None:
    endpoint = f"kill-{server.port}"
    async with signed_in(server, shop.client) as http:
        sessions = []
        for _ in range(CHECKOUTS):
            path = f"/buy/{shop.package_id}"
            page = await http.get(f"{path}?location=killed")
            response = await http.post(path, data=load.form_fields(page.text, path) or {})
            assert response.status_code == 303, response.text[:300]
            sessions.append(response.headers["location"].rsplit("/", 1)[-1])
    sales = await _sales_of(shop.client.id)
    assert [s["status"] for s in sales] == ["pending"] * CHECKOUTS

    # Every checkout is paid at once; the worker dies after the first deliveries.
    await asyncio.gather(*(stripe_standin.complete_session(s) for s in sessions))
    deadline = time.monotonic() + 20
    while sum(d["status"] == 200 for d in await _deliveries(stripe_standin, endpoint)) < 2:
        assert time.monotonic() < deadline, "no webhook reached the portal"
        await asyncio.sleep(0.02)
    server.kill()
    await _assert_whole(database_url)
    paid_before = [s for s in await _sales_of(shop.client.id) if s["status"] == "active"]
    assert len(paid_before) < CHECKOUTS

    # While the new process starts, deliveries fail (connection refused) until
    # their retries are spent; later ones reach the new process.
    server.start()
    await stripe_standin.drain(timeout=30)
    records = await _deliveries(stripe_standin, endpoint)
    assert any(d["status"] is None for d in records), "deliveries were cut by the kill"
    # Stripe retries what never got through; then, for good measure, sends every event again.
    events = list(dict.fromkeys(d["event_id"] for d in records))
    failed = [e for e in events if not any(
        d["event_id"] == e and d["status"] == 200 for d in records
    )]  # fmt: skip
    assert failed
    for event_id in failed:
        await stripe_standin.redeliver(event_id)
    await stripe_standin.drain(timeout=30)
    for event_id in events:
        await stripe_standin.redeliver(event_id)
    await stripe_standin.drain(timeout=30)

    after = [d for d in await _deliveries(stripe_standin, endpoint) if d not in records]
    assert after and all(d["status"] == 200 for d in after), after
    sales = await _sales_of(shop.client.id)
    assert len(sales) == CHECKOUTS
    for sale in sales:
        await _assert_paid_once(int(sale["id"]), lines=5)
    unprocessed = (
        await StripeEvent.count()
        .where(StripeEvent.event_id.is_in(events) & StripeEvent.processed_at.is_null())
        .run()
    )
    assert unprocessed == 0
    await _assert_whole(database_url)


async def test_a_resent_front_desk_form_records_one_sale(
    shop: Shop, app: Any, database_url: str
) -> None:
    """In process: the same form twice, then five times at once, is one sale each time."""
    async with factories.make_client(app) as http:
        await factories.login(http, shop.manager)

        async def form() -> dict[str, str]:
            page = await http.get("/sales/new")
            fields = load.form_fields(page.text, "/sales") or {}
            fields.update(
                client_email=shop.client.email,
                location_id=str(shop.location_id),
                package_id=str(shop.package_id),
                method="cash",
            )
            return fields

        fields = await form()
        first = await http.post("/sales", data=fields)
        second = await http.post("/sales", data=fields)
        assert first.status_code == second.status_code == 303
        assert first.headers["location"] == second.headers["location"]
        assert len(await _sales_of(shop.client.id)) == 1

        fields = await form()
        answers = await asyncio.gather(*(http.post("/sales", data=fields) for _ in range(5)))
        assert {a.status_code for a in answers} == {303}
        assert len({a.headers["location"] for a in answers}) == 1
        assert len(await _sales_of(shop.client.id)) == 2

        # A fresh form is a new sale; a form with a forged token is an ordinary sale.
        fields = await form()
        assert (await http.post("/sales", data=fields)).status_code == 303
        forged = {**(await form()), "request_key": "<script>" * 20}
        assert (await http.post("/sales", data=forged)).status_code == 303
        assert (await http.post("/sales", data=forged)).status_code == 303
    sales = await _sales_of(shop.client.id)
    assert len(sales) == 5
    for sale in sales:
        await _assert_paid_once(int(sale["id"]), lines=3)
    await _assert_whole(database_url)
