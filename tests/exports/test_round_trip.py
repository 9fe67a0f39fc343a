"""Export → import into an empty portal → the same clients, balances, liability,
therapists and upcoming appointments (with their rooms)."""

from __future__ import annotations

import io
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from portal import db as portal_db
from portal.auth.service import OWNER, CurrentUser
from portal.auth.tables import User
from portal.catalog.tables import Package, Service
from portal.clients.tables import ClientProfile
from portal.exports import archive
from portal.imports import reading
from portal.imports import service as imports
from portal.imports.layouts import LAYOUTS, guess_mapping
from portal.ledger import service as ledger
from portal.rooms.tables import Room
from portal.staff.tables import Therapist
from tests import factories
from tests.bookings.conftest import make_bookable
from tests.conftest import TRUNCATE_SQL
from tests.exports.conftest import World, read_zip, rows

# Columns that name the portal's own rows (ids), which a new portal numbers anew.
OWN_IDS = {"external_id", "client_external_id"}


async def _chain_archive() -> bytes:
    target = io.BytesIO()
    await archive.write(target, archive.Scope(notes=True))  # notes: the staff's about clients
    return target.getvalue()


async def _empty_portal(db: Any, database: Any) -> None:
    """A new, empty portal: a fresh database (the suite's template, or the schema emptied)."""
    if db.kind == "sqlite":
        path = database.workdir / f"fresh-{database.counter}.sqlite3"
        shutil.copyfile(database.template, path)
        engine = portal_db.make_engine(f"sqlite:///{path}")
        portal_db.bind_engine(engine)
        await portal_db.prepare(engine)
    else:
        await database.engine.run_ddl(database.reset_sql or TRUNCATE_SQL)


def _comparable(text: str, drop: set[str]) -> list[dict[str, str]]:
    table = rows(text)
    return sorted(
        ({k: v for k, v in zip(table[0], r, strict=True) if k not in drop} for r in table[1:]),
        key=lambda r: sorted(r.items()),
    )


async def test_export_then_import_into_an_empty_portal(
    world: World, db: Any, database: Any, tmp_path: Path
) -> None:
    nyc = world.clinic.location_id
    liability = await ledger.balance("deferred_revenue", location_id=nyc)
    assert liability == 36000
    # Names a spreadsheet would read as formulas, and a therapist the import can match.
    await User.update({User.name: "Ada -Lovelace"}).where(User.id == world.clinic.client.id).run()
    await (
        Therapist.update({Therapist.email: "theresa@example.test", Therapist.name: "=Theresa"})
        .where(Therapist.id == world.clinic.therapist_id)
        .run()
    )
    exported = read_zip(await _chain_archive())
    folder = tmp_path / "archive"
    folder.mkdir()
    for name, text in exported.items():
        (folder / name).write_text(text, encoding="utf-8-sig" if name.endswith(".csv") else "utf-8")

    await _empty_portal(db, database)
    location = await factories.make_location(slug="nyc", timezone="America/New_York")
    now = datetime.now(UTC)
    service = (
        await Service.insert(Service(name="NMT 60", duration_minutes=60, created_at=now))
        .returning(Service.id).run()
    )[0]["id"]  # fmt: skip
    await Package.insert(
        Package(name="5 × 60", service=service, sessions=5, validity_days=180, created_at=now)
    ).run()
    for name in ("Room A", "Room B"):  # rooms are set up in the portal, not imported
        await Room.insert(Room(location=location, name=name, created_at=now, updated_at=now)).run()
    owner = await factories.make_user(OWNER)
    actor = CurrentUser(owner.id, owner.email, "", OWNER, frozenset())

    async def load(kind: str, file: str) -> None:
        sheet = reading.open_sheet(folder / file)
        summary = await imports.run_import(
            kind, sheet, location_id=location, actor=actor,
            mapping=guess_mapping(LAYOUTS[kind], sheet.headers),
        )  # fmt: skip
        assert (summary.rejected, summary.created) == (0, summary.total), summary.failures

    for kind in ("clients", "balances", "therapists"):
        await load(kind, f"{kind}.csv")
    # The owner gives the therapist their service and hours (no file holds them).
    (theresa,) = await Therapist.select(Therapist.id).run()
    await make_bookable(int(theresa["id"]), location, int(service))
    await load("appointments", "appointments_upcoming.csv")

    again = read_zip(await _chain_archive())
    assert _comparable(again["clients.csv"], OWN_IDS) == _comparable(
        exported["clients.csv"], OWN_IDS
    )
    # The same balances, price paid included (the package cost more than what is left).
    balances = _comparable(again["balances.csv"], OWN_IDS)
    assert balances == _comparable(exported["balances.csv"], OWN_IDS)
    assert [(b["price_paid"], b["value_left"]) for b in balances] == [("450.00", "360.00")]
    assert await ledger.balance("deferred_revenue", location_id=location) == liability
    for name in ("therapists.csv", "appointments_upcoming.csv"):
        assert _comparable(again[name], OWN_IDS) == _comparable(exported[name], OWN_IDS), name
    assert len(rows(again["appointments_upcoming.csv"])) == 2  # the header and the booking
    names = {r["name"] for r in await User.select(User.name).where(User.role == "client").run()}
    assert "Ada -Lovelace" in names
    # Consent and the notes for staff came in on the profile (and went out again above).
    ada = (
        await ClientProfile.select(ClientProfile.marketing_consent, ClientProfile.staff_notes)
        .where(ClientProfile.user.name == "Ada -Lovelace")
        .run()
    )
    assert ada == [{"marketing_consent": True, "staff_notes": "Prefers firm pressure"}]
