"""Passkeys in Chromium through a virtual authenticator (DevTools' WebAuthn domain).

Browsers refuse an IP address as the relying-party id, so this server is reached at
``http://localhost:PORT`` with ``BASE_URL`` saying the same.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page, expect

from portal.demo import DEMO_PASSWORD
from tests.e2e.conftest import PORTAL, LiveServer, _env, free_port

pytestmark = pytest.mark.e2e
OWNER = "owner@demo.clinic"


@pytest.fixture
def localhost_server(e2e_template: Path, tmp_path: Path) -> Iterator[LiveServer]:
    port = free_port()
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    shutil.copyfile(e2e_template, var_dir / "portal.sqlite3")
    env = _env(var_dir, port)
    url = f"http://localhost:{port}"
    env["BASE_URL"] = url
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115
    process = subprocess.Popen(
        [PORTAL, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                log.flush()
                raise RuntimeError(
                    "portal did not start:\n" + (tmp_path / "server.log").read_text()
                )
            time.sleep(0.1)
        yield LiveServer(url=url, env=env, var_dir=var_dir, stripe=None)  # type: ignore[arg-type]
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


async def _virtual_authenticator(page: Page) -> str:
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("WebAuthn.enable")
    result = await cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
            }
        },
    )
    return str(result["authenticatorId"])


async def _sign_in_with_password(page: Page, url: str) -> None:
    await page.goto(f"{url}/login")
    await page.get_by_label("Email").fill(OWNER)
    await page.get_by_label("Password").fill(DEMO_PASSWORD)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await page.wait_for_load_state()


async def _sign_out(page: Page) -> None:
    await page.locator("details.dropdown summary").click()
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url("**/login")


async def test_register_a_passkey_then_sign_in_with_it(page: Page, localhost_server: LiveServer):
    url = localhost_server.url
    await _virtual_authenticator(page)
    await _sign_in_with_password(page, url)
    await page.goto(f"{url}/account/two-step")
    await page.get_by_label("Name of the new passkey").fill("Virtual key")
    await page.get_by_role("button", name="Add a passkey").click()
    await expect(page.get_by_text("Passkey added.")).to_be_visible()
    await expect(page.get_by_role("cell", name="Virtual key")).to_be_visible()

    # A passkey alone: no email, no password.
    await _sign_out(page)
    await page.get_by_role("button", name="Sign in with a passkey").click()
    await page.wait_for_url(f"{url}/")
    await expect(page.locator("details.dropdown summary")).to_contain_text("Olivia Owens")

    # The password now asks for the second step; the passkey answers it.
    await _sign_out(page)
    await _sign_in_with_password(page, url)
    await page.wait_for_url("**/login/two-step")
    await page.get_by_role("button", name="Use a passkey").click()
    await page.wait_for_url(f"{url}/")
    await expect(page.locator("details.dropdown summary")).to_contain_text("Olivia Owens")

    # Audited and emailed.
    with sqlite3.connect(localhost_server.var_dir / "portal.sqlite3") as conn:
        actions = [r[0] for r in conn.execute("SELECT action FROM audit_log")]
        mail = [
            r[0]
            for r in conn.execute("SELECT subject FROM email_outbox WHERE to_address = ?", (OWNER,))
        ]
    assert "add_passkey" in actions
    assert any("passkey named" in subject for subject in mail)
