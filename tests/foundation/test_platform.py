"""Settings, health, errors, security headers, start-up rules, deployment files."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from portal import db as portal_db
from portal.settings import PROJECT_ROOT, ConfigurationError, Settings
from tests import factories

PORTAL = str(Path(sys.executable).with_name("portal"))


def test_production_needs_a_secret_key(tmp_path):
    with pytest.raises(ConfigurationError, match="SECRET_KEY is not set"):
        Settings.from_env(
            {"DATABASE_URL": "postgresql://db/portal", "PORTAL_VAR_DIR": str(tmp_path)}
        )
    with pytest.raises(ConfigurationError, match="at least 32"):
        Settings.from_env({"DATABASE_URL": "postgresql://db/portal", "SECRET_KEY": "short"})


def test_embedded_default_generates_and_keeps_a_secret(tmp_path):
    first = Settings.from_env({"PORTAL_VAR_DIR": str(tmp_path)})
    second = Settings.from_env({"PORTAL_VAR_DIR": str(tmp_path)})
    assert first.embedded and first.is_sqlite
    assert first.secret_key == second.secret_key and len(first.secret_key) >= 32
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0
    assert first.database_url == f"sqlite:///{tmp_path / 'portal.sqlite3'}"


def test_secure_cookies_follow_base_url():
    env = {"DATABASE_URL": "postgresql://db/p", "SECRET_KEY": "k" * 40}
    assert not Settings.from_env({**env, "BASE_URL": "http://localhost:8000"}).secure_cookies
    assert Settings.from_env({**env, "BASE_URL": "https://portal.example.com"}).secure_cookies


async def test_secure_cookie_flag_over_https(db, settings):
    from dataclasses import replace

    from portal.app import create_app

    app = create_app(
        replace(settings, base_url="https://portal.example.com"), manage_database=False
    )
    owner = await factories.make_user("owner")
    async with factories.make_client(app, base_url="https://testserver") as client:
        response = await factories.login_by_form(client, owner)
    cookies = response.headers.get_list("set-cookie")
    assert all("Secure" in c for c in cookies if c.startswith(("portal_session", "portal_csrf")))


async def test_no_store_on_pages_and_downloads_hsts_over_https(db, settings, owner_client):
    """Back after sign-out shows nothing from the cache; https portals pin https."""
    from dataclasses import replace

    from portal.app import create_app

    for url in ("/", "/locations", "/reports/payments.csv"):
        response = await owner_client.get(url)
        assert response.headers.get("cache-control") == "no-store", url
        assert "strict-transport-security" not in response.headers
    static = await owner_client.get("/static/app.css")
    assert static.headers.get("cache-control") != "no-store"
    app = create_app(
        replace(settings, base_url="https://portal.example.com"), manage_database=False
    )
    async with factories.make_client(app, base_url="https://testserver") as client:
        response = await client.get("/login")
    assert response.headers["strict-transport-security"].startswith("max-age=31536000")
    assert response.headers["cache-control"] == "no-store"


def test_a_server_process_leaves_its_startup_heap_out_of_full_collections(settings):
    import gc

    from portal.app import create_app, freeze_startup_heap

    assert freeze_startup_heap in create_app(settings).on_startup
    # Tests build their apps around their own databases and keep the heap as it is.
    assert freeze_startup_heap not in create_app(settings, manage_database=False).on_startup
    before = gc.get_freeze_count()
    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() > before
        assert gc.get_objects(generation=2) == []  # all of it moved out of the oldest
    finally:
        gc.unfreeze()


async def test_healthz_ok_and_unavailable(client, db):
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "process": os.getpid()}
    broken = portal_db.make_engine("postgresql://postgres@127.0.0.1:1/nowhere")
    portal_db.bind_engine(broken)
    try:
        response = await client.get("/healthz")
        # A browser's session cookie does not turn the answer into a 500.
        client.cookies.set("portal_session", "some-session-token")
        with_cookie = await client.get("/healthz")
    finally:
        portal_db.bind_engine(db.engine)
    assert response.status_code == 503 and with_cookie.status_code == 503
    assert response.json()["database"] != "ok"


async def test_security_headers_on_every_response(client, owner_client):
    for response in (
        await client.get("/login"),
        await client.get("/static/app.css"),
        await client.get("/no-such-page"),
        await owner_client.get("/"),
    ):
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"]


async def test_pages_have_no_inline_script(owner_client, locations):
    import re

    for url in ("/", "/locations", f"/locations/{locations[0]}", "/locations/new", "/users"):
        html = (await owner_client.get(url)).text
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), url
        assert " onclick=" not in html and "style=" not in html


async def test_error_pages_html_and_json(owner_client):
    page = await owner_client.get("/no-such-page")
    assert page.status_code == 404 and "Page not found" in page.text
    assert "text/html" in page.headers["content-type"]
    api = await owner_client.get("/api/v1/no-such-thing")
    assert api.status_code == 404 and api.json()["error"] == "Page not found"
    bad = await owner_client.get("/locations/not-a-number")
    assert bad.status_code in (400, 404) and "Traceback" not in bad.text
    assert (await owner_client.get("/locations/999999")).status_code == 404


async def test_unexpected_error_shows_a_page_not_a_trace(app, owner_client, monkeypatch):
    from portal import records

    async def boom(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    # What the location list's page (records.list_page) awaits.
    monkeypatch.setattr(records, "keyset_page", boom)
    response = await owner_client.get("/locations")
    assert response.status_code == 500
    assert "Something went wrong" in response.text
    assert "secret internal detail" not in response.text and "Traceback" not in response.text
    api = await owner_client.get("/api/v1/locations")
    assert api.status_code == 500 and "secret" not in api.text


async def test_anonymous_is_sent_to_sign_in_and_back(client, owner):
    response = await client.get("/locations?status=all")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/locations%3Fstatus%3Dall"
    assert (await client.get("/api/v1/locations")).status_code == 401


def _subprocess_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY")}
    env.update(extra)
    env.setdefault("PORTAL_VAR_DIR", str(tmp_path))
    return env


def test_server_refuses_to_start_with_pending_migrations(tmp_path):
    env = _subprocess_env(
        tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'fresh.sqlite3'}", SECRET_KEY="s" * 40
    )
    result = subprocess.run(
        [PORTAL, "serve", "--port", "1"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "portal migrate" in result.stderr
    assert "Traceback" not in result.stderr


def test_embedded_server_applies_migrations_itself(tmp_path):
    """The embedded default migrates on start (no DATABASE_URL, no SECRET_KEY)."""
    env = _subprocess_env(tmp_path)
    code = (
        "import asyncio\n"
        "from portal.app import create_app\n"
        "from portal.migrate import pending_migrations\n"
        "app = create_app()\n"
        "async def main():\n"
        "    async with app.lifespan():\n"
        "        assert await pending_migrations() == []\n"
        "asyncio.run(main())\n"
        "print('migrated')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "portal.sqlite3").exists() and (tmp_path / "secret_key").exists()


def test_docker_compose_names_services_and_settings():
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "app"} <= set(services)
    # The app image's pg_dump must match the server's major version for `portal backup`
    # to work inside the container (tests/operations/test_deployment_files.py: README too).
    assert services["postgres"]["image"].startswith("postgres:16")
    assert "postgresql-client-16" in (PROJECT_ROOT / "Dockerfile").read_text()
    app_env = services["app"]["environment"]
    names = set(app_env) if isinstance(app_env, dict) else {e.split("=")[0] for e in app_env}
    assert {
        "DATABASE_URL",
        "SECRET_KEY",
        "BASE_URL",
        "STRIPE_SECRET_KEY",
        "STRIPE_WEBHOOK_SECRET",
    } <= names
    # Every variable the compose file sets is one the portal reads.
    source = "".join(p.read_text() for p in (PROJECT_ROOT / "src/portal").rglob("*.py"))
    for name in names:
        assert f'"{name}"' in source, name
    assert "portal migrate" in " ".join(map(str, services["app"].get("command", [])))
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    assert "pip install" in dockerfile and "portal" in dockerfile


async def test_concurrent_sign_ins_and_saves_never_lock(app, db, settings):
    owner = await factories.make_user("owner")
    location = await factories.make_location(slug="busy")
    others = [await factories.make_user("accountant") for _ in range(8)]

    async def sign_in(account):
        async with factories.make_client(app) as c:
            await factories.login_by_form(c, account)
            return (await c.get("/")).status_code

    async def save(i):
        async with factories.make_client(app) as c:
            await factories.login_by_form(c, owner)
            response = await factories.post_form(
                c,
                f"/locations/{location}/edit",
                {
                    "name": f"Busy {i}",
                    "slug": "busy",
                    "timezone": "America/New_York",
                    "currency": "USD",
                    "tax_rate_bp": str(i),
                    "cancellation_window_hours": "24",
                },
            )
            return response.status_code

    results = await asyncio.gather(*(sign_in(a) for a in others), *(save(i) for i in range(1, 9)))
    assert results == [200] * 8 + [303] * 8
    if db.kind == "sqlite":
        mode = await db.engine.run_ddl("PRAGMA journal_mode")
        assert mode[0]["journal_mode"] == "wal"


def test_portal_serve_does_not_name_the_server(tmp_path):
    """``portal serve`` answers without uvicorn's ``Server`` header."""
    import socket
    import time
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = _subprocess_env(tmp_path)
    server = subprocess.Popen(
        [PORTAL, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    headers = dict(r.headers)
                break
            except OSError:
                assert time.monotonic() < deadline, "portal serve did not start"
                assert server.poll() is None, "portal serve exited"
                time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert "server" not in {k.lower() for k in headers}
    assert headers.get("cache-control") == "no-store"


def test_every_migration_has_its_own_id():
    """Piccolo keys migrations by ID: a second file with the same ID is silently never run."""
    import re

    folder = Path(portal_db.__file__).parent / "migrations"
    if not folder.is_dir():
        folder = PROJECT_ROOT / "migrations"
    ids = [
        re.search(r'^ID = "([^"]+)"', path.read_text(), re.M).group(1)  # type: ignore[union-attr]
        for path in sorted(folder.glob("portal_*.py"))
    ]
    assert len(ids) > 10
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


def test_templates_are_read_once_unless_someone_develops(settings):
    """A server with its own database reads each template once; debug and the embedded
    `make run` see an edited template on the next page."""
    from dataclasses import replace

    from portal.app import create_app

    def reloads(s: Settings) -> bool:
        engine = create_app(s, manage_database=False).template_engine
        return bool(engine.engine.auto_reload)  # type: ignore[attr-defined]

    assert not reloads(settings)
    assert reloads(replace(settings, debug=True))
    assert reloads(replace(settings, embedded=True))
