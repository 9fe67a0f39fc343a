"""Property: money stays exact over random event sequences (SQLite and PostgreSQL).

Two clinics with different tax rules — New York (USD, 8.25 % added to the
price) and London (20 % included in the price; GBP, or USD for odd seeds so
that the list-price refund rule also runs with tax included) — sell packages
of one service, and monthly memberships of it; one therapist works at both, so
sessions sold at one clinic are given at the other. Each seed drives a random sequence of events through
the real services and the Stripe stand-in (webhooks delivered to the portal's
real webhook route): online purchases, front-desk sales, staff refunds (both
rules, refusals included), piecemeal dashboard refunds, disputes opened and
closed won or lost, redelivered events, bookings given, cancelled (early and
late), no-shows, package expiry at a future date, memberships joined, renewed (some
renewals declined, then paid), their invoices' sales refunded and disputed like any.

After every step the money invariants are checked in the database; every few
steps and at the end the reports are checked against the journal, and at the
end the payments report against the stand-in's balance transactions (read
with the official stripe SDK).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import random
import secrets
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from portal.app import create_app
from portal.auth.service import ACCOUNTANT, CLIENT, OWNER, CurrentUser
from portal.bookings import service as bookings
from portal.catalog.tables import Package, PackagePrice, Service, ServicePrice
from portal.ledger import service as ledger
from portal.memberships import subscriptions
from portal.payments import service as payments
from portal.payments.gateway import StripeGateway
from portal.payments.tables import Payment
from portal.reports import filters as report_filters
from portal.reports import service as reports
from portal.rooms.tables import Room
from portal.sales import service as sales
from portal.staff.tables import Therapist, TherapistLocation, TherapistService, WorkingHours
from portal.timeutil import utcnow
from portal.web.forms import ValidationFailed
from tests import factories
from tests.memberships.helpers import make_plan
from tests.races import invariants
from tests.servers import stripe_client
from tests.stripe_standin import StandIn, WebhookReceiver

# What a refused request raises: ValidationFailed, or any refusal by meaning where the
# tree has ``portal.errors`` (ValidationFailed is one of them there).
REFUSALS: tuple[type[Exception], ...] = (ValidationFailed,)
if importlib.util.find_spec("portal.errors") is not None:
    REFUSALS = (importlib.import_module("portal.errors").DomainError,)

# Fixed seeds; each runs STEPS random events on each engine. To explore further:
# MONEY_SEEDS="1 2 3" MONEY_STEPS=80 (a failure names its seed and the sequence).
SEEDS = [int(s) for s in os.environ.get("MONEY_SEEDS", "2 10 11").split()]
STEPS = int(os.environ.get("MONEY_STEPS", "30"))
# Events redelivered together at the end (a sample of all of them).
FINAL_REDELIVERIES = 10
# Reports (liability, trial balance) are checked every REPORT_EVERY steps and at the end.
REPORT_EVERY = 10

NY_TAX_BP = 825  # added to the price
LONDON_TAX_BP = 2000  # included in the price

# Local start times a session may take at each clinic (60 min + 15 min buffer), inside
# the therapist's hours there; the two clinics' hours never overlap in real time.
NY_STARTS = (time(9, 0), time(10, 30), time(12, 0))  # works 09:00–13:00 New York
LONDON_STARTS = (time(8, 0), time(9, 30), time(11, 0))  # works 08:00–12:00 London


# -- the world ---------------------------------------------------------------------------


@dataclass
class Loc:
    id: int
    zone: ZoneInfo
    currency: str
    starts: tuple[time, ...]


@dataclass
class SaleModel:
    """What the test knows of a sale it made (Stripe's ids from the stand-in)."""

    id: int
    location: int
    client: int
    card: bool
    charge_id: str | None = None
    intent_id: str | None = None


@dataclass
class DisputeModel:
    id: str
    charge_id: str
    amount: int
    status: str = "needs_response"  # won | lost once closed


@dataclass
class World:
    rng: random.Random
    standin: StandIn
    gateway: StripeGateway
    receiver: WebhookReceiver
    owner: CurrentUser
    locations: list[Loc]
    service_id: int
    therapist_id: int
    packages: list[int]
    clients: list[factories.Account]
    sales: list[SaleModel] = field(default_factory=list)
    disputes: list[DisputeModel] = field(default_factory=list)
    appointments: list[int] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    expired_up_to: datetime | None = None
    plans: dict[int, int] = field(default_factory=dict)  # location id → membership plan
    memberships: list[int] = field(default_factory=list)

    def loc(self, location_id: int) -> Loc:
        return next(x for x in self.locations if x.id == location_id)

    def open_dispute_of(self, charge_id: str) -> DisputeModel | None:
        return next(
            (d for d in self.disputes if d.charge_id == charge_id and d.status == "needs_response"),
            None,
        )


async def _make_world(
    seed: int,
    standin: StandIn,
    gateway: StripeGateway,
    receiver: WebhookReceiver,
) -> World:
    now = utcnow()
    london_currency = "GBP" if seed % 2 == 0 else "USD"
    ny = await factories.make_location(
        name=f"New York {seed}", slug=f"ny-{seed}", timezone="America/New_York",
        currency="USD", tax_rate_bp=NY_TAX_BP, prices_include_tax=False,
        cancellation_window_hours=24,
    )  # fmt: skip
    london = await factories.make_location(
        name=f"London {seed}", slug=f"london-{seed}", timezone="Europe/London",
        currency=london_currency, tax_rate_bp=LONDON_TAX_BP, prices_include_tax=True,
        cancellation_window_hours=24,
    )  # fmt: skip
    service = (
        await Service.insert(
            Service(name="NMT 60", duration_minutes=60, buffer_after_minutes=15, active=True,
                    created_at=now, updated_at=now)
        ).returning(Service.id).run()
    )[0]["id"]  # fmt: skip
    # The single-session list price (USD): the list-price refund rule uses it where
    # the sale's currency is USD.
    await ServicePrice.insert(
        ServicePrice(service=service, amount_cents=10000, currency="USD", effective_from=now)
    ).run()
    packages = []
    # (sessions, validity days, USD base price, London price): odd cents on purpose.
    for sessions, days, usd, local in ((5, 30, 40049, 38003), (3, 90, 27551, 25999)):
        package = (
            await Package.insert(
                Package(name=f"{sessions} × NMT 60 ({days} days)", service=service,
                        sessions=sessions, validity_days=days, sellable_online=True,
                        active=True, created_at=now)
            ).returning(Package.id).run()
        )[0]["id"]  # fmt: skip
        await PackagePrice.insert(
            PackagePrice(package=package, amount_cents=usd, currency="USD", effective_from=now),
            PackagePrice(package=package, location=london, amount_cents=local,
                         currency=london_currency, effective_from=now),
        ).run()  # fmt: skip
        packages.append(int(package))
    therapist = (
        await Therapist.insert(
            Therapist(name="Theresa", licence_expires=date(2099, 1, 1),
                      insurance_expires=date(2099, 1, 1), active=True, created_at=now,
                      updated_at=now)
        ).returning(Therapist.id).run()
    )[0]["id"]  # fmt: skip
    await TherapistService.insert(TherapistService(therapist=therapist, service=service)).run()
    for location, (first, last) in ((ny, (9 * 60, 13 * 60)), (london, (8 * 60, 12 * 60))):
        await TherapistLocation.insert(
            TherapistLocation(therapist=therapist, location=location)
        ).run()
        await WorkingHours.insert(
            *[
                WorkingHours(therapist=therapist, location=location, weekday=weekday,
                             start_minute=first, end_minute=last)
                for weekday in range(7)
            ]
        ).run()  # fmt: skip
        await Room.insert(
            Room(location=location, name="Room 1", active=True, created_at=now, updated_at=now)
        ).run()
    owner = await factories.make_user(OWNER)
    clients = [await factories.make_user(CLIENT) for _ in range(2)]
    return World(
        rng=random.Random(seed),
        standin=standin,
        gateway=gateway,
        receiver=receiver,
        owner=CurrentUser(owner.id, owner.email, "", OWNER, frozenset()),
        locations=[
            Loc(ny, ZoneInfo("America/New_York"), "USD", NY_STARTS),
            Loc(london, ZoneInfo("Europe/London"), london_currency, LONDON_STARTS),
        ],
        service_id=int(service),
        therapist_id=int(therapist),
        packages=packages,
        clients=clients,
    )


# -- the events ----------------------------------------------------------------------------


def _message(exc: Exception) -> str:
    """A refusal's message for the person who asked; never empty."""
    errors = getattr(exc, "errors", None)
    if errors is not None:
        assert errors and all(str(v).strip() for v in errors.values()), (
            f"a refusal without a message: {errors!r}"
        )
        return "; ".join(str(v) for v in errors.values())
    detail = str(getattr(exc, "detail", "") or exc)
    assert detail.strip(), f"a refusal without a message: {exc!r}"
    return detail


async def buy_online(w: World) -> str:
    loc = w.rng.choice(w.locations)
    client = w.rng.choice(w.clients)
    package = w.rng.choice(w.packages)
    checkout = await payments.start_checkout(
        w.gateway, client_id=client.id, client_email=client.email, package_id=package,
        location_id=loc.id, base_url="http://testserver",
    )  # fmt: skip
    payment = await Payment.select().where(Payment.id == checkout.payment_id).first().run()
    assert payment is not None
    session = await w.standin.complete_session(payment["checkout_session_id"])
    await w.standin.drain()
    intent = await w.gateway.retrieve_payment_intent(session["payment_intent"])
    assert intent.latest_charge_id
    w.sales.append(
        SaleModel(checkout.sale_id, loc.id, client.id, True, intent.latest_charge_id, intent.id)
    )
    sale = await sales.get_sale(checkout.sale_id)
    assert sale["status"] == sales.ACTIVE, sale
    return f"buy_online(sale={checkout.sale_id}, loc={loc.id}, package={package})"


async def cash_sale(w: World) -> str:
    loc = w.rng.choice(w.locations)
    client = w.rng.choice(w.clients)
    package = w.rng.choice(w.packages)
    method = w.rng.choice(["cash", "cheque", "terminal"])
    sale_id = await payments.record_in_clinic_sale(
        w.owner, client_id=client.id, package_id=package, location_id=loc.id, method=method
    )
    w.sales.append(SaleModel(sale_id, loc.id, client.id, False))
    return f"cash_sale(sale={sale_id}, loc={loc.id}, package={package}, {method})"


async def staff_refund(w: World) -> str:
    if not w.sales:
        return await buy_online(w)
    sale = w.rng.choice(w.sales)
    counts = await sales.session_counts(sale.id)
    # Mostly a valid count; sometimes more than is left, to see the refusal.
    k = w.rng.randint(1, max(counts.available, 1) + (1 if w.rng.random() < 0.25 else 0))
    rule = w.rng.choice([payments.RULE_LIST_PRICE, payments.RULE_PRO_RATA])
    try:
        refund = await payments.refund_sale(
            w.gateway, w.owner, sale.id, sessions=k, reason="Client asked", rule=rule
        )
    except REFUSALS as exc:
        return f"staff_refund(sale={sale.id}, k={k}, {rule}) refused: {_message(exc)}"
    await w.standin.drain()
    assert refund["status"] == payments.SUCCEEDED, refund
    assert refund["sessions_revoked"] == k, refund
    return (
        f"staff_refund(sale={sale.id}, k={k}, {rule}) = {refund['amount_cents']} "
        f"(tax {refund['tax_cents']})"
    )


async def _charge_left(w: World, sale: SaleModel) -> int:
    """What is left on the charge: not refunded, not in an open or lost dispute."""
    assert sale.charge_id
    charge = await w.gateway.retrieve_charge(sale.charge_id)
    disputed = sum(
        d.amount for d in w.disputes if d.charge_id == sale.charge_id and d.status != "won"
    )
    return charge.amount - charge.amount_refunded - disputed


async def dashboard_refund(w: World) -> str:
    card = [s for s in w.sales if s.card and w.open_dispute_of(s.charge_id or "") is None]
    if not card:
        return await buy_online(w)
    sale = w.rng.choice(card)
    left = await _charge_left(w, sale)
    if left <= 0:
        return f"dashboard_refund(sale={sale.id}) skipped: nothing left on the charge"
    amount = left if w.rng.random() < 0.15 else w.rng.randint(1, left)
    response = await w.standin.api(
        "POST", "/v1/refunds", {"payment_intent": sale.intent_id, "amount": amount}
    )
    assert response.status_code == 200, response.text
    await w.standin.drain()
    return f"dashboard_refund(sale={sale.id}, amount={amount} of {left} left)"


async def open_dispute(w: World) -> str:
    card = [s for s in w.sales if s.card and w.open_dispute_of(s.charge_id or "") is None]
    if not card:
        return await buy_online(w)
    sale = w.rng.choice(card)
    left = await _charge_left(w, sale)
    if left <= 0:
        return f"open_dispute(sale={sale.id}) skipped: nothing left on the charge"
    amount = left if w.rng.random() < 0.3 else w.rng.randint(1, left)
    assert sale.charge_id
    dispute = await w.standin.open_dispute(sale.charge_id, amount=amount)
    w.disputes.append(DisputeModel(dispute["id"], sale.charge_id, amount))
    await w.standin.drain()
    return f"open_dispute(sale={sale.id}, amount={amount} of {left} left)"


async def close_dispute(w: World) -> str:
    open_ = [d for d in w.disputes if d.status == "needs_response"]
    if not open_:
        return await open_dispute(w)
    dispute = w.rng.choice(open_)
    outcome = w.rng.choice(["won", "lost"])
    await w.standin.close_dispute(dispute.id, outcome)
    dispute.status = outcome
    await w.standin.drain()
    sale = next(s for s in w.sales if s.charge_id == dispute.charge_id)
    return f"close_dispute(sale={sale.id}, amount={dispute.amount}, {outcome})"


async def redeliver(w: World) -> str:
    events = w.receiver.events()
    if not events:
        return await buy_online(w)
    chosen = [w.rng.choice(events) for _ in range(w.rng.randint(1, 3))]
    for event in chosen:
        await w.standin.redeliver(event["id"])
    await w.standin.drain()
    return "redeliver(" + ", ".join(e["type"] for e in chosen) + ")"


async def book(w: World) -> str:
    loc = w.rng.choice(w.locations)
    # Mostly a client who bought something; now and then anyone (NoCredit is an answer).
    buyers = [c for c in w.clients if any(s.client == c.id for s in w.sales)]
    client = w.rng.choice(buyers if buyers and w.rng.random() < 0.85 else w.clients)
    today = utcnow().astimezone(loc.zone).date()
    day = today + timedelta(days=w.rng.randint(2, 85))
    start = datetime.combine(day, w.rng.choice(loc.starts), loc.zone).astimezone(UTC)
    try:
        appointment = await bookings.book(
            w.owner, client_id=client.id, location_id=loc.id, service_id=w.service_id,
            start_at=start, therapist_id=w.therapist_id, notify_client=False,
        )  # fmt: skip
    except REFUSALS as exc:
        return f"book(client={client.id}, loc={loc.id}, {start:%Y-%m-%d %H:%M}Z) refused: " + (
            _message(exc)
        )
    except (bookings.NoCredit, bookings.SlotTaken) as exc:
        assert isinstance(exc, bookings.SlotTaken) or exc.message
        return f"book(client={client.id}, loc={loc.id}, {start:%Y-%m-%d %H:%M}Z) refused: " + (
            f"{type(exc).__name__} {exc.message}"
        )
    w.appointments.append(appointment)
    credit = (await bookings.get_appointment(appointment))["sale_session"]
    sale_id = await sales.credit_sale_id(credit)
    return (
        f"book(client={client.id}, loc={loc.id}, {start:%Y-%m-%d %H:%M}Z) = appointment "
        f"{appointment} on sale {sale_id}"
    )


async def _some_appointment(w: World) -> dict[str, Any] | None:
    if not w.appointments:
        return None
    booked = []
    for appointment_id in w.appointments:
        row = await bookings.get_appointment(appointment_id)
        if row["status"] == bookings.BOOKED:
            booked.append(row)
    # Mostly a booked one; now and then any (a refusal for the others).
    if booked and w.rng.random() < 0.9:
        return w.rng.choice(booked)
    return await bookings.get_appointment(w.rng.choice(w.appointments))


async def complete(w: World) -> str:
    appointment = await _some_appointment(w)
    if appointment is None:
        return await book(w)
    try:
        await bookings.complete(
            w.owner, appointment["id"], now=appointment["start_at"] + timedelta(hours=1)
        )
    except REFUSALS as exc:
        return f"complete({appointment['id']}) refused: {_message(exc)}"
    return f"complete({appointment['id']}, loc={appointment['location']})"


async def cancel(w: World) -> str:
    appointment = await _some_appointment(w)
    if appointment is None:
        return await book(w)
    late = w.rng.random() < 0.5
    waive = late and w.rng.random() < 0.25
    start = appointment["start_at"]
    now = start - timedelta(hours=w.rng.randint(1, 23)) if late else utcnow()
    what = f"cancel({appointment['id']}, late={late}, waive={waive})"
    try:
        outcome = await bookings.cancel(
            w.owner, appointment["id"], reason="Client called", now=now, notify_client=False,
            waive=waive, waive_reason="Family emergency" if waive else "",
        )  # fmt: skip
    except REFUSALS as exc:
        return f"{what} refused: {_message(exc)}"
    return f"{what} = {outcome}"


async def no_show(w: World) -> str:
    appointment = await _some_appointment(w)
    if appointment is None:
        return await book(w)
    waive = w.rng.random() < 0.25
    what = f"no_show({appointment['id']}, waive={waive})"
    try:
        await bookings.mark_no_show(
            w.owner, appointment["id"], now=appointment["start_at"] + timedelta(hours=2),
            waive=waive, waive_reason="Snowstorm" if waive else "",
        )  # fmt: skip
    except REFUSALS as exc:
        return f"{what} refused: {_message(exc)}"
    return what


async def expire(w: World) -> str:
    # Past the 30-day package's validity, sometimes past the 90-day one's too.
    days = w.rng.choice([w.rng.randint(31, 60), w.rng.randint(91, 120)])
    at = utcnow() + timedelta(days=days)
    run = await sales.expire_due(now=at)
    again = await sales.expire_due(now=at)
    assert again.sessions == 0, "a second expiry run changed something"
    return f"expire_due(now=+{days}d) = {run.sessions} session(s) of {run.sales} sale(s)"


# -- memberships: each paid invoice is a sale that refunds, disputes, books and expires
# like a package's (those events pick it from ``w.sales`` too) ------------------------------


async def _plan(w: World, loc: Loc) -> int:
    if loc.id not in w.plans:
        # Monthly, 2 sessions at an odd price; members get 10 % off packages in New York.
        w.plans[loc.id] = await make_plan(
            loc.id, w.service_id, name=f"Monthly {loc.id}", sessions=2, price=12345,
            currency=loc.currency, member_discount_bp=1000 if loc.currency == "USD" else 0,
        )  # fmt: skip
    return w.plans[loc.id]


async def _track_periods(w: World, membership_id: int) -> list[int]:
    """The membership's paid periods' sales the test does not know yet, added to it."""
    membership = await subscriptions.get_membership(membership_id)
    known = {s.id for s in w.sales}
    added = []
    for period in await subscriptions.periods_of(membership_id):
        sale_id = period["sale_id"]
        if sale_id is None or int(sale_id) in known or period["status"] != "paid":
            continue
        (payment,) = await payments.payments_of(int(sale_id))
        w.sales.append(
            SaleModel(int(sale_id), int(membership["location"]), int(membership["client"]),
                      True, payment["charge_id"], payment["payment_intent_id"])
        )  # fmt: skip
        added.append(int(sale_id))
    return added


async def join_membership(w: World) -> str:
    loc = w.rng.choice(w.locations)
    client = w.rng.choice(w.clients)
    member = CurrentUser(client.id, client.email, "", CLIENT, frozenset())
    membership_id, url = await subscriptions.join(
        w.gateway, member, await _plan(w, loc), base_url="http://testserver",
        request_key=secrets.token_urlsafe(24),
    )  # fmt: skip
    await w.standin.complete_session(url.rsplit("/", 1)[-1])
    await w.standin.drain()
    w.memberships.append(membership_id)
    sales_ = await _track_periods(w, membership_id)
    return f"join_membership(membership={membership_id}, loc={loc.id}, sales={sales_})"


async def renew_membership(w: World) -> str:
    running = [
        m for m in w.memberships
        if (await subscriptions.get_membership(m))["status"] in ("active", "past_due")
    ]  # fmt: skip
    if not running:
        return await join_membership(w)
    membership = await subscriptions.get_membership(w.rng.choice(running))
    declines = w.rng.random() < 0.3
    customer = str(membership["customer_id"])
    await w.standin.set_card_declines(customer, declines)
    await w.standin.advance_subscription(str(membership["subscription_id"]))
    await w.standin.set_card_declines(customer, False)
    await w.standin.drain()
    added = await _track_periods(w, int(membership["id"]))
    outcome = "declined" if declines else f"sales={added}"
    return f"renew_membership(membership={membership['id']}, {outcome})"


async def pay_failed_renewal(w: World) -> str:
    failed = [
        (m, p) for m in w.memberships for p in await subscriptions.periods_of(m)
        if p["status"] == "failed"
    ]  # fmt: skip
    if not failed:
        return await renew_membership(w)
    membership_id, period = w.rng.choice(failed)
    answer = await w.standin.api("POST", f"/v1/invoices/{period['invoice_id']}/pay")
    assert answer.status_code == 200, answer.text
    await w.standin.drain()
    added = await _track_periods(w, membership_id)
    return f"pay_failed_renewal(membership={membership_id}, sales={added})"


EVENTS = {
    buy_online: 3.0,
    cash_sale: 2.0,
    staff_refund: 3.0,
    dashboard_refund: 2.0,
    open_dispute: 1.5,
    close_dispute: 2.0,
    redeliver: 1.5,
    book: 5.0,
    complete: 3.0,
    cancel: 2.0,
    no_show: 1.0,
    expire: 1.2,
    join_membership: 1.5,
    renew_membership: 1.5,
    pay_failed_renewal: 0.7,
}


# -- the invariants ------------------------------------------------------------------------


def _n(value: Any) -> int:
    return int(value or 0)


async def money_problems() -> list[str]:
    """Invariants 1–3, per sale and for the journal, read from the database."""
    found: list[str] = []
    # The race suite's checks, everywhere (journal balanced in total and per
    # location and currency, deferred revenue = open credits, revoked sessions
    # accounted for by refunds, ...).
    for name, hits in (await invariants.problems()).items():
        found.append(f"{name}: {hits}")
    rows = invariants.rows
    sale_rows = await rows("SELECT id, status, frozen, tax_cents, total_cents FROM sale")
    pays = await rows("SELECT sale, status, amount_cents, method FROM payment")
    refunds = await rows(
        "SELECT id, sale, status, amount_cents, sessions_revoked, tax_cents FROM refund"
    )
    disputes = await rows(
        "SELECT sale, amount_cents, outcome, withdrawn_at, reinstated_at FROM dispute"
    )
    credits = await rows("SELECT sale, state, value_cents, refund_id FROM sale_session")
    lines = await rows(
        "SELECT jl.sale_id AS sale, jl.account AS account, jl.debit_cents AS d, "
        "jl.credit_cents AS c, je.kind AS kind FROM journal_line jl "
        "JOIN journal_entry je ON je.id = jl.entry WHERE jl.sale_id IS NOT NULL"
    )
    unlocated = await rows("SELECT COUNT(*) AS n FROM journal_line WHERE location IS NULL")
    if _n(unlocated[0]["n"]):
        found.append(f"{unlocated[0]['n']} journal line(s) without a location")

    by_sale: dict[int, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for kind, items in (("pay", pays), ("refund", refunds), ("dispute", disputes),
                        ("credit", credits), ("line", lines)):  # fmt: skip
        for item in items:
            by_sale[int(item["sale"])][kind].append(item)
    refund_status = {int(r["id"]): r["status"] for r in refunds}

    for sale in sale_rows:
        sid = int(sale["id"])
        mine = by_sale[sid]
        paid = sum(_n(p["amount_cents"]) for p in mine["pay"] if p["status"] == "succeeded")
        refunded = sum(
            _n(r["amount_cents"]) for r in mine["refund"] if r["status"] in ("succeeded", "pending")
        )
        disputed = sum(_n(d["amount_cents"]) for d in mine["dispute"] if d["outcome"] != "won")
        if refunded + disputed > paid:
            found.append(f"sale {sid}: refunded {refunded} + disputed {disputed} > paid {paid}")
        # Sessions revoked: by refunds (sessions_revoked), or by a lost chargeback.
        revoked = [c for c in mine["credit"] if c["state"] == sales.REVOKED]
        by_refund = [c for c in revoked if c["refund_id"] is not None]
        by_chargeback = [c for c in revoked if c["refund_id"] is None]
        counted = sum(
            _n(r["sessions_revoked"]) for r in mine["refund"]
            if r["status"] in ("succeeded", "pending")
        )  # fmt: skip
        lost = [d for d in mine["dispute"] if d["outcome"] == "lost"]
        if len(by_refund) != counted:
            found.append(f"sale {sid}: {len(by_refund)} revoked by refunds, refunds say {counted}")
        if any(refund_status.get(int(c["refund_id"])) not in ("succeeded", "pending")
               for c in by_refund):  # fmt: skip
            found.append(f"sale {sid}: a session revoked by a refund that did not happen")
        if by_chargeback and not lost:
            found.append(f"sale {sid}: {len(by_chargeback)} revoked without a refund or chargeback")
        if lost and any(c["state"] in (sales.AVAILABLE, sales.HELD) for c in mine["credit"]):
            found.append(f"sale {sid}: sessions still usable after a lost chargeback")

        def journal(account: str, kinds: tuple[str, ...] | None = None) -> int:
            """Credit-positive balance of the sale's lines of ``account``."""
            return sum(
                _n(x["c"]) - _n(x["d"]) for x in mine["line"]
                if x["account"] == account and (kinds is None or x["kind"] in kinds)
            )  # fmt: skip

        chargeback_value = -journal("deferred_revenue", ("dispute_lost",))
        if chargeback_value != sum(_n(c["value_cents"]) for c in by_chargeback):
            found.append(
                f"sale {sid}: chargebacks took {chargeback_value} of deferred revenue, "
                f"the sessions they revoked are worth "
                f"{sum(_n(c['value_cents']) for c in by_chargeback)}"
            )
        refund_value = -journal("deferred_revenue", ("refund",))
        done_value = sum(
            _n(c["value_cents"]) for c in by_refund
            if refund_status.get(int(c["refund_id"])) == "succeeded"
        )  # fmt: skip
        if refund_value != done_value:
            found.append(
                f"sale {sid}: refunds took {refund_value} of deferred revenue, "
                f"the sessions they revoked are worth {done_value}"
            )
        # Deferred revenue = value of the open credits; tax payable within [0, tax].
        deferred = journal("deferred_revenue")
        open_value = sum(
            _n(c["value_cents"]) for c in mine["credit"] if c["state"] in (sales.AVAILABLE, sales.HELD)
        )  # fmt: skip
        if deferred != open_value:
            found.append(f"sale {sid}: deferred revenue {deferred} != open credits {open_value}")
        tax_payable = journal("tax_payable")
        if not 0 <= tax_payable <= _n(sale["tax_cents"]):
            found.append(f"sale {sid}: tax payable {tax_payable} outside [0, {sale['tax_cents']}]")
        if sum(_n(r["tax_cents"]) for r in mine["refund"] if r["status"] == "succeeded") > _n(
            sale["tax_cents"]
        ):
            found.append(f"sale {sid}: refunds gave back more tax than the sale collected")
        # Money held in open disputes; the sale frozen exactly while one is open.
        open_disputes = [d for d in mine["dispute"] if not d["outcome"]]
        held = sum(_n(d["amount_cents"]) for d in open_disputes if d["withdrawn_at"] is not None)
        if -journal("disputed_funds") != held:
            found.append(f"sale {sid}: disputed funds {-journal('disputed_funds')} != open {held}")
        if bool(sale["frozen"]) != bool(open_disputes):
            found.append(
                f"sale {sid}: frozen={bool(sale['frozen'])} with {len(open_disputes)} open"
            )
        # Cash sales: the drawer holds what was paid less what was refunded.
        if any(p["method"] != "card" for p in mine["pay"]):
            done = sum(_n(r["amount_cents"]) for r in mine["refund"] if r["status"] == "succeeded")
            if -journal("cash_on_hand") != paid - done:
                found.append(
                    f"sale {sid}: cash on hand {-journal('cash_on_hand')} != {paid} - {done}"
                )
        states = [c["state"] for c in mine["credit"]]
        if sale["status"] in (sales.ACTIVE, sales.REFUNDED):
            all_revoked = bool(states) and all(s == sales.REVOKED for s in states)
            if (sale["status"] == sales.REFUNDED) != all_revoked:
                found.append(f"sale {sid}: status {sale['status']} with sessions {states}")
    return found


async def _filters(**params: Any) -> report_filters.Filters:
    query = {k: [str(x) for x in v] if isinstance(v, list) else [str(v)] for k, v in params.items()}
    user = CurrentUser(1, "accountant@example.test", "", ACCOUNTANT, frozenset())
    return await report_filters.parse(user, query)


def _months(first: date, last: date) -> list[tuple[date, date]]:
    out = []
    month = first.replace(day=1)
    while month <= last:
        following = (month + timedelta(days=32)).replace(day=1)
        out.append((month, following - timedelta(days=1)))
        month = following
    return out


async def _touched_months(w: World, loc: Loc) -> list[tuple[date, date]]:
    """Every local month of the location from the first journal line to the last."""
    span = await invariants.rows(
        "SELECT MIN(occurred_at) AS lo, MAX(occurred_at) AS hi FROM journal_line"
    )
    lo, hi = span[0]["lo"], span[0]["hi"]
    if lo is None:
        return []
    if isinstance(lo, str):  # SQLite hands timestamps back as text
        lo, hi = datetime.fromisoformat(lo), datetime.fromisoformat(hi)
    lo, hi = (t if t.tzinfo else t.replace(tzinfo=UTC) for t in (lo, hi))
    return _months(lo.astimezone(loc.zone).date(), hi.astimezone(loc.zone).date())


async def report_problems(w: World) -> list[str]:
    """Invariant 4: the liability report ties to the trial balance, month by month,
    and the daily totals the reports read equal a fresh aggregation of the rows."""
    found: list[str] = await invariants.totals_problems()
    for loc in w.locations:
        previous: dict[str, int] = {}
        for first, last in await _touched_months(w, loc):
            f = await _filters(start=first.isoformat(), end=last.isoformat(), location=loc.id)
            rows = await reports.liability(f)
            tb = await reports.trial_balance(f)
            if not tb.balanced:
                found.append(f"trial balance of {loc.id} for {first:%Y-%m} does not balance")
            deferred = {t.currency: -t.closing for t in tb.lines if t.account == "deferred_revenue"}
            for row in rows:
                label = f"liability of {loc.id} {row.currency} {first:%Y-%m}"
                if not row.balanced:
                    found.append(
                        f"{label} not balanced: computed {row.computed_closing}, closing "
                        f"{row.closing}, sessions {row.computed_closing_sessions} vs "
                        f"{row.closing_sessions}, credits worth {row.closing_session_value}"
                    )
                if row.closing != deferred.get(row.currency, 0):
                    found.append(
                        f"{label}: closing {row.closing} != trial balance deferred revenue "
                        f"{deferred.get(row.currency, 0)}"
                    )
                if row.currency in previous and previous[row.currency] != row.opening:
                    found.append(
                        f"{label}: opening {row.opening} != last month's closing "
                        f"{previous[row.currency]}"
                    )
                previous[row.currency] = row.closing
            for currency, amount in deferred.items():
                if amount and not any(r.currency == currency for r in rows):
                    found.append(f"liability of {loc.id} lacks {currency} ({amount} deferred)")
    return found


async def stripe_problems(w: World) -> list[str]:
    """Invariant 5: the payments report (card payments) equals Stripe's balance
    transactions for our charges, per location and local month; and each card sale's
    Stripe clearing balance equals the net of its charge's transactions."""
    found: list[str] = []
    # (location, currency, month) -> gross, refunded, disputed, fee, net
    stripe_sums: dict[tuple[int, str, str], list[int]] = defaultdict(lambda: [0] * 5)
    per_sale_net: dict[int, int] = {}
    async with stripe_client(w.standin) as client:
        for sale in w.sales:
            if not sale.card:
                continue
            assert sale.charge_id
            sources: list[tuple[str, str]] = [("charge", sale.charge_id)]
            refunds = await client.v1.refunds.list_async({"charge": sale.charge_id, "limit": 100})
            sources += [("refund", r.id) for r in refunds.data]
            disputes = await client.v1.disputes.list_async({"charge": sale.charge_id, "limit": 100})
            sources += [("dispute", d.id) for d in disputes.data]
            per_sale_net[sale.id] = 0
            for kind, source in sources:
                txns = await client.v1.balance_transactions.list_async(
                    {"source": source, "limit": 100}
                )
                for t in txns.data:
                    loc = w.loc(sale.location)
                    month = datetime.fromtimestamp(t.created, UTC).astimezone(loc.zone)
                    key = (loc.id, t.currency.upper(), f"{month:%Y-%m}")
                    sums = stripe_sums[key]
                    if kind == "charge":
                        sums[0] += t.amount
                    elif kind == "refund":
                        sums[1] -= t.amount
                    else:
                        sums[2] -= t.amount
                    sums[3] += t.fee
                    sums[4] += t.net
                    per_sale_net[sale.id] += t.net
    report_sums: dict[tuple[int, str, str], list[int]] = defaultdict(lambda: [0] * 5)
    for loc in w.locations:
        months = await _touched_months(w, loc)
        if not months:
            continue
        f = await _filters(
            start=months[0][0].isoformat(), end=months[-1][1].isoformat(), location=loc.id,
            method="card", group="month",
        )  # fmt: skip
        summary = await reports.payment_summary(f)
        for row in summary.rows:
            t = row.totals
            sums = report_sums[(loc.id, row.currency, row.label)]
            for i, value in enumerate((t.gross, t.refunded, t.disputed, t.fee, t.net)):
                sums[i] += value
    names = ("gross", "refunded", "disputed", "fee", "net")
    for key in sorted(set(stripe_sums) | set(report_sums)):
        ours, theirs = report_sums.get(key, [0] * 5), stripe_sums.get(key, [0] * 5)
        if ours != theirs:
            found.append(
                f"payments report {key}: "
                + ", ".join(
                    f"{n} {a} vs Stripe {b}"
                    for n, a, b in zip(names, ours, theirs, strict=True)
                    if a != b
                )
            )
    # Summed over locations, per currency.
    totals: dict[str, list[list[int]]] = defaultdict(lambda: [[0] * 5, [0] * 5])
    for (_, currency, _), sums in report_sums.items():
        totals[currency][0] = [a + b for a, b in zip(totals[currency][0], sums)]
    for (_, currency, _), sums in stripe_sums.items():
        totals[currency][1] = [a + b for a, b in zip(totals[currency][1], sums)]
    for currency, (ours, theirs) in totals.items():
        if ours != theirs:
            found.append(f"payments report {currency} in total: {ours} vs Stripe {theirs}")
    for sale_id, net in per_sale_net.items():
        clearing = await invariants.rows(
            "SELECT COALESCE(SUM(debit_cents), 0) - COALESCE(SUM(credit_cents), 0) AS b "
            f"FROM journal_line WHERE account = 'stripe_clearing' AND sale_id = {int(sale_id)}"
        )
        if _n(clearing[0]["b"]) != net:
            found.append(f"sale {sale_id}: Stripe clearing {clearing[0]['b']} != Stripe net {net}")
    return found


async def tax_problems(w: World) -> list[str]:
    """The payments report's tax column (every method) against the journal: a payment
    row carries the sale's tax, a refund row −(its tax share, rounded as its journal
    entry rounds it: the refund's ``tax_cents``, docs/architecture.md "Reports"), so per
    location and currency the column adds up to the tax payable the sales and refunds
    journalled."""
    found: list[str] = []
    refund_tax = {
        int(r["id"]): _n(r["tax_cents"])
        for r in await invariants.rows(
            "SELECT id, tax_cents FROM refund WHERE status = 'succeeded'"
        )
    }
    for loc in w.locations:
        months = await _touched_months(w, loc)
        if not months:
            continue
        f = await _filters(start=months[0][0].isoformat(), end=months[-1][1].isoformat(),
                           location=loc.id, group="month")  # fmt: skip
        cursor: str | None = None
        while True:
            page = await reports.payment_lines(f, after=cursor, limit=200)
            for line in page.rows:
                if line.kind == "refund" and line.tax != -refund_tax[line.id]:
                    found.append(
                        f"payments report: refund {line.id} of sale {line.sale_id} "
                        f"({line.refunded}) shows tax {line.tax}, its journal entry "
                        f"{-refund_tax[line.id]}"
                    )
            cursor = page.next_cursor
            if not cursor:
                break
        summary = await reports.payment_summary(f)
        journal = await invariants.rows(
            "SELECT jl.currency AS currency, "
            "SUM(jl.credit_cents) - SUM(jl.debit_cents) AS tax FROM journal_line jl "
            "JOIN journal_entry je ON je.id = jl.entry WHERE jl.account = 'tax_payable' "
            f"AND je.kind IN ('sale_paid', 'refund') AND jl.location = {int(loc.id)} "
            "GROUP BY jl.currency"
        )
        journalled = {str(r["currency"]): _n(r["tax"]) for r in journal}
        reported = {c: t.tax for c, t in summary.totals.items()}
        for currency in set(journalled) | set(reported):
            if journalled.get(currency, 0) != reported.get(currency, 0):
                found.append(
                    f"payments report of {loc.id}: tax {reported.get(currency, 0)} {currency}, "
                    f"the journal's sales and refunds {journalled.get(currency, 0)}"
                )
    return found


# -- the test ----------------------------------------------------------------------------------


@pytest.fixture
async def world_app(db: Any, stripe_settings: Any, webhook_receiver: WebhookReceiver) -> Any:
    """The portal's real webhook route receives the stand-in's deliveries."""
    app = create_app(stripe_settings, manage_database=False)
    errors: list[str] = []
    app.state.webhook_errors = errors
    async with factories.make_client(app) as client:

        async def forward(body: bytes, headers: Mapping[str, str]) -> int:
            response = await client.post(
                "/stripe/webhook",
                content=body,
                headers={
                    "stripe-signature": headers.get("Stripe-Signature", ""),
                    "content-type": "application/json",
                },
            )
            if response.status_code >= 500:
                errors.append(f"{response.status_code}: {response.text[:500]}")
            return response.status_code

        webhook_receiver.forward = forward
        yield app


def _fail(w: World, seed: int, step: int, what: str, found: list[str]) -> None:
    history = "\n".join(f"  {i:>3}. {line}" for i, line in enumerate(w.log, start=1))
    pytest.fail(
        f"seed {seed}, after step {step} ({what}):\n  " + "\n  ".join(found)
        + f"\nsequence:\n{history}",
        pytrace=False,
    )  # fmt: skip


@pytest.mark.parametrize("seed", SEEDS)
async def test_money_stays_exact_over_random_event_sequences(
    seed: int,
    world_app: Any,
    stripe_standin: StandIn,
    stripe_gateway: StripeGateway,
    webhook_receiver: WebhookReceiver,
) -> None:
    w = await _make_world(seed, stripe_standin, stripe_gateway, webhook_receiver)
    events = list(EVENTS)
    weights = list(EVENTS.values())
    for step in range(1, STEPS + 1):
        event = w.rng.choices(events, weights)[0]
        w.log.append(await event(w))
        found = await money_problems()
        if found:
            _fail(w, seed, step, "money", found)
        if step % REPORT_EVERY == 0:
            found = await report_problems(w)
            if found:
                _fail(w, seed, step, "reports", found)
    # Events delivered once more at the end, in random order, change nothing.
    events_seen = w.receiver.events()
    again = w.rng.sample(events_seen, min(FINAL_REDELIVERIES, len(events_seen)))
    for delivered in again:
        await stripe_standin.redeliver(delivered["id"])
    await stripe_standin.drain()
    w.log.append("redeliver(" + ", ".join(e["type"] for e in again) + ")")
    found = (
        await money_problems()
        + await report_problems(w)
        + await stripe_problems(w)
        + await tax_problems(w)
    )
    if found:
        _fail(w, seed, STEPS + 1, "end", found)
    print(f"seed {seed}:", *w.log, sep="\n  ")  # shown with -s or on failure
    assert not world_app.state.webhook_errors, "the webhook answered 5xx: " + "\n".join(
        world_app.state.webhook_errors[:5]
    )


async def test_no_show_on_a_disputed_package_recognises_no_revenue(
    world_app: Any,
    stripe_standin: StandIn,
    stripe_gateway: StripeGateway,
    webhook_receiver: WebhookReceiver,
) -> None:
    """While the payment is disputed no revenue is recognised on the package: a session
    cannot be completed and a late cancel gives the credit back — and a no-show must not
    forfeit it into revenue either (refused, or the credit returned, like a late cancel)."""
    w = await _make_world(7, stripe_standin, stripe_gateway, webhook_receiver)
    w.rng.choice = lambda seq: seq[0]  # type: ignore[method-assign]  # New York, client 1
    await buy_online(w)
    sale = w.sales[0]
    start = datetime.combine(
        utcnow().astimezone(w.locations[0].zone).date() + timedelta(days=3),
        NY_STARTS[0],
        w.locations[0].zone,
    ).astimezone(UTC)
    appointment = await bookings.book(
        w.owner, client_id=sale.client, location_id=sale.location, service_id=w.service_id,
        start_at=start, therapist_id=w.therapist_id, notify_client=False,
    )  # fmt: skip
    assert sale.charge_id
    await stripe_standin.open_dispute(sale.charge_id)
    await stripe_standin.drain()
    assert (await sales.get_sale(sale.id))["frozen"]
    # The disputed package's session can be neither completed nor forfeited by a late cancel.
    with pytest.raises(REFUSALS):
        await bookings.complete(w.owner, appointment, now=start + timedelta(hours=1))
    try:
        await bookings.mark_no_show(w.owner, appointment, now=start + timedelta(hours=2))
    except REFUSALS as exc:
        _message(exc)  # refusing it, like a completion, is one right answer
    states = [c["state"] for c in await sales.sessions_of(sale.id)]
    revenue = await invariants.rows(
        "SELECT COUNT(*) AS n FROM journal_line WHERE sale_id = "
        f"{int(sale.id)} AND account = 'service_revenue'"
    )
    assert sales.FORFEITED not in states and _n(revenue[0]["n"]) == 0, (
        f"a no-show on a disputed package forfeited its session into revenue: {states}"
    )
    assert await money_problems() == []


async def test_payments_report_gives_a_refund_the_tax_its_journal_entry_gave_back(
    db: Any, stripe_settings: Any
) -> None:
    """Shortest sequence: a London front-desk sale of 3 sessions at £259.99 (20 % tax
    included: £43.33) and one pro-rata refund of 2 sessions (£173.32). The refund's
    journal entry gives back the two sessions' own tax shares, £28.88; the payments
    report's refund row must show the same, so its tax column adds up to the tax
    payable the journal holds for the sale."""
    london = await factories.make_location(
        slug="london-tax", timezone="Europe/London", currency="GBP", tax_rate_bp=2000,
        prices_include_tax=True,
    )  # fmt: skip
    now = utcnow()
    service = (
        await Service.insert(Service(name="NMT 60", duration_minutes=60, active=True,
                                     created_at=now, updated_at=now))
        .returning(Service.id).run()
    )[0]["id"]  # fmt: skip
    package = (
        await Package.insert(Package(name="3 × NMT 60", service=service, sessions=3,
                                     validity_days=90, active=True, created_at=now))
        .returning(Package.id).run()
    )[0]["id"]  # fmt: skip
    await PackagePrice.insert(
        PackagePrice(package=package, amount_cents=25999, currency="GBP", effective_from=now)
    ).run()
    owner = await factories.make_user(OWNER)
    client = await factories.make_user(CLIENT)
    actor = CurrentUser(owner.id, owner.email, "", OWNER, frozenset())
    sale_id = await payments.record_in_clinic_sale(
        actor, client_id=client.id, package_id=package, location_id=london, method="cash"
    )
    refund = await payments.refund_sale(
        None, actor, sale_id, sessions=2, reason="Moving", rule=payments.RULE_PRO_RATA
    )
    assert (refund["amount_cents"], refund["tax_cents"]) == (17332, 2888)
    assert await money_problems() == []
    today = utcnow().astimezone(ZoneInfo("Europe/London")).date()
    f = await _filters(start=today.replace(day=1).isoformat(), end=today.isoformat(),
                       location=london)  # fmt: skip
    lines = (await reports.payment_lines(f)).rows
    assert [(x.kind, x.tax) for x in lines] == [("payment", 4333), ("refund", -2888)]
    summary = await reports.payment_summary(f)
    # The tax still payable on the sale: the kept session's share, £14.45.
    assert (
        summary.totals["GBP"].tax
        == 4333 - 2888
        == await ledger.balance("tax_payable", sale_id=sale_id)
    )
