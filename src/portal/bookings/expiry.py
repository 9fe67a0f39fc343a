"""Ending packages past their validity: ``portal packages expire`` (nightly, repeatable).

Two steps, each idempotent:

1. A booked appointment in the future that holds a session of a package
   that has expired (it was moved past the expiry, or the package's validity
   was shortened) cannot be given with that session: the appointment is
   cancelled, its credit returned to the package, the cancellation audited
   (actor "system") and the client told why.
2. :func:`portal.sales.service.expire_due` expires every unused session of
   packages past their validity — those returned in step 1 included — and
   writes the breakage journal lines (Dr deferred revenue / Cr breakage
   revenue).

A second run finds nothing booked on an expired package and no unused
session left, so it changes nothing. Frozen (disputed) packages wait for
their dispute to close, as in ``expire_due``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from portal import db, progress
from portal.audit import service as audit
from portal.bookings import notify
from portal.bookings.credits import release_credit
from portal.bookings.states import BOOKED, CANCELLED, set_status
from portal.bookings.tables import Appointment
from portal.sales import service as sales
from portal.sales.tables import SaleSession
from portal.settings import Settings
from portal.timeutil import utcnow


@dataclass(frozen=True)
class ReleasedBooking:
    appointment_id: int
    client_email: str
    start_at: datetime
    package: str


@dataclass(frozen=True)
class PackagesExpiryRun:
    released: list[ReleasedBooking]
    expiry: sales.ExpiryRun

    @property
    def changed_anything(self) -> bool:
        return bool(self.released) or self.expiry.sessions > 0


async def release_expired_bookings(
    *,
    now: datetime | None = None,
    settings: Settings | None = None,
    location_ids: Collection[int] | None = None,
) -> list[ReleasedBooking]:
    """Cancel future bookings that hold a session of an expired package (step 1).

    ``location_ids``: only bookings at these locations (the nightly job runs
    each location at its own 03:00); None for every location.
    """
    now = now or utcnow()
    held = (
        await SaleSession.select(
            SaleSession.appointment_id,
            SaleSession.sale.item_name.as_alias("package"),
            SaleSession.sale.valid_until.as_alias("valid_until"),
        )
        .where(
            (SaleSession.state == sales.HELD)
            & SaleSession.appointment_id.is_not_null()
            & (SaleSession.sale.status == sales.ACTIVE)
            & (SaleSession.sale.frozen == False)  # noqa: E712
            & (SaleSession.sale.valid_until <= now)
        )
        .run()
    )
    packages = {int(r["appointment_id"]): r for r in held}
    query = Appointment.select(
        Appointment.id,
        Appointment.start_at,
        Appointment.sale_session,
        Appointment.client.email.as_alias("client_email"),
        Appointment.location.timezone.as_alias("timezone"),
    ).where(
        Appointment.id.is_in(list(packages) or [-1])
        & (Appointment.status == BOOKED)
        & (Appointment.start_at > now)
    )
    if location_ids is not None:
        query = query.where(Appointment.location.is_in(list(location_ids) or [-1]))
    rows = await query.order_by(Appointment.start_at).run()
    for row in rows:
        row.update(packages[int(row["id"])])
    released: list[ReleasedBooking] = []
    for done, row in enumerate(rows):
        await progress.report(done, len(rows), "Releasing bookings of expired packages")
        expired_on = row["valid_until"].astimezone(ZoneInfo(str(row["timezone"])))
        reason = (
            f"Your package “{row['package']}” expired on {expired_on:%d %B %Y}, "
            "so this booking was released. Buy a new package to book again."
        )
        async with db.transaction():
            if not await set_status(
                int(row["id"]),
                CANCELLED,
                cancelled_at=now,
                cancel_reason=reason,
            ):
                continue  # cancelled or given meanwhile
            await release_credit(row["sale_session"], sales.AVAILABLE)
            await audit.record(
                None,
                "release_expired",
                "appointment",
                int(row["id"]),
                before={"status": BOOKED},
                after={"status": CANCELLED, "reason": "package expired", "credit": "released"},
            )
        await notify.booking_cancelled(
            int(row["id"]), credit_returned=False, late=False, reason=reason, settings=settings
        )
        released.append(
            ReleasedBooking(
                appointment_id=int(row["id"]),
                client_email=str(row["client_email"]),
                start_at=row["start_at"],
                package=str(row["package"]),
            )
        )
    return released


async def expire_packages(
    *,
    now: datetime | None = None,
    settings: Settings | None = None,
    location_ids: Collection[int] | None = None,
) -> PackagesExpiryRun:
    """Release bookings of expired packages, then expire their unused sessions.

    ``location_ids``: only packages sold at (and bookings at) these locations;
    None for every location.
    """
    now = now or utcnow()
    released = await release_expired_bookings(now=now, settings=settings, location_ids=location_ids)
    return PackagesExpiryRun(
        released=released, expiry=await sales.expire_due(now, location_ids=location_ids)
    )
