"""The owner runs a long job from the jobs page and watches its progress move, without
reloading: the embedded worker (JOBS_IN_PROCESS) delivers 80 waiting messages
through a deliberately slow mail server; htmx polls the run's part of the page."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from playwright.async_api import Page, expect

from portal.demo import DEMO_PASSWORD
from portal.jobs.catalog import JOBS
from tests.e2e.conftest import PORTAL, _env, free_port, sign_in

MESSAGES = 80
JOB_NAMES = [spec.name for spec in JOBS]


class SlowMailServer:
    def __init__(self) -> None:
        self.received = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(0.05)
        self.received += 1
        return "250 OK"


@pytest.fixture
def jobs_server(e2e_template: Path, tmp_path: Path) -> Iterator[tuple[str, SlowMailServer]]:
    mail = SlowMailServer()
    smtp_port = free_port()
    smtp = Controller(mail, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    port = free_port()
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    shutil.copyfile(e2e_template, var_dir / "portal.sqlite3")
    created = str(datetime.now(UTC) - timedelta(minutes=5))  # as Piccolo writes it
    with sqlite3.connect(var_dir / "portal.sqlite3") as conn:
        conn.executemany(
            "INSERT INTO email_outbox (created_at, to_address, subject, template, kind, "
            "body_text, body_html, transport, status, error, attempts, message_id) "
            "VALUES (?, ?, ?, 'welcome', 'welcome', 'Hi', '', 'smtp', 'queued', '', 0, '')",
            [(created, f"client{i}@example.test", f"Message {i}") for i in range(MESSAGES)],
        )
    env = _env(var_dir, port)
    env.update(
        {
            "JOBS_IN_PROCESS": "1",
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp_port),
            "SMTP_STARTTLS": "false",
            "STRIPE_API_BASE": "http://127.0.0.1:9",
            # Nothing runs on its own during the test: the owner starts the run.
            **{f"JOB_SCHEDULE_{name.upper()}": "off" for name in JOB_NAMES},
        }
    )
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115
    process = subprocess.Popen(
        [PORTAL, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, (
                tmp_path / "server.log"
            ).read_text()
            time.sleep(0.1)
        yield url, mail
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        smtp.stop()


async def test_owner_runs_a_long_job_and_watches_its_progress(
    page: Page, jobs_server: tuple[str, SlowMailServer]
) -> None:
    url, mail = jobs_server
    await sign_in(page, SimpleNamespace(url=url), "owner@demo.clinic", DEMO_PASSWORD)  # type: ignore[arg-type]
    await page.goto(f"{url}/jobs")
    row = page.locator("#job-outbox")
    await expect(row).to_contain_text("Deliver email")
    await expect(row).to_contain_text("Never")
    await row.get_by_role("button", name="Run Deliver email now").click()

    # The run's page: it follows the run by itself (htmx), the page is never reloaded.
    await expect(page.get_by_role("heading", name="Deliver email")).to_be_visible()
    await page.evaluate("window.__notReloaded = true")
    progress = page.locator("progress")
    await expect(progress).to_be_visible()
    await expect(page.locator(".job-run")).to_contain_text(f"of {MESSAGES}")
    seen: set[int] = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        # Read in one step: the bar leaves the page when the run ends, between a
        # count and a locator's read (which would then wait for it in vain).
        value = await page.evaluate(
            "(() => { const bar = document.querySelector('progress');"
            " return bar ? bar.getAttribute('value') : 'gone'; })()"
        )
        if value == "gone":
            break
        if value is not None:
            seen.add(int(value))
        await asyncio.sleep(0.2)
    assert len(seen) >= 2, f"the progress never moved: {seen}"
    await expect(page.locator(".job-run")).to_contain_text("Succeeded", timeout=30_000)
    await expect(page.locator(".job-run")).to_contain_text(f"Outbox: {MESSAGES} sent, 0 failed.")
    assert await page.evaluate("window.__notReloaded === true")
    assert mail.received == MESSAGES

    # Back on the jobs page: the last run, its outcome and duration.
    await page.get_by_role("link", name="All jobs").click()
    await expect(row).to_contain_text("Succeeded")
