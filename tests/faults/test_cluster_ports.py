"""The load and race clusters' server start: a port taken between its choice and the
bind (another suite's server on the same machine)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench import load
from tests.conftest import Database
from tests.servers import SERVER_POOL
from tests.stripe_standin import StandIn

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


def test_a_cluster_process_whose_port_was_taken_starts_on_another(
    db: Database, stripe_standin: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert db.engine is not None
    url = f"sqlite:///{db.engine.connection_kwargs['database']}"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()  # another process's server, on the port the first choice gives
        held = taken.getsockname()[1]
        choices: Iterator[int] = iter([held])
        real = load.free_port
        monkeypatch.setattr(load, "free_port", lambda: next(choices, None) or real())
        with load.cluster(
            url, tmp_path, apps=1, standin_url=stripe_standin.base_url, env=SERVER_POOL
        ) as running:
            (app,) = running.apps
            assert app.port != held
            assert app.env["BASE_URL"] == app.url
            health = httpx.get(f"{app.url}/healthz", timeout=5)
            assert load.answered_by(health, app.pid)
    assert "address already in use" in (tmp_path / f"app-{held}.log").read_text()
