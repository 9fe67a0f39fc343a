"""Demo history: about four months of the front desk at every clinic, so that a newcomer's
reports, charts and home pages show a living chain.

Four regular clients per clinic (``clients.demo.HISTORY_CLIENTS``) each keep a weekly or
fortnightly slot with one therapist: they buy their packages (online by card, or at the
desk by terminal or cash), are booked, come, and are marked completed; one client a clinic
moves away and has the sessions left refunded. Each month's card payments are paid out by
Stripe early the next month. Theresa Nguyen writes and signs a note after each session but
the last, which waits on her home page ("notes still to write").

Everything goes through the services, each event at its own instant
(``timeutil.as_of``): sales, payments and fees, refunds, completions and their journal
lines and daily totals land on the days they happened. The schedule is fixed, relative to
the day the demo is loaded.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from portal.auth.service import MANAGER, OWNER, THERAPIST, CurrentUser
from portal.bookings import booking, outcomes
from portal.catalog import service as catalog
from portal.catalog.tables import Package
from portal.clients.demo import HISTORY_CLIENTS
from portal.demo import DEMO_ACCOUNTS, DemoIds
from portal.locations.tables import Location
from portal.notes import service as notes
from portal.notes.demo import FIRST_SESSION, THERAPIST_EMAIL
from portal.payments import refunds
from portal.payments import service as payments
from portal.payments.demo import pay_by_card, pay_out
from portal.payments.gateway import StripeCharge
from portal.sales import service as sales
from portal.sales.tables import Sale
from portal.staff import hours as h
from portal.staff.tables import Therapist
from portal.timeutil import as_of, utcnow

WEEKS = 17  # how far back the history starts
FIVE, THREE, TEN = (f"Neuromuscular series — {n} × 60 min" for n in (5, 3, 10))


@dataclass(frozen=True)
class Regular:
    """A client's habit: a slot (weekday, local time) with one therapist, every ``every``
    weeks from week ``first`` of the history, a package bought by ``method``; with
    ``leaves_after`` sessions given, the client moves away and the rest is refunded."""

    email: str
    therapist: str
    weekday: int
    minute: int
    every: int
    first: int
    package: str
    method: str  # card (online) | terminal | cash
    leaves_after: int | None = None


# Four regulars a clinic, in the order of clients.demo.HISTORY_CLIENTS; slots clear of
# the demo client's own bookings (Theresa at 10:00) and of each other.
_HABITS = {
    "portland-pearl": [
        ("Theresa Nguyen", 1, 13 * 60, 2, 0, FIVE, "card", None),
        ("Theresa Nguyen", 3, 15 * 60, 2, 1, THREE, "terminal", None),
        ("Theresa Nguyen", 0, 16 * 60, 1, 2, FIVE, "cash", 3),
        ("Theresa Nguyen", 2, 9 * 60, 1, 8, TEN, "terminal", None),
    ],
    "austin-soco": [
        ("Priya Raman", 0, 9 * 60, 2, 0, FIVE, "card", None),
        ("Diego Alvarez", 1, 11 * 60, 2, 1, THREE, "terminal", None),
        ("Priya Raman", 2, 13 * 60, 1, 3, FIVE, "cash", 3),
        ("Diego Alvarez", 2, 15 * 60, 1, 7, TEN, "terminal", None),
    ],
    "brooklyn-park-slope": [
        ("Hannah Brooks", 0, 12 * 60, 2, 0, FIVE, "card", None),
        ("Diego Alvarez", 3, 10 * 60, 2, 1, THREE, "terminal", None),
        ("Hannah Brooks", 4, 17 * 60, 1, 2, FIVE, "cash", 3),
        ("Hannah Brooks", 5, 10 * 60, 1, 6, TEN, "terminal", None),
    ],
}
REGULARS = {
    slug: [
        Regular(email, *habit)
        for (email, _, _, _), habit in zip(
            [c for c in HISTORY_CLIENTS if c[2] == slug], habits, strict=True
        )
    ]
    for slug, habits in _HABITS.items()
}


@dataclass
class Clinic:
    id: int
    zone: ZoneInfo
    staff: CurrentUser  # who sells, books and completes there
    therapists: dict[str, int]


async def load_demo(ids: DemoIds) -> None:
    first_email = REGULARS["portland-pearl"][0].email
    first_client = ids.users.get(first_email)
    if first_client is None or await Sale.exists().where(Sale.client == first_client).run():
        return
    packages = {
        str(r["name"]): (int(r["id"]), int(r["service"]))
        for r in await Package.select(Package.id, Package.name, Package.service)
    }
    therapists = {str(r["name"]): int(r["id"]) for r in await Therapist.select()}
    if not {FIVE, THREE, TEN} <= packages.keys():
        return
    today = utcnow().date()
    charges: dict[date, list[tuple[StripeCharge, str]]] = {}  # by month
    for slug, regulars in REGULARS.items():
        location_id = ids.locations.get(slug)
        if location_id is None:
            continue
        clinic = Clinic(
            location_id, await _zone(location_id), _staff(ids, slug, location_id), therapists
        )
        for regular in regulars:
            client_id = ids.users.get(regular.email)
            if client_id is not None:
                await _history(ids, clinic, regular, client_id, packages, today, charges)
    for month, paid in sorted(charges.items()):
        arrival = _next_month(month) + timedelta(days=2)
        if arrival < today:
            at = datetime.combine(arrival, datetime.min.time(), tzinfo=UTC)
            with as_of(at):
                await pay_out(f"po_demo_{month:%Y%m}", paid, at)


async def _history(
    ids: DemoIds,
    clinic: Clinic,
    regular: Regular,
    client_id: int,
    packages: dict[str, tuple[int, int]],
    today: date,
    charges: dict[date, list[tuple[StripeCharge, str]]],
) -> None:
    package_id, service_id = packages[regular.package]
    therapist_id = clinic.therapists[regular.therapist]
    writer = _writer(ids) if regular.therapist == "Theresa Nguyen" else None
    start_week = today - timedelta(days=today.weekday() + 7 * WEEKS)  # a Monday
    days = [
        start_week + timedelta(weeks=week, days=regular.weekday)
        for week in range(regular.first, WEEKS + 1, regular.every)
    ]
    days = [d for d in days if d < today - timedelta(days=1)]
    sale_id: int | None = None
    given: list[int] = []
    for n, day in enumerate(days):
        start = h.wall_to_utc(day, regular.minute, clinic.zone)
        if sale_id is None or await _left(sale_id) == 0:
            sale_id = await _buy(clinic, regular, client_id, package_id, start, n, charges)
        with as_of(start - timedelta(minutes=50)):
            appointment_id = await booking.book(
                clinic.staff, client_id=client_id, location_id=clinic.id,
                service_id=service_id, start_at=start, therapist_id=therapist_id,
                notify_client=False,
            )  # fmt: skip
        end = start + timedelta(hours=1)
        with as_of(end):
            await outcomes.complete(clinic.staff, appointment_id)
        given.append(appointment_id)
        if writer is not None and day != days[-1]:
            await _note(writer, appointment_id, len(given), end)
        if regular.leaves_after == len(given):
            with as_of(end + timedelta(days=1)):
                await refunds.refund_sale(
                    None, clinic.staff, sale_id, sessions=await _left(sale_id),
                    reason="Moving to another city; the sessions left are refunded.",
                )  # fmt: skip
            return


async def _buy(
    clinic: Clinic,
    regular: Regular,
    client_id: int,
    package_id: int,
    session_start: datetime,
    n: int,
    charges: dict[date, list[tuple[StripeCharge, str]]],
) -> int:
    """The package, bought online the evening before the session, or at the desk just before."""
    if regular.method != "card":
        with as_of(session_start - timedelta(hours=1)):
            return await payments.record_in_clinic_sale(
                clinic.staff, client_id=client_id, package_id=package_id,
                location_id=clinic.id, method=regular.method,
            )  # fmt: skip
    at = session_start - timedelta(hours=15)
    with as_of(at):
        terms = await catalog.quote_package(package_id, clinic.id, at, online=True)
        sale_id = await sales.create_pending_sale(
            client_id, terms, channel=sales.ONLINE, payment_method="card"
        )
        suffix = f"demo_history_{client_id}_{n}"
        charge = await pay_by_card(sale_id, terms.total_cents, terms.currency, suffix, at)
    charges.setdefault(at.date().replace(day=1), []).append((charge, terms.name))
    return sale_id


async def _note(writer: CurrentUser, appointment_id: int, number: int, end: datetime) -> None:
    """A signed note, written after the session; pain eases over the series."""
    before = max(2, 7 - number // 2)
    data = dataclasses.replace(
        FIRST_SESSION,
        pain_before=before,
        pain_after=max(1, before - 3),
        symptom_per_week=max(0, 4 - number // 2),
    )
    with as_of(end + timedelta(minutes=10)):
        note_id = await notes.start_note(writer, appointment_id, data)
    with as_of(end + timedelta(minutes=30)):
        await notes.sign(writer, note_id, confirmed=True)


async def _left(sale_id: int) -> int:
    return (await sales.session_counts(sale_id)).available


def _staff(ids: DemoIds, slug: str, location_id: int) -> CurrentUser:
    """The clinic's manager, else the owner."""
    for email, role, name, slugs in DEMO_ACCOUNTS:
        if role == MANAGER and slug in slugs and email in ids.users:
            return CurrentUser(ids.users[email], email, name, MANAGER, frozenset({location_id}))
    owner = "owner@demo.clinic"
    return CurrentUser(ids.users[owner], owner, "Olivia Owens", OWNER, frozenset())


def _writer(ids: DemoIds) -> CurrentUser | None:
    user_id, location_id = ids.users.get(THERAPIST_EMAIL), ids.locations.get("portland-pearl")
    if user_id is None or location_id is None:
        return None
    return CurrentUser(
        user_id, THERAPIST_EMAIL, "Theresa Nguyen", THERAPIST, frozenset({location_id})
    )


async def _zone(location_id: int) -> ZoneInfo:
    row = await Location.select(Location.timezone).where(Location.id == location_id).first()
    return ZoneInfo(str(row["timezone"]) if row else "UTC")


def _next_month(first: date) -> date:
    return (first + timedelta(days=32)).replace(day=1)
