"""A known scenario for the exports: one clinic (New York), a client with a package of five
sessions (one given, one booked ahead, three free), an intake, a signed and a draft note,
and a second client with nothing."""

from __future__ import annotations

import dataclasses
import io
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from portal.auth.service import CLIENT, OWNER, CurrentUser
from portal.auth.tables import User
from portal.bookings import service as bookings
from portal.clients.tables import ClientIntake, ClientProfile
from portal.notes.tables import TreatmentNote
from portal.sales.tables import Sale
from portal.settings import Settings
from portal.staff import hours as h
from portal.timeutil import utcnow
from tests import factories
from tests.bookings.conftest import Clinic, clinic  # noqa: F401  (fixture)

NY = ZoneInfo("America/New_York")


def ny(day: date, hour: int) -> datetime:
    return h.wall_to_utc(day, hour * 60, NY)


@dataclass
class World:
    clinic: Clinic
    given: int  # appointment: completed
    upcoming: int  # appointment: booked ahead
    day: date
    other: factories.Account  # a second client
    owner: factories.Account
    signed_note: int
    draft_note: int

    def owner_user(self) -> CurrentUser:
        return CurrentUser(self.owner.id, self.owner.email, "", OWNER, frozenset())

    def client_user(self) -> CurrentUser:
        c = self.clinic.client
        return CurrentUser(c.id, c.email, "Ada Lovelace", CLIENT, frozenset())


async def _note(world_clinic: Clinic, appointment: int, status: str, text: str) -> int:
    now = utcnow()
    return int(
        (
            await TreatmentNote.insert(
                TreatmentNote(
                    appointment=appointment, client=world_clinic.client.id,
                    therapist=world_clinic.therapist_id, location=world_clinic.location_id,
                    author=world_clinic.therapist_account.id, status=status, subjective=text,
                    pain_before=6, pain_after=3, regions='["upper_trapezius"]',
                    techniques='["ischemic_compression"]', assessment="Better",
                    created_at=now, updated_at=now, signed_at=now if status == "signed" else None,
                )
            ).returning(TreatmentNote.id).run()
        )[0]["id"]
    )  # fmt: skip


@pytest.fixture
async def world(clinic: Clinic) -> World:  # noqa: F811
    c = clinic
    await User.update({User.name: "Ada Lovelace"}).where(User.id == c.client.id).run()
    now = utcnow()
    await ClientProfile.insert(
        ClientProfile(
            user=c.client.id, phone="+12125550143", date_of_birth=date(1990, 12, 10),
            address="1 Main St\nApt 2", emergency_contact_name="Byron", created_at=now,
            updated_at=now, marketing_consent=True, staff_notes="Prefers firm pressure",
        )
    ).run()  # fmt: skip
    await ClientIntake.insert(
        ClientIntake(
            client=c.client.id, version=1, created_at=datetime(2026, 11, 1, 15, tzinfo=UTC),
            concerns='["neck_shoulder", "headaches"]', pain_level=6, goals="=cmd|' /C calc'!A0",
            consent_at=datetime(2026, 11, 1, 15, tzinfo=UTC),
        )
    ).run()  # fmt: skip
    # The package was bought on 1 November 2026 (New York) and runs out at 00:30 local time
    # on 30 April 2027 (04:30 UTC, daylight saving time).
    await (
        Sale.update(
            {
                Sale.created_at: datetime(2026, 11, 1, 14, 58, tzinfo=UTC),
                Sale.activated_at: datetime(2026, 11, 1, 15, tzinfo=UTC),
                Sale.valid_until: datetime(2027, 4, 30, 4, 30, tzinfo=UTC),
            }
        )
        .where(Sale.id == c.sale_id)
        .run()
    )
    day = (datetime.now(NY) + timedelta(days=10)).date()
    given = await bookings.book(
        c.as_client(), client_id=c.client.id, location_id=c.location_id,
        service_id=c.service_id, start_at=ny(day, 9), notify_client=False,
    )  # fmt: skip
    await bookings.complete(c.as_manager(), given, now=ny(day, 10))
    upcoming = await bookings.book(
        c.as_client(), client_id=c.client.id, location_id=c.location_id,
        service_id=c.service_id, start_at=ny(day, 14), notify_client=False,
    )  # fmt: skip
    signed = await _note(c, given, "signed", "Neck stiff after desk work")
    draft = await _note(c, upcoming, "draft", "Draft secret words")
    other = await factories.make_user(CLIENT, email="other@example.test")
    owner = await factories.make_user(OWNER)
    return World(c, given, upcoming, day, other, owner, signed, draft)


@pytest.fixture
async def export_app(app: Any, tmp_path: Any) -> AsyncIterator[Any]:
    """The app with its var directory in the test's own folder."""
    original: Settings = app.state.settings
    app.state.settings = dataclasses.replace(original, var_dir=tmp_path)
    try:
        yield app
    finally:
        app.state.settings = original


def read_zip(data: bytes) -> dict[str, str]:
    """Each file of an archive as text (the BOM checked and removed)."""
    out = {}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for name in archive.namelist():
            raw = archive.read(name)
            if name.endswith(".csv"):
                assert raw.startswith(b"\xef\xbb\xbf"), name
                raw = raw[3:]
            out[name] = raw.decode("utf-8")
    return out


def rows(text: str) -> list[list[str]]:
    import csv

    return list(csv.reader(io.StringIO(text)))
