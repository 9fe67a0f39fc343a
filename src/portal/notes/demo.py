"""Demo notes: the demo client's completed session has a signed SOAP note."""

from __future__ import annotations

from datetime import timedelta

from portal.auth.service import THERAPIST, CurrentUser
from portal.bookings import states
from portal.bookings.tables import Appointment
from portal.demo import DemoIds
from portal.notes import service
from portal.notes.form import NoteInput, TriggerPointInput

CLIENT = "client@demo.clinic"
THERAPIST_EMAIL = "therapist@demo.clinic"

FIRST_SESSION = NoteInput(
    subjective=(
        "Tension headaches behind the right eye, worst on long laptop days and after driving. "
        "Neck feels stiff turning right when reversing the car. Sleeping fine."
    ),
    symptom="Headaches",
    symptom_per_week=3,
    pain_before=6,
    pain_after=3,
    regions=["neck", "shoulders", "upper_trapezius", "levator_scapulae", "suboccipitals"],
    techniques=["ischemic_compression", "myofascial_release", "assisted_stretching", "moist_heat"],
    technique_notes=(
        "Moist heat to the upper back first. Sustained pressure 60–90 s on each upper "
        "trapezius point until the referral eased; suboccipital release supine."
    ),
    pressure="medium",
    rom=(
        "Cervical rotation before: left 70°, right 55° (pulling in the right upper trapezius). "
        "After: right 65°, pain-free at end range."
    ),
    assessment=(
        "Active trigger points in the right upper trapezius and suboccipitals reproduce the "
        "client's familiar headache. Good response to sustained pressure; pain 6 → 3 and "
        "better right rotation. Pattern fits desk posture and mouse use."
    ),
    plan=(
        "Upper-trapezius and levator stretch 3 × 30 s twice a day; heat in the evening. "
        "Raise the laptop to eye level. Next session: recheck right rotation, work the "
        "levator scapulae and scalenes."
    ),
    trigger_points=[
        TriggerPointInput("upper_trapezius", "right", 3, True, "right temple (familiar headache)"),
        TriggerPointInput("upper_trapezius", "left", 2, False, "side of the neck"),
        TriggerPointInput("levator_scapulae", "right", 2, False, "angle of the neck"),
        TriggerPointInput("suboccipitals", "bilateral", 2, True, "behind the right eye"),
    ],
)


async def load_demo(ids: DemoIds) -> None:
    client_id = ids.users.get(CLIENT)
    therapist_user = ids.users.get(THERAPIST_EMAIL)
    if client_id is None or therapist_user is None:
        return
    given = (
        await Appointment.select(Appointment.id, Appointment.end_at)
        .where((Appointment.client == client_id) & (Appointment.status == states.COMPLETED))
        .order_by(Appointment.start_at)
        .first()
        .run()
    )
    if given is None:
        return
    therapist = CurrentUser(
        therapist_user,
        THERAPIST_EMAIL,
        "Theresa Nguyen",
        THERAPIST,
        frozenset(ids.locations[s] for s in ("portland-pearl",) if s in ids.locations),
    )
    # Written right after the session, signed within the hour.
    written = given["end_at"] + timedelta(minutes=10)
    note_id = await service.start_note(therapist, int(given["id"]), FIRST_SESSION, now=written)
    await service.sign(therapist, note_id, confirmed=True, now=written + timedelta(minutes=20))
