"""The memberships report: members by location and plan, and per month and location the
active members at month end, joins, cancellations (memberships that ended), freezes,
churn and recurring revenue (paid membership invoices), joins and recurring revenue split
by channel. Days are each location's local days, as every report's.

The channel is how a membership is billed: *desk*, each period paid at the front desk
(cash, cheque, card terminal); *online*, a Stripe subscription renewing on the saved
card (joined from the public catalog, or through a Checkout link the desk sent)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from portal.audit.tables import AuditLog
from portal.memberships.tables import Membership, MembershipPeriod
from portal.reports.filters import Filters, Loc
from portal.reports.periods import month_starts, next_month
from portal.reports.series import Series
from portal.timeutil import to_local

ACTIVE_STATES = ("active", "past_due")
DESK, ONLINE = "desk", "online"
CHANNELS = {DESK: "Desk", ONLINE: "Online"}


def channel_of(billing: str) -> str:
    return DESK if billing == DESK else ONLINE


def _by_channel() -> dict[str, int]:
    return dict.fromkeys(CHANNELS, 0)


@dataclass
class MonthRow:
    """One month at one location."""

    month: date
    location: Loc
    active: int = 0  # members at month end (joined, not ended)
    joins: int = 0
    cancellations: int = 0
    freezes: int = 0
    active_at_start: int = 0
    recurring: dict[str, int] = field(default_factory=dict)  # currency → paid invoices
    joins_by: dict[str, int] = field(default_factory=_by_channel)  # channel → joins
    # channel → currency → paid invoices
    recurring_by: dict[str, dict[str, int]] = field(
        default_factory=lambda: {c: {} for c in CHANNELS}
    )

    @property
    def churn_percent(self) -> float | None:
        """Cancellations over the members at the month's start (None: nobody to lose)."""
        if not self.active_at_start:
            return None
        return round(100 * self.cancellations / self.active_at_start, 1)


@dataclass
class PlanRow:
    location: Loc
    plan: str
    active: int
    frozen: int
    past_due: int


@dataclass
class ChannelSeries:
    """Months × channels of one figure over the locations together: joins (``unit``
    "members") or one currency's recurring revenue (``unit`` the currency)."""

    unit: str
    months: list[date]
    values: dict[str, list[int]]  # channel → one value per month


@dataclass
class MembershipsReport:
    months: list[MonthRow]
    plans: list[PlanRow]
    totals: dict[str, int]  # joins, cancellations, freezes, active (at the period's end)
    recurring: dict[str, int]  # currency → paid in the period
    active_series: list[Series]  # one, in "members" (counts)
    recurring_series: list[Series]  # one per currency
    joins_by: dict[str, int] = field(default_factory=_by_channel)  # channel → joins
    recurring_by: dict[str, dict[str, int]] = field(default_factory=dict)  # channel → cur.
    channel_joins: ChannelSeries | None = None
    channel_recurring: list[ChannelSeries] = field(default_factory=list)  # one per currency


def _day(value: datetime | None, zone: str) -> date | None:
    return None if value is None else to_local(value, zone).date()


async def memberships(f: Filters) -> MembershipsReport:
    locations = {loc.id: loc for loc in f.locations}
    t = Membership
    columns = (t.id, t.location, t.status, t.paused, t.joined_at, t.ended_at, t.billing)
    rows = (
        await Membership.select(*columns, Membership.plan.name.as_alias("plan_name"))
        .where(Membership.location.is_in(sorted(locations) or [-1]))
        .where(Membership.joined_at.is_not_null())
        .run()
    )
    months = month_starts(f.period.start, f.period.end)
    table = {(m, loc_id): MonthRow(m, loc) for m in months for loc_id, loc in locations.items()}
    last = f.period.end
    plans: dict[tuple[int, str], PlanRow] = {}
    for row in rows:
        loc = locations[int(row["location"])]
        joined = _day(row["joined_at"], loc.timezone)
        ended = _day(row["ended_at"], loc.timezone) if row["status"] == "ended" else None
        assert joined is not None
        for m in months:
            cell = table[(m, loc.id)]
            end = min(next_month(m), last + timedelta(days=1))  # the day after the month
            if joined < m and (ended is None or ended >= m):
                cell.active_at_start += 1
            if joined < end and (ended is None or ended >= end):
                cell.active += 1
            if m <= joined < end and f.period.start <= joined <= last:
                cell.joins += 1
                cell.joins_by[channel_of(str(row["billing"]))] += 1
            if ended is not None and m <= ended < end and f.period.start <= ended <= last:
                cell.cancellations += 1
        if joined <= last and (ended is None or ended > last):
            plan = plans.setdefault(
                (loc.id, str(row["plan_name"])), PlanRow(loc, str(row["plan_name"]), 0, 0, 0)
            )
            plan.active += 1
            plan.frozen += 1 if row["paused"] else 0
            plan.past_due += 1 if row["status"] == "past_due" else 0
    await _add_freezes(table, locations, f, {int(r["id"]): int(r["location"]) for r in rows})
    await _add_recurring(table, locations, f)
    month_rows = [table[(m, loc_id)] for m in months for loc_id in locations]
    recurring: dict[str, int] = defaultdict(int)
    for cell in month_rows:
        for currency, cents in cell.recurring.items():
            recurring[currency] += cents
    last_month = [table[(months[-1], loc_id)] for loc_id in locations] if months else []
    totals = {
        "joins": sum(c.joins for c in month_rows),
        "cancellations": sum(c.cancellations for c in month_rows),
        "freezes": sum(c.freezes for c in month_rows),
        "active": sum(c.active for c in last_month),
    }
    ordered = sorted(locations.values(), key=lambda loc: loc.name)
    active_series = [
        Series("members", months, {i: [table[(m, i)].active for m in months] for i in locations},
               ordered)
    ]  # fmt: skip
    recurring_series = [
        Series(
            currency,
            months,
            {i: [table[(m, i)].recurring.get(currency, 0) for m in months] for i in locations},
            ordered,
        )
        for currency in sorted(recurring)
    ]
    by_month = {m: [table[(m, i)] for i in locations] for m in months}

    def per_channel(unit: str, figure: Callable[[MonthRow, str], int]) -> ChannelSeries:
        """``figure`` of each channel per month, over the locations together."""
        values = {
            c: [sum(figure(cell, c) for cell in by_month[m]) for m in months] for c in CHANNELS
        }
        return ChannelSeries(unit, months, values)

    def paid(currency: str) -> Callable[[MonthRow, str], int]:
        return lambda cell, channel: cell.recurring_by[channel].get(currency, 0)

    channel_recurring = [per_channel(cur, paid(cur)) for cur in sorted(recurring)]
    return MembershipsReport(
        months=month_rows,
        plans=sorted(plans.values(), key=lambda p: (p.location.name, p.plan)),
        totals=totals,
        recurring=dict(recurring),
        active_series=active_series,
        recurring_series=recurring_series,
        joins_by={c: sum(cell.joins_by[c] for cell in month_rows) for c in CHANNELS},
        recurring_by={c: {s.unit: sum(s.values[c]) for s in channel_recurring} for c in CHANNELS},
        channel_joins=per_channel("members", lambda cell, c: cell.joins_by[c]),
        channel_recurring=channel_recurring,
    )


def _cell(
    table: dict[tuple[date, int], MonthRow], f: Filters, loc: Loc, at: datetime
) -> MonthRow | None:
    day = to_local(at, loc.timezone).date()
    if not f.period.start <= day <= f.period.end:
        return None
    return table.get((day.replace(day=1), loc.id))


async def _add_freezes(
    table: dict[tuple[date, int], MonthRow],
    locations: dict[int, Loc],
    f: Filters,
    location_of: dict[int, int],
) -> None:
    """Freezes as the audit trail has them (each freeze a member or staff made)."""
    rows = (
        await AuditLog.select(AuditLog.entity_id, AuditLog.at)
        .where((AuditLog.entity == "membership") & (AuditLog.action == "freeze"))
        .run()
    )
    for row in rows:
        loc_id = location_of.get(int(row["entity_id"])) if row["entity_id"].isdigit() else None
        cell = _cell(table, f, locations[loc_id], row["at"]) if loc_id is not None else None
        if cell is not None:
            cell.freezes += 1


async def _add_recurring(
    table: dict[tuple[date, int], MonthRow], locations: dict[int, Loc], f: Filters
) -> None:
    """Paid membership invoices, by the local day they were paid and their channel."""
    p = MembershipPeriod
    location = p.membership.location.as_alias("location")
    billing = p.membership.billing.as_alias("billing")
    rows = (
        await p.select(p.amount_cents, p.currency, p.paid_at, location, billing)
        .where(MembershipPeriod.status == "paid")
        .where(MembershipPeriod.membership.location.is_in(sorted(locations) or [-1]))
        .run()
    )
    for row in rows:
        cell = _cell(table, f, locations[int(row["location"])], row["paid_at"])
        if cell is not None:
            currency, cents = str(row["currency"]), int(row["amount_cents"])
            cell.recurring[currency] = cell.recurring.get(currency, 0) + cents
            channel = cell.recurring_by[channel_of(str(row["billing"]))]
            channel[currency] = channel.get(currency, 0) + cents
