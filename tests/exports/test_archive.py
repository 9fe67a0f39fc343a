"""What the archive holds for a known scenario: exact rows and figures, in the import's layouts."""

from __future__ import annotations

import io
import re

from portal.exports import archive
from portal.imports import layouts
from tests.exports.conftest import World, read_zip, rows


async def _archive(scope: archive.Scope) -> dict[str, str]:
    target = io.BytesIO()
    await archive.write(target, scope)
    return read_zip(target.getvalue())


async def test_the_chain_archive_in_the_import_layouts(world: World) -> None:
    c = world.clinic
    files = await _archive(archive.Scope())
    assert "notes.csv" not in files  # only when chosen
    assert sorted(files) == sorted(
        ["README.txt", "clients.csv", "balances.csv", "appointments_upcoming.csv",
         "therapists.csv", "sales.csv", "payments.csv", "refunds.csv", "appointments.csv",
         "intakes.csv"]
    )  # fmt: skip
    clients = rows(files["clients.csv"])
    assert clients[0] == layouts.CLIENTS.headers
    by_email = {r[0]: r for r in clients[1:]}
    assert by_email[c.client.email] == [
        c.client.email, "Ada", "Lovelace", "+12125550143", "1990-12-10", "1 Main St\nApt 2",
        "Byron", "", "yes", "", str(c.client.id),
    ]  # fmt: skip
    # No profile: no consent recorded. Notes for staff only when notes are chosen.
    assert by_email["other@example.test"][8:] == ["no", "", str(world.other.id)]
    # Staff are not clients.
    assert world.owner.email not in by_email

    balances = rows(files["balances.csv"])
    assert balances[0] == layouts.BALANCES.headers
    # 5 × 90.00: one given, one held by the booking ahead, three free: 4 left, 360.00.
    assert balances[1:] == [
        [c.client.email, str(c.client.id), "Ada", "Lovelace", "5 × 60", "4", "360.00", "450.00",
         "5", "USD", "2026-11-01", "2027-04-30", "nyc", str(c.sale_id)]
    ]  # fmt: skip

    upcoming = rows(files["appointments_upcoming.csv"])
    assert upcoming[0] == layouts.APPOINTMENTS.headers
    assert len(upcoming) == 2
    row = upcoming[1]
    assert row[:6] == [c.client.email, str(c.client.id), "Ada", "Lovelace", "", "nyc"]
    # Local wall time with the zone's offset.
    assert re.fullmatch(rf"{world.day.isoformat()}T14:00:00-0[45]:00", row[6])
    assert row[7:] == ["NMT 60", "Room B", str(world.upcoming)]

    therapists = rows(files["therapists.csv"])
    assert therapists == [layouts.THERAPISTS.headers, ["", "Theresa", "nyc"]]

    sales = rows(files["sales.csv"])
    assert sales[0] == list(archive.SALES_HEADER)
    sale = dict(zip(sales[0], sales[1], strict=True))
    assert (sale["status"], sale["sessions_available"], sale["sessions_held"]) == (
        "active",
        "3",
        "1",
    )
    assert (sale["sessions_redeemed"], sale["total"], sale["value_left"]) == (
        "1",
        "450.00",
        "360.00",
    )
    assert sale["activated_at"] == "2026-11-01T10:00:00-05:00"
    assert sale["valid_until"] == "2027-04-30T00:30:00-04:00"
    assert sale["timezone"] == "America/New_York"

    appointments = rows(files["appointments.csv"])
    statuses = {r[0]: r[8] for r in appointments[1:]}
    assert statuses == {str(world.given): "completed", str(world.upcoming): "booked"}

    intakes = rows(files["intakes.csv"])
    intake = dict(zip(intakes[0], intakes[1], strict=True))
    assert intake["concerns"] == "neck_shoulder|headaches"
    assert intake["goals"] == "'=cmd|' /C calc'!A0"  # written as text, not a formula
    assert intake["saved_at"] == "2026-11-01T15:00:00+00:00"


async def test_notes_are_in_only_when_chosen(world: World) -> None:
    files = await _archive(archive.Scope(notes=True))
    notes = rows(files["notes.csv"])
    by_id = {r[0]: dict(zip(notes[0], r, strict=True)) for r in notes[1:]}
    # The owner's archive holds drafts too (owners read them).
    assert by_id[str(world.signed_note)]["subjective"] == "Neck stiff after desk work"
    assert by_id[str(world.draft_note)]["subjective"] == "Draft secret words"
    assert by_id[str(world.signed_note)]["regions"] == "upper_trapezius"
    clients = {
        r[0]: dict(zip(layouts.CLIENTS.headers, r, strict=True))
        for r in rows(files["clients.csv"])[1:]
    }
    assert clients[world.clinic.client.email]["staff_notes"] == "Prefers firm pressure"


async def test_a_clients_own_archive_holds_only_theirs(world: World) -> None:
    c = world.clinic
    files = await _archive(archive.Scope(client_id=c.client.id, notes=True, own=True))
    (own,) = rows(files["clients.csv"])[1:]
    assert own[0] == c.client.email
    # Their consent, not what staff noted about them.
    assert own[8:10] == ["yes", ""]
    assert rows(files["therapists.csv"]) == [layouts.THERAPISTS.headers]
    notes = {r[0]: r for r in rows(files["notes.csv"])[1:]}
    assert notes[str(world.signed_note)][9] == "Neck stiff after desk work"
    # Their draft: that it is being written, nothing of it.
    assert notes[str(world.draft_note)][8] == "being written"
    assert "Draft secret words" not in files["notes.csv"]

    theirs = await _archive(archive.Scope(client_id=world.other.id, notes=True, own=True))
    assert [r[0] for r in rows(theirs["clients.csv"])[1:]] == ["other@example.test"]
    for name in ("balances.csv", "sales.csv", "appointments.csv", "intakes.csv", "notes.csv"):
        assert len(rows(theirs[name])) == 1, name  # the header only
    assert c.client.email not in "".join(theirs.values())


def test_cells() -> None:
    assert archive.cell("+44 20 7946 0000") == "+44 20 7946 0000"
    assert archive.cell("-12.50") == "-12.50"
    assert archive.cell("=SUM(A1)") == "'=SUM(A1)"
    assert archive.cell("@evil") == "'@evil"
    assert archive.cell(True) == "yes"
    assert archive.split_name("Ada Maria Lovelace") == ("Ada Maria", "Lovelace")
    assert archive.split_name("Cher") == ("Cher", "")


def test_an_apostrophe_before_formula_text_survives_the_way_back() -> None:
    from portal.imports.layouts import unescaped

    for value in (
        "=SUM(A1)",
        "'=SUM(A1)",
        "''-x",
        "'Tis",
        "'",
        "-12.50",
        "@evil",
        "+44 20 7946 0000",
    ):
        assert unescaped(archive.cell(value)) == value
