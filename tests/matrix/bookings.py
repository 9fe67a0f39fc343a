from __future__ import annotations

from datetime import timedelta

from portal.auth.service import CLIENT, THERAPIST
from portal.auth.tables import User
from portal.bookings.tables import Appointment
from portal.catalog.tables import Service
from portal.clients.tables import ClientProfile
from portal.rooms.tables import Room
from portal.staff.tables import Therapist
from portal.timeutil import utcnow
from tests import factories
from tests.matrix import Param, World

# After the staff provider, which links a therapist profile at the own
# location to the world's therapist account, and after the clients provider.
ORDER = 10
CLIENT_TARGET = "matrix-client@example.test"
# /appointments/list takes no path parameter, so the matrix requests it as each role
# with nothing to provide here; its ?location= scope (403 for another location, a
# therapist's own appointments only) is covered in tests/bookings/test_appointment_list.py.


async def _appointment(client: int, therapist: int, location: int, start_days: int) -> int:
    now = utcnow()
    service = (
        await Service.insert(
            Service(name=f"Matrix booking {location}-{start_days}", duration_minutes=60,
                    created_at=now, updated_at=now)
        ).returning(Service.id).run()
    )[0]["id"]  # fmt: skip
    room = (
        await Room.insert(
            Room(location=location, name=f"Matrix room {start_days}", created_at=now, updated_at=now)
        ).returning(Room.id).run()
    )[0]["id"]  # fmt: skip
    # In the past, so "complete" and "no-show" are meaningful actions.
    start = now - timedelta(days=start_days)
    return (
        await Appointment.insert(
            Appointment(
                client=client, therapist=therapist, room=room, location=location, service=service,
                start_at=start, end_at=start + timedelta(hours=1),
                busy_until=start + timedelta(hours=1), status="booked", created_at=now,
                updated_at=now,
            )
        ).returning(Appointment.id).run()
    )[0]["id"]  # fmt: skip


async def provide(world: World) -> dict[str, Param]:
    own_therapist = (
        await Therapist.select(Therapist.id)
        .where(Therapist.account == world.accounts[THERAPIST].id)
        .first()
        .run()
    )
    assert own_therapist is not None, "the staff provider links the world's therapist"
    stranger = await factories.make_user(CLIENT)
    other_therapist = (
        await Therapist.insert(
            Therapist(name="Elsewhere", created_at=utcnow(), updated_at=utcnow())
        ).returning(Therapist.id).run()
    )[0]["id"]  # fmt: skip
    own = await _appointment(world.accounts[CLIENT].id, own_therapist["id"], world.own_location, 2)
    other = await _appointment(stranger.id, other_therapist, world.other_location, 3)
    # Clients belong to the locations where they buy, book or prefer to go: the
    # clients provider's spare client prefers the own location, and the stranger
    # booked at the other one. (Replaces the clients provider's chain-wide value.)
    spare = await User.select(User.id).where(User.email == CLIENT_TARGET).first().run()
    assert spare is not None, "the clients provider creates its spare client"
    if await ClientProfile.exists().where(ClientProfile.user == spare["id"]).run():
        await (
            ClientProfile.update({ClientProfile.preferred_location: world.own_location})
            .where(ClientProfile.user == spare["id"])
            .run()
        )
    else:
        await ClientProfile.insert(
            ClientProfile(user=spare["id"], preferred_location=world.own_location)
        ).run()
    return {
        "appointment_id": Param(own=own, other=other),
        "client_id": Param(own=spare["id"], other=stranger.id),
    }
