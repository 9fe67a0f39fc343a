"""The staff's search by phone, on both engines: a phone is stored with its national digits
(``client_profile.phone_national``) by every path that writes it, and found by equality
whatever way it was typed; the migration fills the digits of profiles saved before."""

from __future__ import annotations

import importlib

from piccolo.engine import engine_finder

from portal.auth.service import OWNER, CurrentUser
from portal.auth.tables import User
from portal.clients import service
from portal.clients.tables import ClientProfile
from portal.timeutil import utcnow
from tests import factories
from tests.clients.test_profiles import PROFILE
from tests.imports.helpers import run

MIGRATION = importlib.import_module(
    "migrations.portal_2026_12_12t11_41_23_000000_client_phone_national"
)
OWNER_ACTOR = CurrentUser(0, "", "", OWNER, frozenset())


async def found_by(typed: str) -> list[int]:
    return [int(r["id"]) for r in (await service.list_clients(OWNER_ACTOR, search=typed)).rows]


async def national(client_id: int) -> str | None:
    row = await ClientProfile.select(ClientProfile.phone_national).where(
        ClientProfile.user == client_id
    ).first().run()  # fmt: skip
    return row["phone_national"]


async def test_a_phone_saved_one_way_is_found_typed_any_other(client, db):
    account = await factories.make_user("client")
    other = await factories.make_user("client")
    await factories.login(client, account)
    saved = await factories.post_form(
        client, "/account/profile", {**PROFILE, "phone": "(503) 555-0142"}
    )
    assert saved.status_code == 303
    assert await national(account.id) == "5035550142"
    for typed in ("+1 503.555.0142", "5035550142", "503-555-0142", "1 (503) 555 0142"):
        assert await found_by(typed) == [account.id], typed
    assert await found_by("(503) 555-0143") == []
    assert other.id not in await found_by("5035550142")
    # Name and email still match a number typed; a local number, the end of a whole one.
    by_email = await factories.make_user("client", email="5035550142@example.test")
    assert sorted(await found_by("5035550142")) == sorted([account.id, by_email.id])
    assert await found_by("555-0142") == [account.id]
    assert await found_by("555 0142") == [account.id]
    assert await found_by("555-0143") == []


async def test_a_number_many_clients_share_is_found_by_walking_the_list(db, monkeypatch):
    monkeypatch.setattr(service, "PHONE_SEARCH_IDS_MAX", 2)
    now = utcnow()
    family = [await factories.make_user("client") for _ in range(4)]
    for account in family:
        await ClientProfile.insert(
            ClientProfile(user=account.id, phone="+1 503 555 0100", phone_national="5035550100",
                          created_at=now, updated_at=now)
        ).run()  # fmt: skip
    assert sorted(await found_by("503-555-0100")) == sorted(a.id for a in family)


async def test_a_changed_phone_is_found_by_the_new_number_only(owner_client, db):
    account = await factories.make_user("client")
    for phone in ("+1 503 555 0199", "503.555.0111"):
        edited = await factories.post_form(
            owner_client, f"/clients/{account.id}/edit", {**PROFILE, "phone": phone}
        )
        assert edited.status_code == 303, edited.text
    assert await national(account.id) == "5035550111"
    assert await found_by("(503) 555-0111") == [account.id]
    assert await found_by("(503) 555-0199") == []


async def test_an_imported_client_is_found_by_phone(db, tmp_path):
    location = await factories.make_location()
    sheet = tmp_path / "clients.csv"
    sheet.write_text(
        "First Name,Last Name,E-mail,Mobile\n"
        "Ivy,Import,ivy@example.test,(212) 555-0100\n"
        "Uma,Unknown,uma@example.test,\n"
    )
    summary = await run("clients", sheet, location)
    assert summary.created == 2
    ivy = await User.select(User.id).where(User.email == "ivy@example.test").first().run()
    ivy = int(ivy["id"])
    assert await national(ivy) == "2125550100"  # stored as +12125550100
    assert await found_by("212.555.0100") == [ivy]
    assert await found_by("+1 212 555 0100") == [ivy]


async def test_the_migration_fills_the_digits_of_profiles_saved_before_it(db):
    clients = [await factories.make_user("client") for _ in range(4)]
    now = utcnow()
    phones = ["+1 (503) 555-0142", "503.555.0143", "call me", ""]
    for account, phone in zip(clients, phones, strict=True):
        # Written as before the column: the phone only.
        await ClientProfile.insert(
            ClientProfile(user=account.id, phone=phone, created_at=now, updated_at=now)
        ).run()
    assert [await national(a.id) for a in clients] == [None] * 4
    assert await found_by("5035550142") == []
    assert await MIGRATION.fill(engine_finder()) == 2
    assert [await national(a.id) for a in clients] == ["5035550142", "5035550143", None, None]
    assert await found_by("(503) 555-0142") == [clients[0].id]
    assert await found_by("+1 503 555 0143") == [clients[1].id]
    assert await MIGRATION.fill(engine_finder()) == 0  # nothing left to fill


async def test_the_migration_fills_profiles_in_batches(db, monkeypatch):
    monkeypatch.setattr(MIGRATION, "BATCH", {"postgres": 3, "sqlite": 3})
    clients = [await factories.make_user("client") for _ in range(7)]
    now = utcnow()
    for n, account in enumerate(clients):
        await ClientProfile.insert(
            ClientProfile(user=account.id, phone=f"+1 503 555 01{n:02d}", created_at=now,
                          updated_at=now)
        ).run()  # fmt: skip
    assert await MIGRATION.fill(engine_finder()) == 7
    assert [await national(a.id) for a in clients] == [f"50355501{n:02d}" for n in range(7)]
