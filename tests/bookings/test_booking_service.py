from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from portal.bookings import availability
from portal.bookings import service as bookings
from portal.bookings.tables import Appointment
from portal.ledger import service as ledger
from portal.sales import service as sales
from portal.staff.tables import TimeOff
from portal.web.forms import ValidationFailed
from tests.bookings.conftest import add_therapist

NY = ZoneInfo("America/New_York")


def ny(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=NY).astimezone(UTC)


def future_day(days: int = 10) -> date:
    return (datetime.now(NY) + timedelta(days=days)).date()


async def test_free_slots_follow_hours_duration_and_buffer(clinic):
    day = future_day()
    slots = await bookings.free_slots(clinic.location_id, clinic.service_id, day)
    starts = sorted({s.start for s in slots})
    assert starts[0] == ny(day, 9) and starts[-1] == ny(day, 16)  # 16:00 + 60 min ends at 17:00
    assert all(s.start.astimezone(NY).minute % 15 == 0 for s in slots)
    await bookings.book(
        clinic.as_client(), client_id=clinic.client.id, location_id=clinic.location_id,
        service_id=clinic.service_id, start_at=ny(day, 10),
    )  # fmt: skip
    after = {s.start for s in await bookings.free_slots(clinic.location_id, clinic.service_id, day)}
    # 10:00–11:00 plus a 15-minute buffer blocks 10:00–11:15, and a 09:00 start
    # (busy until 10:15 with its own buffer) would run into it.
    assert ny(day, 9) not in after and ny(day, 8, 45) not in after
    assert ny(day, 11) not in after and ny(day, 11, 15) in after


async def test_slots_on_dst_change_day_use_local_wall_time(clinic):
    # 2026-11-01: New York falls back at 02:00; hours 09:00–17:00 local are 14:00–22:00 UTC.
    fall_back = date(2026, 11, 1)
    now = datetime(2026, 10, 20, tzinfo=UTC)
    slots = await bookings.free_slots(clinic.location_id, clinic.service_id, fall_back, now=now)
    assert min(s.start for s in slots) == datetime(2026, 11, 1, 14, tzinfo=UTC)
    spring = date(2027, 3, 14)
    slots = await bookings.free_slots(clinic.location_id, clinic.service_id, spring, now=now)
    assert min(s.start for s in slots) == datetime(2027, 3, 14, 13, tzinfo=UTC)


async def test_time_off_and_room_outage_remove_slots(clinic):
    from portal.rooms.tables import RoomOutage
    from portal.timeutil import utcnow

    day = future_day()
    await TimeOff.insert(
        TimeOff(therapist=clinic.therapist_id, starts_at=ny(day, 9), ends_at=ny(day, 12),
                reason="Dentist", created_at=utcnow())
    ).run()  # fmt: skip
    for room in clinic.rooms:
        await RoomOutage.insert(
            RoomOutage(room=room, starts_at=ny(day, 15), ends_at=ny(day, 17), reason="Cleaning",
                       created_at=utcnow())
        ).run()  # fmt: skip
    starts = {
        s.start for s in await bookings.free_slots(clinic.location_id, clinic.service_id, day)
    }
    assert ny(day, 9) not in starts and ny(day, 12) in starts
    assert ny(day, 13, 45) in starts and ny(day, 14) not in starts  # 14:00 + 60 + 15 > 15:00


async def test_booking_holds_one_credit_earliest_expiry_first(clinic):
    from tests.bookings.conftest import give_package

    later_sale = clinic.sale_id
    sooner_sale = await give_package(clinic.client.id, clinic.location_id, clinic.service_id, 3)
    from portal.sales.tables import Sale

    await (
        Sale.update({Sale.valid_until: datetime.now(UTC) + timedelta(days=30)})
        .where(Sale.id == sooner_sale)
        .run()
    )
    day = future_day()
    appointment_id = await bookings.book(
        clinic.as_client(), client_id=clinic.client.id, location_id=clinic.location_id,
        service_id=clinic.service_id, start_at=ny(day, 9),
    )  # fmt: skip
    appointment = await bookings.get_appointment(appointment_id)
    assert appointment["room"] in clinic.rooms and appointment["status"] == bookings.BOOKED
    assert (await sales.session_counts(sooner_sale)).held == 1
    assert (await sales.session_counts(later_sale)).held == 0


async def test_no_credit_and_bad_times_are_refused(clinic):
    from portal.auth.service import CLIENT, CurrentUser
    from tests import factories

    stranger = await factories.make_user(CLIENT)
    user = CurrentUser(stranger.id, stranger.email, "", CLIENT, frozenset())
    with pytest.raises(bookings.NoCredit):
        await bookings.book(
            user, client_id=stranger.id, location_id=clinic.location_id,
            service_id=clinic.service_id, start_at=ny(future_day(), 10),
        )  # fmt: skip
    with pytest.raises(ValidationFailed) as past:
        await bookings.book(
            clinic.as_client(), client_id=clinic.client.id, location_id=clinic.location_id,
            service_id=clinic.service_id, start_at=datetime.now(UTC) - timedelta(hours=1),
        )  # fmt: skip
    assert "future" in past.value.errors["start"]
    with pytest.raises(ValidationFailed) as outside:
        await bookings.book(
            clinic.as_client(), client_id=clinic.client.id, location_id=clinic.location_id,
            service_id=clinic.service_id, start_at=ny(future_day(), 20),
            therapist_id=clinic.therapist_id,
        )  # fmt: skip
    assert "working hours" in outside.value.errors["start"]
    with pytest.raises(bookings.Forbidden):
        await bookings.book(
            user, client_id=clinic.client.id, location_id=clinic.location_id,
            service_id=clinic.service_id, start_at=ny(future_day(), 10),
        )  # fmt: skip
    assert await Appointment.count().run() == 0


async def test_concurrent_requests_never_double_book(clinic):
    from portal.auth.service import CLIENT, CurrentUser
    from tests import factories
    from tests.bookings.conftest import give_package

    day = future_day()
    users = []
    for _ in range(20):
        account = await factories.make_user(CLIENT)
        await give_package(account.id, clinic.location_id, clinic.service_id, 1)
        users.append(CurrentUser(account.id, account.email, "", CLIENT, frozenset()))

    async def attempt(user):
        try:
            return await bookings.book(
                user, client_id=user.id, location_id=clinic.location_id,
                service_id=clinic.service_id, start_at=ny(day, 10), therapist_id=clinic.therapist_id,
            )  # fmt: skip
        except (bookings.SlotTaken, ValidationFailed):
            return None

    results = await asyncio.gather(*(attempt(u) for u in users), return_exceptions=True)
    assert len([r for r in results if isinstance(r, int)]) == 1
    assert results.count(None) == 19  # each refused with SlotTaken or a validation message
    assert await Appointment.count().where(Appointment.status == bookings.BOOKED).run() == 1
    # Credits of the losers were not consumed.
    from portal.sales.tables import SaleSession

    assert await SaleSession.count().where(SaleSession.state == sales.HELD).run() == 1


async def test_database_refuses_overlap_even_without_the_checks(clinic):
    from portal.timeutil import utcnow

    start = ny(future_day(), 10)
    values = dict(
        client=clinic.client.id, therapist=clinic.therapist_id, room=clinic.rooms[0],
        location=clinic.location_id, service=clinic.service_id, start_at=start,
        end_at=start + timedelta(hours=1), busy_until=start + timedelta(minutes=75),
        status="booked", created_at=utcnow(), updated_at=utcnow(),
    )  # fmt: skip
    await Appointment.insert(Appointment(**values)).run()
    shifted = {**values, "room": clinic.rooms[1], "start_at": start + timedelta(minutes=30)}
    with pytest.raises(Exception) as info:
        await Appointment.insert(Appointment(**shifted)).run()
    assert bookings._is_overlap_violation(info.value)
    other_therapist = await add_therapist("Other", clinic.location_id, clinic.service_id)
    same_room = {**values, "therapist": other_therapist, "start_at": start + timedelta(minutes=70)}
    with pytest.raises(Exception) as room_info:
        await Appointment.insert(Appointment(**same_room)).run()
    assert bookings._is_overlap_violation(room_info.value)
    # A cancelled appointment does not block.
    await Appointment.insert(Appointment(**{**shifted, "status": "cancelled"})).run()


async def test_cancel_early_returns_the_credit_late_forfeits_it(clinic):
    day = future_day()
    first = await bookings.book(
        clinic.as_client(), client_id=clinic.client.id, location_id=clinic.location_id,
        service_id=clinic.service_id, start_at=ny(day, 9),
    )  # fmt: skip
    assert await bookings.cancel(clinic.as_client(), first, reason="Busy") == bookings.CANCELLED
    assert (await sales.session_counts(clinic.sale_id)).available == 5
    second = await bookings.book(
        clinic.as_client(), client_id=clinic.client.id, location_id=clinic.location_id,
        service_id=clinic.service_id, start_at=ny(day, 11),
    )  # fmt: skip
    late_now = ny(day, 11) - timedelta(hours=3)
    outcome = await bookings.cancel(clinic.as_client(), second, reason="Sick", now=late_now)
    assert outcome == bookings.LATE_CANCEL
    counts = await sales.session_counts(clinic.sale_id)
    assert (counts.available, counts.forfeited) == (4, 1)
    assert await ledger.balance("service_revenue", location_id=clinic.location_id) == 9000
    # A manager waives a late cancel with a reason: the credit comes back.
    third = await bookings.book(
        clinic.as_client(), client_id=clinic.client.id, location_id=clinic.location_id,
        service_id=clinic.service_id, start_at=ny(day, 14),
    )  # fmt: skip
    with pytest.raises(ValidationFailed):
        await bookings.cancel(clinic.as_manager(), third, waive=True, now=ny(day, 13))
    with pytest.raises(bookings.Forbidden):
        await bookings.cancel(
            clinic.as_client(), third, waive=True, waive_reason="x", now=ny(day, 13)
        )
    await bookings.cancel(
        clinic.as_manager(), third, waive=True, waive_reason="Snowstorm", now=ny(day, 13)
    )
    assert (await sales.session_counts(clinic.sale_id)).available == 4


async def test_completing_recognises_revenue_where_given(clinic):
    # Sold at the other location, given at this one.
    from portal.sales.tables import Sale
    from tests.bookings.conftest import give_package

    await Sale.update({Sale.status: "refunded"}).where(Sale.id == clinic.sale_id).run()
    sale = await give_package(clinic.client.id, clinic.other_location_id, clinic.service_id, 2)
    day = future_day()
    appointment_id = await bookings.book(
        clinic.as_client(), client_id=clinic.client.id, location_id=clinic.location_id,
        service_id=clinic.service_id, start_at=ny(day, 9),
    )  # fmt: skip
    with pytest.raises(ValidationFailed):
        await bookings.complete(clinic.as_therapist(), appointment_id)  # not started yet
    await bookings.complete(clinic.as_therapist(), appointment_id, now=ny(day, 10))
    assert (await sales.session_counts(sale)).redeemed == 1
    assert await ledger.balance("deferred_revenue", location_id=clinic.other_location_id) == 9000
    assert await ledger.balance("service_revenue", location_id=clinic.location_id) == 9000
    from portal.ledger.tables import JournalLine

    line = await JournalLine.select().where(JournalLine.account == "service_revenue").first().run()
    assert line["therapist_id"] == clinic.therapist_id
    with pytest.raises(ValidationFailed):
        await bookings.complete(clinic.as_therapist(), appointment_id, now=ny(day, 10))


async def test_no_show_forfeits_unless_waived(clinic):
    day = future_day()
    appointment_id = await bookings.book(
        clinic.as_manager(), client_id=clinic.client.id, location_id=clinic.location_id,
        service_id=clinic.service_id, start_at=ny(day, 9),
    )  # fmt: skip
    with pytest.raises(bookings.Forbidden):
        await bookings.mark_no_show(clinic.as_client(), appointment_id, now=ny(day, 10))
    await bookings.mark_no_show(clinic.as_manager(), appointment_id, now=ny(day, 10))
    assert (await sales.session_counts(clinic.sale_id)).forfeited == 1


async def test_frozen_or_expired_packages_do_not_book(clinic):
    from portal.sales.tables import Sale

    await Sale.update({Sale.frozen: True}).where(Sale.id == clinic.sale_id).run()
    with pytest.raises(bookings.NoCredit):
        await bookings.book(
            clinic.as_client(), client_id=clinic.client.id, location_id=clinic.location_id,
            service_id=clinic.service_id, start_at=ny(future_day(), 9),
        )  # fmt: skip
    await (
        Sale.update({Sale.frozen: False, Sale.valid_until: datetime.now(UTC) + timedelta(days=1)})
        .where(Sale.id == clinic.sale_id)
        .run()
    )
    with pytest.raises(bookings.NoCredit):
        await bookings.book(
            clinic.as_client(), client_id=clinic.client.id, location_id=clinic.location_id,
            service_id=clinic.service_id, start_at=ny(future_day(), 9),
        )  # fmt: skip


async def test_twenty_concurrent_bookings_for_the_last_credit(clinic):
    """One credit left, twenty different free slots requested at once: one booking."""
    from portal.sales.tables import SaleSession
    from tests.bookings.conftest import add_therapist

    # Leave exactly one available credit.
    rows = await SaleSession.select(SaleSession.id).where(SaleSession.sale == clinic.sale_id).run()
    for row in rows[1:]:
        await (
            SaleSession.update({SaleSession.state: sales.REDEEMED})
            .where(SaleSession.id == row["id"])
            .run()
        )
    for n in range(3):
        await add_therapist(f"Extra {n}", clinic.location_id, clinic.service_id)
    day = future_day()
    starts = [ny(day, 9) + timedelta(minutes=30 * i) for i in range(20)]
    outcomes: list[str] = []

    async def attempt(start):
        try:
            await bookings.book(
                clinic.as_client(), client_id=clinic.client.id, location_id=clinic.location_id,
                service_id=clinic.service_id, start_at=start,
            )  # fmt: skip
            outcomes.append("booked")
        except bookings.NoCredit:
            outcomes.append("no credit")
        except (bookings.SlotTaken, ValidationFailed):
            outcomes.append("refused")

    await asyncio.gather(*(attempt(s) for s in starts))
    assert outcomes.count("booked") == 1
    assert len(outcomes) == 20 and outcomes.count("no credit") + outcomes.count("refused") == 19
    counts = await sales.session_counts(clinic.sale_id)
    assert counts.held == 1 and counts.available == 0
    assert await Appointment.count().run() == 1


async def test_any_therapist_slot_taken_meanwhile_is_a_conflict_not_a_validation_error(clinic):
    """The only therapist working at 10:00 is booked by someone else between the
    search and the click; a colleague on time off then must not turn the answer
    into "no therapist is free … outside working hours"."""
    from portal.auth.service import CLIENT, CurrentUser
    from portal.timeutil import utcnow
    from tests import factories
    from tests.bookings.conftest import give_package

    day = future_day()
    colleague = await add_therapist("Colin", clinic.location_id, clinic.service_id)
    await TimeOff.insert(
        TimeOff(therapist=colleague, starts_at=ny(day, 9), ends_at=ny(day, 12),
                reason="Course", created_at=utcnow())
    ).run()  # fmt: skip
    other = await factories.make_user(CLIENT)
    await give_package(other.id, clinic.location_id, clinic.service_id)
    await bookings.book(
        CurrentUser(other.id, other.email, "", CLIENT, frozenset()), client_id=other.id,
        location_id=clinic.location_id, service_id=clinic.service_id, start_at=ny(day, 10),
    )  # fmt: skip
    with pytest.raises(bookings.SlotTaken):
        await bookings.book(
            clinic.as_client(), client_id=clinic.client.id, location_id=clinic.location_id,
            service_id=clinic.service_id, start_at=ny(day, 10),
        )  # fmt: skip


def test_two_bookings_deadlocking_on_the_exclusion_constraints_is_a_taken_slot():
    """PostgreSQL can abort one of two colliding inserts with a deadlock instead of an
    exclusion violation; the booking must say "taken", not fail with a server error."""
    import asyncpg

    assert bookings._is_overlap_violation(asyncpg.exceptions.DeadlockDetectedError("deadlock"))
    assert bookings._is_overlap_violation(asyncpg.exceptions.ExclusionViolationError("overlap"))
    assert not bookings._is_overlap_violation(asyncpg.exceptions.UniqueViolationError("other"))


async def test_any_therapist_offers_the_least_booked_therapist_first(clinic):
    """ "Any therapist" shows each time under the colleague with the fewest bookings that
    day, the one the booking then goes to: Theresa has a morning client, so Ada (first
    by name) is no longer offered before her at every time, and bookings spread."""
    day = future_day()
    ada = await add_therapist("Ada", clinic.location_id, clinic.service_id)
    slots = availability.one_per_start(
        await bookings.free_slots(clinic.location_id, clinic.service_id, day)
    )
    at_two = next(s for s in slots if s.start == ny(day, 14))
    assert at_two.therapist_id == ada  # both free all day: the first by name
    first = await bookings.book(
        clinic.as_client(), client_id=clinic.client.id, location_id=clinic.location_id,
        service_id=clinic.service_id, start_at=ny(day, 9),
    )  # fmt: skip
    booked = await Appointment.select(Appointment.therapist).where(Appointment.id == first).first()
    assert booked is not None and booked["therapist"] == ada
    slots = availability.one_per_start(
        await bookings.free_slots(clinic.location_id, clinic.service_id, day)
    )
    at_two = next(s for s in slots if s.start == ny(day, 14))
    assert at_two.therapist_id == clinic.therapist_id  # Ada has one booking, Theresa none
    second = await bookings.book(
        clinic.as_client(), client_id=clinic.client.id, location_id=clinic.location_id,
        service_id=clinic.service_id, start_at=ny(day, 14),
    )  # fmt: skip
    booked = await Appointment.select(Appointment.therapist).where(Appointment.id == second).first()
    assert booked is not None and booked["therapist"] == at_two.therapist_id
