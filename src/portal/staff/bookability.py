"""Whether a therapist may be booked at a location for a span of time: active,
licensed and insured then, working there, inside their hours, not on time off."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from portal.catalog.tables import Service
from portal.locations.tables import Location
from portal.staff import hours as h
from portal.staff.schedule import hours_of
from portal.staff.tables import (
    Therapist,
    TherapistLocation,
    TherapistService,
    TimeOff,
)
from portal.staff.timeoff import describe_time_off
from portal.timeutil import utcnow

# -- bookability ----------------------------------------------------------------


@dataclass(frozen=True)
class Bookability:
    """Whether a therapist may be booked for [start, end) at a location, and why not."""

    bookable: bool
    reasons: tuple[str, ...] = ()
    # Those of the reasons that are the clinic's business (credentials, an inactive
    # therapist, time off): a client reads NOT_AVAILABLE instead.
    private: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.bookable


NOT_AVAILABLE = "Not available at that time. Choose another time or another therapist."


def as_told(reasons: list[str] | tuple[str, ...], private: tuple[str, ...] | None) -> str:
    """The reasons as one message; ``private`` given (a client reads it), those are not
    named, and "not available" stands for them."""
    if private is None:
        return " ".join(dict.fromkeys(reasons))
    shown = [r for r in reasons if r not in private]
    if len(shown) < len(reasons):
        shown.append(NOT_AVAILABLE)
    return " ".join(dict.fromkeys(shown))


def _no(*reasons: str) -> Bookability:
    return Bookability(False, tuple(reasons))


async def is_bookable(
    therapist_id: int,
    location_id: int,
    start_utc: datetime,
    end_utc: datetime,
    service_id: int | None = None,
) -> Bookability:
    """The staff side of the booking rules (appointments add their own checks).

    Bookable when the therapist is active, works at the location, holds a
    licence and insurance valid on every local date the interval touches (in
    the location's zone), the interval lies within their working hours there
    on those dates (DST-correct), no time off overlaps it, and, when a
    service is given, they may perform it. Every failing rule is reported.
    """
    if start_utc.tzinfo is None or end_utc.tzinfo is None:
        raise ValueError("is_bookable needs timezone-aware datetimes")
    wanted = h.Span(start_utc.astimezone(UTC), end_utc.astimezone(UTC))
    if wanted.end <= wanted.start:
        return _no("The end must be after the start.")
    therapist = await Therapist.select().where(Therapist.id == therapist_id).first().run()
    if therapist is None:
        return _no("No such therapist.")
    location = await Location.select().where(Location.id == location_id).first().run()
    if location is None:
        return _no("No such location.")
    tz = ZoneInfo(str(location["timezone"]))
    name = therapist["name"]
    reasons: list[str] = []
    private: list[str] = []

    def secret(reason: str) -> None:
        reasons.append(reason)
        private.append(reason)

    if not therapist["active"]:
        secret(f"{name} is inactive.")
    if not location["active"]:
        reasons.append(f"{location['name']} is inactive.")
    works_there = (
        await TherapistLocation.exists()
        .where(
            (TherapistLocation.therapist == therapist_id)
            & (TherapistLocation.location == location_id)
        )
        .run()
    )
    if not works_there:
        reasons.append(f"{name} does not work at {location['name']}.")
    first_day = h.local_date(wanted.start, tz)
    last_day = h.local_date(wanted.end - timedelta(microseconds=1), tz)
    for key, label in (
        ("licence_expires", "licence"),
        ("insurance_expires", "liability insurance"),
    ):
        expires = therapist[key]
        if expires is None:
            secret(f"No {label} expiry date is on file for {name}.")
        elif expires < last_day:
            if expires < h.local_date(utcnow(), tz):
                secret(f"{name}'s {label} expired on {expires.isoformat()}.")
            else:
                secret(f"{name}'s {label} expires on {expires.isoformat()}, before then.")
    if works_there:
        rows = await hours_of(therapist_id, location_id)
        spans = []
        for day in h.days_between(first_day - timedelta(days=1), last_day):
            spans += [
                h.interval_span(day, r["start_minute"], r["end_minute"], tz)
                for r in rows
                if r["weekday"] == day.weekday()
            ]
        if not any(span.contains(wanted) for span in h.merge(spans)):
            local_start = wanted.start.astimezone(tz)
            local_end = wanted.end.astimezone(tz)
            today = [r for r in rows if r["weekday"] == first_day.weekday()]
            worked = (
                ", ".join(h.format_interval(r["start_minute"], r["end_minute"]) for r in today)
                if today
                else "not working"
            )
            reasons.append(
                f"{local_start:%H:%M}–{local_end:%H:%M} on {first_day:%A %Y-%m-%d} is outside "
                f"{name}'s working hours at {location['name']} ({worked} that day)."
            )
    off = (
        await TimeOff.select()
        .where(
            (TimeOff.therapist == therapist_id)
            & TimeOff.in_force()
            & (TimeOff.starts_at < wanted.end)
            & (TimeOff.ends_at > wanted.start)
        )
        .run()
    )
    for row in off:
        secret(f"{name} is on time off: {row['reason']} ({describe_time_off(row)}).")
    if service_id is not None:
        service = await Service.select(Service.name).where(Service.id == service_id).first().run()
        if service is None:
            reasons.append("No such service.")
        elif (
            not await TherapistService.exists()
            .where(
                (TherapistService.therapist == therapist_id)
                & (TherapistService.service == service_id)
            )
            .run()
        ):
            reasons.append(f"{name} is not permitted to perform {service['name']}.")
    return Bookability(not reasons, tuple(reasons), tuple(private))
