"""Demo rooms at the three clinics, with the equipment some services need, and an
out-of-service window tomorrow in Portland."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from portal import records
from portal.demo import DemoIds
from portal.locations.tables import Location
from portal.rooms.tables import Room, RoomOutage
from portal.staff.hours import wall_to_utc
from portal.timeutil import utcnow

ROOMS: dict[str, list[tuple[str, str, str]]] = {
    "portland-pearl": [
        ("Cedar", "hydraulic table", "Quiet room at the back, good for longer sessions."),
        ("Alder", "hydraulic table,hot stones", ""),
        ("Fir", "cupping set", "Smallest room; no wheelchair access."),
    ],
    "austin-soco": [
        ("Live Oak", "hydraulic table,cupping set", ""),
        ("Pecan", "hot stones", ""),
    ],
    "brooklyn-park-slope": [
        ("Prospect", "hydraulic table", "Street-facing; blinds down during sessions."),
        ("Garfield", "hot stones,cupping set", ""),
        ("Union", "", ""),
    ],
}


async def load_demo(ids: DemoIds) -> None:
    now = utcnow()
    created: dict[tuple[str, str], int] = {}
    for slug, rooms in ROOMS.items():
        location_id = ids.locations[slug]
        for name, equipment, notes in rooms:
            if (
                await Room.exists()
                .where((Room.location == location_id) & (Room.name == name))
                .run()
            ):
                continue
            created[(slug, name)] = await records.insert(
                Room,
                location=location_id,
                name=name,
                equipment=equipment,
                notes=notes,
                active=True,
                created_at=now,
                updated_at=now,
            )
    if ("portland-pearl", "Alder") in created:
        zone = (
            await Location.select(Location.timezone)
            .where(Location.id == ids.locations["portland-pearl"])
            .first()
            .run()
        )
        tz = ZoneInfo(str(zone["timezone"]) if zone else "UTC")
        tomorrow = now.astimezone(tz).date() + timedelta(days=1)
        await RoomOutage.insert(
            RoomOutage(
                room=created[("portland-pearl", "Alder")],
                starts_at=wall_to_utc(tomorrow, 12 * 60, tz),
                ends_at=wall_to_utc(tomorrow, 14 * 60, tz),
                reason="Hydraulic table service visit",
                created_at=now,
                created_by="owner@demo.clinic",
            )
        ).run()
