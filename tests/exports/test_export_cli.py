"""``portal export --out FILE.zip [--notes]``: the archive written where asked, audited."""

from __future__ import annotations

import io
from typing import Any

import pytest

from portal import cli
from portal.audit.tables import AuditLog
from tests.exports.conftest import World, read_zip


async def test_the_command_writes_the_archive(world: World, tmp_path: Any, monkeypatch) -> None:
    out = tmp_path / "chain.zip"
    bar = cli.ProgressBar(io.StringIO())
    from portal import progress
    from portal.exports import service as exports
    from portal.settings import get_settings

    with progress.listening(bar):
        written = await exports.export_to(get_settings(), out, notes_included=True)
    assert written.rows["balances.csv"] == 1 and written.rows["notes.csv"] == 2
    assert "notes.csv" in read_zip(out.read_bytes())
    assert "[##############################]" in bar.stream.getvalue()
    audits = await AuditLog.select().where(AuditLog.entity == "export").run()
    assert [(a["actor_email"], a["action"]) for a in audits] == [("system", "export")]
    assert '"notes": true' in audits[0]["after"]


def test_bad_arguments_exit_2(tmp_path: Any) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["export", "--out", str(tmp_path / "chain.txt")])
    assert exit_.value.code == 2
