"""Demo therapists: hours at the three clinics, one licence about to expire, one
on time off, one working at two clinics in different time zones, and the
demo therapist account linked to its profile in Portland."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from portal import records
from portal.auth.tables import User, UserLocation
from portal.catalog.tables import Service
from portal.demo import DemoIds
from portal.locations.tables import Location
from portal.staff import hours as h
from portal.staff.tables import (
    Therapist,
    TherapistLocation,
    TherapistService,
    TimeOff,
    WorkingHours,
)
from portal.timeutil import utcnow

MON_FRI = (0, 1, 2, 3, 4)
DEMO_ACCOUNT = "therapist@demo.clinic"

# Services are matched by name prefix in the catalog (when its demo is loaded).
ALL = ("Neuromuscular", "Sports", "Trigger point")

# name, email, phone, bio, (state, number), licence days left, insurance days left,
# services, account, {location slug: [(weekdays, "HH:MM-HH:MM", ...)]}
THERAPISTS: list[dict[str, Any]] = [
    {
        "name": "Theresa Nguyen",
        "email": DEMO_ACCOUNT,
        "phone": "+1 503 555 0160",
        "bio": "Neuromuscular therapist for twelve years; desk-work neck and shoulder "
        "patterns, tension headaches.",
        "licence": ("Oregon", "LMT 21874"),
        "licence_days": 410,
        "insurance_days": 300,
        "services": ALL,
        "account": DEMO_ACCOUNT,
        "hours": {"portland-pearl": [(MON_FRI, "09:00-12:00", "13:00-18:00")]},
    },
    {
        "name": "Jordan Ellis",
        "email": "jordan.ellis@example.com",
        "phone": "+1 503 555 0171",
        "bio": "Sports recovery for runners and climbers; former athletic trainer.",
        "licence": ("Oregon", "LMT 23310"),
        "licence_days": 18,  # shows up on the compliance page under 30 days
        "insurance_days": 200,
        "services": ("Sports", "Trigger point"),
        "hours": {"portland-pearl": [((1, 2, 3, 4, 5), "10:00-14:00", "15:00-19:00")]},
    },
    {
        "name": "Priya Raman",
        "email": "priya.raman@example.com",
        "phone": "+1 512 555 0132",
        "bio": "Low-back pain and sciatica-like symptoms; gentle, progressive pressure.",
        "licence": ("Texas", "MT 118204"),
        "licence_days": 520,
        "insurance_days": 45,  # insurance within 60 days
        "services": ("Neuromuscular", "Trigger point"),
        "hours": {"austin-soco": [((0, 2, 4), "08:00-12:00", "12:30-16:00")]},
        "time_off": ("austin-soco", -1, 7, "Vacation"),  # on time off now, for a week
    },
    {
        "name": "Diego Alvarez",
        "email": "diego.alvarez@example.com",
        "phone": "+1 512 555 0190",
        "bio": "Works in Austin early in the week and in Brooklyn at the end of it.",
        "licence": ("Texas", "MT 120771"),
        "licence_days": 260,
        "insurance_days": 330,
        "services": ALL,
        "hours": {
            "austin-soco": [((0, 1, 2), "09:00-17:00")],
            "brooklyn-park-slope": [((3, 4), "10:00-18:00")],
        },
    },
    {
        "name": "Hannah Brooks",
        "email": "hannah.brooks@example.com",
        "phone": "+1 718 555 0144",
        "bio": "Repetitive strain injuries of musicians and trades; forearm and shoulder work.",
        "licence": ("New York", "LMT 031552"),
        "licence_days": 700,
        "insurance_days": 380,
        "services": ("Neuromuscular", "Trigger point"),
        "hours": {
            "brooklyn-park-slope": [(MON_FRI, "12:00-20:00"), ((5,), "09:00-15:00")],
        },
    },
    {
        "name": "Sam Okafor",
        "email": "sam.okafor@example.com",
        "phone": "+1 718 555 0188",
        "bio": "Weekend sports recovery sessions.",
        "licence": ("New York", "LMT 029980"),
        "licence_days": -12,  # expired: cannot be booked, listed as expired
        "insurance_days": 150,
        "services": ("Sports",),
        "hours": {"brooklyn-park-slope": [((5, 6), "09:00-17:00")]},
    },
]


def _interval(text: str) -> tuple[int, int]:
    start, end = text.split("-")
    a, b = h.parse_hhmm(start), h.parse_hhmm(end)
    assert a is not None and b is not None
    return a, b


async def load_demo(ids: DemoIds) -> None:
    now = utcnow()
    today = now.date()
    services = await Service.select(Service.id, Service.name).run()
    for spec in THERAPISTS:
        if await Therapist.exists().where(Therapist.name == spec["name"]).run():
            continue
        account_id = None
        if spec.get("account"):
            account_id = ids.users.get(spec["account"])
            if account_id is None:
                row = await User.select(User.id).where(User.email == spec["account"]).first().run()
                account_id = int(row["id"]) if row else None
        state, number = spec["licence"]
        therapist_id = await records.insert(
            Therapist,
            name=spec["name"],
            email=spec["email"],
            phone=spec["phone"],
            bio=spec["bio"],
            account=account_id,
            licence_number=number,
            licence_state=state,
            licence_expires=today + timedelta(days=spec["licence_days"]),
            insurance_expires=today + timedelta(days=spec["insurance_days"]),
            active=True,
            created_at=now,
            updated_at=now,
        )
        location_ids = [ids.locations[slug] for slug in spec["hours"]]
        for location_id in location_ids:
            await TherapistLocation.insert(
                TherapistLocation(therapist=therapist_id, location=location_id)
            ).run()
        if account_id is not None:
            await UserLocation.delete().where(UserLocation.user == account_id).run()
            for location_id in location_ids:
                await UserLocation.insert(UserLocation(user=account_id, location=location_id)).run()
        for service in services:
            if str(service["name"]).startswith(tuple(spec["services"])):
                await TherapistService.insert(
                    TherapistService(therapist=therapist_id, service=service["id"])
                ).run()
        for slug, blocks in spec["hours"].items():
            for weekdays, *intervals in blocks:
                for weekday in weekdays:
                    for text in intervals:
                        start, end = _interval(text)
                        await WorkingHours.insert(
                            WorkingHours(
                                therapist=therapist_id,
                                location=ids.locations[slug],
                                weekday=weekday,
                                start_minute=start,
                                end_minute=end,
                            )
                        ).run()
        if spec.get("time_off"):
            slug, offset, days, reason = spec["time_off"]
            zone = (
                await Location.select(Location.timezone)
                .where(Location.id == ids.locations[slug])
                .first()
                .run()
            )
            tz = ZoneInfo(str(zone["timezone"]) if zone else "UTC")
            first = today + timedelta(days=offset)
            await TimeOff.insert(
                TimeOff(
                    therapist=therapist_id,
                    starts_at=h.wall_to_utc(first, 0, tz),
                    ends_at=h.wall_to_utc(first + timedelta(days=days), 0, tz),
                    all_day=True,
                    timezone=tz.key,
                    reason=reason,
                    created_at=now,
                )
            ).run()
