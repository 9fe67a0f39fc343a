"""A package sold in New York, a session of it given in Los Angeles across a month end.

Inter-location accounts (each location's lines balance), one dating rule (a
line belongs to its own location's local day), revenue on the day the session
was given, and closed months — on SQLite and PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from portal.auth.service import ACCOUNTANT, CLIENT, OWNER, CurrentUser
from portal.bookings import service as bookings
from portal.bookings.tables import Appointment
from portal.catalog.tables import Service
from portal.ledger import periods
from portal.ledger import service as ledger
from portal.ledger.tables import JournalEntry, JournalLine
from portal.reports import filters as report_filters
from portal.reports import service
from portal.rooms.tables import Room
from portal.sales.tables import SaleSession
from portal.timeutil import utcnow
from portal.web.forms import ValidationFailed
from tests import factories
from tests.bookings.conftest import add_therapist
from tests.reports import helpers

LA = ZoneInfo("America/Los_Angeles")
NY = ZoneInfo("America/New_York")
# 2026-11-30 23:30 in Los Angeles (PST, −8) = 2026-12-01 07:30 UTC = 2026-12-01 02:30 in New York.
GIVEN = datetime(2026, 11, 30, 23, 30, tzinfo=LA).astimezone(UTC)
RECORDED = datetime(2026, 12, 2, 18, 0, tzinfo=UTC)
SOLD = datetime(2026, 11, 10, 15, 0, tzinfo=UTC)
TODAY = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
MONTHS = [("2026-10-01", "2026-10-31"), ("2026-11-01", "2026-11-30"), ("2026-12-01", "2026-12-31")]


@dataclass
class World:
    a: int  # New York: sells
    b: int  # Los Angeles: gives
    sale: int
    appointment: int
    owner: CurrentUser


async def _world(start: datetime = GIVEN) -> World:
    a = await factories.make_location(name="Alpha NY", slug="alpha-ny", timezone="America/New_York")
    b = await factories.make_location(
        name="Bravo LA", slug="bravo-la", timezone="America/Los_Angeles"
    )
    client = await factories.make_user(CLIENT)
    sale = await helpers.make_sale(a, client.id, at=SOLD, net=50_000, sessions=5)
    now = utcnow()
    service_id = (
        await Service.insert(
            Service(name="NMT 60", duration_minutes=60, buffer_after_minutes=15, active=True,
                    created_at=now, updated_at=now)
        ).returning(Service.id).run()
    )[0]["id"]  # fmt: skip
    therapist = await add_therapist("Lou", b, int(service_id))
    room = (
        await Room.insert(
            Room(location=b, name="Room 1", active=True, created_at=now, updated_at=now)
        ).returning(Room.id).run()
    )[0]["id"]  # fmt: skip
    credit = (
        await SaleSession.select(SaleSession.id)
        .where(SaleSession.sale == sale)
        .order_by(SaleSession.position)
        .first()
        .run()
    )
    assert credit is not None
    appointment = (
        await Appointment.insert(
            Appointment(
                client=client.id, therapist=therapist, room=room, location=b, service=service_id,
                start_at=start, end_at=start + timedelta(hours=1),
                busy_until=start + timedelta(minutes=75), status="booked", sale_session=credit["id"],
                created_at=SOLD, updated_at=SOLD,
            )
        ).returning(Appointment.id).run()
    )[0]["id"]  # fmt: skip
    await SaleSession.update(
        {SaleSession.state: "held", SaleSession.appointment_id: appointment,
         SaleSession.changed_at: SOLD}
    ).where(SaleSession.id == credit["id"]).run()  # fmt: skip
    return World(a=a, b=b, sale=sale, appointment=int(appointment), owner=helpers.actor(OWNER))


async def _filters(start: str, end: str, locations=(), group: str = "month"):
    query = {"start": [start], "end": [end], "group": [group]}
    if locations:
        query["location"] = [str(i) for i in locations]
    return await report_filters.parse(helpers.actor(ACCOUNTANT), query)


async def _figures(w: World) -> dict[str, object]:
    """Every month's liability, trial balance and revenue of each location, in one value."""
    out: dict[str, object] = {}
    for start, end in MONTHS:
        for loc in (w.a, w.b):
            f = await _filters(start, end, [loc])
            liability = [r.as_dict() for r in await service.liability(f)]
            tb = [t.as_dict() for t in (await service.trial_balance(f)).lines]
            revenue = [r.as_dict() for r in (await service.revenue(f)).rows]
            out[f"{start}:{loc}"] = (liability, tb, revenue)
    return out


async def _assert_every_location_balances_and_ties(w: World) -> None:
    for start, end in MONTHS:
        for loc in (w.a, w.b):
            f = await _filters(start, end, [loc])
            tb = await service.trial_balance(f)
            assert tb.balanced, (start, loc)
            deferred = next((t for t in tb.lines if t.account == "deferred_revenue"), None)
            tb_closing = deferred.closing_credit - deferred.closing_debit if deferred else 0
            (row,) = await service.liability(f)
            assert row.closing == tb_closing, (start, loc)
            assert row.balanced, (start, loc)


async def test_session_sold_in_new_york_given_in_los_angeles_across_the_month_end(db):
    w = await _world()
    await bookings.complete(w.owner, w.appointment, now=RECORDED)

    entry = await JournalEntry.select().where(JournalEntry.kind == "session_completed").first()
    assert entry is not None
    assert entry["occurred_at"] == GIVEN  # when it was given, not when it was recorded
    assert entry["memo"] == "Session given"
    lines = await JournalLine.select(
        JournalLine.account, JournalLine.debit_cents, JournalLine.credit_cents,
        JournalLine.location, JournalLine.occurred_at,
    ).where(JournalLine.entry == entry["id"]).order_by(JournalLine.id)  # fmt: skip
    assert [(r["location"], r["account"], r["debit_cents"], r["credit_cents"]) for r in lines] == [
        (w.a, "deferred_revenue", 10_000, 0),
        (w.a, "due_to_locations", 0, 10_000),
        (w.b, "due_from_locations", 10_000, 0),
        (w.b, "service_revenue", 0, 10_000),
    ]
    # The credit is redeemed at the same instant, so the sessions move with the money.
    credit = await SaleSession.select().where(SaleSession.appointment_id == w.appointment).first()
    assert credit is not None and credit["state"] == "redeemed"
    assert credit["changed_at"] == GIVEN

    # Revenue: Los Angeles's November (30 November local), nothing in December.
    nov_b = (await service.revenue(await _filters("2026-11-01", "2026-11-30", [w.b]))).rows
    assert [(r.label, r.service) for r in nov_b] == [("2026-11", 10_000)]
    dec_b = (await service.revenue(await _filters("2026-12-01", "2026-12-31", [w.b]))).rows
    assert [(r.label, r.service) for r in dec_b] == []

    # New York's deferred revenue drops on its own local day: 1 December (02:30).
    nov_a = await service.liability(await _filters("2026-11-01", "2026-11-30", [w.a]))
    dec_a = await service.liability(await _filters("2026-12-01", "2026-12-31", [w.a]))
    assert (nov_a[0].opening, nov_a[0].sold, nov_a[0].redeemed, nov_a[0].closing) == (
        0, 50_000, 0, 50_000,
    )  # fmt: skip
    assert (nov_a[0].closing_sessions, nov_a[0].closing_session_value) == (5, 50_000)
    assert (dec_a[0].opening, dec_a[0].redeemed, dec_a[0].closing) == (50_000, 10_000, 40_000)
    assert (dec_a[0].redeemed_sessions, dec_a[0].closing_sessions) == (1, 4)
    journal, _ = await service.journal_lines(await _filters("2026-12-01", "2026-12-01", [w.a]))
    assert [(r.date, r.account, r.debit, r.credit) for r in journal] == [
        (date(2026, 12, 1), "deferred_revenue", 10_000, 0),
        (date(2026, 12, 1), "due_to_locations", 0, 10_000),
    ]
    journal, _ = await service.journal_lines(await _filters("2026-11-30", "2026-11-30", [w.b]))
    assert [(r.date, r.account, r.debit, r.credit) for r in journal] == [
        (date(2026, 11, 30), "due_from_locations", 10_000, 0),
        (date(2026, 11, 30), "service_revenue", 0, 10_000),
    ]

    # Each location's trial balance balances alone, and the liability report's
    # closing is the trial balance's deferred revenue, every month.
    await _assert_every_location_balances_and_ties(w)
    tb_a = await service.trial_balance(await _filters("2026-12-01", "2026-12-31", [w.a]))
    assert {t.account: (t.debits, t.credits) for t in tb_a.lines} == {
        "stripe_clearing": (0, 0),
        "deferred_revenue": (10_000, 0),
        "due_to_locations": (0, 10_000),
    }
    tb_b = await service.trial_balance(await _filters("2026-11-01", "2026-11-30", [w.b]))
    assert {t.account: (t.closing_debit, t.closing_credit) for t in tb_b.lines} == {
        "due_from_locations": (10_000, 0),
        "service_revenue": (0, 10_000),
    }
    assert await ledger.balance("due_from_locations", location_id=w.b) == 10_000
    assert await ledger.balance("due_to_locations", location_id=w.a) == 10_000


async def test_a_session_recorded_after_its_month_is_closed(db):
    w = await _world()
    before = await _figures(w)
    await periods.close_month(w.owner, str(w.b), "2026-11", now=TODAY)
    await bookings.complete(w.owner, w.appointment, now=RECORDED)

    entry = await JournalEntry.select().where(JournalEntry.kind == "session_completed").first()
    assert entry is not None
    first_open = datetime(2026, 12, 1, tzinfo=LA).astimezone(UTC)  # 08:00 UTC
    assert entry["occurred_at"] == first_open
    assert entry["memo"] == "Session given (belongs to 2026-11-30)"
    assert {line["occurred_at"] for line in await JournalLine.select().where(
        JournalLine.entry == entry["id"])} == {first_open}  # fmt: skip

    after = await _figures(w)
    for start, _ in MONTHS[:2]:  # October and November of both locations: unchanged
        for loc in (w.a, w.b):
            assert after[f"{start}:{loc}"] == before[f"{start}:{loc}"], (start, loc)
    dec_b = (await service.revenue(await _filters("2026-12-01", "2026-12-31", [w.b]))).rows
    assert [(r.label, r.service) for r in dec_b] == [("2026-12", 10_000)]
    await _assert_every_location_balances_and_ties(w)


async def test_several_locations_closed_post_at_the_latest_first_open_instant(db):
    a = await factories.make_location(timezone="America/New_York")
    b = await factories.make_location(timezone="America/Los_Angeles")
    owner = helpers.actor(OWNER)
    await periods.close_month(owner, str(a), "2026-11", now=TODAY)
    await periods.close_month(owner, str(b), "2026-11", now=TODAY)
    # 20:00 on 30 November in Los Angeles is 23:00 in New York: both in a closed November.
    at = datetime(2026, 11, 30, 20, 0, tzinfo=LA).astimezone(UTC)
    entry = await ledger.post(
        event_key="t:1", kind="session_completed", currency="USD", location_id=b, occurred_at=at,
        lines=ledger.recognition_lines(700, sold_at=a, given_at=b), memo="Session given",
    )  # fmt: skip
    assert entry is not None
    # New York opens at 05:00 UTC, Los Angeles at 08:00 UTC: the later one.
    assert await ledger.posted_at(entry) == datetime(2026, 12, 1, 8, tzinfo=UTC)
    # Closing every location also holds lines without one (dated in UTC).
    await periods.close_month(owner, "all", "2026-10", now=TODAY)
    entry = await ledger.post(
        event_key="t:2", kind="processing_fee", currency="USD", location_id=None,
        occurred_at=datetime(2026, 10, 31, 23, tzinfo=UTC),
        lines=[ledger.debit("processing_fees", 30), ledger.credit("stripe_clearing", 30)],
    )  # fmt: skip
    assert entry is not None
    assert await ledger.posted_at(entry) == datetime(2026, 11, 1, tzinfo=UTC)
    memo = (await JournalEntry.select(JournalEntry.memo).where(JournalEntry.id == entry))[0]
    assert memo["memo"] == "(belongs to 2026-10-31)"


async def test_each_location_of_an_entry_must_balance(db):
    a = await factories.make_location()
    b = await factories.make_location()
    with pytest.raises(ledger.UnbalancedEntry, match="balance on their own"):
        await ledger.post(
            event_key="x", kind="session_completed", currency="USD", location_id=b,
            lines=[
                ledger.debit("deferred_revenue", 100, location_id=a),
                ledger.credit("service_revenue", 100, location_id=b),
            ],
        )  # fmt: skip
    assert ledger.recognition_lines(100, sold_at=a, given_at=a) == [
        ledger.debit("deferred_revenue", 100, location_id=a),
        ledger.credit("service_revenue", 100, location_id=a),
    ]


@pytest.mark.parametrize(
    ("month", "message"),
    [
        ("2027-01", "in the future"),
        ("2026-12", "has not ended yet"),
        ("November", "YYYY-MM"),
        ("2026-13", "YYYY-MM"),
    ],
)
async def test_closing_refuses_bad_months(db, month, message):
    loc = await factories.make_location(timezone="America/Los_Angeles")
    with pytest.raises(ValidationFailed) as caught:
        await periods.close_month(helpers.actor(OWNER), str(loc), month, now=TODAY)
    assert message in caught.value.errors["month"]


async def test_closing_twice_or_under_an_all_locations_close_is_refused(db):
    loc = await factories.make_location()
    owner = helpers.actor(OWNER)
    await periods.close_month(owner, str(loc), "2026-10", now=TODAY)
    with pytest.raises(ValidationFailed, match="already closed for this location"):
        await periods.close_month(owner, str(loc), "2026-10", now=TODAY)
    await periods.close_month(owner, "all", "2026-10", now=TODAY)
    with pytest.raises(ValidationFailed, match="already closed for every location"):
        await periods.close_month(owner, "all", "2026-10", now=TODAY)
    with pytest.raises(ValidationFailed, match="already closed for every location"):
        await periods.close_month(owner, str(loc), "2026-10", now=TODAY)
    with pytest.raises(ValidationFailed) as caught:
        await periods.close_month(owner, "999999", "2026-10", now=TODAY)
    assert "location" in caught.value.errors
