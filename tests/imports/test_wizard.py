"""The import wizard over HTTP, on both engines: upload → map → dry run → confirm → the
batch page, its rejected rows' CSV and Undo; bad files kept beside the field; scope."""

from __future__ import annotations

import re

import pytest

from portal.audit.tables import AuditLog
from portal.auth.tables import User
from portal.formatting import zoned_dt
from portal.imports import controllers
from portal.imports.tables import ImportBatch, ImportMapping
from tests import factories
from tests.imports.helpers import FILES, london

pytestmark = pytest.mark.usefixtures("liability_equals_the_credits_owed")


@pytest.fixture(autouse=True)
def staging(tmp_path, monkeypatch):
    monkeypatch.setattr(controllers, "_directory", lambda settings: tmp_path / "staged")


def hidden(html: str) -> dict[str, str]:
    """The hidden fields of the page's forms, as the browser would send them."""
    return {
        m.group(1): m.group(2)
        for m in re.finditer(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html)
        if m.group(1) != "_csrf_token"
    }


def selected(html: str, name: str) -> str:
    block = re.search(rf'<select id="{name}" name="{name}".*?</select>', html, re.S)
    assert block, name
    choice = re.search(r'<option value="([^"]*)" selected', block.group(0))
    return choice.group(1) if choice else ""


async def upload(client, location: int, path, kind: str = "clients", **extra):
    token = await factories.csrf_token(client)
    return await client.post(
        "/imports/upload",
        data={"_csrf_token": token, "kind": kind, "location": str(location), **extra},
        files={"file": (path.name, path.read_bytes(), "text/csv")},
    )


async def test_the_whole_wizard(db, owner_client):
    loc = await london()
    page = await owner_client.get("/imports/")
    assert page.status_code == 200 and "up to 50 MB" in page.text
    mapped = await upload(owner_client, loc, FILES / "clients_cp1252_semicolon.csv")
    assert mapped.status_code == 200, mapped.text
    assert selected(mapped.text, "map_email") == "E-mail"
    assert selected(mapped.text, "map_phone") == "Mobile"
    form = hidden(mapped.text)
    form.update(
        {
            f"map_{c}": selected(mapped.text, f"map_{c}")
            for c in (
                "email",
                "first_name",
                "last_name",
                "phone",
                "date_of_birth",
                "address",
                "marketing_consent",
                "staff_notes",
                "external_id",
            )
        }
    )
    form["mapping_name"] = "Old system"
    checked = await factories.post_form(owner_client, "/imports/check", form)
    assert checked.status_code == 200, checked.text
    assert '<dd id="count-new">3</dd>' in checked.text
    assert '<dd id="count-rejected">2</dd>' in checked.text
    assert "is not a phone number" in checked.text and "Merge rule" in checked.text
    assert await User.count().where(User.role == "client").run() == 0
    assert await ImportMapping.count().where(ImportMapping.name == "Old system").run() == 1
    started = await factories.post_form(owner_client, "/imports/start", hidden(checked.text))
    assert started.status_code == 303
    batch_url = started.headers["location"]
    page = await owner_client.get(batch_url)
    assert '<dd id="result-created">3</dd>' in page.text
    # When it finished, in the owner's clinic's zone (London: GMT or BST), not in UTC.
    batch = await ImportBatch.select(ImportBatch.finished_at).first()
    assert batch is not None
    assert zoned_dt(batch["finished_at"], "Europe/London") in page.text
    assert " UTC" not in page.text
    assert await User.count().where(User.role == "client").run() == 3
    report = await owner_client.get(batch_url + "/rejected.csv")
    assert report.headers["content-type"].startswith("text/csv")
    assert report.text.splitlines()[0].startswith("line,reason,email,first_name")
    assert "not a real date" in report.text
    undone = await factories.post_form(owner_client, batch_url + "/undo", {})
    assert undone.status_code == 303
    assert await User.count().where(User.role == "client").run() == 0
    actions = {r["action"] for r in await AuditLog.select(AuditLog.action).run()}
    assert {"import.queue", "import.complete", "import.undo"} <= actions


async def test_a_saved_mapping_is_offered_for_the_next_file(db, owner_client):
    loc = await london()
    await ImportMapping.insert(
        ImportMapping(
            name="Mine",
            kind="clients",
            mapping='{"email": "last_name", "first_name": "first_name", "last_name": "email"}',
        )
    ).run()
    mapped = await upload(owner_client, loc, FILES / "clients_utf8_bom.csv", saved_mapping="Mine")
    assert selected(mapped.text, "map_email") == "last_name"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("empty.csv", "is empty"),
        ("mixed_encodings.csv", "mixes text encodings"),
        ("not_a_table.pdf", "not a CSV or XLSX"),
    ],
)
async def test_a_bad_file_is_refused_beside_the_field(db, owner_client, name, message):
    loc = await london()
    response = await upload(owner_client, loc, FILES / name)
    assert response.status_code == 422
    assert message in (factories.field_error(response.text, "file") or "")
    assert selected(response.text, "location") == str(loc)
    assert await ImportBatch.count().run() == 0


async def test_ambiguous_dates_ask_the_owner(db, owner_client):
    loc = await london()
    mapped = await upload(owner_client, loc, FILES / "ambiguous_dates.csv")
    assert '<select id="date_order"' in mapped.text
    form = hidden(mapped.text) | {
        "map_first_name": "first_name",
        "map_last_name": "last_name",
        "map_email": "email",
        "map_date_of_birth": "date_of_birth",
    }
    refused = await factories.post_form(owner_client, "/imports/check", form)
    assert refused.status_code == 422
    assert "day/month or month/day" in (factories.field_error(refused.text, "date_order") or "")
    checked = await factories.post_form(
        owner_client, "/imports/check", form | {"date_order": "mdy"}
    )
    assert checked.status_code == 200 and '<dd id="count-new">2</dd>' in checked.text


async def test_a_manager_imports_only_into_their_locations(db, manager_client, locations):
    own, other = locations
    refused = await upload(manager_client, other, FILES / "clients_utf8_bom.csv")
    assert refused.status_code == 422
    assert "location you manage" in (factories.field_error(refused.text, "location") or "")
    mapped = await upload(manager_client, own, FILES / "clients_utf8_bom.csv")
    assert mapped.status_code == 200
    form = hidden(mapped.text) | {
        "map_first_name": "first_name",
        "map_last_name": "last_name",
        "map_email": "email",
        "location": str(other),
    }
    forbidden = await factories.post_form(manager_client, "/imports/check", form)
    assert forbidden.status_code == 403


async def test_an_import_stopped_part_way_resumes_from_its_page(db, owner_client, monkeypatch):
    """A balances run whose worker was killed after its first chunk: the page shows it
    stopped, Resume runs on from there, and nothing is imported twice."""
    from datetime import timedelta

    from portal.imports import reading
    from portal.imports import service as imports
    from portal.imports.layouts import BALANCES, guess_mapping
    from portal.imports.tables import ImportRow
    from portal.ledger.tables import JournalEntry
    from portal.sales.tables import Sale
    from portal.timeutil import utcnow
    from tests.imports.helpers import deferred, dies_at, massage, owner_actor, run

    loc = await london()
    await massage()
    await run("clients", FILES / "clients_cp1252_semicolon.csv", loc)
    await factories.make_user("client", email="ann@example.test")
    owner = await User.select(User.id).where(User.role == "owner").first().run()
    staged = controllers._directory(None)
    path = staged / imports.stage_file(
        staged, "balances.csv", (FILES / "balances.csv").read_bytes()
    )
    sheet = reading.open_sheet(path)
    batch_id = await imports.queue_batch(
        owner_actor(owner["id"]), "balances", sheet, location_id=loc,
        mapping=guess_mapping(BALANCES, sheet.headers), order="", filename="balances.csv",
    )  # fmt: skip
    monkeypatch.setattr(imports, "CHUNK_ROWS", 2)
    dies_at(monkeypatch, imports._Balances, 2, "the worker was killed")
    with pytest.raises(RuntimeError):
        await imports.run_queued()
    # A killed process marks nothing: the batch is left running, silent since.
    await (
        ImportBatch.update(
            {
                ImportBatch.status: imports.RUNNING,
                ImportBatch.progress_at: utcnow() - imports.STALLED_AFTER - timedelta(minutes=1),
            }
        )
        .where(ImportBatch.id == batch_id)
        .run()
    )
    assert await Sale.count().run() == 2  # the first chunk's two balances
    page = await owner_client.get(f"/imports/{batch_id}")
    assert "Stopped part-way" in page.text and "stopped after 2 of 6 rows" in page.text
    assert f'action="/imports/{batch_id}/resume"' in page.text

    # (The run stopped at its second chunk only: the chunks after it go through.)
    resumed = await factories.post_form(owner_client, f"/imports/{batch_id}/resume", {})
    assert resumed.status_code == 303
    page = await owner_client.get(f"/imports/{batch_id}")
    assert '<dd id="result-created">2</dd>' in page.text
    assert '<dd id="result-rejected">4</dd>' in page.text
    assert "Resume this import" not in page.text
    assert await Sale.count().run() == 2
    lines = [
        r["line"]
        for r in await ImportRow.select(ImportRow.line).where(ImportRow.batch == batch_id).run()
    ]
    assert sorted(lines) == sorted(set(lines)) and len(lines) == 6
    assert await deferred(loc) == 15000 + 9999
    assert await JournalEntry.count().where(JournalEntry.kind == "opening_balance").run() == 1
    assert await AuditLog.count().where(AuditLog.action == "import.resume").run() == 1
    # A finished import does not resume.
    again = await factories.post_form(owner_client, f"/imports/{batch_id}/resume", {})
    assert again.status_code == 303
    assert await AuditLog.count().where(AuditLog.action == "import.resume").run() == 1


async def test_the_liability_report_drills_from_the_imported_part_to_the_import(db, owner_client):
    from portal.sales.tables import Sale
    from tests.imports.helpers import massage, run

    loc = await london()
    await massage()
    await run("clients", FILES / "clients_cp1252_semicolon.csv", loc)
    balances = await run("balances", FILES / "balances.csv", loc)
    report = await owner_client.get("/reports/liability")
    assert report.status_code == 200
    link = re.search(
        r'<small class="imported"><a href="([^"]+)"[^>]*>of which ([^<]+) imported', report.text
    )
    assert link and "249.99" in link.group(2), report.text
    drill = await owner_client.get(link.group(1).replace("&amp;", "&"))
    assert drill.status_code == 200
    assert "of the" in drill.text and "249.99" in drill.text
    for sale in await Sale.select(Sale.id).run():
        assert f'href="/sales/{sale["id"]}"' in drill.text
    assert drill.text.count(f'href="/imports/{balances.batch_id}"') == 2
    # From the import's page to the same list, for that import only.
    page = await owner_client.get(f"/imports/{balances.batch_id}")
    mine = re.search(r'<a href="([^"]+)" id="imported-sales">', page.text)
    assert mine, page.text
    one = await owner_client.get(mine.group(1).replace("&amp;", "&"))
    assert one.status_code == 200 and f"import #{balances.batch_id} opened" in one.text
    assert one.text.count(f'href="/imports/{balances.batch_id}"') == 2
