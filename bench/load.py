"""Mixed traffic against two portal processes sharing one PostgreSQL database.

``make load`` (or ``.venv/bin/python bench/load.py [--seconds 60]``):

1. **prepare** — resets the PostgreSQL database ``portal_load`` (created if
   missing), migrates it, loads the demo data and adds load clients, each
   with a paid 10-session package, so they can book;
2. **cluster** — starts the Stripe stand-in and two ``uvicorn
   portal.asgi:app`` processes on free loopback ports with production
   settings (``DATABASE_URL``, ``SECRET_KEY``, no debug), the stand-in's
   webhooks registered once per process (so every event reaches both, as with
   two endpoints: the duplicate path across processes is exercised too);
3. **drive** — concurrent virtual users, each request going to the other
   process than the one before: staff (owner, managers, accountant) read the
   dashboard, clients, the day schedule and the sales list and record cash
   sales at the front desk; clients search free slots, book and cancel
   (CSRF tokens read from the forms), and buy packages online: the checkout
   is paid in the stand-in, whose signed webhooks activate the sale, and the
   client polls the purchase page until it says so; anonymous visitors read
   the public catalog. Each process's resident memory is sampled every second;
4. **verify** — the journal balances (per entry and in total), no therapist
   or room is double-booked, no credit is held twice, every paid sale has its
   credits, its journal entry and exactly one succeeded payment.

It prints a table and writes ``bench/load-results.json``; the exit status is
1 on any 5xx, transport error, failed check, or resident memory growing more
than ``--rss-growth-mb`` between the 10 s mark and the end.

``tests/faults/test_load_short.py`` runs the same driver for a few seconds in
``make test``; ``tests/faults/test_worker_kill.py`` uses its process helpers
and database checks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import json
import os
import random
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

import httpx

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/portal_load"
RESULTS = ROOT / "bench" / "load-results.json"
SECRET_KEY = "load-test-secret-key-" + "z" * 40
WEBHOOK_SECRET = "whsec_load_0123456789abcdef0123456789"
CLIENT_EMAIL = "load.client{}@load.example"
# The package every load client owns (sold at the front desk before the run).
CLIENT_PACKAGE = "Neuromuscular series — 10 × 60 min"
BOOKED_SERVICE = "Neuromuscular massage, 60 min"
REQUEST_TIMEOUT = 30.0
CONFIRM_TIMEOUT = 30.0
CSRF_RE = re.compile(r'name="_csrf_token" value="([^"]+)"')
FORM_RE = re.compile(r'<form[^>]*method="post"[^>]*action="([^"]+)"[^>]*>(.*?)</form>', re.S)
INPUT_RE = re.compile(r'<input[^>]*type="hidden"[^>]*name="([^"]+)"[^>]*value="([^"]*)"')
ERROR_RE = re.compile(r'class="field-error"[^>]*>([^<]+)<')
SALE_RE = re.compile(r"^/sales/(\d+)$")
APPOINTMENT_RE = re.compile(r"^/appointments/(\d+)$")


def _portal_env() -> None:
    """Importing portal modules builds an engine from the environment: keep it harmless."""
    os.environ.setdefault("PICCOLO_CONF", "portal.piccolo_conf")
    os.environ.setdefault("DATABASE_URL", "sqlite:////tmp/portal-load-unused.sqlite3")
    os.environ.setdefault("SECRET_KEY", SECRET_KEY)


# -- the database ------------------------------------------------------------------------


@dataclass
class Seed:
    """What the driver needs to know about the prepared database."""

    password: str
    locations: list[dict[str, Any]]  # id, slug, timezone
    service_id: int  # the service the load clients' packages are for
    sale_package_id: int  # what managers sell at the front desk
    online: list[tuple[int, str]]  # (package id, location slug) sold online
    staff: list[dict[str, Any]]  # email, role, location ids
    clients: list[str]  # emails of clients with sessions to book

    def location(self, location_id: int) -> dict[str, Any]:
        return next(loc for loc in self.locations if loc["id"] == location_id)


def _split_url(url: str) -> tuple[str, str]:
    match = re.match(r"^(postgres(?:ql)?://[^/]*)/([^?]+)", url)
    if not match:
        raise ValueError(f"not a PostgreSQL URL: {url}")
    return match.group(1), match.group(2)


async def ensure_database(url: str) -> None:
    """Create the PostgreSQL database of ``url`` if it does not exist."""
    import asyncpg

    server, name = _split_url(url)
    conn = await asyncpg.connect(f"{server}/postgres", timeout=10)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def prepare(url: str, *, clients: int = 30) -> Seed:
    """Reset, migrate and fill the database at ``url`` (PostgreSQL); returns the seed.

    Piccolo is bound to this database while it runs and to the previous
    engine again afterwards (the tests call it from inside the suite).
    """
    _portal_env()
    from portal import db
    from portal.auth import passwords
    from portal.auth.service import MANAGER, CurrentUser
    from portal.auth.tables import User, UserLocation
    from portal.catalog import service as catalog
    from portal.catalog.tables import Package, Service
    from portal.clients.tables import ClientProfile
    from portal.demo import DEMO_ACCOUNTS, DEMO_PASSWORD, load_demo
    from portal.locations.tables import Location
    from portal.migrate import apply_migrations
    from portal.payments import service as payments
    from portal.timeutil import utcnow

    await ensure_database(url)
    previous = db.current_engine()
    engine = db.make_engine(url)
    db.bind_engine(engine)
    try:
        await engine.run_ddl("DROP SCHEMA public CASCADE")
        await engine.run_ddl("CREATE SCHEMA public")
        await apply_migrations(quiet=True)
        await load_demo(if_empty=False)
        locations = (
            await Location.select(Location.id, Location.slug, Location.timezone)
            .where(Location.active == True)  # noqa: E712
            .order_by(Location.id)
            .run()
        )
        service = (
            await Service.select(Service.id).where(Service.name == BOOKED_SERVICE).first().run()
        )
        package = (
            await Package.select(Package.id).where(Package.name == CLIENT_PACKAGE).first().run()
        )
        assert service and package, "the demo catalog changed: update bench/load.py"
        now = utcnow()
        online: list[tuple[int, str]] = []
        for row in await Package.select(Package.id).where(Package.active == True).run():  # noqa: E712
            for loc in locations:
                with contextlib.suppress(Exception):
                    await catalog.quote_package(int(row["id"]), int(loc["id"]), now, online=True)
                    online.append((int(row["id"]), str(loc["slug"])))
        owner = await User.select(User.id).where(User.role == "owner").first().run()
        assert owner is not None
        seller = CurrentUser(int(owner["id"]), "owner", "", "owner", frozenset())
        password_hash = passwords.hash_password(DEMO_PASSWORD)
        emails = []
        for i in range(1, clients + 1):
            email = CLIENT_EMAIL.format(i)
            location = locations[i % len(locations)]
            rows = (
                await User.insert(
                    User(
                        email=email,
                        name=f"Load Client {i}",
                        role="client",
                        password_hash=password_hash,
                        active=True,
                        created_at=now,
                        password_changed_at=now,
                    )
                )
                .returning(User.id)
                .run()
            )
            user_id = int(rows[0]["id"])
            await ClientProfile.insert(
                ClientProfile(
                    user=user_id,
                    preferred_location=location["id"],
                    email_reminders=False,
                    terms_accepted_at=now,
                    created_at=now,
                    updated_at=now,
                )
            ).run()
            await payments.record_in_clinic_sale(
                seller,
                client_id=user_id,
                package_id=int(package["id"]),
                location_id=int(location["id"]),
                method="cash",
            )
            emails.append(email)
        staff = []
        for email, role, _name, _slugs in DEMO_ACCOUNTS:
            if role not in ("owner", MANAGER, "accountant"):
                continue
            user = await User.select(User.id).where(User.email == email).first().run()
            assert user is not None
            links = (
                await UserLocation.select(UserLocation.location)
                .where(UserLocation.user == user["id"])
                .run()
            )
            staff.append(
                {"email": email, "role": role, "locations": [int(r["location"]) for r in links]}
            )
        return Seed(
            password=DEMO_PASSWORD,
            locations=[dict(loc) for loc in locations],
            service_id=int(service["id"]),
            sale_package_id=int(package["id"]),
            online=online,
            staff=staff,
            clients=emails,
        )
    finally:
        db.bind_engine(previous)


async def _fetch(url: str, sql: str) -> list[tuple[Any, ...]]:
    if url.startswith("sqlite"):
        path = url.split(":", 1)[1][3:]
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
            return [tuple(row) for row in conn.execute(sql).fetchall()]
    import asyncpg

    conn = await asyncpg.connect(url, timeout=10)
    try:
        return [tuple(row) for row in await conn.fetch(sql)]
    finally:
        await conn.close()


BUSY = "('booked', 'completed', 'no_show')"
INTEGRITY_CHECKS: dict[str, str] = {
    # Debits equal credits, in total and in every entry.
    "journal out of balance": (
        "SELECT currency, SUM(debit_cents), SUM(credit_cents) FROM journal_line "
        "GROUP BY currency HAVING SUM(debit_cents) <> SUM(credit_cents)"
    ),
    "journal entry out of balance": (
        "SELECT entry FROM journal_line GROUP BY entry HAVING SUM(debit_cents) <> SUM(credit_cents)"
    ),
    "journal entry without lines": (
        "SELECT e.id FROM journal_entry e "
        "WHERE NOT EXISTS (SELECT 1 FROM journal_line l WHERE l.entry = e.id)"
    ),
    # No therapist or room busy twice at once.
    "double booking": (
        "SELECT a.id, b.id FROM appointment a JOIN appointment b ON a.id < b.id "
        "AND (a.therapist = b.therapist OR a.room = b.room) "
        "AND a.start_at < b.busy_until AND b.start_at < a.busy_until "
        f"WHERE a.status IN {BUSY} AND b.status IN {BUSY}"
    ),
    "credit held by two bookings": (
        "SELECT sale_session FROM appointment WHERE status = 'booked' "
        "AND sale_session IS NOT NULL GROUP BY sale_session HAVING COUNT(*) > 1"
    ),
    "booking without a held credit": (
        "SELECT a.id FROM appointment a LEFT JOIN sale_session s ON s.id = a.sale_session "
        "WHERE a.status = 'booked' AND (s.id IS NULL OR s.state <> 'held' "
        "OR s.appointment_id <> a.id)"
    ),
    # A paid sale is whole: its journal entry, its credits, one succeeded payment.
    "paid sale without its journal entry": (
        "SELECT s.id FROM sale s WHERE s.status IN ('active', 'refunded') AND NOT EXISTS "
        "(SELECT 1 FROM journal_entry e WHERE e.event_key = 'sale:' || s.id || ':paid')"
    ),
    "paid sale without all its credits": (
        "SELECT s.id FROM sale s WHERE s.status IN ('active', 'refunded') AND "
        "(SELECT COUNT(*) FROM sale_session x WHERE x.sale = s.id) <> s.sessions_total"
    ),
    "paid sale without exactly one succeeded payment": (
        "SELECT s.id FROM sale s WHERE s.status IN ('active', 'refunded') AND "
        "(SELECT COUNT(*) FROM payment p WHERE p.sale = s.id AND p.status = 'succeeded') <> 1"
    ),
    "unpaid sale with credits or journal lines": (
        "SELECT s.id FROM sale s WHERE s.status IN ('pending', 'cancelled') AND ("
        "EXISTS (SELECT 1 FROM sale_session x WHERE x.sale = s.id) OR "
        "EXISTS (SELECT 1 FROM journal_line l WHERE l.sale_id = s.id))"
    ),
    "succeeded payment of an unpaid sale": (
        "SELECT p.id FROM payment p JOIN sale s ON s.id = p.sale "
        "WHERE p.status = 'succeeded' AND s.status IN ('pending', 'cancelled')"
    ),
    "sale journalled twice": (
        "SELECT event_key FROM journal_entry GROUP BY event_key HAVING COUNT(*) > 1"
    ),
}


async def integrity_problems(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Each integrity check that found rows (PostgreSQL or SQLite URL), with up to 10 rows."""
    problems: dict[str, list[tuple[Any, ...]]] = {}
    for name, sql in INTEGRITY_CHECKS.items():
        rows = await _fetch(url, sql)
        if rows:
            problems[name] = rows[:10]
    return problems


async def database_counts(url: str) -> dict[str, int]:
    queries = {
        "sales": "SELECT COUNT(*) FROM sale",
        "sales_paid": "SELECT COUNT(*) FROM sale WHERE status = 'active'",
        "appointments_booked": "SELECT COUNT(*) FROM appointment WHERE status = 'booked'",
        "appointments_cancelled": "SELECT COUNT(*) FROM appointment WHERE status = 'cancelled'",
        "stripe_events": "SELECT COUNT(*) FROM stripe_event",
        "journal_lines": "SELECT COUNT(*) FROM journal_line",
    }
    return {name: int((await _fetch(url, sql))[0][0]) for name, sql in queries.items()}


# -- processes ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int | None:
    """Resident memory of ``pid`` in KiB (psutil when installed, else /proc)."""
    try:
        import psutil  # type: ignore[import-untyped]

        return int(psutil.Process(pid).memory_info().rss // 1024)
    except ImportError:
        pass
    except Exception:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def app_env(database_url: str, port: int, standin_url: str, **extra: str) -> dict[str, str]:
    """The environment of one portal process: production settings, payments to the stand-in."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PICCOLO", "DATABASE", "STRIPE", "PORTAL_", "SMTP"))
    }
    env.update(
        {
            "DATABASE_URL": database_url,
            "SECRET_KEY": SECRET_KEY,
            "BASE_URL": f"http://127.0.0.1:{port}",
            "PICCOLO_CONF": "portal.piccolo_conf",
            "STRIPE_API_BASE": standin_url,
            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        }
    )
    env.update(extra)
    return env


def answered_by(health: httpx.Response, pid: int) -> bool:
    """``/healthz`` answered healthy by the process ``pid``: a port free when chosen
    may have been taken by another process's server since."""
    return health.status_code == 200 and health.json().get("process") == pid


class PortTaken(RuntimeError):
    """A server's port was taken by another process between its choice and the bind."""


@dataclass
class AppProcess:
    """One ``uvicorn portal.asgi:app`` process on a loopback port."""

    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    _log: TextIO | None = None
    _log_from: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        self._log = self.log_path.open("a")
        self._log_from = self._log.tell()  # this start's output only (the log appends)
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "uvicorn", "portal.asgi:app",
                "--host", "127.0.0.1", "--port", str(self.port),
                "--no-access-log", "--log-level", "warning",
            ],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )  # fmt: skip

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        assert self.process is not None
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if answered_by(httpx.get(f"{self.url}/healthz", timeout=2), self.process.pid):
                    return
            if self.process.poll() is not None or time.monotonic() > deadline:
                with self.log_path.open() as output:
                    output.seek(self._log_from)
                    log = output.read()[-3000:]
                if self.process.returncode is not None and "address already in use" in log:
                    raise PortTaken(f"port {self.port} was taken before the portal bound it")
                raise RuntimeError(f"portal on port {self.port} did not start:\n{log}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, requests in flight are cut."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


@dataclass
class Cluster:
    standin_url: str
    apps: list[AppProcess]
    endpoints: list[str]

    @property
    def urls(self) -> list[str]:
        return [app.url for app in self.apps]


def register_webhook(standin_url: str, endpoint_id: str, url: str) -> None:
    httpx.post(
        f"{standin_url}/_config/webhooks/{endpoint_id}",
        data={"url": url, "secret": WEBHOOK_SECRET},
        timeout=10,
    ).raise_for_status()


def unregister_webhook(standin_url: str, endpoint_id: str) -> None:
    with contextlib.suppress(httpx.HTTPError):
        httpx.delete(f"{standin_url}/_config/webhooks/{endpoint_id}", timeout=10)


@contextlib.contextmanager
def cluster(
    database_url: str,
    log_dir: Path,
    *,
    apps: int = 2,
    standin_url: str | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[Cluster]:
    """The stand-in (started here unless ``standin_url`` is given) and ``apps`` processes
    (``env``: settings of theirs besides the production ones)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if standin_url is None:
            from stripe_standin import standin_process

            standin_url = stack.enter_context(
                standin_process(
                    webhook_secret=WEBHOOK_SECRET,
                    log_file=log_dir / "standin.log",
                    quiet=True,
                )
            )

        def started() -> AppProcess:
            port = free_port()
            app = AppProcess(
                port,
                app_env(database_url, port, standin_url, **(env or {})),
                log_dir / f"app-{port}.log",
            )
            stack.callback(app.stop)
            app.start()
            return app

        processes = [started() for _ in range(apps)]
        for i in range(apps):
            # A port free when chosen may be another process's by the time the server
            # binds it (two suites on one machine): that server starts on another one.
            for _attempt in range(3):
                try:
                    processes[i].wait_ready()
                    break
                except PortTaken:
                    processes[i].stop()
                    processes[i] = started()
            else:
                raise RuntimeError("no free port for a portal process after three tries")
        endpoints = []
        for app in processes:
            endpoint = f"load-{app.port}"
            register_webhook(standin_url, endpoint, f"{app.url}/stripe/webhook")
            stack.callback(unregister_webhook, standin_url, endpoint)
            endpoints.append(endpoint)
        yield Cluster(standin_url=standin_url, apps=processes, endpoints=endpoints)


# -- recording ---------------------------------------------------------------------------


@dataclass
class Recorder:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    notes: list[str] = field(default_factory=list)
    by_process: Counter[str] = field(default_factory=Counter)

    def record(self, kind: str, status: int | str, seconds: float | None) -> None:
        self.statuses[kind][str(status)] += 1
        if seconds is not None:
            self.latencies[kind].append(seconds)

    def note(self, message: str) -> None:
        if len(self.notes) < 50:
            self.notes.append(message)


class Abort(Exception):
    """A request of an action failed in transport or answered 5xx: the action stops."""


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def form_fields(page: str, action: str) -> dict[str, str] | None:
    """The hidden fields of the POST form with this action (CSRF token included)."""
    for found, body in FORM_RE.findall(page):
        if html.unescape(found) == action:
            return {html.unescape(k): html.unescape(v) for k, v in INPUT_RE.findall(body)}
    return None


def slot_forms(page: str) -> list[dict[str, str]]:
    return [
        {html.unescape(k): html.unescape(v) for k, v in INPUT_RE.findall(body)}
        for found, body in FORM_RE.findall(page)
        if found == "/appointments"
    ]


class VirtualUser:
    """One virtual user: its own cookies, each request to the next process in turn."""

    def __init__(self, name: str, urls: list[str], recorder: Recorder, rng: random.Random) -> None:
        self.name = name
        self.urls = urls
        self.recorder = recorder
        self.rng = rng
        self.turn = rng.randrange(len(urls))
        self.http = httpx.AsyncClient(timeout=REQUEST_TIMEOUT, follow_redirects=False)

    def url(self, path: str) -> str:
        self.turn += 1
        return self.urls[self.turn % len(self.urls)] + path

    async def request(
        self, kind: str, method: str, path: str, *, ok: Sequence[int] = (200, 303), **kwargs: Any
    ) -> httpx.Response:
        url = path if path.startswith("http") else self.url(path)
        started = time.perf_counter()
        try:
            response = await self.http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            self.recorder.record(kind, f"error:{type(exc).__name__}", None)
            self.recorder.note(f"{kind} {method} {url}: {type(exc).__name__}: {exc}")
            raise Abort from exc
        elapsed = time.perf_counter() - started
        self.recorder.record(kind, response.status_code, elapsed)
        self.recorder.by_process[url.split("/")[2]] += 1
        if response.status_code >= 500:
            self.recorder.note(f"{kind} {method} {url}: {response.status_code}")
            raise Abort
        if response.status_code not in ok:
            self.recorder.note(f"{kind} {method} {url}: unexpected {response.status_code}")
            raise Abort
        if response.status_code >= 400:
            reason = " ".join(ERROR_RE.findall(response.text))
            self.recorder.note(f"{kind} {method} {url}: {response.status_code} {reason}")
        return response

    async def login(self, email: str, password: str) -> None:
        page = await self.request("login_page", "GET", "/login")
        fields = form_fields(page.text, "/login") or {}
        await self.request(
            "login", "POST", "/login", data={**fields, "email": email, "password": password},
            ok=(303,),
        )  # fmt: skip

    async def close(self) -> None:
        await self.http.aclose()


Action = Callable[[], Awaitable[None]]


class StaffUser(VirtualUser):
    def __init__(self, account: dict[str, Any], seed: Seed, *args: Any) -> None:
        super().__init__(account["email"], *args)
        self.account = account
        self.seed = seed
        locations = account["locations"] or [loc["id"] for loc in seed.locations]
        self.location_ids = locations
        self.actions: list[tuple[Action, int]] = [(self.dashboard, 3), (self.sales, 3)]
        if account["role"] in ("owner", "manager"):
            self.actions += [(self.clients, 3), (self.schedule, 4), (self.front_desk_sale, 2)]

    async def dashboard(self) -> None:
        await self.request("staff_dashboard", "GET", "/")

    async def clients(self) -> None:
        await self.request("staff_clients", "GET", "/clients/")

    async def sales(self) -> None:
        await self.request("staff_sales", "GET", "/sales/")

    async def schedule(self) -> None:
        location = self.seed.location(self.rng.choice(self.location_ids))
        day = _today(location) + timedelta(days=self.rng.randrange(0, 14))
        await self.request(
            "staff_schedule", "GET", f"/locations/{location['id']}/day?date={day.isoformat()}"
        )

    async def front_desk_sale(self) -> None:
        location_id = self.rng.choice(self.location_ids)
        page = await self.request("sale_form", "GET", f"/sales/new?location={location_id}")
        fields = form_fields(page.text, "/sales") or {}
        response = await self.request(
            "front_desk_sale",
            "POST",
            "/sales",
            data={
                **fields,
                "client_email": self.rng.choice(self.seed.clients),
                "location_id": str(location_id),
                "package_id": str(self.seed.sale_package_id),
                "method": "cash",
            },
            ok=(303,),
        )
        if not SALE_RE.match(response.headers.get("location", "")):
            self.recorder.note(f"front desk sale went to {response.headers.get('location')}")


class ClientUser(VirtualUser):
    def __init__(self, email: str, seed: Seed, standin_url: str, *args: Any) -> None:
        super().__init__(email, *args)
        self.seed = seed
        self.standin_url = standin_url
        self.actions = [
            (self.slots, 5),
            (self.book_and_cancel, 4),
            (self.account, 2),
            (self.checkout, 1),
        ]
        self.confirmations: list[asyncio.Task[None]] = []

    async def account(self) -> None:
        await self.request("client_account", "GET", "/account/")

    async def _slot_page(self) -> tuple[dict[str, Any], httpx.Response]:
        location = self.rng.choice(self.seed.locations)
        day = _today(location) + timedelta(days=self.rng.randrange(3, 28))
        query = f"location={location['id']}&service={self.seed.service_id}&day={day.isoformat()}"
        return location, await self.request("slots", "GET", f"/appointments/new?{query}")

    async def slots(self) -> None:
        await self._slot_page()

    async def book_and_cancel(self) -> None:
        _, page = await self._slot_page()
        forms = slot_forms(page.text)
        if not forms:
            return
        response = await self.request(
            "book", "POST", "/appointments", data=self.rng.choice(forms), ok=(303, 409, 422)
        )
        if response.status_code != 303:  # taken meanwhile, no credit left
            return
        match = APPOINTMENT_RE.match(response.headers.get("location", ""))
        if not match:
            self.recorder.note(f"booking went to {response.headers.get('location')}")
            return
        if self.rng.random() < 0.3:
            return  # kept: the schedule fills up
        path = f"/appointments/{match.group(1)}"
        detail = await self.request("appointment_page", "GET", path)
        fields = form_fields(detail.text, f"{path}/cancel")
        if fields is None:
            self.recorder.note(f"no cancel form on {path}")
            return
        await self.request("cancel", "POST", f"{path}/cancel", data=fields, ok=(303,))

    async def checkout(self) -> None:
        package_id, slug = self.rng.choice(self.seed.online)
        page = await self.request("buy_page", "GET", f"/buy/{package_id}?location={slug}")
        fields = form_fields(page.text, f"/buy/{package_id}") or {}
        response = await self.request("buy", "POST", f"/buy/{package_id}", data=fields, ok=(303,))
        session_id = response.headers.get("location", "").rstrip("/").rsplit("/", 1)[-1]
        paid = await self.request(
            "pay (stand-in)",
            "POST",
            f"{self.standin_url}/_standin/checkout/sessions/{session_id}/complete",
            json={},
        )
        sale_id = paid.json()["metadata"]["sale_id"]
        started = time.perf_counter()
        deadline = time.monotonic() + CONFIRM_TIMEOUT
        while True:
            status = await self.request("purchase_status", "GET", f"/purchases/{sale_id}/status")
            if "Payment confirmed" in status.text:
                self.recorder.record("checkout_confirmed", 200, time.perf_counter() - started)
                return
            if time.monotonic() > deadline:
                self.recorder.record("checkout_confirmed", "timeout", None)
                self.recorder.note(f"sale {sale_id} not confirmed in {CONFIRM_TIMEOUT}s")
                return
            await asyncio.sleep(0.2)


class Visitor(VirtualUser):
    def __init__(self, seed: Seed, *args: Any) -> None:
        super().__init__("visitor", *args)
        self.seed = seed
        self.actions = [(self.catalog, 1)]

    async def catalog(self) -> None:
        location = self.rng.choice(self.seed.locations)
        await self.request("catalog", "GET", f"/book/{location['slug']}")


def _today(location: Mapping[str, Any]) -> date:
    from datetime import UTC, datetime

    return datetime.now(UTC).astimezone(ZoneInfo(str(location["timezone"]))).date()


async def _run_user(user: StaffUser | ClientUser | Visitor, deadline: float, think: float) -> None:
    """Every action once in turn first (so a short run covers each kind), then by weight."""
    first = [action for action, _ in user.actions]
    actions = [action for action, _ in user.actions]
    weights = [weight for _, weight in user.actions]
    while time.monotonic() < deadline:
        action = first.pop(0) if first else user.rng.choices(actions, weights)[0]
        with contextlib.suppress(Abort):
            await action()
        if think:
            await asyncio.sleep(user.rng.uniform(0, 2 * think))


async def _sample_rss(
    apps: Sequence[AppProcess], samples: dict[int, list[tuple[float, int]]], stop: asyncio.Event
) -> None:
    started = time.monotonic()
    while not stop.is_set():
        for app in apps:
            kib = rss_kib(app.pid)
            if kib is not None:
                samples[app.port].append((round(time.monotonic() - started, 1), kib))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


async def _collect_deliveries(
    standin_url: str, endpoints: Sequence[str], seen: dict[tuple[Any, ...], dict[str, Any]]
) -> None:
    """Copy the stand-in's delivery log (it keeps the last 2,000 attempts) for our endpoints."""
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT) as http:
        response = await http.get(f"{standin_url}/_standin/deliveries")
    response.raise_for_status()
    for record in response.json()["data"]:
        if record["endpoint_id"] in endpoints:
            key = (record["event_id"], record["endpoint_id"], record["attempt"], record["at"])
            seen[key] = record


async def _collect_loop(
    cluster: Cluster, seen: dict[tuple[Any, ...], dict[str, Any]], stop: asyncio.Event
) -> None:
    while not stop.is_set():
        with contextlib.suppress(httpx.HTTPError):
            await _collect_deliveries(cluster.standin_url, cluster.endpoints, seen)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


@dataclass
class LoadResult:
    seconds: float
    recorder: Recorder
    rss: dict[int, list[tuple[float, int]]]
    deliveries: list[dict[str, Any]]
    users: dict[str, int]


async def drive(
    cluster: Cluster,
    seed: Seed,
    *,
    seconds: float = 60.0,
    clients: int = 12,
    visitors: int = 2,
    think: float = 0.05,
    rng_seed: int = 1,
) -> LoadResult:
    """Sign every virtual user in, then run the mixed traffic for ``seconds``."""
    recorder = Recorder()
    rng = random.Random(rng_seed)
    urls = cluster.urls
    users: list[StaffUser | ClientUser | Visitor] = [
        StaffUser(account, seed, urls, recorder, random.Random(rng.random()))
        for account in seed.staff
    ]
    users += [
        ClientUser(email, seed, cluster.standin_url, urls, recorder, random.Random(rng.random()))
        for email in seed.clients[:clients]
    ]
    users += [Visitor(seed, urls, recorder, random.Random(rng.random())) for _ in range(visitors)]
    rss: dict[int, list[tuple[float, int]]] = defaultdict(list)
    deliveries: dict[tuple[Any, ...], dict[str, Any]] = {}
    try:
        for user in users:
            if not isinstance(user, Visitor):
                await user.login(user.name, seed.password)
        stop = asyncio.Event()
        background = [
            asyncio.create_task(_sample_rss(cluster.apps, rss, stop)),
            asyncio.create_task(_collect_loop(cluster, deliveries, stop)),
        ]
        started = time.monotonic()
        deadline = started + seconds
        await asyncio.gather(*(_run_user(user, deadline, think) for user in users))
        elapsed = time.monotonic() - started
        stop.set()
        await asyncio.gather(*background)
        async with httpx.AsyncClient(timeout=60) as http:
            await http.post(
                f"{cluster.standin_url}/_standin/webhooks/drain", params={"timeout": 30}
            )
        await _collect_deliveries(cluster.standin_url, cluster.endpoints, deliveries)
    finally:
        for user in users:
            await user.close()
    for record in deliveries.values():
        status = record["status"] if record["status"] is not None else "error"
        recorder.record("webhook", status, None)
    counts = Counter(type(u).__name__ for u in users)
    return LoadResult(
        seconds=elapsed,
        recorder=recorder,
        rss=dict(rss),
        deliveries=list(deliveries.values()),
        users={"staff": counts["StaffUser"], "clients": counts["ClientUser"],
               "visitors": counts["Visitor"]},
    )  # fmt: skip


# -- summary -----------------------------------------------------------------------------


def summarise(result: LoadResult, *, baseline_at: float = 10.0) -> dict[str, Any]:
    kinds: dict[str, Any] = {}
    total = 0
    for kind in sorted(result.recorder.statuses):
        statuses = result.recorder.statuses[kind]
        latencies = result.recorder.latencies.get(kind, [])
        count = sum(statuses.values())
        if kind not in ("webhook", "checkout_confirmed"):
            total += count
        kinds[kind] = {
            "count": count,
            "statuses": dict(sorted(statuses.items())),
            "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
            "p95_ms": round(_percentile(latencies, 95) * 1000, 1) if latencies else None,
            "p99_ms": round(_percentile(latencies, 99) * 1000, 1) if latencies else None,
            "max_ms": round(max(latencies) * 1000, 1) if latencies else None,
        }
    every = [v for k, vs in result.recorder.latencies.items() if k != "checkout_confirmed"
             for v in vs]  # fmt: skip
    server_errors = sum(
        n for s in result.recorder.statuses.values() for code, n in s.items() if code[:1] == "5"
    )
    transport_errors = sum(
        n
        for s in result.recorder.statuses.values()
        for code, n in s.items()
        if code.startswith("error") or code == "timeout"
    )
    memory: dict[str, Any] = {}
    for port, samples in sorted(result.rss.items()):
        if not samples:
            continue
        base = next((kib for t, kib in samples if t >= baseline_at), samples[0][1])
        memory[str(port)] = {
            "start_mib": round(samples[0][1] / 1024, 1),
            f"at_{baseline_at:g}s_mib": round(base / 1024, 1),
            "end_mib": round(samples[-1][1] / 1024, 1),
            "max_mib": round(max(kib for _, kib in samples) / 1024, 1),
            "growth_mib": round((samples[-1][1] - base) / 1024, 1),
            "samples": [[t, round(kib / 1024, 1)] for t, kib in samples],
        }
    return {
        "seconds": round(result.seconds, 1),
        "users": result.users,
        "requests": total,
        "requests_per_second": round(total / result.seconds, 1) if result.seconds else 0,
        "p50_ms": round(statistics.median(every) * 1000, 1) if every else None,
        "p95_ms": round(_percentile(every, 95) * 1000, 1) if every else None,
        "p99_ms": round(_percentile(every, 99) * 1000, 1) if every else None,
        "requests_by_process": dict(sorted(result.recorder.by_process.items())),
        "webhooks_by_endpoint": dict(
            sorted(Counter(d["endpoint_id"] for d in result.deliveries).items())
        ),
        "server_errors": server_errors,
        "transport_errors": transport_errors,
        "kinds": kinds,
        "memory": memory,
        "notes": result.recorder.notes,
    }


def problems(summary: Mapping[str, Any], *, rss_growth_mib: float) -> list[str]:
    found = []
    if summary["server_errors"]:
        found.append(f"{summary['server_errors']} responses were 5xx")
    if summary["transport_errors"]:
        found.append(f"{summary['transport_errors']} requests failed in transport or timed out")
    for port, mem in summary["memory"].items():
        if mem["growth_mib"] > rss_growth_mib:
            found.append(f"process on port {port} grew {mem['growth_mib']} MiB")
    for name, rows in summary.get("integrity", {}).items():
        found.append(f"{name}: {rows}")
    return found


def print_table(summary: Mapping[str, Any], out: TextIO = sys.stdout) -> None:
    w = out.write
    w(f"\n{summary['requests']} requests in {summary['seconds']} s "
      f"({summary['requests_per_second']}/s), users {summary['users']}\n")  # fmt: skip
    w(f"{'kind':<22}{'count':>7}  {'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}{'max ms':>8}  statuses\n")
    for kind, row in summary["kinds"].items():
        cells = "".join(
            f"{row[k]:>8}" if row[k] is not None else f"{'-':>8}"
            for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")
        )
        statuses = " ".join(f"{code}×{n}" for code, n in row["statuses"].items())
        w(f"{kind:<22}{row['count']:>7}  {cells}  {statuses}\n")
    w(f"{'all requests':<22}{summary['requests']:>7}  {summary['p50_ms']:>8}"
      f"{summary['p95_ms']:>8}{summary['p99_ms']:>8}\n")  # fmt: skip
    for port, mem in summary["memory"].items():
        w(f"process :{port}: RSS {mem['start_mib']} MiB at start, "
          + " ".join(f"{k} {v}" for k, v in mem.items() if k.startswith("at_"))
          + f", {mem['end_mib']} MiB at the end (max {mem['max_mib']}), "
          f"growth {mem['growth_mib']} MiB\n")  # fmt: skip
    w(f"5xx: {summary['server_errors']}, transport errors: {summary['transport_errors']}\n")
    if summary.get("database"):
        w(f"database after the run: {summary['database']}\n")
    for note in summary["notes"][:10]:
        w(f"  note: {note}\n")


async def run(args: argparse.Namespace) -> int:
    print(f"preparing {args.database_url} ({args.clients} load clients)…", flush=True)
    seed = await prepare(args.database_url, clients=max(args.clients, 1))
    log_dir = Path(args.log_dir)
    with cluster(args.database_url, log_dir, apps=args.apps) as running:
        print(f"apps {running.urls}, stand-in {running.standin_url}; "
              f"driving for {args.seconds} s…", flush=True)  # fmt: skip
        result = await drive(
            running,
            seed,
            seconds=args.seconds,
            clients=args.clients,
            visitors=args.visitors,
            think=args.think,
        )
    summary = summarise(result, baseline_at=min(10.0, args.seconds / 4))
    summary["integrity"] = {
        k: [list(map(str, r)) for r in v]
        for k, v in (await integrity_problems(args.database_url)).items()
    }
    summary["database"] = await database_counts(args.database_url)
    summary["machine"] = {"cpus": os.cpu_count(), "load_average": os.getloadavg()}
    found = problems(summary, rss_growth_mib=args.rss_growth_mb)
    summary["problems"] = found
    print_table(summary)
    Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    print(f"results written to {args.json}")
    for problem in found:
        print(f"PROBLEM: {problem}")
    return 1 if found else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=12, help="client virtual users")
    parser.add_argument("--visitors", type=int, default=2, help="anonymous catalog readers")
    parser.add_argument("--think", type=float, default=0.05, help="mean pause between actions")
    parser.add_argument("--apps", type=int, default=2, help="portal processes")
    parser.add_argument("--database-url", default=os.environ.get("LOAD_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--rss-growth-mb", type=float, default=50.0)
    parser.add_argument("--json", default=str(RESULTS))
    parser.add_argument("--log-dir", default=str(ROOT / "var" / "load"))
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
