"""Demo bookings: the demo client has a package with one session given and one booked."""

from __future__ import annotations

from datetime import date, timedelta
from zoneinfo import ZoneInfo

from portal.auth.service import CLIENT, MANAGER, CurrentUser
from portal.bookings import booking, outcomes
from portal.catalog.tables import Package
from portal.demo import DemoIds
from portal.payments import service as payments
from portal.staff import hours as h
from portal.staff.tables import Therapist
from portal.timeutil import utcnow

PACKAGE = "Neuromuscular series — 5 × 60 min"
LOCATION = "portland-pearl"


def _weekday_near(start: date, step: int) -> date:
    day = start
    while day.weekday() > 4:  # Monday to Friday
        day += timedelta(days=step)
    return day


async def load_demo(ids: DemoIds) -> None:
    location_id = ids.locations.get(LOCATION)
    client_id = ids.users.get("client@demo.clinic")
    manager_id = ids.users.get("manager.portland@demo.clinic")
    package = (
        await Package.select(Package.id, Package.service)
        .where(Package.name == PACKAGE)
        .first()
        .run()
    )
    therapist = (
        await Therapist.select(Therapist.id)
        .where(Therapist.account == ids.users.get("therapist@demo.clinic"))
        .first()
        .run()
    )
    if None in (location_id, client_id, manager_id, package, therapist):
        return
    assert location_id and client_id and manager_id and package and therapist
    manager = CurrentUser(
        manager_id, "manager.portland@demo.clinic", "", MANAGER, frozenset({location_id})
    )
    client = CurrentUser(client_id, "client@demo.clinic", "", CLIENT, frozenset())
    await payments.record_in_clinic_sale(
        manager,
        client_id=client_id,
        package_id=int(package["id"]),
        location_id=location_id,
        method="terminal",
    )
    tz = ZoneInfo("America/Los_Angeles")
    today = utcnow().astimezone(tz).date()
    past_day = _weekday_near(today - timedelta(days=7), -1)
    past_start = h.wall_to_utc(past_day, 10 * 60, tz)
    given = await booking.book(
        client,
        client_id=client_id,
        location_id=location_id,
        service_id=int(package["service"]),
        start_at=past_start,
        therapist_id=int(therapist["id"]),
        now=past_start - timedelta(days=2),
        notify_client=False,  # booked "last week": no confirmation in today's outbox
    )
    await outcomes.complete(manager, given, now=past_start + timedelta(hours=1))
    next_day = _weekday_near(today + timedelta(days=7), 1)
    await booking.book(
        client,
        client_id=client_id,
        location_id=location_id,
        service_id=int(package["service"]),
        start_at=h.wall_to_utc(next_day, 10 * 60, tz),
        therapist_id=int(therapist["id"]),
    )
