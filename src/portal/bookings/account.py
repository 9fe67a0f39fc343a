"""What a client sees on "My account": packages, upcoming appointments, receipts.

Counts come from the session credits' states (never a stored counter):
*left* are the sessions not yet used (free to book + booked:
``sales.sessions_left``, the one definition), *used* the ones given or
forfeited. A package that ends within :data:`EXPIRY_WARNING_DAYS` with
sessions left gets a warning.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from portal.bookings import states
from portal.bookings.reading import client_appointments
from portal.clients import service as clients
from portal.locations.tables import Location
from portal.sales import service as sales
from portal.timeutil import utcnow

EXPIRY_WARNING_DAYS = 14


def _package(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    free = int(row["free"])
    booked = int(row["booked"])
    valid_until = row["valid_until"]
    expired = valid_until is not None and valid_until <= now
    days_left = (valid_until - now).days if valid_until and not expired else None
    left = sales.sessions_left(free, booked, valid_until, now)
    return {
        "id": row["id"],
        "name": row["item_name"],
        "service_name": row["service_name"],
        "service_id": row["service_id"],
        "location_id": row["location"],
        "location_name": row["location_name"],
        "timezone": row["location_timezone"],
        "total": int(row["sessions_total"]),
        "free": 0 if expired else free,
        "booked": booked,
        "used": int(row["used"]),
        "left": left,
        "valid_until": valid_until,
        "expired": expired,
        "days_left": days_left,
        "expiring_soon": (
            days_left is not None
            and valid_until - now <= timedelta(days=EXPIRY_WARNING_DAYS)
            and left > 0
        ),
        "frozen": bool(row["frozen"]),
    }


async def summary(client_id: int, *, now: datetime | None = None) -> dict[str, Any]:
    """``packages`` (current first), ``appointments`` (upcoming), ``receipts``."""
    now = now or utcnow()
    sold = await sales.client_sales(client_id)
    packages = [_package(r, now) for r in sold if r["status"] == sales.ACTIVE]
    packages.sort(key=lambda p: (p["expired"], p["valid_until"] or now))
    upcoming = await client_appointments(client_id, limit=50, booked_after=now)
    for row in upcoming:
        row["late"] = states.is_late(row, now)
        row["started"] = row["start_at"] <= now
    receipts = [
        {
            "sale_id": r["id"],
            "number": f"{int(r['id']):06d}",
            "name": r["item_name"],
            "location_id": r["location"],
            "paid_at": r["activated_at"],
            "timezone": r["location_timezone"],
            "total_cents": r["total_cents"],
            "currency": r["currency"],
            "refunded": r["status"] == sales.REFUNDED,
        }
        for r in sold
        if r["status"] in (sales.ACTIVE, sales.REFUNDED) and r["activated_at"] is not None
    ]
    return {"packages": packages, "appointments": upcoming, "receipts": receipts}


async def account_context(client_id: int) -> dict[str, Any]:
    """Everything the My account page shows."""
    client = await clients.get_client(client_id)
    latest = await clients.current_intake(client_id)
    shop = None
    if client["preferred_location_id"] is not None:
        shop = (
            await Location.select(Location.slug)
            .where((Location.id == client["preferred_location_id"]) & (Location.active == True))  # noqa: E712
            .first()
            .run()
        )
    return {
        "client": client,
        "shop_url": f"/book/{shop['slug']}" if shop else "",
        "intake": clients.present_intake(latest) if latest else None,
        **await summary(client_id),
    }
