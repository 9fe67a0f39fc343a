"""Test data for therapists, their hours and time off, catalog services and rooms."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import date, datetime, timedelta

from portal.auth.service import CurrentUser
from portal.catalog.tables import Service
from portal.rooms.tables import Room, RoomOutage
from portal.staff import hours as h
from portal.staff.tables import (
    Therapist,
    TherapistLocation,
    TherapistService,
    TimeOff,
    WorkingHours,
)
from portal.timeutil import utcnow
from tests.factories import Account

_seq = itertools.count(1)
FAR = date(2099, 12, 31)


def actor(account: Account, location_ids: Iterable[int] = ()) -> CurrentUser:
    return CurrentUser(
        id=account.id,
        email=account.email,
        name="",
        role=account.role,
        location_ids=frozenset(location_ids),
    )


async def make_service(name: str | None = None, minutes: int = 60, equipment: str = "") -> int:
    now = utcnow()
    rows = (
        await Service.insert(
            Service(
                name=name or f"Service {next(_seq)}",
                duration_minutes=minutes,
                required_equipment=equipment,
                active=True,
                created_at=now,
                updated_at=now,
            )
        )
        .returning(Service.id)
        .run()
    )
    return int(rows[0]["id"])


async def make_therapist(
    *,
    name: str | None = None,
    location_ids: Iterable[int] = (),
    account: int | None = None,
    licence_expires: date | None = FAR,
    insurance_expires: date | None = FAR,
    service_ids: Iterable[int] = (),
    active: bool = True,
) -> int:
    now = utcnow()
    rows = (
        await Therapist.insert(
            Therapist(
                name=name or f"Therapist {next(_seq)}",
                email="",
                account=account,
                licence_number="LMT 1",
                licence_state="Oregon",
                licence_expires=licence_expires,
                insurance_expires=insurance_expires,
                active=active,
                created_at=now,
                updated_at=now,
            )
        )
        .returning(Therapist.id)
        .run()
    )
    therapist_id = int(rows[0]["id"])
    for loc in location_ids:
        await TherapistLocation.insert(
            TherapistLocation(therapist=therapist_id, location=loc)
        ).run()
    for service in service_ids:
        await TherapistService.insert(
            TherapistService(therapist=therapist_id, service=service)
        ).run()
    return therapist_id


async def add_hours(therapist_id: int, location_id: int, weekday: int, *spans: str) -> None:
    for text in spans:
        start, end = text.split("-")
        await WorkingHours.insert(
            WorkingHours(
                therapist=therapist_id,
                location=location_id,
                weekday=weekday,
                start_minute=h.parse_hhmm(start),
                end_minute=h.parse_hhmm(end) or h.MINUTES_PER_DAY,
            )
        ).run()


async def add_time_off(
    therapist_id: int, starts_at: datetime, ends_at: datetime, reason: str = "Vacation"
) -> int:
    rows = (
        await TimeOff.insert(
            TimeOff(
                therapist=therapist_id,
                starts_at=starts_at,
                ends_at=ends_at,
                all_day=False,
                timezone="UTC",
                reason=reason,
                created_at=utcnow(),
            )
        )
        .returning(TimeOff.id)
        .run()
    )
    return int(rows[0]["id"])


async def make_room(location_id: int, name: str | None = None, equipment: str = "") -> int:
    now = utcnow()
    rows = (
        await Room.insert(
            Room(
                location=location_id,
                name=name or f"Room {next(_seq)}",
                equipment=equipment,
                active=True,
                created_at=now,
                updated_at=now,
            )
        )
        .returning(Room.id)
        .run()
    )
    return int(rows[0]["id"])


async def add_outage(
    room_id: int, starts_at: datetime | None = None, ends_at: datetime | None = None
) -> int:
    starts_at = starts_at or utcnow() + timedelta(days=1)
    ends_at = ends_at or starts_at + timedelta(hours=2)
    rows = (
        await RoomOutage.insert(
            RoomOutage(
                room=room_id,
                starts_at=starts_at,
                ends_at=ends_at,
                reason="Deep cleaning",
                created_at=utcnow(),
                created_by="test",
            )
        )
        .returning(RoomOutage.id)
        .run()
    )
    return int(rows[0]["id"])
