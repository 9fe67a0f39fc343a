"""Licences and liability insurance: their status for badges, and the
compliance report per location (expired, expiring soon, missing)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from portal.access import visible_locations
from portal.auth.service import (
    MANAGER,
    OWNER,
    CurrentUser,
)
from portal.errors import Forbidden
from portal.locations.tables import Location
from portal.staff.tables import (
    Therapist,
    TherapistLocation,
)
from portal.timeutil import utcnow

# Credentials expiring within these many days are flagged on the compliance page.
SOON_DAYS = 30
LATER_DAYS = 60

# -- compliance -------------------------------------------------------------------


@dataclass(frozen=True)
class ComplianceItem:
    therapist_id: int
    therapist_name: str
    credential: str  # "Licence" or "Liability insurance"
    expires: date | None
    days_left: int | None
    detail: str = ""


@dataclass
class LocationCompliance:
    location: dict[str, Any]
    today: date
    expired: list[ComplianceItem] = field(default_factory=list)
    within_30: list[ComplianceItem] = field(default_factory=list)
    within_60: list[ComplianceItem] = field(default_factory=list)
    missing: list[ComplianceItem] = field(default_factory=list)

    @property
    def clear(self) -> bool:
        return not (self.expired or self.within_30 or self.within_60 or self.missing)


async def compliance(user: CurrentUser, *, now: datetime | None = None) -> list[LocationCompliance]:
    """Per location the user manages: licences and insurance expired, expiring
    within 30 days, within 60 days, or not on file — for active therapists,
    with "today" taken in each location's own zone."""
    if user.role not in (OWNER, MANAGER):
        raise Forbidden("Only owners and managers see compliance.")
    now = now or utcnow()
    query = Location.select(Location.id, Location.name, Location.timezone, Location.active).where(
        Location.active == True  # noqa: E712
    )
    visible = visible_locations(user)
    if visible is not None:
        query = query.where(Location.id.is_in(sorted(visible) or [-1]))
    report = []
    for location in await query.order_by(Location.name).run():
        today = now.astimezone(ZoneInfo(str(location["timezone"]))).date()
        horizon = today + timedelta(days=LATER_DAYS)
        rows = (
            await Therapist.select(
                Therapist.id,
                Therapist.name,
                Therapist.licence_number,
                Therapist.licence_state,
                Therapist.licence_expires,
                Therapist.insurance_expires,
            )
            .where(
                (Therapist.active == True)  # noqa: E712
                & Therapist.id.is_in(
                    TherapistLocation.select(TherapistLocation.therapist).where(
                        TherapistLocation.location == location["id"]
                    )
                )
                & (
                    Therapist.licence_expires.is_null()
                    | Therapist.insurance_expires.is_null()
                    | (Therapist.licence_expires <= horizon)
                    | (Therapist.insurance_expires <= horizon)
                )
            )
            .order_by(Therapist.name)
            .run()
        )
        entry = LocationCompliance(location=location, today=today)
        for row in rows:
            licence_detail = " ".join(p for p in (row["licence_state"], row["licence_number"]) if p)
            for key, label, detail in (
                ("licence_expires", "Licence", licence_detail),
                ("insurance_expires", "Liability insurance", ""),
            ):
                expires = row[key]
                days = (expires - today).days if expires is not None else None
                item = ComplianceItem(
                    int(row["id"]), str(row["name"]), label, expires, days, detail
                )
                if days is None:
                    entry.missing.append(item)
                elif days < 0:
                    entry.expired.append(item)
                elif days <= SOON_DAYS:
                    entry.within_30.append(item)
                elif days <= LATER_DAYS:
                    entry.within_60.append(item)
        for bucket in (entry.expired, entry.within_30, entry.within_60):
            bucket.sort(key=lambda i: (i.expires or date.min, i.therapist_name))
        report.append(entry)
    return report


def credential_status(expires: date | None, today: date | None = None) -> str:
    """'expired', 'soon' (≤30 days), 'later' (≤60 days), 'ok' or 'missing' — for badges."""
    if expires is None:
        return "missing"
    days = (expires - (today or utcnow().date())).days
    if days < 0:
        return "expired"
    if days <= SOON_DAYS:
        return "soon"
    if days <= LATER_DAYS:
        return "later"
    return "ok"
