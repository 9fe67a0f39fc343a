"""Fill PostgreSQL with a chain a few years in, by COPY, consistent with the portal's rules.

The data set (defaults): 50 locations in five time zones, 500 therapists (10
a location), 200 rooms (4 a location), 200,000 clients, 1,000,000
appointments and 1,000,000 sales with one payment each, over two calendar
years around today — with the journal lines every one of those events writes
in the portal, so the reports, the ledger and the liability agree.

How it stays consistent:

* Each location has a grid of one-hour slots (9:00–19:00 local time, so
  DST-correct) in each of its rooms; on a given day each room has its own
  therapist. Appointments are placed on the grid, so no therapist or room is
  ever double-booked — the database's exclusion constraints check every row
  as it is copied in.
* A client buys a package a few days before their first session; later
  sessions of the package are placed about a week apart while it is valid.
  Past appointments are completed (credit redeemed, deferred revenue →
  service revenue where it was given; a session given at another clinic than
  the one that sold it goes through the inter-location accounts, four lines,
  with ``ledger.recognition_lines``), future ones are booked (credit held);
  a few are cancelled (the credit was released). Unused sessions of packages
  past their validity are expired (breakage); every 50th sale with unused
  sessions is refunded for them. Sales that never get an appointment fill
  the count up to the number of payments.
* Journal entries are computed with the very rules of ``ledger``,
  ``payments`` and ``bookings`` (same accounts, event keys, rounding), and
  checked to balance, for each location's lines on their own too, before
  they are copied.
* The reports' daily totals are then built from the copied rows by
  ``reports.totals.rebuild`` (what ``portal reports rebuild`` runs), timed.

Progress is printed per location. A million of each takes a few minutes on a
2-core machine.

    .venv/bin/python bench/generate.py [--database-url URL] [--scale 1.0] [--seed 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

os.environ.setdefault("PICCOLO_CONF", "portal.piccolo_conf")
os.environ.setdefault("DATABASE_URL", "sqlite:////tmp/portal-bench-unused.sqlite3")
os.environ.setdefault("SECRET_KEY", "bench-secret-" + "x" * 40)

import asyncpg

from portal import db
from portal.auth.passwords import hash_password
from portal.catalog.service import quote_package
from portal.clients.phones import phone_digits
from portal.ledger import service as ledger
from portal.migrate import apply_migrations
from portal.money import round_half_up
from portal.reports import totals

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/portal_bench"
PASSWORD = "bench-clinic-2026"
ZONES = (
    ("America/New_York", 0),
    ("America/Chicago", 825),
    ("America/Denver", 290),
    ("America/Los_Angeles", 725),
    ("America/Phoenix", 560),
)
CITIES = [
    "Albany",
    "Austin",
    "Boise",
    "Boulder",
    "Charlotte",
    "Dayton",
    "Denver",
    "Durham",
    "Eugene",
    "Fresno",
    "Houston",
    "Irvine",
    "Madison",
    "Mesa",
    "Miami",
    "Naples",
    "Omaha",
    "Orlando",
    "Plano",
    "Provo",
    "Reno",
    "Salem",
    "Tampa",
    "Tucson",
    "Tulsa",
]
FIRST = [
    "Ada",
    "Ben",
    "Cleo",
    "Dev",
    "Eli",
    "Fay",
    "Gus",
    "Hana",
    "Ivo",
    "Jun",
    "Kai",
    "Lea",
    "Max",
    "Noa",
    "Oli",
    "Pia",
    "Quin",
    "Ray",
    "Sam",
    "Tess",
    "Uma",
    "Vic",
    "Wes",
    "Xia",
    "Yara",
    "Zoe",
]
LAST = [
    "Abbott",
    "Baker",
    "Chen",
    "Diaz",
    "Evans",
    "Fischer",
    "Garcia",
    "Hughes",
    "Ito",
    "Jensen",
    "Khan",
    "Lopez",
    "Moreau",
    "Novak",
    "Okafor",
    "Park",
    "Quinn",
    "Rossi",
    "Silva",
    "Tanaka",
    "Usman",
    "Vargas",
    "Weber",
    "Young",
    "Zhou",
]
# (name, sessions, validity days, price cents, weight, sessions used: weights for 1..n)
PACKAGES = (
    ("Single session (60 min)", 1, 90, 12000, 0.86, (1,)),
    ("Series of 3 (60 min)", 3, 365, 33000, 0.08, (1, 2, 5)),
    ("Series of 5 (60 min)", 5, 365, 52500, 0.06, (1, 1, 2, 3, 8)),
)
DAY_START_HOUR, HOURS_A_DAY = 9, 10
SERVICE_MINUTES, BUFFER_MINUTES = 50, 10
CANCELLED_SHARE, EMPTY_SHARE = 0.05, 0.10
CASH_SHARE = 0.2
REFUND_EVERY = 50


@dataclass
class Ids:
    """Next id per table: the generator assigns ids itself and sets the sequences after."""

    next: dict[str, int] = field(default_factory=dict)

    def take(self, table: str) -> int:
        value = self.next.get(table, 1)
        self.next[table] = value + 1
        return value


@dataclass
class Sale:
    id: int
    client: int
    location: int
    package: int
    activated_at: datetime
    valid_until: datetime
    method: str
    sold_by: int | None
    used: int  # sessions that will get an appointment
    sessions: list[int] = field(default_factory=list)  # sale_session ids by position
    booked: set[int] = field(default_factory=set)  # positions that have an appointment


@dataclass
class Batch:
    """Rows of one location, per table, ready for COPY."""

    rows: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)

    def add(self, table: str, row: tuple[Any, ...]) -> None:
        self.rows.setdefault(table, []).append(row)


COLUMNS: dict[str, Sequence[str]] = {
    "location": [
        "id",
        "name",
        "slug",
        "address",
        "phone",
        "timezone",
        "currency",
        "tax_rate_bp",
        "prices_include_tax",
        "cancellation_window_hours",
        "active",
        "created_at",
        "updated_at",
        "refund_rule",
    ],
    "app_user": [
        "id",
        "email",
        "name",
        "password_hash",
        "role",
        "active",
        "created_at",
        "password_changed_at",
    ],
    "user_location": ["id", "user", "location"],
    "client_profile": [
        "id",
        "user",
        "phone",
        "phone_national",
        "address",
        "emergency_contact_name",
        "emergency_contact_phone",
        "email_reminders",
        "preferred_location",
        "terms_accepted_at",
        "created_at",
        "updated_at",
    ],
    "therapist": [
        "id",
        "name",
        "email",
        "phone",
        "bio",
        "licence_number",
        "licence_state",
        "licence_expires",
        "insurance_expires",
        "active",
        "created_at",
        "updated_at",
    ],
    "therapist_location": ["id", "therapist", "location"],
    "therapist_service": ["id", "therapist", "service"],
    "working_hours": ["id", "therapist", "location", "weekday", "start_minute", "end_minute"],
    "room": ["id", "location", "name", "equipment", "notes", "active", "created_at", "updated_at"],
    "sale": [
        "id",
        "client",
        "location",
        "package_id",
        "price_version_id",
        "price_is_override",
        "service_id",
        "service_name",
        "item_name",
        "sessions_total",
        "validity_days",
        "currency",
        "price_cents",
        "unit_list_price_cents",
        "net_cents",
        "tax_cents",
        "total_cents",
        "tax_rate_bp",
        "prices_include_tax",
        "terms",
        "status",
        "channel",
        "payment_method",
        "sold_by",
        "frozen",
        "created_at",
        "activated_at",
        "valid_until",
        "closed_at",
    ],
    "sale_session": [
        "id",
        "sale",
        "position",
        "value_cents",
        "total_cents",
        "state",
        "changed_at",
        "appointment_id",
        "refund_id",
    ],
    "payment": [
        "id",
        "sale",
        "location",
        "provider",
        "method",
        "status",
        "amount_cents",
        "currency",
        "fee_cents",
        "net_cents",
        "checkout_session_id",
        "checkout_url",
        "payment_intent_id",
        "charge_id",
        "balance_transaction_id",
        "failure_message",
        "created_at",
        "succeeded_at",
        "recorded_by",
    ],
    "refund": [
        "id",
        "sale",
        "payment",
        "amount_cents",
        "currency",
        "sessions_requested",
        "sessions_revoked",
        "rule",
        "reason",
        "status",
        "external",
        "stripe_refund_id",
        "error",
        "created_by",
        "created_at",
        "completed_at",
    ],
    "appointment": [
        "id",
        "client",
        "therapist",
        "room",
        "location",
        "service",
        "start_at",
        "end_at",
        "busy_until",
        "status",
        "sale_session",
        "series_id",
        "booked_by",
        "created_at",
        "updated_at",
        "cancelled_at",
        "cancel_reason",
        "waived",
        "waive_reason",
        "completed_at",
        "reminder_sent_at",
    ],
    "journal_entry": [
        "id",
        "event_key",
        "kind",
        "occurred_at",
        "location",
        "currency",
        "reference",
        "memo",
        "created_at",
    ],
    "journal_line": [
        "id",
        "entry",
        "account",
        "debit_cents",
        "credit_cents",
        "location",
        "currency",
        "occurred_at",
        "sale_id",
        "therapist_id",
    ],
}
# Parents before children, so COPY meets every foreign key.
ORDER = [
    "app_user",
    "user_location",
    "client_profile",
    "therapist",
    "therapist_location",
    "therapist_service",
    "working_hours",
    "room",
    "sale",
    "sale_session",
    "payment",
    "refund",
    "appointment",
    "journal_entry",
    "journal_line",
]


class Generator:
    def __init__(self, args: argparse.Namespace, now: datetime) -> None:
        self.args = args
        self.now = now
        self.rng = random.Random(args.seed)
        self.ids = Ids()
        scale = args.scale
        self.n_locations = max(2, round(50 * min(scale * 20, 1)))
        self.clients_per_location = max(20, round(200_000 * scale / self.n_locations))
        self.appointments_per_location = max(50, round(1_000_000 * scale / self.n_locations))
        self.sales_per_location = max(50, round(1_000_000 * scale / self.n_locations))
        # Two years of appointments ending four weeks from now: the coming weeks are
        # partly booked, as a busy clinic's are.
        self.last_day = (now + timedelta(days=28)).date()
        self.first_day = self.last_day - timedelta(days=729)
        self.journal_debits = 0
        self.journal_credits = 0
        self.counts: dict[str, int] = {}

    # -- catalog and people -------------------------------------------------

    async def catalog(self, conn: asyncpg.Connection) -> None:
        """Locations, the service and its packages, and each package's terms per location."""
        created = datetime(2024, 1, 1, tzinfo=UTC)
        self.locations: list[dict[str, Any]] = []
        for i in range(self.n_locations):
            zone, tax = ZONES[i % len(ZONES)]
            city = CITIES[i % len(CITIES)]
            self.locations.append(
                {
                    "id": i + 1,
                    "name": f"{city} {i // len(CITIES) + 1}",
                    "slug": f"{city.lower()}-{i + 1}",
                    "timezone": zone,
                    "tax": tax,
                }
            )
        await conn.copy_records_to_table(
            "location",
            columns=COLUMNS["location"],
            records=[
                (
                    loc["id"],
                    loc["name"],
                    loc["slug"],
                    f"{100 + loc['id']} Main Street",
                    "555-0100",
                    loc["timezone"],
                    "USD",
                    loc["tax"],
                    False,
                    24,
                    True,
                    created,
                    created,
                    "pro_rata",
                )
                for loc in self.locations
            ],
        )
        await conn.execute(
            "INSERT INTO service (id, name, description, treatment_type, duration_minutes, "
            "buffer_after_minutes, required_equipment, active, created_at, updated_at) VALUES "
            "(1, 'Neuromuscular therapy', 'Trigger-point work over a series.', 'Neuromuscular', "
            "$1, $2, '', true, $3, $3)",
            SERVICE_MINUTES,
            BUFFER_MINUTES,
            created,
        )
        await conn.execute(
            "INSERT INTO service_price (id, service, amount_cents, currency, effective_from, "
            "created_at, note) VALUES (1, 1, 12000, 'USD', $1, $1, '')",
            created,
        )
        for i, (name, sessions, validity, price, _, _) in enumerate(PACKAGES, start=1):
            await conn.execute(
                "INSERT INTO package (id, name, service, sessions, validity_days, description, "
                "sellable_online, active, created_at, updated_at) "
                "VALUES ($1, $2, 1, $3, $4, '', true, true, $5, $5)",
                i,
                name,
                sessions,
                validity,
                created,
            )
            await conn.execute(
                "INSERT INTO package_price (id, package, location, amount_cents, currency, "
                "effective_from, clears_override, created_at, note) "
                "VALUES ($1, $1, NULL, $2, 'USD', $3, false, $3, '')",
                i,
                price,
                created,
            )
        for table in ("service", "service_price", "package", "package_price"):
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT max(id) FROM {table}))"
            )
        # Each (package, location)'s snapshot, quoted by the catalog itself.
        self.terms: dict[tuple[int, int], Any] = {}
        for loc in self.locations:
            for package in range(1, len(PACKAGES) + 1):
                self.terms[(package, loc["id"])] = await quote_package(
                    package, loc["id"], datetime(2024, 6, 1, tzinfo=UTC)
                )

    def people(self, batch: Batch) -> None:
        """Owner, accountant, a manager per location, clients; therapists, hours, rooms."""
        hashed = hash_password(PASSWORD)
        created = datetime(2024, 1, 1, tzinfo=UTC)

        def user(email: str, name: str, role: str) -> int:
            uid = self.ids.take("app_user")
            batch.add("app_user", (uid, email, name, hashed, role, True, created, created))
            return uid

        self.owner = user("owner@bench.test", "Olive Owner", "owner")
        self.accountant = user("accountant@bench.test", "Arlo Accountant", "accountant")
        self.managers: dict[int, int] = {}
        for loc in self.locations:
            uid = user(f"manager{loc['id']}@bench.test", f"Manager {loc['name']}", "manager")
            self.managers[loc["id"]] = uid
            batch.add("user_location", (self.ids.take("user_location"), uid, loc["id"]))
        self.clients: dict[int, list[int]] = {}
        n = 0
        for loc in self.locations:
            ids = []
            for _ in range(self.clients_per_location):
                n += 1
                name = f"{FIRST[n % len(FIRST)]} {LAST[(n // len(FIRST)) % len(LAST)]} {n:06d}"
                uid = user(f"client{n}@bench.test", name, "client")
                phone = f"555-{n % 10000:04d}"
                ids.append(uid)
                batch.add(
                    "client_profile",
                    (
                        self.ids.take("client_profile"),
                        uid,
                        phone,
                        phone_digits(phone),
                        "",
                        "",
                        "",
                        True,
                        loc["id"],
                        created,
                        created,
                        created,
                    ),
                )
            self.clients[loc["id"]] = ids
        self.therapists: dict[int, list[int]] = {}
        self.rooms: dict[int, list[int]] = {}
        t = 0
        for loc in self.locations:
            tids = []
            for _ in range(10):
                t += 1
                tid = self.ids.take("therapist")
                tids.append(tid)
                batch.add(
                    "therapist",
                    (
                        tid,
                        f"{FIRST[(t * 7) % len(FIRST)]} {LAST[(t * 3) % len(LAST)]} (T{t})",
                        f"therapist{t}@bench.test",
                        "",
                        "",
                        f"LMT{t:05d}",
                        "Oregon",
                        date(2028, 1, 1),
                        date(2028, 1, 1),
                        True,
                        created,
                        created,
                    ),
                )
                batch.add(
                    "therapist_location", (self.ids.take("therapist_location"), tid, loc["id"])
                )
                batch.add("therapist_service", (self.ids.take("therapist_service"), tid, 1))
                for weekday in range(7):
                    batch.add(
                        "working_hours",
                        (
                            self.ids.take("working_hours"),
                            tid,
                            loc["id"],
                            weekday,
                            DAY_START_HOUR * 60,
                            (DAY_START_HOUR + HOURS_A_DAY) * 60,
                        ),
                    )
            self.therapists[loc["id"]] = tids
            rids = []
            for r in range(4):
                rid = self.ids.take("room")
                rids.append(rid)
                batch.add("room", (rid, loc["id"], f"Room {r + 1}", "", "", True, created, created))
            self.rooms[loc["id"]] = rids

    # -- the grid -------------------------------------------------------------

    def slots(self, loc: dict[str, Any]) -> list[tuple[datetime, int, int]]:
        """(start in UTC, room, therapist) of every slot at a location, in time order."""
        zone = ZoneInfo(loc["timezone"])
        rooms, therapists = self.rooms[loc["id"]], self.therapists[loc["id"]]
        out = []
        day, n = self.first_day, 0
        while day <= self.last_day:
            for hour in range(HOURS_A_DAY):
                local = datetime(day.year, day.month, day.day, DAY_START_HOUR + hour, tzinfo=zone)
                start = local.astimezone(UTC)
                for r, room in enumerate(rooms):
                    out.append((start, room, therapists[(n * 4 + r) % len(therapists)]))
            day += timedelta(days=1)
            n += 1
        return out

    # -- one location ---------------------------------------------------------

    def location(self, loc: dict[str, Any]) -> Batch:
        batch = Batch()
        rng = self.rng
        slots = self.slots(loc)
        per_week = 7 * HOURS_A_DAY * 4
        reserved: dict[int, tuple[Sale, int]] = {}
        sales: list[Sale] = []
        appointments = 0
        target = self.appointments_per_location
        weights = [p[4] for p in PACKAGES]
        # Leave empty whatever share of the grid the target does not need (at least a tenth).
        used = sum(
            p[4] * sum(n * w for n, w in enumerate(p[5], start=1)) / sum(p[5]) for p in PACKAGES
        )
        per_roll = CANCELLED_SHARE + (1 - CANCELLED_SHARE) * used
        # (later sessions take slots that are not rolled for: about a fifth more)
        empty = max(EMPTY_SHARE, 1 - 1.2 * target / (len(slots) * per_roll))
        for i, (start, room, therapist) in enumerate(slots):
            if appointments >= target:
                break
            if i in reserved:
                sale, position = reserved.pop(i)
                self.appointment(batch, loc, sale, position, start, room, therapist)
                appointments += 1
                continue
            roll = rng.random()
            if roll < empty:
                continue
            if roll < empty + (1 - empty) * CANCELLED_SHARE:
                self.cancelled(batch, loc, start, room, therapist)
                appointments += 1
                continue
            package = rng.choices(range(1, len(PACKAGES) + 1), weights)[0]
            bought = start - timedelta(days=rng.uniform(1, 10))
            if bought >= self.now:
                bought = self.now - timedelta(hours=rng.uniform(1, 48))
            sale = self.new_sale(loc, package, bought)
            sales.append(sale)
            self.appointment(batch, loc, sale, 1, start, room, therapist)
            appointments += 1
            for position in range(2, sale.used + 1):
                j = i + (position - 1) * per_week + rng.randrange(-8, 9)
                while j in reserved:
                    j += 1
                if j >= len(slots) or slots[j][0] >= sale.valid_until:
                    break
                reserved[j] = (sale, position)
        # Sales never booked, to reach the number of payments.
        span = (datetime.combine(self.last_day, datetime.min.time(), UTC) - self.start_utc()).days
        while len(sales) < self.sales_per_location:
            package = rng.choices(range(1, len(PACKAGES) + 1), weights)[0]
            when = self.start_utc() + timedelta(days=rng.uniform(0, span), hours=rng.uniform(0, 8))
            if when > self.now:
                when = self.now - timedelta(days=rng.uniform(0, 300))
            sales.append(self.new_sale(loc, package, when, used=0))
        for sale in sales:
            self.close_sale(batch, loc, sale)
        return batch

    def start_utc(self) -> datetime:
        return datetime.combine(self.first_day, datetime.min.time(), UTC)

    def new_sale(
        self, loc: dict[str, Any], package: int, when: datetime, used: int | None = None
    ) -> Sale:
        rng = self.rng
        terms = self.terms[(package, loc["id"])]
        pool = self.clients[loc["id"]]
        if rng.random() < 0.03:  # a client from another clinic
            other = self.locations[rng.randrange(len(self.locations))]["id"]
            pool = self.clients[other]
        if used is None:
            spec = PACKAGES[package - 1][5]
            used = rng.choices(range(1, len(spec) + 1), spec)[0]
        method = "cash" if rng.random() < CASH_SHARE else "card"
        sale = Sale(
            id=self.ids.take("sale"),
            client=pool[rng.randrange(len(pool))],
            location=loc["id"],
            package=package,
            activated_at=when,
            valid_until=when + timedelta(days=terms.validity_days),
            method=method,
            sold_by=self.managers[loc["id"]] if method == "cash" else None,
            used=used,
        )
        sale.sessions = [self.ids.take("sale_session") for _ in range(terms.sessions)]
        return sale

    def appointment(
        self,
        batch: Batch,
        loc: dict[str, Any],
        sale: Sale,
        position: int,
        start: datetime,
        room: int,
        therapist: int,
    ) -> None:
        end = start + timedelta(minutes=SERVICE_MINUTES)
        busy = end + timedelta(minutes=BUFFER_MINUTES)
        aid = self.ids.take("appointment")
        credit = sale.sessions[position - 1]
        booked_at = min(sale.activated_at + timedelta(minutes=5), start)
        sale.booked.add(position)
        terms = self.terms[(sale.package, sale.location)]
        value, total = terms.session_values[position - 1], terms.session_totals[position - 1]
        if start < self.now:
            batch.add(
                "appointment",
                (aid, sale.client, therapist, room, loc["id"], 1, start, end, busy, "completed",
                 credit, None, sale.client, booked_at, end, None, "", False, "", end, None),
            )  # fmt: skip
            batch.add(
                "sale_session",
                (credit, sale.id, position, value, total, "redeemed", end, aid, None),
            )
            self.entry(
                batch,
                f"appointment:{aid}:session_completed",
                "session_completed",
                end,
                loc["id"],
                f"appointment:{aid}",
                "Session given",
                sale.id,
                therapist,
                [
                    (line.account, line.debit, line.credit, line.location_id)
                    for line in ledger.recognition_lines(
                        value, sold_at=sale.location, given_at=loc["id"]
                    )
                ],
            )
        else:
            batch.add(
                "appointment",
                (aid, sale.client, therapist, room, loc["id"], 1, start, end, busy, "booked",
                 credit, None, sale.client, booked_at, booked_at, None, "", False, "", None, None),
            )  # fmt: skip
            batch.add(
                "sale_session",
                (credit, sale.id, position, value, total, "held", booked_at, aid, None),
            )

    def cancelled(
        self, batch: Batch, loc: dict[str, Any], start: datetime, room: int, therapist: int
    ) -> None:
        end = start + timedelta(minutes=SERVICE_MINUTES)
        busy = end + timedelta(minutes=BUFFER_MINUTES)
        pool = self.clients[loc["id"]]
        client = pool[self.rng.randrange(len(pool))]
        booked = start - timedelta(days=5)
        cancelled = start - timedelta(days=2)
        batch.add(
            "appointment",
            (self.ids.take("appointment"), client, therapist, room, loc["id"], 1, start, end, busy,
             "cancelled", None, None, client, booked, cancelled, cancelled, "Client rescheduled",
             False, "", None, None),
        )  # fmt: skip

    def close_sale(self, batch: Batch, loc: dict[str, Any], sale: Sale) -> None:
        """The sale, its payment, its unused sessions (available, expired or refunded), journal."""
        rng = self.rng
        terms = self.terms[(sale.package, sale.location)]
        card = sale.method == "card"
        unused = [p for p in range(1, terms.sessions + 1) if p not in sale.booked]
        refund_at = None
        if unused and sale.id % REFUND_EVERY == 0:
            refund_at = sale.activated_at + timedelta(days=rng.uniform(0.5, 20))
            if refund_at >= self.now or refund_at >= sale.valid_until:
                refund_at = None
        status, closed_at = "active", None
        if refund_at is not None and len(unused) == terms.sessions:
            status, closed_at = "refunded", refund_at
        created = sale.activated_at - timedelta(minutes=3)
        # The sale row first (its id is the FK of everything below).
        batch.add(
            "sale",
            (sale.id, sale.client, sale.location, sale.package, terms.price_version_id,
             terms.price_is_override, terms.service_id, terms.service_name, terms.name,
             terms.sessions, terms.validity_days, terms.currency, terms.price_cents,
             terms.unit_list_price_cents, terms.net_cents, terms.tax_cents, terms.total_cents,
             terms.tax_rate_bp, terms.prices_include_tax, self.terms_json(sale),
             status, "online" if card else "front_desk", sale.method, sale.sold_by, False,
             created, sale.activated_at, sale.valid_until, closed_at),
        )  # fmt: skip
        total = int(terms.total_cents)
        pid = self.ids.take("payment")
        fee = round_half_up(total * 29, 1000) + 30 if card else None
        batch.add(
            "payment",
            (pid, sale.id, sale.location, "stripe" if card else "in_clinic", sale.method,
             "succeeded", total, terms.currency, fee, total - fee if fee is not None else None,
             f"cs_bench_{sale.id}" if card else None, "",
             f"pi_bench_{sale.id}" if card else None, f"ch_bench_{sale.id}" if card else None,
             f"txn_bench_{sale.id}" if card else None, "", created, sale.activated_at,
             sale.sold_by),
        )  # fmt: skip
        clearing = "stripe_clearing" if card else "cash_on_hand"
        self.entry(
            batch,
            f"sale:{sale.id}:paid",
            "sale_paid",
            sale.activated_at,
            sale.location,
            f"sale:{sale.id}",
            f"{terms.name} ({'Card (online)' if card else 'Cash'})",
            sale.id,
            None,
            [
                (clearing, total, 0, None),
                ("deferred_revenue", 0, int(terms.net_cents), None),
                ("tax_payable", 0, int(terms.tax_cents), None),
            ],
        )
        if fee is not None:
            self.entry(
                batch,
                f"fee:txn_bench_{sale.id}",
                "processing_fee",
                sale.activated_at,
                sale.location,
                f"sale:{sale.id}",
                "Stripe fee",
                sale.id,
                None,
                [("processing_fees", fee, 0, None), ("stripe_clearing", 0, fee, None)],
            )
        if not unused:
            return
        values = {p: int(terms.session_values[p - 1]) for p in unused}
        totals = {p: int(terms.session_totals[p - 1]) for p in unused}
        if refund_at is not None:
            rid = self.ids.take("refund")
            amount = sum(totals.values())
            batch.add(
                "refund",
                (rid, sale.id, pid, amount, terms.currency, len(unused), len(unused), "pro_rata",
                 "Client moved away", "succeeded", False, f"re_bench_{rid}" if card else None,
                 "", self.managers[sale.location], refund_at, refund_at),
            )  # fmt: skip
            for p in unused:
                batch.add(
                    "sale_session",
                    (sale.sessions[p - 1], sale.id, p, values[p], totals[p], "revoked", refund_at,
                     None, rid),
                )  # fmt: skip
            tax_part = round_half_up(amount * int(terms.tax_cents), total) if total else 0
            net_part = amount - tax_part
            value = sum(values.values())
            lines = [
                ("deferred_revenue", value, 0, None),
                ("tax_payable", tax_part, 0, None),
                (clearing, 0, amount, None),
            ]
            if value > net_part:
                lines.append(("breakage_revenue", 0, value - net_part, None))
            elif value < net_part:
                lines.append(("service_revenue", net_part - value, 0, None))
            self.entry(
                batch,
                f"refund:{rid}",
                "refund",
                refund_at,
                sale.location,
                f"sale:{sale.id}",
                f"Refund of {len(unused)} session(s)",
                sale.id,
                None,
                lines,
            )
            return
        if sale.valid_until < self.now:
            expired_at = sale.valid_until + timedelta(hours=rng.uniform(1, 20))
            if expired_at >= self.now:
                expired_at = self.now - timedelta(minutes=1)
            for p in unused:
                batch.add(
                    "sale_session",
                    (sale.sessions[p - 1], sale.id, p, values[p], totals[p], "expired", expired_at,
                     None, None),
                )  # fmt: skip
            value = sum(values.values())
            self.entry(
                batch,
                f"sale:{sale.id}:expired:{sale.sessions[unused[0] - 1]}",
                "package_expired",
                expired_at,
                sale.location,
                f"sale:{sale.id}",
                f"{len(unused)} unused session(s) expired",
                sale.id,
                None,
                [("deferred_revenue", value, 0, None), ("breakage_revenue", 0, value, None)],
            )
            return
        for p in unused:
            batch.add(
                "sale_session",
                (sale.sessions[p - 1], sale.id, p, values[p], totals[p], "available",
                 sale.activated_at, None, None),
            )  # fmt: skip

    def terms_json(self, sale: Sale) -> str:
        key = (sale.package, sale.location)
        cache = self.__dict__.setdefault("_terms_json", {})
        if key not in cache:
            cache[key] = json.dumps(self.terms[key].as_dict())
        return str(cache[key])

    def entry(
        self,
        batch: Batch,
        key: str,
        kind: str,
        when: datetime,
        location: int,
        reference: str,
        memo: str,
        sale_id: int | None,
        therapist_id: int | None,
        lines: list[tuple[str, int, int, int | None]],
    ) -> None:
        lines = [line for line in lines if line[1] or line[2]]
        debits = sum(line[1] for line in lines)
        credits = sum(line[2] for line in lines)
        if debits != credits:
            raise AssertionError(f"unbalanced {kind} {key}: {lines}")
        # Each location's lines balance on their own, as ``ledger.post`` requires.
        per_location: dict[int, int] = {}
        for _, debit, credit, line_location in lines:
            where = line_location or location
            per_location[where] = per_location.get(where, 0) + debit - credit
        if any(per_location.values()):
            raise AssertionError(f"{kind} {key}: a location's lines do not balance: {lines}")
        self.journal_debits += debits
        self.journal_credits += credits
        eid = self.ids.take("journal_entry")
        batch.add("journal_entry", (eid, key, kind, when, location, "USD", reference, memo, when))
        for account, debit, credit, line_location in lines:
            batch.add(
                "journal_line",
                (self.ids.take("journal_line"), eid, account, debit, credit,
                 line_location or location, "USD", when, sale_id, therapist_id),
            )  # fmt: skip


def chunks(rows: list[tuple[Any, ...]], size: int = 50_000) -> Iterator[list[tuple[Any, ...]]]:
    for offset in range(0, len(rows), size):
        yield rows[offset : offset + size]


async def copy(conn: asyncpg.Connection, batch: Batch, counts: dict[str, int]) -> None:
    for table in ORDER:
        rows = batch.rows.get(table)
        if not rows:
            continue
        # Appointments are checked by the exclusion constraints as they arrive; sale sessions
        # arrive before their appointments, so that foreign key is checked at the end.
        for part in chunks(rows):
            await conn.copy_records_to_table(table, columns=COLUMNS[table], records=part)
        counts[table] = counts.get(table, 0) + len(rows)


async def reset(url: str) -> None:
    match = re.match(r"^(postgres(?:ql)?://[^/]*)/([^?]+)", url)
    if match is None:
        raise SystemExit("--database-url must be a postgresql:// URL")
    server, name = match.groups()
    conn = await asyncpg.connect(f"{server}/postgres")
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    engine = db.make_engine(url)
    db.bind_engine(engine)
    await engine.run_ddl("DROP SCHEMA public CASCADE")
    await engine.run_ddl("CREATE SCHEMA public")
    await apply_migrations(quiet=True)


async def generate(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    now = datetime.now(UTC).replace(microsecond=0)
    await reset(args.database_url)
    print(f"schema migrated in {time.perf_counter() - started:.1f} s", flush=True)
    gen = Generator(args, now)
    conn = await asyncpg.connect(args.database_url)
    counts: dict[str, int] = {}
    try:
        await conn.execute("SET synchronous_commit = off")
        await gen.catalog(conn)
        people = Batch()
        gen.people(people)
        await copy(conn, people, counts)
        print(
            f"{gen.n_locations} locations, {counts['app_user']:,} users, "
            f"{counts['therapist']} therapists, {counts['room']} rooms "
            f"({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
        for n, loc in enumerate(gen.locations, start=1):
            batch = gen.location(loc)
            await copy(conn, batch, counts)
            print(
                f"  location {n}/{gen.n_locations} {loc['name']}: "
                f"{counts.get('appointment', 0):,} appointments, {counts.get('sale', 0):,} sales, "
                f"{counts.get('journal_line', 0):,} journal lines "
                f"({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
        if gen.journal_debits != gen.journal_credits:
            raise AssertionError("journal does not balance")
        for table in (*ORDER, "location"):
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT COALESCE(max(id), 0) + 1 FROM {table}), false)"
            )
        print("VACUUM (ANALYZE) …", flush=True)
        # A bulk-loaded table has no visibility map until vacuumed (autovacuum does
        # it in a live database): without it index-only scans read the heap.
        await conn.execute("VACUUM (ANALYZE)")
        debits, credits = await conn.fetchrow(
            "SELECT SUM(debit_cents), SUM(credit_cents) FROM journal_line"
        )
        if debits != credits:
            raise AssertionError(f"journal in the database does not balance: {debits} {credits}")
    finally:
        await conn.close()
    # The reports read the daily totals: built from the copied rows by the same
    # command an operator runs (``portal reports rebuild``), and timed.
    rebuild_started = time.perf_counter()
    engine = db.current_engine()
    await db.start_pool(engine, min_size=1, max_size=4)
    try:
        steps = await totals.rebuild()
        await engine.run_ddl(
            "ANALYZE ledger_day, credit_day, cash_day, ledger_month, credit_month, cash_month"
        )
    finally:
        await db.close_pool(engine)
    rebuild_seconds = time.perf_counter() - rebuild_started
    print(
        f"daily totals rebuilt in {rebuild_seconds:.0f} s ({steps} months, every location)",
        flush=True,
    )
    elapsed = time.perf_counter() - started
    print(
        "done in {:.0f} s: {}".format(
            elapsed, ", ".join(f"{t} {c:,}" for t, c in sorted(counts.items()))
        ),
        flush=True,
    )
    return {
        "seconds": round(elapsed, 1),
        "rebuild_seconds": round(rebuild_seconds, 1),
        "rows": counts,
        "now": now.isoformat(),
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    p.add_argument("--scale", type=float, default=1.0, help="1.0 = a million of each")
    p.add_argument("--seed", type=int, default=7)
    return p


def main() -> None:
    args = parser().parse_args()
    result = asyncio.run(generate(args))
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
