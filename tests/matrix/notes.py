from __future__ import annotations

from datetime import timedelta

from portal.auth.service import CLIENT, THERAPIST
from portal.bookings.tables import Appointment
from portal.catalog.tables import Service
from portal.notes.tables import TreatmentNote
from portal.rooms.tables import Room
from portal.staff.tables import Therapist
from portal.timeutil import utcnow
from tests import factories
from tests.matrix import Param, World

# After the staff provider (ORDER 0), which links a therapist profile at the
# own location to the world's therapist account, and the bookings provider.
ORDER = 20


async def _completed_session(client: int, therapist: int, location: int, days_ago: int) -> int:
    now = utcnow()
    service = (
        await Service.insert(
            Service(name=f"Matrix notes {location}-{days_ago}", duration_minutes=60,
                    created_at=now, updated_at=now)
        ).returning(Service.id).run()
    )[0]["id"]  # fmt: skip
    room = (
        await Room.insert(
            Room(location=location, name=f"Notes room {days_ago}", created_at=now, updated_at=now)
        ).returning(Room.id).run()
    )[0]["id"]  # fmt: skip
    start = now - timedelta(days=days_ago)
    return (
        await Appointment.insert(
            Appointment(
                client=client, therapist=therapist, room=room, location=location, service=service,
                start_at=start, end_at=start + timedelta(hours=1),
                busy_until=start + timedelta(hours=1), status="completed", completed_at=start,
                created_at=now, updated_at=now,
            )
        ).returning(Appointment.id).run()
    )[0]["id"]  # fmt: skip


async def _draft(appointment: int, client: int, therapist: int, location: int, author: int) -> int:
    # A draft without pain after or assessment: it cannot be signed by an empty
    # form, so every variant of every route sees the same note.
    now = utcnow()
    return (
        await TreatmentNote.insert(
            TreatmentNote(
                appointment=appointment, client=client, therapist=therapist, location=location,
                author=author, status="draft", pain_before=5, subjective="Matrix",
                created_at=now, updated_at=now,
            )
        ).returning(TreatmentNote.id).run()
    )[0]["id"]  # fmt: skip


async def provide(world: World) -> dict[str, Param]:
    own_therapist = (
        await Therapist.select(Therapist.id)
        .where(Therapist.account == world.accounts[THERAPIST].id)
        .first()
        .run()
    )
    assert own_therapist is not None, "the staff provider links the world's therapist"
    # "Other": a client treated at B by a therapist nobody under test is or has treated.
    stranger = await factories.make_user(CLIENT)
    stranger_author = await factories.make_user(THERAPIST, location_ids=[world.other_location])
    other_therapist = (
        await Therapist.insert(
            Therapist(name="Notes elsewhere", account=stranger_author.id, created_at=utcnow(),
                      updated_at=utcnow())
        ).returning(Therapist.id).run()
    )[0]["id"]  # fmt: skip
    client = world.accounts[CLIENT].id
    own_session = await _completed_session(client, own_therapist["id"], world.own_location, 4)
    other_session = await _completed_session(stranger.id, other_therapist, world.other_location, 5)
    own = await _draft(
        own_session, client, own_therapist["id"], world.own_location, world.accounts[THERAPIST].id
    )
    other = await _draft(
        other_session, stranger.id, other_therapist, world.other_location, stranger_author.id
    )
    return {
        "note_id": Param(own=own, other=other),
        "progress_client_id": Param(own=client, other=stranger.id),
    }
