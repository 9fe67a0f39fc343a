"""What each staff role's home shows: the owner's oversight, a therapist's day (today's
agenda with the clients' health flags, notes still to write or sign), a manager's day
(today's bookings per location, credentials expired or running out)."""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

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


async def manager_day(user: CurrentUser, locations: list[dict[str, Any]]) -> dict[str, Any]:
    """Per location the manager runs: today's bookings; credentials expired or running out."""
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
        today.append({"location": location, "appointments": appointments})
    credentials = [
        item
        for place in await compliance(user, now=now)
        for item in (*place.expired, *place.within_30, *place.missing)
    ]
    return {"today": today, "credentials": credentials}


# The owner's chart: recognised revenue for this month and the months before it.
GLANCE_MONTHS = 6


async def owner_glance(locations: list[dict[str, Any]]) -> dict[str, Any]:
    """The chain at a glance, from the reports' daily totals (never from the rows): this
    month's recognised revenue and the package liability per currency, today's bookings,
    and recognised revenue per month as a chart (one per currency)."""
    from portal.bookings import reading  # bookings build on the dashboard's contexts
    from portal.bookings.states import BUSY_STATES
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
        reports.revenue(month), reports.liability(month), reports.revenue_by_month(months)
    )
    now = utcnow()
    booked = await reading.appointments_between(
        start=now - timedelta(days=1), end=now + timedelta(days=1), statuses=BUSY_STATES
    )
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
        "glance_bookings": len(_today(booked)),
        "glance_charts": revenue_charts,
    }
