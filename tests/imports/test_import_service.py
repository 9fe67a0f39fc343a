"""Importing clients and remaining balances, on both engines: matching, duplicates within
the file, rejected rows with their reasons, dry runs, idempotence, the books, undo."""

from __future__ import annotations

import pytest

from portal.audit.tables import AuditLog
from portal.auth.tables import User
from portal.clients.tables import ClientProfile
from portal.errors import Conflict, Invalid
from portal.imports import service as imports
from portal.imports import values
from portal.imports.tables import ImportBatch, ImportRow
from portal.sales import service as sales
from portal.sales.tables import Sale, SaleSession
from tests import factories
from tests.imports.helpers import (
    FILES,
    deferred,
    dies_at,
    london,
    massage,
    outstanding_credit_value,
    run,
)

pytestmark = pytest.mark.usefixtures("liability_equals_the_credits_owed")


async def client_emails() -> set[str]:
    rows = await User.select(User.email).where(User.role == "client").run()
    return {r["email"] for r in rows}


async def test_clients_from_a_windows_file_with_duplicates_and_bad_rows(db):
    loc = await london()
    await factories.make_user("client", email="jose@example.test")  # already a client
    summary = await run("clients", FILES / "clients_cp1252_semicolon.csv", loc)
    assert (summary.created, summary.matched, summary.rejected) == (2, 2, 2)
    reasons = {r.line: r.reason for r in summary.failures}
    assert "not a phone number" in reasons[4]
    assert "not a real date" in reasons[6]
    zoe = await User.select().where(User.email == "zoe@example.test").first().run()
    assert zoe["name"] == "Zoë Müller" and zoe["role"] == "client"
    profile = await ClientProfile.select().where(ClientProfile.user == zoe["id"]).first().run()
    assert profile["phone"] == "+447700900123"
    assert profile["date_of_birth"].isoformat() == "1985-01-31"
    assert profile["address"] == "12 High St\r\nFlat 2"
    assert profile["preferred_location"] == loc
    # Marketing consent and the notes for staff are the profile's.
    assert profile["marketing_consent"] is True
    assert profile["staff_notes"] == "Prefers firm pressure;\r\nleft shoulder"
    # Bob without an email gets an address that cannot receive mail, and no reminders.
    bob = await ClientProfile.select().where(ClientProfile.phone == "+447700900111").first().run()
    assert bob["email_reminders"] is False
    assert (bob["marketing_consent"], bob["staff_notes"]) == (False, "no email")
    batch = await imports.get_batch(summary.batch_id)
    assert batch["status"] == imports.COMPLETE
    assert await AuditLog.count().where(AuditLog.action == "import.complete").run() == 1


async def test_a_later_chunks_duplicate_is_matched_to_the_line_that_created_it(db, monkeypatch):
    # Chunks of two rows: line 5 repeats line 2 (C1) two chunks later; the run keeps no
    # keys of earlier chunks, it finds the client line 2 created in the database.
    loc = await london()
    monkeypatch.setattr(imports, "CHUNK_ROWS", 2)
    summary = await run("clients", FILES / "clients_cp1252_semicolon.csv", loc)
    assert (summary.created, summary.matched, summary.rejected) == (3, 1, 2)
    (row,) = await ImportRow.select().where(ImportRow.line == 5).run()
    zoe = await User.select(User.id).where(User.email == "zoe@example.test").first().run()
    assert (row["outcome"], row["reason"], row["entity_id"]) == (
        "matched",
        "same client as line 2",
        zoe["id"],
    )
    dry = await run("clients", FILES / "clients_cp1252_semicolon.csv", loc, dry_run=True)
    assert dry.matched == 4  # all imported before; nothing new


async def test_dry_run_counts_and_writes_nothing(db):
    loc = await london()
    summary = await run("clients", FILES / "clients_cp1252_semicolon.csv", loc, dry_run=True)
    assert (summary.created, summary.matched, summary.rejected) == (3, 1, 2)
    matched = [r for r in [*summary.failures] if r.outcome == "matched"]
    assert matched == []
    assert await client_emails() == set()
    assert await ImportBatch.count().run() == 0
    assert "email, then by phone, then by name and date of birth" in summary.merge_rule


async def test_same_file_again_creates_nothing_new(db):
    loc = await london()
    first = await run("clients", FILES / "clients_utf8_bom.csv", loc)
    assert first.created == 2
    again = await run("clients", FILES / "clients_utf8_bom.csv", loc)
    assert (again.created, again.matched) == (0, 2)
    assert await User.count().where(User.role == "client").run() == 2


async def test_ambiguous_dates_are_left_to_the_owner(db):
    loc = await london()
    with pytest.raises(values.AmbiguousDates):
        await run("clients", FILES / "ambiguous_dates.csv", loc)
    summary = await run("clients", FILES / "ambiguous_dates.csv", loc, order=values.MDY)
    assert summary.created == 2
    row = (
        await ClientProfile.select(ClientProfile.date_of_birth)
        .order_by(ClientProfile.id)
        .first()
        .run()
    )
    assert row["date_of_birth"].isoformat() == "1980-03-04"


async def test_a_mapping_without_a_required_column_is_refused(db):
    loc = await london()
    with pytest.raises(Invalid) as caught:
        await run("clients", FILES / "clients_utf8_bom.csv", loc, mapping={"email": "email"})
    assert "first_name" in caught.value.errors


async def test_balances_become_credits_with_one_journal_entry(db):
    loc = await london()
    await massage()
    await run("clients", FILES / "clients_cp1252_semicolon.csv", loc)
    await factories.make_user("client", email="ann@example.test")
    summary = await run("balances", FILES / "balances.csv", loc)
    assert (summary.created, summary.rejected) == (2, 4)
    reasons = sorted(r.reason for r in summary.failures)
    assert any("no sessions left" in r for r in reasons)
    assert any("no client nobody@example.test" in r for r in reasons)
    assert any("neither a package nor a service" in r for r in reasons)
    assert any("expired on 2021-01-01" in r for r in reasons)
    # 3 sessions worth 150.00 and 2 worth 99.99: the liability is their value exactly.
    assert await deferred(loc) == 15000 + 9999
    assert await outstanding_credit_value(loc) == 15000 + 9999
    assert await sales.ledger.balance("opening_balance_equity", location_id=loc) == -(15000 + 9999)
    values_ = [r["value_cents"] for r in await SaleSession.select().order_by(SaleSession.id).run()]
    assert values_ == [5000, 5000, 5000, 5000, 4999]
    from portal.ledger.tables import JournalEntry

    entries = await JournalEntry.select().where(JournalEntry.kind == "opening_balance").run()
    assert len(entries) == 1 and entries[0]["location"] == loc
    # Again: nothing new, no second entry.
    again = await run("balances", FILES / "balances.csv", loc)
    assert again.created == 0 and again.matched == 2
    assert await deferred(loc) == 24999
    assert await Sale.count().run() == 2


async def test_liability_report_says_what_came_from_the_import(db):
    from datetime import timedelta

    from portal.reports import liability
    from portal.reports.filters import Filters, Loc
    from portal.reports.periods import Period
    from portal.timeutil import utcnow

    loc = await london()
    await massage()
    await run("clients", FILES / "clients_cp1252_semicolon.csv", loc)
    balances = await run("balances", FILES / "balances.csv", loc)
    today = utcnow().date()
    f = Filters(
        locations=(
            Loc(id=loc, name="London", slug="london", timezone="Europe/London", currency="GBP"),
        ),
        period=Period(today - timedelta(days=7), today + timedelta(days=1)),
    )
    (row,) = await liability.liability(f)
    assert row.imported == row.sold == row.closing == 15000 + 9999
    assert row.sold_sessions == row.closing_sessions == 5
    assert row.balanced
    # The imported part drills down to the sales the import opened, with its batch.
    page = await liability.liability_sales(f, f.locations[0], "imported")
    assert sorted((r.amount, r.sessions) for r in page.rows) == [(9999, 2), (15000, 3)]
    assert sum(r.amount for r in page.rows) == row.imported
    assert {r.batch for r in page.rows} == {balances.batch_id}
    assert {r.sale_id for r in page.rows} == {
        int(s["id"]) for s in await Sale.select(Sale.id).run()
    }
    one = await liability.liability_sales(f, f.locations[0], "imported", batch=balances.batch_id)
    assert one.rows == page.rows
    assert (await liability.liability_sales(f, f.locations[0], "imported", batch=-1)).rows == []
    # A second location's report has no share of it.
    other = Loc(id=await factories.make_location(slug="leeds"), name="Leeds", slug="leeds",
                timezone="Europe/London", currency="GBP")  # fmt: skip
    assert (await liability.liability_sales(f, other, "imported")).rows == []
    # Undone: nothing imported is left to show.
    await imports.undo(None, balances.batch_id)
    assert (await liability.liability_sales(f, f.locations[0], "imported")).rows == []


async def test_undo_takes_the_batch_back_while_unused(db):
    loc = await london()
    await massage()
    clients = await run("clients", FILES / "clients_cp1252_semicolon.csv", loc)
    balances = await run("balances", FILES / "balances.csv", loc)
    with pytest.raises(Conflict, match="bought, booked"):
        await imports.undo(None, clients.batch_id)
    await imports.undo(None, balances.batch_id)
    assert await deferred(loc) == 0
    assert await outstanding_credit_value(loc) == 0
    assert await Sale.count().run() == 0
    with pytest.raises(Conflict, match="already been undone"):
        await imports.undo(None, balances.batch_id)
    await imports.undo(None, clients.batch_id)
    assert await client_emails() == set()
    assert await AuditLog.count().where(AuditLog.action == "import.undo").run() == 2
    # Undone: the same file imports again.
    again = await run("clients", FILES / "clients_cp1252_semicolon.csv", loc)
    assert again.created == 3


async def test_undo_refused_once_a_credit_is_used(db):
    loc = await london()
    await massage()
    await run("clients", FILES / "clients_cp1252_semicolon.csv", loc)
    balances = await run("balances", FILES / "balances.csv", loc)
    credit = await SaleSession.select().order_by(SaleSession.id).first().run()
    await sales.move_credit(int(credit["id"]), sales.AVAILABLE, sales.HELD)
    with pytest.raises(Conflict, match="booked or used"):
        await imports.undo(None, balances.batch_id)
    assert await deferred(loc) == 24999


async def test_a_stopped_run_resumes_where_it_stopped(db, monkeypatch):
    loc = await london()
    monkeypatch.setattr(imports, "CHUNK_ROWS", 2)
    dies_at(monkeypatch, imports._Clients, 2)
    with pytest.raises(RuntimeError):
        await run("clients", FILES / "clients_cp1252_semicolon.csv", loc)
    (batch,) = await ImportBatch.select().run()
    assert batch["status"] == imports.INCOMPLETE and batch["rows_done"] == 2
    monkeypatch.undo()
    summary = await run("clients", FILES / "clients_cp1252_semicolon.csv", loc)
    assert summary.batch_id == batch["id"]
    assert (summary.created, summary.matched, summary.rejected) == (3, 1, 2)
    assert await User.count().where(User.role == "client").run() == 3


async def test_an_error_reading_ahead_keeps_the_chunk_being_written(db, monkeypatch):
    # The next chunk is prepared while the previous one is written: an error preparing
    # line 5 stops the run after the chunk of lines 2-3 is written, not before.
    loc = await london()
    monkeypatch.setattr(imports, "CHUNK_ROWS", 2)
    prepare = imports._Clients.prepare

    def failing(self, line, values, at):
        if line == 5:
            raise RuntimeError("the worker died")
        return prepare(self, line, values, at)

    monkeypatch.setattr(imports._Clients, "prepare", failing)
    with pytest.raises(RuntimeError):
        await run("clients", FILES / "clients_cp1252_semicolon.csv", loc)
    (batch,) = await ImportBatch.select().run()
    assert batch["status"] == imports.INCOMPLETE and batch["rows_done"] == 2
    assert await client_emails() == {"zoe@example.test", "jose@example.test"}
    monkeypatch.undo()
    summary = await run("clients", FILES / "clients_cp1252_semicolon.csv", loc)
    assert summary.batch_id == batch["id"]
    assert (summary.created, summary.matched, summary.rejected) == (3, 1, 2)


async def test_the_exports_apostrophe_before_formula_text_is_taken_off(db, tmp_path):
    loc = await london()
    path = tmp_path / "clients.csv"
    path.write_text(
        "email,first_name,last_name,address\r\n"
        "eve@example.test,'=Eve,'-Smith,'@home 1\r\n"
        "max@example.test,'+Max,''=Ward,'Tis Cottage\r\n",
        encoding="utf-8-sig",
    )
    summary = await run("clients", path, loc)
    assert summary.created == 2, summary.failures
    rows = (
        await ClientProfile.select(
            ClientProfile.user.email.as_alias("email"), ClientProfile.user.name.as_alias("name"),
            ClientProfile.address,
        )
        .order_by(ClientProfile.user.email)
        .run()
    )  # fmt: skip
    assert [(r["name"], r["address"]) for r in rows] == [
        ("=Eve -Smith", "@home 1"),
        # Only the one apostrophe the export adds; any other stays.
        ("+Max '=Ward", "'Tis Cottage"),
    ]


async def test_a_client_is_matched_by_name_and_birth_date_whatever_the_case(db, tmp_path):
    # Another email and no phone: only the name (in capitals, with accents) and the date
    # of birth say it is Zoë; the same name born another day, or another name born the
    # same day, are new clients.
    loc = await london()
    await run("clients", FILES / "clients_cp1252_semicolon.csv", loc)
    path = tmp_path / "more.csv"
    path.write_text(
        "email,first_name,last_name,date_of_birth\r\n"
        "zoe.m@example.test,ZOË,MÜLLER,31/01/1985\r\n"
        "zoe.other@example.test,Zoë,Müller,30/01/1985\r\n"
        "ann.m@example.test,Ann,Müller,31/01/1985\r\n",
        encoding="utf-8",
    )
    summary = await run("clients", path, loc)
    assert (summary.created, summary.matched, summary.rejected) == (2, 1, 0)
    zoe = await User.select(User.id).where(User.email == "zoe@example.test").first().run()
    (row,) = (
        await ImportRow.select()
        .where((ImportRow.batch == summary.batch_id) & (ImportRow.line == 2))
        .run()
    )
    assert (row["outcome"], row["reason"], row["entity_id"]) == (
        "matched",
        "existing client (same name)",
        zoe["id"],
    )
    assert {"zoe.other@example.test", "ann.m@example.test"} <= await client_emails()
