"""Clients never read the clinic's reasons for refusing a therapist (credentials, time
off, hours): they read "not available", and they are not offered whom they cannot book."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from portal.bookings import service as bookings
from portal.errors import Invalid
from portal.staff import hours as h
from portal.staff.bookability import NOT_AVAILABLE
from portal.staff.tables import Therapist
from tests import factories
from tests.bookings.conftest import add_therapist

NY = ZoneInfo("America/New_York")


def ny(day: date, hour: int) -> datetime:
    return h.wall_to_utc(day, hour * 60, NY)


async def test_a_client_reads_not_available_where_staff_read_the_reason(app, clinic):
    today = datetime.now(NY).date()
    # The licence runs out in five days; the client wants a session in ten.
    await (
        Therapist.update({Therapist.licence_expires: today + timedelta(days=5)})
        .where(Therapist.id == clinic.therapist_id)
        .run()
    )
    start = ny(today + timedelta(days=10), 10)
    with pytest.raises(Invalid) as refused:
        await bookings.book(
            clinic.as_client(), client_id=clinic.client.id, location_id=clinic.location_id,
            service_id=clinic.service_id, start_at=start, therapist_id=clinic.therapist_id,
        )  # fmt: skip
    told = " ".join(refused.value.errors.values())
    assert told == NOT_AVAILABLE
    assert "licence" not in told and "Theresa" not in told
    with pytest.raises(Invalid) as refused:
        await bookings.book(
            clinic.as_manager(), client_id=clinic.client.id, location_id=clinic.location_id,
            service_id=clinic.service_id, start_at=start, therapist_id=clinic.therapist_id,
        )  # fmt: skip
    told = " ".join(refused.value.errors.values())
    # Staff read why, and a date still to come is not called past.
    assert "Theresa's licence expires on" in told and "expired" not in told


async def test_clients_are_offered_only_therapists_they_can_book(app, clinic):
    lapsed = await add_therapist("Lapsed Lee", clinic.location_id, clinic.service_id)
    await (
        Therapist.update({Therapist.insurance_expires: date(2020, 1, 1)})
        .where(Therapist.id == lapsed)
        .run()
    )
    url = f"/appointments/new?location={clinic.location_id}&service={clinic.service_id}"
    async with factories.make_client(app) as client:
        await factories.login(client, clinic.client)
        page = await client.get(url)
        assert page.status_code == 200
        assert "Theresa" in page.text and "Lapsed Lee" not in page.text
    async with factories.make_client(app) as staff:
        await factories.login(staff, clinic.manager)
        page = await staff.get(url)
        assert page.status_code == 200 and "Lapsed Lee" in page.text
