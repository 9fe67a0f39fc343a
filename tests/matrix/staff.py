from __future__ import annotations

from datetime import timedelta

from portal.auth.service import THERAPIST
from portal.timeutil import utcnow
from tests.matrix import Param, World
from tests.staff import helpers


async def provide(world: World) -> dict[str, Param]:
    # "Own": a profile at A linked to the world's therapist account, so the
    # therapist reads it; "other": a profile at B nobody under test works with.
    own = await helpers.make_therapist(
        name="Own Therapist",
        location_ids=[world.own_location],
        account=world.accounts[THERAPIST].id,
    )
    other = await helpers.make_therapist(
        name="Other Therapist", location_ids=[world.other_location]
    )
    start = utcnow() + timedelta(days=3)
    own_off = await helpers.add_time_off(own, start, start + timedelta(days=2))
    other_off = await helpers.add_time_off(other, start, start + timedelta(days=2))
    for therapist, location in ((own, world.own_location), (other, world.other_location)):
        await helpers.add_hours(therapist, location, 0, "09:00-12:00", "13:00-17:00")
    return {
        "therapist_id": Param(own=own, other=other),
        "time_off_id": Param(own=own_off, other=other_off),
    }
