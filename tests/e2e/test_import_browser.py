"""An owner imports a file of clients through the wizard in Chromium: upload, the guessed
columns, the dry run, confirm, and the batch page's progress bar moving to the result
while the embedded worker runs the import (the page is never reloaded)."""

from __future__ import annotations

import asyncio
import csv
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from playwright.async_api import Page, expect

from portal.demo import DEMO_PASSWORD
from portal.jobs.catalog import JOBS
from tests.e2e.conftest import _env, free_port, serving, sign_in

ROWS = 6000


@pytest.fixture
def jobs_portal(e2e_template: Path, tmp_path: Path) -> Iterator[str]:
    """The portal with its embedded worker, no schedules, and small import chunks (so the
    progress moves in steps a person can see)."""
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    shutil.copyfile(e2e_template, var_dir / "portal.sqlite3")
    port = free_port()
    env = _env(var_dir, port)
    env.update(
        {
            "JOBS_IN_PROCESS": "1",
            "IMPORT_CHUNK_ROWS": "100",
            "STRIPE_API_BASE": "http://127.0.0.1:9",
            **{f"JOB_SCHEDULE_{spec.name.upper()}": "off" for spec in JOBS},
        }
    )
    with serving(env, port, tmp_path) as url:
        yield url


@pytest.fixture
def clients_file(tmp_path):
    path = tmp_path / "old-system-clients.csv"
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle, delimiter=";")
        writer.writerow(["Client ID", "First Name", "Surname", "E-mail", "Birthdate"])
        for i in range(ROWS):
            writer.writerow(
                [f"C{i}", f"Client{i}", "Moved", f"moved{i}@example.test", "31/01/1985"]
            )
        writer.writerow(["BAD", "", "", "bad-email", "31/02/1985"])
    return path


async def test_owner_imports_clients_and_watches_the_progress(
    page: Page, jobs_portal, clients_file
):
    url = jobs_portal
    await sign_in(page, SimpleNamespace(url=url), "owner@demo.clinic", DEMO_PASSWORD)  # type: ignore[arg-type]
    await page.goto(f"{url}/imports/")
    await expect(page.get_by_text("up to 50 MB")).to_be_visible()
    await page.get_by_label("What the file holds").select_option("clients")
    await page.locator("#file").set_input_files(str(clients_file))
    await page.get_by_role("button", name="Upload and map columns").click()

    # The columns, guessed from the other system's headers.
    await expect(page.get_by_role("heading", name="2. Map the columns")).to_be_visible()
    await expect(page.locator("#map_email")).to_have_value("E-mail")
    await expect(page.locator("#map_last_name")).to_have_value("Surname")
    await page.get_by_label("Save this mapping as").fill("Old system")
    await page.get_by_role("button", name="Dry run").click()

    await expect(page.get_by_role("heading", name="3. Dry run")).to_be_visible()
    await expect(page.locator("#count-new")).to_have_text(str(ROWS))
    await expect(page.locator("#count-rejected")).to_have_text("1")
    await page.get_by_role("button", name=f"Import {ROWS} new row(s)").click()

    # The batch page follows the run by itself.
    await expect(page.get_by_role("heading", name="Import #")).to_be_visible()
    await page.evaluate("window.__notReloaded = true")
    progress = page.locator("progress")
    seen: set[int] = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and await progress.count():
        value = await progress.get_attribute("value")
        if value is not None:
            seen.add(int(value))
        await asyncio.sleep(0.1)
    assert seen, "the progress bar never showed"
    await expect(page.locator("#result-created")).to_have_text(str(ROWS), timeout=60_000)
    await expect(page.locator("#result-rejected")).to_have_text("1")
    assert await page.evaluate("window.__notReloaded === true")
    await page.reload()
    await expect(page.get_by_role("link", name="Download the rejected rows")).to_be_visible()
    await expect(page.get_by_role("button", name="Undo this import")).to_be_visible()
