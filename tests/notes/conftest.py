"""Treatment-note tests build on the booking tests' small clinic: a location in
New York, a therapist with a sign-in, a client with a 5-session package."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from portal.auth.service import ACCOUNTANT, OWNER, THERAPIST, CurrentUser
from portal.bookings import service as bookings
from portal.notes import service as notes
from portal.notes.form import NoteInput, TriggerPointInput
from tests import factories
from tests.bookings.conftest import Clinic, add_therapist, clinic  # noqa: F401  (fixture)

NY = ZoneInfo("America/New_York")

COMPLETE = NoteInput(
    subjective="Headaches three times this week; stiff turning right.",
    symptom="Headaches",
    symptom_per_week=3,
    pain_before=7,
    pain_after=4,
    regions=["neck", "upper_trapezius"],
    techniques=["ischemic_compression"],
    pressure="medium",
    rom="Cervical rotation right 55°, 65° after.",
    assessment="Active upper trapezius points reproduce the headache.",
    plan="Stretch twice a day.",
    trigger_points=[
        TriggerPointInput("upper_trapezius", "right", 3, True, "temple"),
        TriggerPointInput("upper_trapezius", "left", 2),
    ],
)


def as_user(account: factories.Account, locations: frozenset[int] = frozenset()) -> CurrentUser:
    return CurrentUser(account.id, account.email, "", account.role, locations)


def session_start(days_ago: int, hour: int = 10) -> datetime:
    day = (datetime.now(NY) - timedelta(days=days_ago)).date()
    return datetime.combine(day, time(hour), NY).astimezone(UTC)


async def given_session(
    clinic: Clinic,  # noqa: F811
    days_ago: int = 2,
    *,
    hour: int = 10,
    complete: bool = True,
    therapist_id: int | None = None,
) -> int:
    """An appointment of the clinic's client in the past (completed unless told)."""
    start = session_start(days_ago, hour)
    appointment_id = await bookings.book(
        clinic.as_client(),
        client_id=clinic.client.id,
        location_id=clinic.location_id,
        service_id=clinic.service_id,
        start_at=start,
        therapist_id=therapist_id or clinic.therapist_id,
        now=start - timedelta(days=2),
    )
    if complete:
        manager = clinic.as_manager()
        await bookings.complete(manager, appointment_id, now=start + timedelta(hours=1))
    return appointment_id


async def signed_note(
    clinic: Clinic,  # noqa: F811
    days_ago: int = 2,
    data: NoteInput = COMPLETE,
    **changes: object,
) -> int:
    appointment_id = await given_session(clinic, days_ago)
    note_id = await notes.start_note(
        clinic.as_therapist(), appointment_id, replace(data, **changes)
    )
    await notes.sign(clinic.as_therapist(), note_id, confirmed=True)
    return note_id


async def second_therapist(clinic: Clinic) -> tuple[int, CurrentUser]:  # noqa: F811
    """Another therapist at the clinic's location, with a sign-in."""
    account = await factories.make_user(THERAPIST, location_ids=[clinic.location_id])
    therapist_id = await add_therapist(
        "Second", clinic.location_id, clinic.service_id, account_id=account.id
    )
    return therapist_id, as_user(account, frozenset({clinic.location_id}))


async def owner_user() -> CurrentUser:
    return as_user(await factories.make_user(OWNER))


async def accountant_user() -> CurrentUser:
    return as_user(await factories.make_user(ACCOUNTANT))
