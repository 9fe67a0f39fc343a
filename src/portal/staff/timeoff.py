"""Time off: a therapist's absence at one location (whole days or a span of
local times), recorded and removed with an audit record. A manager records it
(approved at once); a therapist requests it (pending until a manager approves or
declines it). Only approved time off blocks booking."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from portal import contexts, db, records
from portal.audit import service as audit
from portal.auth.service import (
    CurrentUser,
)
from portal.auth.tables import User
from portal.email import messages
from portal.errors import Conflict, Forbidden, Invalid
from portal.fields import require_text
from portal.settings import Settings
from portal.staff import hours as h
from portal.staff.tables import (
    TIME_OFF_APPROVED,
    TIME_OFF_DECLINED,
    TIME_OFF_PENDING,
    TimeOff,
)
from portal.staff.therapists import get_therapist, get_therapist_for, location_names, parse_date
from portal.timeutil import utcnow

MAX_TIME_OFF_DAYS = 366
STATUS_LABELS = {
    TIME_OFF_PENDING: "Requested, awaiting a manager",
    TIME_OFF_APPROVED: "Approved",
    TIME_OFF_DECLINED: "Declined",
}


# -- time off ---------------------------------------------------------------


@dataclass(frozen=True)
class TimeOffInput:
    """Whole days (no times) or from a local date-time to another, in a location's zone."""

    location_id: int
    start_date: date
    end_date: date
    start_minute: int | None = None
    end_minute: int | None = None
    reason: str = ""

    @property
    def all_day(self) -> bool:
        return self.start_minute is None and self.end_minute is None


def parse_days(
    values: dict[str, str], errors: dict[str, str], labels: tuple[str, str], missing: str
) -> tuple[date | None, date | None]:
    """A dated window's first and last day (``labels``); the last is the first when
    left empty; ``missing`` is the message when there is no first day."""
    start_date = parse_date(values, errors, "start_date", label=labels[0])
    if start_date is None and "start_date" not in errors:
        errors["start_date"] = missing
    return start_date, parse_date(values, errors, "end_date", label=labels[1]) or start_date


def window_reason(
    values: dict[str, str], errors: dict[str, str], days: tuple[date | None, date | None]
) -> tuple[date, date, str]:
    """A dated window's reason, then every error of its form at once; else its days
    and the reason."""
    reason = require_text(values, errors, "reason", label="Reason", max_length=200)
    start_date, end_date = days
    if errors or start_date is None or end_date is None:
        raise Invalid(errors)
    return start_date, end_date, reason


def parse_time_off_form(values: dict[str, str]) -> TimeOffInput:
    errors: dict[str, str] = {}
    try:
        location_id = int(values.get("location_id", ""))
    except ValueError:
        errors["location_id"] = "Choose the location whose time zone the dates are in."
        location_id = 0
    days = parse_days(values, errors, ("First day", "Last day"), "Enter the first day.")
    times: dict[str, int | None] = {}
    for name in ("start_time", "end_time"):
        raw = values.get(name, "").strip()
        times[name] = None
        if raw:
            parsed = h.parse_hhmm(raw)
            if parsed is None or parsed >= h.MINUTES_PER_DAY:
                errors[name] = "Enter a time such as 13:00, or leave empty for whole days."
            times[name] = parsed
    if (times["start_time"] is None) != (times["end_time"] is None) and not errors:
        missing = "start_time" if times["start_time"] is None else "end_time"
        errors[missing] = "Give both times, or neither for whole days."
    start_date, end_date, reason = window_reason(values, errors, days)
    return TimeOffInput(
        location_id=location_id,
        start_date=start_date,
        end_date=end_date,
        start_minute=times["start_time"],
        end_minute=times["end_time"],
        reason=reason,
    )


def time_off_span(data: TimeOffInput, tz: ZoneInfo) -> tuple[h.Span | None, dict[str, str]]:
    errors: dict[str, str] = {}
    if data.all_day:
        if data.end_date < data.start_date:
            errors["end_date"] = "The last day is before the first day."
            return None, errors
        span = h.Span(
            h.wall_to_utc(data.start_date, 0, tz),
            h.wall_to_utc(data.end_date + timedelta(days=1), 0, tz),
        )
    else:
        start, end = h.local_window(
            (data.start_date, data.start_minute), (data.end_date, data.end_minute), tz, errors
        )
        if errors or start is None or end is None:
            return None, errors
        if end == start:
            errors["end_time"] = "The time off is empty: the end must be after the start."
            return None, errors
        if end < start:
            errors["end_time"] = "The end is before the start."
            return None, errors
        span = h.Span(start, end)
    if span.end - span.start > timedelta(days=MAX_TIME_OFF_DAYS):
        errors["end_date"] = "Time off can be at most a year; enter longer absences in parts."
        return None, errors
    return span, errors


async def add_time_off(
    actor: CurrentUser, therapist_id: int, data: TimeOffInput, *, address: str = ""
) -> int:
    """Time off recorded by a manager: approved at once."""
    therapist = await get_therapist_for(actor, therapist_id, write=True)
    return await _record(actor, therapist, data, TIME_OFF_APPROVED, address=address)


async def request_time_off(
    actor: CurrentUser, therapist_id: int, data: TimeOffInput, *, address: str = ""
) -> int:
    """Time off the therapist asks for themselves: pending until a manager decides;
    it does not block booking meanwhile."""
    therapist = await own_profile(actor, therapist_id)
    return await _record(actor, therapist, data, TIME_OFF_PENDING, address=address)


async def own_profile(actor: CurrentUser, therapist_id: int) -> dict[str, Any]:
    """The therapist's own profile, for what only they do (request time off)."""
    therapist = await get_therapist_for(actor, therapist_id)
    if therapist["account"] != actor.id:
        raise Forbidden("Therapists request time off for themselves only.")
    return therapist


async def _record(
    actor: CurrentUser, therapist: dict[str, Any], data: TimeOffInput, status: str, *, address: str
) -> int:
    therapist_id = int(therapist["id"])
    if data.location_id not in therapist["location_ids"]:
        raise Invalid({"location_id": "Choose one of the therapist's locations."})
    place = (await location_names({data.location_id}))[data.location_id]
    tz = ZoneInfo(str(place["timezone"]))
    span, errors = time_off_span(data, tz)
    if errors or span is None:
        raise Invalid(errors)
    async with db.transaction():
        clash = (
            await TimeOff.select(
                TimeOff.starts_at, TimeOff.ends_at, TimeOff.reason, TimeOff.timezone
            )
            .where(
                (TimeOff.therapist == therapist_id)
                & TimeOff.cancelled_at.is_null()
                & (TimeOff.status != TIME_OFF_DECLINED)
                & (TimeOff.starts_at < span.end)
                & (TimeOff.ends_at > span.start)
            )
            .first()
            .run()
        )
        if clash:
            ztz = ZoneInfo(str(clash["timezone"]))
            raise Invalid(
                {
                    "start_date": "Overlaps time off already recorded "
                    f"({clash['starts_at'].astimezone(ztz):%Y-%m-%d %H:%M} to "
                    f"{clash['ends_at'].astimezone(ztz):%Y-%m-%d %H:%M}, {clash['reason']})."
                }
            )
        time_off_id = await records.insert(
            TimeOff,
            therapist=therapist_id,
            starts_at=span.start,
            ends_at=span.end,
            all_day=data.all_day,
            timezone=tz.key,
            reason=data.reason,
            created_at=utcnow(),
            status=status,
        )
        window = {
            "starts_at": span.start,
            "ends_at": span.end,
            "all_day": data.all_day,
            "timezone": tz.key,
        }
        await audit.record(
            actor,
            "add_time_off" if status == TIME_OFF_APPROVED else "request_time_off",
            "therapist",
            therapist_id,
            after={"time_off": describe_time_off(window), "reason": data.reason, "status": status},
            address=address,
        )
    return time_off_id


async def bookings_in_time_off(
    actor: CurrentUser, therapist_id: int, time_off_id: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Requested time off and the therapist's bookings inside it, which approving it
    would leave without their therapist (the manager moves or cancels them)."""
    row = await get_time_off_for(actor, therapist_id, time_off_id, write=True)
    booked = await contexts.therapist_bookings(therapist_id, row["starts_at"], row["ends_at"])
    return row, booked


async def decide_time_off(
    actor: CurrentUser,
    therapist_id: int,
    time_off_id: int,
    *,
    approve: bool,
    confirmed: bool = False,
    address: str = "",
    settings: Settings | None = None,
) -> bool:
    """A manager approves or declines requested time off; audited, and the therapist
    is emailed. False when it had already been decided (or removed): two presses,
    or two managers at once, decide once. Time off with bookings inside it is approved
    only ``confirmed`` (the manager has seen them: ``bookings_in_time_off``)."""
    row, booked = await bookings_in_time_off(actor, therapist_id, time_off_id)
    pending = row["status"] == TIME_OFF_PENDING and row["cancelled_at"] is None
    if approve and pending and booked and not confirmed:
        raise Conflict(
            f"{len(booked)} booking(s) fall in this time off: confirm to approve it anyway."
        )
    status = TIME_OFF_APPROVED if approve else TIME_OFF_DECLINED
    async with db.transaction():
        decided = await db.update_where(
            TimeOff,
            {TimeOff.status: status},
            (TimeOff.id == time_off_id)
            & (TimeOff.therapist == therapist_id)
            & (TimeOff.status == TIME_OFF_PENDING)
            & TimeOff.cancelled_at.is_null(),
        )
        if not decided:
            return False
        await audit.record(
            actor,
            "approve_time_off" if approve else "decline_time_off",
            "therapist",
            therapist_id,
            before={"time_off": row["description"], "status": TIME_OFF_PENDING},
            after={"time_off": row["description"], "status": status},
            address=address,
        )
    therapist = await get_therapist(therapist_id)
    email = await account_email(therapist)
    if email:
        await messages.send_time_off_decision(
            email,
            name=str(therapist["name"]),
            time_off=str(row["description"]),
            reason=str(row["reason"]),
            approved=approve,
            settings=settings,
            defer=True,
        )
    return True


async def account_email(therapist: dict[str, Any]) -> str:
    """Where the therapist reads the portal's mail: their sign-in, else their profile's."""
    if therapist["account"]:
        row = await User.select(User.email).where(User.id == therapist["account"]).first().run()
        if row:
            return str(row["email"])
    return str(therapist.get("email") or "")


def describe_time_off(row: dict[str, Any]) -> str:
    tz = ZoneInfo(str(row["timezone"]))
    start = row["starts_at"].astimezone(tz)
    end = row["ends_at"].astimezone(tz)
    if row["all_day"]:
        last = (end - timedelta(minutes=1)).date()
        if last == start.date():
            return f"{start:%Y-%m-%d} (whole day, {tz.key})"
        return f"{start:%Y-%m-%d} to {last:%Y-%m-%d} (whole days, {tz.key})"
    return f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} ({tz.key})"


async def list_time_off(
    therapist_id: int, *, since: datetime | None = None
) -> list[dict[str, Any]]:
    query = TimeOff.select().where(
        (TimeOff.therapist == therapist_id) & TimeOff.cancelled_at.is_null()
    )
    if since is not None:
        query = query.where(TimeOff.ends_at > since)
    rows = await query.order_by(TimeOff.starts_at).run()
    for row in rows:
        row["description"] = describe_time_off(row)
    return rows


async def get_time_off_for(
    actor: CurrentUser, therapist_id: int, time_off_id: int, *, write: bool = False
) -> dict[str, Any]:
    await get_therapist_for(actor, therapist_id, write=write)
    row = await records.get_child(
        TimeOff, time_off_id, TimeOff.therapist, therapist_id, "No such time off."
    )
    row["description"] = describe_time_off(row)
    return row


async def remove_time_off(
    actor: CurrentUser, therapist_id: int, time_off_id: int, *, address: str = ""
) -> bool:
    """Cancel time off: the row stays (with ``cancelled_at``) so history is whole.

    Returns False when it was already cancelled.
    """
    row = await get_time_off_for(actor, therapist_id, time_off_id, write=True)
    return await records.cancel(
        actor,
        TimeOff,
        time_off_id,
        TimeOff.therapist,
        therapist_id,
        entity="therapist",
        action="remove_time_off",
        before={"time_off": row["description"], "reason": row["reason"]},
        after={"time_off": None, "reason": None},
        address=address,
    )
