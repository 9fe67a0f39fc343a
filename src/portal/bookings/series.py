"""Booking a whole series in one step: a cadence, a weekday and a time.

Each date is booked on its own (the same rules as a single booking); the
result says which dates could not be booked and why, so the client can pick
other times for those.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from zoneinfo import ZoneInfo

from portal.auth.service import CurrentUser
from portal.bookings import booking
from portal.bookings.credits import NoCredit
from portal.errors import Invalid
from portal.fields import MAX_ID, parse_int
from portal.locations.tables import Location
from portal.settings import Settings
from portal.staff import hours as h

CADENCES = {"1": "Every week", "2": "Every two weeks", "4": "Every four weeks"}
MAX_LEAD_DAYS = 366


@dataclass(frozen=True)
class SeriesRequest:
    location_id: int
    service_id: int
    therapist_id: int | None
    first_date: date
    minute: int  # local wall time, minutes since midnight
    cadence_weeks: int
    count: int


@dataclass(frozen=True)
class SeriesOutcome:
    day: date
    appointment_id: int | None
    reason: str


@dataclass(frozen=True)
class SeriesResult:
    series_id: str
    outcomes: list[SeriesOutcome]

    @property
    def booked(self) -> list[SeriesOutcome]:
        return [o for o in self.outcomes if o.appointment_id]

    @property
    def failed(self) -> list[SeriesOutcome]:
        return [o for o in self.outcomes if not o.appointment_id]


def parse_series_form(values: dict[str, str]) -> SeriesRequest:
    errors: dict[str, str] = {}
    location_id = parse_int(values, errors, "location", label="Clinic", minimum=1, maximum=MAX_ID)
    service_id = parse_int(values, errors, "service", label="Service", minimum=1, maximum=MAX_ID)
    therapist_id = parse_int(
        values, errors, "therapist", label="Therapist", minimum=1, maximum=MAX_ID, required=False
    )
    count = parse_int(values, errors, "count", label="Number of sessions", minimum=1, maximum=20)
    cadence = values.get("cadence", "1")
    if cadence not in CADENCES:
        errors["cadence"] = "Choose how often."
    try:
        first = date.fromisoformat(values.get("first_date", ""))
    except ValueError:
        errors["first_date"] = "Enter the date of the first session."
        first = date.today()
    else:
        if first < date.today() - timedelta(days=1):
            errors["first_date"] = "The first session cannot be in the past."
        elif first > date.today() + timedelta(days=MAX_LEAD_DAYS):
            errors["first_date"] = "Start the series within the next year."
    minute = h.parse_hhmm(values.get("time", ""))
    if minute is None or minute >= 24 * 60:
        errors["time"] = "Enter a time such as 17:30."
    if errors:
        raise Invalid(errors)
    assert location_id is not None and service_id is not None and count is not None
    assert minute is not None
    return SeriesRequest(
        location_id=location_id,
        service_id=service_id,
        therapist_id=therapist_id,
        first_date=first,
        minute=minute,
        cadence_weeks=int(cadence),
        count=count,
    )


async def book_series(
    actor: CurrentUser,
    client_id: int,
    request: SeriesRequest,
    *,
    settings: Settings | None = None,
    deferred: list[int] | None = None,
) -> SeriesResult:
    location = (
        await Location.select(Location.timezone)
        .where(Location.id == request.location_id)
        .first()
        .run()
    )
    if location is None:
        raise Invalid({"location": "Choose a clinic."})
    tz = ZoneInfo(str(location["timezone"]))
    series_id = uuid.uuid4().hex[:16]
    outcomes: list[SeriesOutcome] = []
    for k in range(request.count):
        day = request.first_date + timedelta(weeks=k * request.cadence_weeks)
        start = h.wall_to_utc(day, request.minute, tz)
        try:
            appointment_id = await booking.book(
                actor,
                client_id=client_id,
                location_id=request.location_id,
                service_id=request.service_id,
                start_at=start,
                therapist_id=request.therapist_id,
                series_id=series_id,
                settings=settings,
                deferred=deferred,
            )
            outcomes.append(SeriesOutcome(day, appointment_id, ""))
        except NoCredit:
            outcomes.append(SeriesOutcome(day, None, "No unused session left in the packages."))
        except booking.SlotTaken as exc:
            outcomes.append(SeriesOutcome(day, None, exc.message or "That time is already taken."))
        except Invalid as exc:
            outcomes.append(SeriesOutcome(day, None, " ".join(exc.errors.values())))
    return SeriesResult(series_id=series_id, outcomes=outcomes)
