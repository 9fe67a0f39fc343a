"""What each staff role's home shows: the owner's oversight, a therapist's day (today's
agenda with the clients' health flags, notes still to write or sign), a manager's day
(today's bookings, free therapist time and conflicts per location, credentials expired
or running out); the owner's glance adds this month's utilisation."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from portal import db
from portal.audit.tables import AuditLog
from portal.auth.service import STAFF_ROLES, CurrentUser
from portal.auth.tables import User
from portal.staff import hours as h
from portal.timeutil import utcnow

RECENT_CHANGES = 8


async def owner_summary() -> dict[str, Any]:
    """Active staff count, the latest audited changes, sales waiting for review."""
    from portal.sales import service as sales  # sales build on the dashboard's contexts

    # Staff only: a chain has hundreds of thousands of client accounts, and
    # counting them on every visit to the home page is not worth it.
    return {
        "user_count": (
            await User.count()
            .where(User.role.is_in(list(STAFF_ROLES)) & (User.active == True))  # noqa: E712
            .run()
        ),
        "recent_changes": (
            await AuditLog.select()
            .order_by(AuditLog.id, ascending=False)
            .limit(RECENT_CHANGES)
            .run()
        ),
        "needs_review": await sales.needing_review(),
    }


def _today(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows whose start falls on today's date in their location's zone."""
    now = utcnow()
    return [
        r
        for r in rows
        if h.local_date(r["start_at"], ZoneInfo(str(r["timezone"])))
        == h.local_date(now, ZoneInfo(str(r["timezone"])))
    ]


async def therapist_day(user: CurrentUser) -> dict[str, Any]:
    """Today's agenda (with each client's health flags) and the notes still to write or sign."""
    from portal.bookings import listing, reading  # bookings build on the dashboard's contexts
    from portal.bookings.states import BUSY_STATES
    from portal.clients import service as clients
    from portal.notes import service as notes

    own = await listing.own_therapist_ids(user)
    now = utcnow()
    rows = (
        await reading.appointments_between(
            start=now - timedelta(days=1), end=now + timedelta(days=1),
            therapist_id=own[0], statuses=BUSY_STATES,
        )
        if own
        else []
    )  # fmt: skip
    agenda = _today(rows)
    await clients.with_health_flags(agenda)
    drafts = await notes.list_notes(user, notes.NoteFilters(status=notes.DRAFT), after=None)
    return {
        "agenda": agenda,
        "to_write": await notes.sessions_to_write(user),
        "drafts": drafts.rows,
    }


async def gaps_and_conflicts(
    user: CurrentUser, location: dict[str, Any], *, now: datetime | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Today at a location, read off its day view: ``gaps``, each therapist's free working
    time still ahead; ``conflicts``, booked appointments to move (a room out of service,
    the therapist on time off or outside their hours, a lapsed credential)."""
    from portal.bookings.dayview import build_day_view
    from portal.bookings.states import BOOKED

    now = now or utcnow()
    tz = ZoneInfo(str(location["timezone"]))
    view = await build_day_view(user, int(location["id"]), h.local_date(now, tz))
    gaps: list[dict[str, Any]] = []
    conflicts: dict[str, dict[str, Any]] = {}
    for column in view.columns:
        for block in column.blocks:
            if block.kind == "working" and column.kind == "therapist" and block.end > now:
                gaps.append({"therapist": column.title, "start": block.start, "end": block.end})
            if block.kind != "appointment" or block.status != BOOKED:
                continue
            reasons = [block.warning]
            if column.kind == "therapist" and column.warning:
                reasons.append(f"{column.title}: {column.warning.removeprefix('Not bookable: ')}")
            entry = conflicts.setdefault(
                block.href, {"href": block.href, "start": block.start, "reasons": []}
            )
            entry["reasons"] += [r for r in reasons if r and r not in entry["reasons"]]
    found = sorted((c for c in conflicts.values() if c["reasons"]), key=lambda c: c["start"])
    return {"gaps": gaps, "conflicts": found}


async def manager_day(user: CurrentUser, locations: list[dict[str, Any]]) -> dict[str, Any]:
    """Per location the manager runs: today's bookings, gaps and conflicts; credentials
    expired or running out."""
    from portal.bookings import reading  # bookings build on the dashboard's contexts
    from portal.bookings.states import BUSY_STATES
    from portal.clients import service as clients
    from portal.staff.credentials import compliance

    now = utcnow()
    today: list[dict[str, Any]] = []
    for location in locations:
        if not location["active"]:
            continue
        rows = await reading.appointments_between(
            start=now - timedelta(days=1), end=now + timedelta(days=1),
            location_id=int(location["id"]), statuses=BUSY_STATES,
        )  # fmt: skip
        appointments = _today(rows)
        await clients.with_health_flags(appointments)
        today.append(
            {
                "location": location,
                "appointments": appointments,
                **await gaps_and_conflicts(user, location, now=now),
            }
        )
    credentials = [
        item
        for place in await compliance(user, now=now)
        for item in (*place.expired, *place.within_30, *place.missing)
    ]
    return {"today": today, "credentials": credentials}


async def utilisation(
    locations: list[dict[str, Any]], *, now: datetime | None = None
) -> dict[str, Any]:
    """This month's utilisation (each location's own calendar month): the minutes booked
    (appointments that hold their therapist: booked, given, no-show) over the minutes
    offered (the active therapists' working hours there, less time off). ``percent`` is
    None when nothing is offered; ``by_location`` gives each location's own figures.

    Four reads for the whole chain, side by side (the booked time per location, the
    active therapists of each, their working hours and their time off), not four per
    location: the owner's home asks it on every visit."""
    from portal.bookings.states import BUSY_STATES
    from portal.bookings.tables import Appointment
    from portal.reports import sql
    from portal.staff.tables import TherapistLocation, TimeOff, WorkingHours

    now = now or utcnow()
    places = [loc for loc in locations if loc["active"]]
    months = {int(loc["id"]): _local_month(now, ZoneInfo(str(loc["timezone"]))) for loc in places}
    figures: list[dict[str, Any]] = []
    if places:
        ids = list(months)
        # Locations in one zone share their month: one branch of the booked-time read each.
        by_month: dict[h.Span, list[int]] = {}
        for location_id, month in months.items():
            by_month.setdefault(month, []).append(location_id)
        statuses, status_args = sql.in_list(sorted(BUSY_STATES))
        branches, args = [], []
        for month, members in by_month.items():
            places_in, place_args = sql.in_list(members)
            branches.append(f"(location IN {places_in} AND start_at >= {{}} AND start_at < {{}})")
            args += [*place_args, month.start, month.end]
        start = min(m.start for m in months.values())
        end = max(m.end for m in months.values())
        at_locations = TherapistLocation.location.is_in(ids)
        staffed, booked, hours, time_off = await db.concurrently(
            TherapistLocation.select(TherapistLocation.therapist, TherapistLocation.location)
            .where(at_locations & (TherapistLocation.therapist.active == True))  # noqa: E712
            .run(),
            Appointment.raw(
                f"SELECT location, SUM({sql.epoch('end_at')} - {sql.epoch('start_at')}) "
                f"AS seconds FROM appointment WHERE status IN {statuses} "
                f"AND ({' OR '.join(branches)}) GROUP BY location",
                *status_args,
                *args,
            ).run(),
            WorkingHours.select().where(WorkingHours.location.is_in(ids)).run(),
            TimeOff.select(TimeOff.therapist, TimeOff.starts_at, TimeOff.ends_at)
            .where(
                TimeOff.therapist.is_in(
                    TherapistLocation.select(TherapistLocation.therapist).where(at_locations)
                )
                & TimeOff.in_force()
                & (TimeOff.starts_at < end)
                & (TimeOff.ends_at > start)
            )
            .run(),
        )
        active = {(int(r["therapist"]), int(r["location"])) for r in staffed}
        seconds = {int(r["location"]): int(r["seconds"] or 0) for r in booked}
        away: dict[int, list[h.Span]] = {}
        for t in time_off:
            away.setdefault(int(t["therapist"]), []).append(h.Span(t["starts_at"], t["ends_at"]))
        shifts: dict[int, list[dict[str, Any]]] = {}
        for row in hours:
            if (int(row["therapist"]), int(row["location"])) in active:
                shifts.setdefault(int(row["location"]), []).append(row)
        spans: dict[tuple[date, int, int, str], h.Span] = {}
        for loc in places:
            location_id = int(loc["id"])
            offered = _offered_seconds(
                shifts.get(location_id, []), away, months[location_id], loc["timezone"], spans
            )
            figures.append(
                {
                    "location": loc,
                    "booked_minutes": round(seconds.get(location_id, 0) / 60),
                    "offered_minutes": round(offered / 60),
                }
            )
    for place in figures:
        place["percent"] = _percent(place["booked_minutes"], place["offered_minutes"])
    booked_total = sum(p["booked_minutes"] for p in figures)
    offered_total = sum(p["offered_minutes"] for p in figures)
    return {
        "booked_minutes": booked_total,
        "offered_minutes": offered_total,
        "percent": _percent(booked_total, offered_total),
        "by_location": figures,
    }


def _local_month(now: datetime, tz: ZoneInfo) -> h.Span:
    """The calendar month around ``now`` in the zone, as instants."""
    first = h.local_date(now, tz).replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return h.Span(h.wall_to_utc(first, 0, tz), h.wall_to_utc(following, 0, tz))


def _offered_seconds(
    shifts: list[dict[str, Any]],
    away: dict[int, list[h.Span]],
    month: h.Span,
    zone: str,
    spans: dict[tuple[date, int, int, str], h.Span],
) -> float:
    """The working time of ``shifts`` (one location's hours rows) over the local month,
    less each therapist's time off (``away``); ``spans`` keeps each local interval of a
    day in a zone as instants, for every location that works it."""
    tz = ZoneInfo(zone)
    # The therapists of a location mostly share their hours: per weekday, how many
    # without time off work each local interval, and the rows of those with some.
    shared: dict[int, dict[tuple[int, int], int]] = {}
    own: dict[int, list[tuple[tuple[int, int], list[h.Span]]]] = {}
    for row in shifts:
        weekday, key = int(row["weekday"]), (int(row["start_minute"]), int(row["end_minute"]))
        holes = away.get(int(row["therapist"]))
        if holes:
            own.setdefault(weekday, []).append((key, holes))
        else:
            counts = shared.setdefault(weekday, {})
            counts[key] = counts.get(key, 0) + 1
    offered = 0.0
    day = h.local_date(month.start, tz)
    last = h.local_date(month.end, tz)
    while day < last:
        for key, therapists in shared.get(day.weekday(), {}).items():
            span = _instants(spans, day, key, tz)
            offered += therapists * (span.end - span.start).total_seconds()
        for key, holes in own.get(day.weekday(), ()):
            span = _instants(spans, day, key, tz)
            offered += sum(
                (p.end - p.start).total_seconds() for p, off in h.subtract(span, holes) if not off
            )
        day += timedelta(days=1)
    return offered


def _instants(
    spans: dict[tuple[date, int, int, str], h.Span], day: date, key: tuple[int, int], tz: ZoneInfo
) -> h.Span:
    """The local interval ``key`` (minutes) of ``day`` in ``tz`` as instants, kept."""
    at = (day, *key, tz.key)
    span = spans.get(at)
    if span is None:
        span = spans[at] = h.interval_span(day, *key, tz)
    return span


async def bookings_today(locations: list[dict[str, Any]], *, now: datetime) -> int:
    """Appointments that hold their therapist (booked, given, no-show) starting today,
    each location's own today: counted by the database, one branch per zone."""
    from portal.bookings.states import BUSY_STATES
    from portal.bookings.tables import Appointment

    by_day: dict[h.Span, list[int]] = {}
    for loc in locations:
        tz = ZoneInfo(str(loc["timezone"]))
        by_day.setdefault(h.local_day_span(h.local_date(now, tz), tz), []).append(int(loc["id"]))
    if not by_day:
        return 0
    today: Any = None
    for day, members in by_day.items():
        branch = (
            Appointment.location.is_in(members)
            & (Appointment.start_at >= day.start)
            & (Appointment.start_at < day.end)
        )
        today = branch if today is None else today | branch
    count: int = (
        await Appointment.count().where(Appointment.status.is_in(sorted(BUSY_STATES)) & today).run()
    )
    return count


def _percent(part: int, whole: int) -> int | None:
    return round(100 * part / whole) if whole else None


# The owner's chart: recognised revenue for this month and the months before it.
GLANCE_MONTHS = 6


async def owner_glance(locations: list[dict[str, Any]]) -> dict[str, Any]:
    """The chain at a glance, from the reports' daily totals (never from the rows): this
    month's recognised revenue and the package liability per currency, today's bookings,
    and recognised revenue per month as a chart (one per currency)."""
    from portal.formatting import money
    from portal.reports import charts
    from portal.reports import service as reports
    from portal.reports.filters import Filters, Loc
    from portal.reports.periods import Period, month_starts

    places = tuple(
        Loc(int(r["id"]), str(r["name"]), str(r["slug"]), str(r["timezone"]), str(r["currency"]))
        for r in locations
        if r["active"]
    )
    if not places:
        return {}
    today = utcnow().date()
    first = month_starts(today.replace(day=1) - timedelta(days=31 * (GLANCE_MONTHS - 1)), today)[0]
    month = Filters(period=Period(today.replace(day=1), today), locations=places)
    months = Filters(period=Period(first, today), locations=places)
    revenue, liability, by_month = await reports.concurrently(
        reports.revenue(month, by_therapist=False),
        reports.liability(month),
        reports.revenue_by_month(months),
    )
    now = utcnow()
    revenue_charts = [
        charts.bar_chart(
            f"home-revenue-{s.currency}",
            f"Recognised revenue by month, {s.currency}",
            "Service and breakage revenue per location for each month (the Reports "
            "overview lists the same figures).",
            [m.strftime("%b %y") for m in s.months],
            [(loc.name, s.values[loc.id]) for loc in s.locations],
            charts.short_amount,
            partial(money, currency=s.currency),
        )
        for s in by_month
    ]
    return {
        "glance_revenue": revenue.totals,
        "glance_liability": reports.liability_totals(liability),
        "glance_bookings": await bookings_today(locations, now=now),
        "glance_utilisation": await utilisation(locations, now=now),
        "glance_charts": revenue_charts,
    }
