"""Demo clients: profiles, intakes (one with two versions), and their welcome emails."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

from portal import db
from portal.auth import passwords
from portal.auth.service import CLIENT
from portal.auth.tables import User
from portal.clients.phones import phone_digits
from portal.clients.tables import ClientIntake, ClientProfile
from portal.demo import DEMO_PASSWORD, DemoIds
from portal.email import service as email
from portal.email.tables import OutboxMessage
from portal.timeutil import utcnow

# email, name, location slug, profile, intake versions (oldest first)
DEMO_CLIENTS: list[dict[str, Any]] = [
    {
        "email": "client@demo.clinic",
        "name": "Casey Morgan",
        "location": "portland-pearl",
        "days_ago": 40,
        "profile": {
            "phone": "+1 503 555 0199",
            "date_of_birth": date(1988, 3, 14),
            "address": "2231 NW Johnson St\nPortland, OR 97210",
            "emergency_contact_name": "Jamie Morgan",
            "emergency_contact_phone": "+1 503 555 0123",
        },
        "intakes": [
            {
                "days_ago": 38,
                "concerns": ["neck_shoulder_tension", "tension_headaches"],
                "pain_where": "Right side of the neck into the shoulder; "
                "headaches behind the right eye.",
                "pain_duration": "3_to_12_months",
                "pain_worse": "Long days at the laptop, driving, stress before deadlines.",
                "pain_better": "Heat, a walk at lunch, stretching in the evening.",
                "pain_level": 6,
                "regions": ["neck", "shoulders", "upper_trapezius", "suboccipitals"],
                "work_posture": "desk",
                "daily_activities": "UX designer, 8–9 hours at a laptop; 40-minute commute by car.",
                "sports": "Yoga once a week, occasional hikes.",
                "goals": "Fewer headaches (now 3 a week); turn my head fully when driving.",
                "pressure": "medium",
            },
            {
                "days_ago": 6,
                "concerns": ["neck_shoulder_tension", "tension_headaches", "repetitive_strain"],
                "concerns_other": "",
                "pain_where": "Right side of the neck into the shoulder, and now the right forearm "
                "from the mouse.",
                "pain_duration": "3_to_12_months",
                "pain_worse": "Long days at the laptop, driving, stress before deadlines.",
                "pain_better": "Heat, a walk at lunch; the first two sessions helped for days.",
                "pain_level": 4,
                "regions": [
                    "neck",
                    "shoulders",
                    "upper_trapezius",
                    "suboccipitals",
                    "forearm_extensors",
                ],
                "work_posture": "desk",
                "daily_activities": "UX designer, 8–9 hours at a laptop; 40-minute commute by car. "
                "New standing desk since last month.",
                "sports": "Yoga once a week, occasional hikes.",
                "goals": "Fewer headaches (down to 1–2 a week); turn my head fully when driving.",
                "pressure": "firm",
            },
        ],
    },
    {
        "email": "jordan.lee@demo.clinic",
        "name": "Jordan Lee",
        "location": "austin-soco",
        "days_ago": 25,
        "profile": {
            "phone": "+1 512 555 0164",
            "date_of_birth": date(1994, 9, 2),
            "emergency_contact_name": "Sam Lee",
            "emergency_contact_phone": "+1 512 555 0110",
        },
        "intakes": [
            {
                "days_ago": 24,
                "concerns": ["sports_recovery"],
                "pain_where": "Back of the left thigh and the calf after long runs.",
                "pain_duration": "6_weeks_to_3_months",
                "pain_worse": "Hill repeats, sitting for long after a run.",
                "pain_better": "Foam rolling, easy days.",
                "pain_level": 3,
                "regions": ["thighs", "hamstrings", "gastrocnemius_soleus", "calves_feet"],
                "work_posture": "mixed",
                "daily_activities": "Teacher, on my feet most of the day.",
                "sports": "Running 50 km a week; training for the Austin Marathon in February.",
                "goals": "Recover between long runs and reach the start line without a strain.",
                "pressure": "deep",
            }
        ],
    },
    {
        "email": "priya.shah@demo.clinic",
        "name": "Priya Shah",
        "location": "brooklyn-park-slope",
        "days_ago": 18,
        "profile": {
            "phone": "+1 718 555 0177",
            "address": "455 5th St, Brooklyn, NY 11215",
        },
        "intakes": [
            {
                "days_ago": 17,
                "concerns": ["repetitive_strain", "neck_shoulder_tension"],
                "pain_where": "Left forearm and inner elbow, "
                "tingling into the fingers after rehearsals.",
                "pain_duration": "over_a_year",
                "pain_worse": "Rehearsals over two hours, fast passages, carrying the case.",
                "pain_better": "Rest days, warm water.",
                "pain_level": 5,
                "regions": ["arms_elbows", "wrists_hands", "forearm_flexors", "scalenes"],
                "work_posture": "mixed",
                "daily_activities": "Violinist: practice 3–4 hours a day, concerts at weekends.",
                "sports": "Swimming twice a week.",
                "goals": "Play a full concert without tingling.",
                "health_flags": ["other"],
                "health_details": "Mild carpal tunnel diagnosed in 2023; no surgery.",
                "pressure": "light",
            }
        ],
    },
    {
        "email": "maria.gonzalez@demo.clinic",
        "name": "Maria Gonzalez",
        "location": "austin-soco",
        "days_ago": 9,
        "profile": {"phone": "+1 512 555 0148"},
        "intakes": [
            {
                "days_ago": 8,
                "concerns": ["low_back_sciatica", "postural_imbalance"],
                "pain_where": "Low back on the right, sometimes down the back of the leg.",
                "pain_duration": "6_weeks_to_3_months",
                "pain_worse": "Standing still, getting out of the car.",
                "pain_better": "Lying on my side with a pillow between the knees.",
                "pain_level": 5,
                "regions": ["lower_back", "glutes", "quadratus_lumborum", "piriformis"],
                "work_posture": "standing",
                "daily_activities": "Pharmacist, standing all day; a toddler at home.",
                "sports": "Prenatal yoga.",
                "goals": "Sleep through the night; keep working until my leave.",
                "health_flags": ["pregnancy"],
                "health_details": "24 weeks pregnant, no complications; "
                "my midwife approves massage.",
                "pressure": "light",
            }
        ],
    },
    {
        "email": "sam.okafor@demo.clinic",
        "name": "Sam Okafor",
        "location": "portland-pearl",
        "days_ago": 2,
        "profile": {"phone": "+1 503 555 0131"},
        "intakes": [],
    },
]


# Regular clients of the last months at each clinic (their history: desk/demo.py):
# (email, name, location slug, phone), four a clinic.
_REGULARS = {
    "portland-pearl": ("503", ("Ava Thompson", "Noah Kim", "Lena Fischer", "Omar Haddad")),
    "austin-soco": ("512", ("Grace Miller", "Luis Ortega", "Hana Sato", "Ben Carter")),
    "brooklyn-park-slope": ("718", ("Chloe Martin", "David Cohen", "Zoe Adams", "Ravi Patel")),
}
HISTORY_CLIENTS: list[tuple[str, str, str, str]] = [
    (f"{name.lower().replace(' ', '.')}@demo.clinic", name, slug, f"+1 {area} 555 01{n}{k}")
    for n, (slug, (area, names)) in enumerate(_REGULARS.items())
    for k, name in enumerate(names)
]
DEMO_CLIENTS += [
    {"email": email, "name": name, "location": slug, "days_ago": 140,
     "profile": {"phone": phone}, "intakes": []}
    for email, name, slug, phone in HISTORY_CLIENTS
]  # fmt: skip


async def _user_id(
    email_address: str, name: str, ids: DemoIds, days_ago: int, password_hash: str
) -> int:
    if email_address in ids.users:
        return ids.users[email_address]
    row = await User.select(User.id).where(User.email == email_address).first().run()
    if row is not None:
        return int(row["id"])
    created = utcnow() - timedelta(days=days_ago)
    user_id = await db.insert_row(
        User(
            email=email_address,
            name=name,
            role=CLIENT,
            password_hash=password_hash,
            active=True,
            created_at=created,
            password_changed_at=created,
        )
    )
    ids.users[email_address] = user_id
    return user_id


async def load_demo(ids: DemoIds) -> None:
    now = utcnow()
    password_hash = passwords.hash_password(DEMO_PASSWORD)  # one slow hash, not one a client
    for spec in DEMO_CLIENTS:
        user_id = await _user_id(spec["email"], spec["name"], ids, spec["days_ago"], password_hash)
        if await ClientProfile.exists().where(ClientProfile.user == user_id).run():
            continue
        joined = now - timedelta(days=spec["days_ago"])
        await ClientProfile.insert(
            ClientProfile(
                user=user_id,
                preferred_location=ids.locations.get(spec["location"]),
                email_reminders=True,
                terms_accepted_at=joined,
                created_at=joined,
                updated_at=joined,
                phone_national=phone_digits(spec["profile"].get("phone", "")),
                **spec["profile"],
            )
        ).run()
        for version, answers in enumerate(spec["intakes"], start=1):
            at = now - timedelta(days=answers["days_ago"])
            values = {k: v for k, v in answers.items() if k != "days_ago"}
            for name in ("concerns", "regions", "health_flags"):
                values[name] = json.dumps(values.get(name, []))
            await ClientIntake.insert(
                ClientIntake(
                    client=user_id, version=version, created_at=at, consent_at=at, **values
                )
            ).run()
        rendered = email.render("welcome", {"name": spec["name"]})
        await OutboxMessage.insert(
            OutboxMessage(
                created_at=joined,
                to_address=spec["email"],
                subject=rendered.subject,
                template="welcome",
                kind="welcome",
                body_text=rendered.text,
                body_html=rendered.html,
                transport=email.OUTBOX,
                status=email.QUEUED,
            )
        ).run()
