"""The import wizard over HTTP, on both engines: upload → map → dry run → confirm → the
batch page, its rejected rows' CSV and Undo; bad files kept beside the field; scope."""

from __future__ import annotations

import re

import pytest

from portal.audit.tables import AuditLog
from portal.auth.tables import User
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
