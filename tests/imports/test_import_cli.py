"""`portal import` as an operator runs it, against the test's database on both engines."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import sys
from pathlib import Path

import pytest

from portal.auth.tables import User
from portal.imports.tables import ImportBatch
from tests.imports.helpers import FILES, deferred, london, massage

pytestmark = pytest.mark.usefixtures("liability_equals_the_credits_owed")

PORTAL = str(Path(sys.executable).with_name("portal"))


def database_url(db) -> str:
    if db.kind == "sqlite":
        return f"sqlite:///{db.engine.path}"
    return db.engine.config["dsn"]


async def portal(db, tmp_path, *args: str) -> tuple[int, str, str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": database_url(db),
        "SECRET_KEY": "cli-secret-key-" + "z" * 40,
        "PORTAL_VAR_DIR": str(tmp_path),
        "PICCOLO_CONF": "portal.piccolo_conf",
        "HOME": os.environ.get("HOME", str(tmp_path)),
    }
    process = await asyncio.create_subprocess_exec(
        PORTAL, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    return process.returncode or 0, out.decode(), err.decode()


async def test_import_with_rejected_rows_exits_3_and_writes_the_report(db, tmp_path):
    loc = await london()
    source = tmp_path / "clients.csv"
    source.write_bytes((FILES / "clients_cp1252_semicolon.csv").read_bytes())
    status, out, err = await portal(
        db, tmp_path, "import", "clients", str(source), "--location", "london", "--dry-run"
    )
    assert status == 3, err
    assert "3 would be created, 1 matched (nothing new), 2 rejected" in out
    assert await User.count().where(User.role == "client").run() == 0
    status, out, err = await portal(
        db, tmp_path, "import", "clients", str(source), "--location", "london"
    )
    assert status == 3, err
    assert "3 were created" in out
    with (tmp_path / "clients.rejected.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["line"] for r in rows] == ["4", "6"]
    assert "not a phone number" in rows[0]["reason"] and rows[0]["first_name"] == "Ann"
    assert await User.count().where(User.role == "client").run() == 3
    (batch,) = await ImportBatch.select().run()
    assert batch["location"] == loc and batch["status"] == "complete"


async def test_all_imported_exits_0_with_a_mapping_file(db, tmp_path):
    await london()
    await massage()
    mapping = tmp_path / "mapping.json"
    mapping.write_text(
        json.dumps({"email": "email", "first_name": "first_name", "last_name": "last_name"})
    )
    status, out, err = await portal(
        db,
        tmp_path,
        "import",
        "clients",
        str(FILES / "clients_utf8_bom.csv"),
        "--location",
        "london",
        "--mapping",
        str(mapping),
    )
    assert status == 0, err
    assert "2 were created" in out
    status, out, _ = await portal(
        db,
        tmp_path,
        "import",
        "clients",
        str(FILES / "clients_utf8_bom.csv"),
        "--location",
        "london",
    )
    assert status == 0 and "0 were created, 2 matched" in out


async def test_bad_arguments_and_files_exit_2_and_change_nothing(db, tmp_path):
    await london()
    cases = [
        (("import", "clients", str(FILES / "empty.csv"), "--location", "london"), "is empty"),
        (
            ("import", "clients", str(FILES / "mixed_encodings.csv"), "--location", "london"),
            "mixes text encodings",
        ),
        (
            ("import", "clients", str(FILES / "clients_utf8_bom.csv"), "--location", "nowhere"),
            "no location",
        ),
        (
            ("import", "clients", str(FILES / "ambiguous_dates.csv"), "--location", "london"),
            "--date-order",
        ),
        (("import", "clients", str(tmp_path / "missing.csv"), "--location", "london"), "no file"),
        (
            (
                "import",
                "clients",
                str(FILES / "clients_utf8_bom.csv"),
                "--location",
                "london",
                "--mapping",
                "nope",
            ),
            "No saved mapping",
        ),
        (
            ("import", "invoices", str(FILES / "clients_utf8_bom.csv"), "--location", "london"),
            "invalid choice",
        ),
    ]
    for args, message in cases:
        status, _, err = await portal(db, tmp_path, *args)
        assert status == 2, (args, err)
        assert message in err, (args, err)
        assert "Traceback" not in err
    assert await User.count().where(User.role == "client").run() == 0
    assert await deferred(1) == 0


async def test_appointments_need_the_account_they_are_booked_by(db, tmp_path):
    await london()
    status, _, err = await portal(
        db, tmp_path, "import", "appointments", str(FILES / "clients_utf8_bom.csv"),
        "--location", "london", "--by", "nobody@example.test",
    )  # fmt: skip
    assert status == 2 and "no active owner or manager nobody@example.test" in err
