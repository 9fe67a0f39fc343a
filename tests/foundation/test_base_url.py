"""BASE_URL follows the served port, and embedded mode refuses one that cannot reach it.

``PORT=8201 make run`` used to leave BASE_URL at port 8000: the return from
Stripe's checkout and every emailed link led to "This site can't be reached".
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from bench import load
from portal.settings import ConfigurationError, Settings, check_served_address

PYTHON = sys.executable
PORTAL = str(Path(PYTHON).with_name("portal"))
PRODUCTION = {"DATABASE_URL": "postgresql://db/portal", "SECRET_KEY": "k" * 40}


def _embedded(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"PORTAL_VAR_DIR": str(tmp_path), **env})


def test_the_default_base_url_names_the_port(tmp_path: Path) -> None:
    assert _embedded(tmp_path).base_url == "http://127.0.0.1:8000"
    assert _embedded(tmp_path, PORT="8201").base_url == "http://127.0.0.1:8201"
    assert _embedded(tmp_path, PORT="8201").port == 8201
    assert Settings.from_env({**PRODUCTION, "PORT": "9000"}).base_url == "http://127.0.0.1:9000"
    # An address people use is kept as given (less a trailing slash), whatever the port.
    chosen = _embedded(tmp_path, PORT="8201", BASE_URL="https://clinic.example.com/")
    assert chosen.base_url == "https://clinic.example.com"
    assert _embedded(tmp_path, PORT="8201", BASE_URL=" ").base_url == "http://127.0.0.1:8201"


@pytest.mark.parametrize("port", ["0", "65536", "eighty"])
def test_port_must_be_a_port_number(tmp_path: Path, port: str) -> None:
    with pytest.raises(ConfigurationError, match="PORT must be"):
        _embedded(tmp_path, PORT=port)


@pytest.mark.parametrize(
    ("base_url", "host", "port"),
    [
        ("http://127.0.0.1:8201", "127.0.0.1", 8201),
        ("http://localhost:8201", "127.0.0.1", 8201),
        ("http://[::1]:8201", "0.0.0.0", 8201),
        ("http://localhost", "127.0.0.1", 80),
        # Another host may be a proxy or a tunnel in front of the server.
        ("https://clinic.example.com", "127.0.0.1", 8201),
        ("http://192.168.1.20:9000", "0.0.0.0", 8201),
    ],
)
def test_embedded_mode_serves_where_base_url_can_reach(
    tmp_path: Path, base_url: str, host: str, port: int
) -> None:
    check_served_address(_embedded(tmp_path, BASE_URL=base_url), host, port)


@pytest.mark.parametrize(
    ("base_url", "host", "port"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1", 8201),
        ("http://localhost:8000", "127.0.0.1", 8201),
        ("http://portal.localhost:8000", "127.0.0.1", 8201),
        ("http://127.0.0.2:8000", "0.0.0.0", 8201),
        ("http://[::1]:8000", "::1", 8201),
        ("http://localhost", "127.0.0.1", 8000),  # port 80
        ("https://localhost:8201", "127.0.0.1", 8201),  # the server speaks plain HTTP
    ],
)
def test_embedded_mode_refuses_a_base_url_naming_another_port(
    tmp_path: Path, base_url: str, host: str, port: int
) -> None:
    settings = _embedded(tmp_path, BASE_URL=base_url)
    with pytest.raises(ConfigurationError) as refused:
        check_served_address(settings, host, port)
    message = str(refused.value)
    assert f"BASE_URL is {base_url}" in message and f"port {port}" in message
    assert f"set it to http://127.0.0.1:{port}" in message
    # Production sits behind a proxy: its BASE_URL is not second-guessed.
    production = Settings.from_env({**PRODUCTION, "BASE_URL": base_url})
    check_served_address(production, host, port)


def _env(var_dir: Path, **extra: str) -> dict[str, str]:
    """Embedded mode in ``var_dir``: none of the suite's database, Stripe or address settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE", "PICCOLO", "STRIPE", "SMTP"))
        and k not in ("SECRET_KEY", "BASE_URL", "PORT")
    }
    env.update(PORTAL_VAR_DIR=str(var_dir), LOG_LEVEL="warning", **extra)
    return env


def test_portal_serve_refuses_a_base_url_naming_another_port(tmp_path: Path) -> None:
    result = subprocess.run(
        [PORTAL, "serve", "--port", "8201"],
        env=_env(tmp_path, BASE_URL="http://localhost:8000"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("portal: BASE_URL is http://localhost:8000, but the portal")
    assert "port 8201" in result.stderr and "Traceback" not in result.stderr


def test_make_run_refuses_a_base_url_naming_another_port(tmp_path: Path) -> None:
    """Before the Stripe stand-in or anything else starts."""
    result = subprocess.run(
        [PYTHON, "-m", "portal.devserver"],
        env=_env(tmp_path, PORT="8201", BASE_URL="http://127.0.0.1:8000"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "portal: BASE_URL is http://127.0.0.1:8000" in result.stderr
    assert "Traceback" not in result.stderr and "Clinic Portal:" not in result.stdout


@dataclass
class _Server(load.AppProcess):
    """A portal process started by a developer's command instead of uvicorn's."""

    command: list[str] = field(default_factory=list)

    def start(self) -> None:
        self._log = self.log_path.open("a")
        self.process = subprocess.Popen(
            self.command, env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )


@pytest.fixture(params=["make run", "portal serve"])
def embedded_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An embedded portal on an empty var/ and a free port, chosen as a developer does:
    ``PORT=<port> make run`` (``portal.devserver``) or ``portal serve --port <port>``."""
    port = load.free_port()
    if request.param == "make run":
        command, env = [PYTHON, "-m", "portal.devserver"], _env(tmp_path / "var", PORT=str(port))
    else:
        command, env = [PORTAL, "serve", "--port", str(port)], _env(tmp_path / "var")
    server = _Server(port, env, tmp_path / "server.log", command=command)
    server.start()
    try:
        server.wait_ready(timeout=90)
        if request.param == "make run":
            assert f"Clinic Portal: {server.url}/" in server.log_path.read_text()
        yield server.url
    finally:
        server.stop()


def _emailed_links(database: Path, to: str) -> list[str]:
    deadline = time.monotonic() + 30
    while True:
        with sqlite3.connect(database) as connection:
            rows = connection.execute(
                "SELECT body_text FROM email_outbox WHERE to_address = ?", (to,)
            ).fetchall()
        if rows or time.monotonic() > deadline:
            return [link for (body,) in rows for link in re.findall(r"https?://\S+", body)]
        time.sleep(0.2)


def test_emailed_links_reach_the_port_served(embedded_server: str, tmp_path: Path) -> None:
    """A client signs up on a portal served on port p; the confirmation link names p and works.

    Stripe's return to the portal after checkout is built from the same BASE_URL."""
    email = "robin.vale@example.test"
    with httpx.Client(base_url=embedded_server, timeout=30) as browser:
        fields = load.form_fields(browser.get("/signup").text, "/signup")
        assert fields is not None
        fields.update(
            name="Robin Vale",
            email=email,
            password="long-enough-secret-9",
            confirm_password="long-enough-secret-9",
            consent="on",
        )
        assert browser.post("/signup", data=fields).status_code == 303
        links = _emailed_links(tmp_path / "var" / "portal.sqlite3", email)
        confirm = [link for link in links if "/signup/confirm/" in link]
        assert confirm and all(link.startswith(f"{embedded_server}/") for link in links), links
        page = browser.get(confirm[0])
        assert page.status_code == 200
        form = load.form_fields(page.text, confirm[0][len(embedded_server) :])
        assert form is not None
        assert browser.post(confirm[0], data=form).status_code == 303
