"""The browser tests' server start: a port taken between its choice and the bind."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import httpx

from tests.e2e.conftest import _env, free_port, serving


def test_a_server_whose_port_was_taken_starts_on_another(e2e_template: Path, tmp_path: Path):
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    shutil.copyfile(e2e_template, var_dir / "portal.sqlite3")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()  # another process's server, on the port this one was given
        port = taken.getsockname()[1]
        env = _env(var_dir, port)
        with serving(env, port, tmp_path) as url:
            assert url != f"http://127.0.0.1:{port}"
            assert env["BASE_URL"] == url and env["PORT"] == url.rsplit(":", 1)[1]
            assert httpx.get(f"{url}/healthz", timeout=5).json()["status"] == "ok"
    assert "address already in use" in (tmp_path / "server.log").read_text()


def test_a_free_port_is_kept(e2e_template: Path, tmp_path: Path):
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    shutil.copyfile(e2e_template, var_dir / "portal.sqlite3")
    port = free_port()
    with serving(_env(var_dir, port), port, tmp_path) as url:
        assert url == f"http://127.0.0.1:{port}"
