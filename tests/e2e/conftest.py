"""Browser tests: the real portal served by uvicorn, driven in Debian's Chromium.

``live_server`` starts `portal serve` as a separate process on a free port
with its own SQLite database (migrated, demo data loaded), so the browser
talks to the portal exactly as a user would.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright

from bench import load
from bench.load import free_port
from tests.conftest import IN_CI
from tests.stripe_standin import StandIn

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
PORTAL = str(Path(sys.executable).with_name("portal"))


@dataclass
class LiveServer:
    url: str
    env: dict[str, str]
    var_dir: Path
    stripe: StandIn  # the Stripe stand-in this server pays through

    def portal(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a `portal` command against this server's database."""
        return subprocess.run(
            [PORTAL, *args], env=self.env, input=stdin, capture_output=True, text=True, timeout=60
        )


def _env(var_dir: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PICCOLO", "DATABASE"))}
    env.update(
        {
            "PORTAL_VAR_DIR": str(var_dir),
            "DATABASE_URL": f"sqlite:///{var_dir / 'portal.sqlite3'}",
            "SECRET_KEY": "e2e-secret-key-" + "y" * 40,
            "BASE_URL": f"http://127.0.0.1:{port}",
            "PORT": str(port),
            "PICCOLO_CONF": "portal.piccolo_conf",
        }
    )
    return env


@pytest.fixture(scope="session")
def e2e_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated database with the demo data, copied for every browser test."""
    var_dir = tmp_path_factory.mktemp("e2e-template")
    env = _env(var_dir, free_port())  # migrate and demo serve nothing; any valid port
    for args in (["migrate"], ["demo"]):
        result = subprocess.run(
            [PORTAL, *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
    return var_dir / "portal.sqlite3"


@pytest.fixture
def live_server(
    e2e_template: Path, tmp_path: Path, stripe_standin: StandIn
) -> Iterator[LiveServer]:
    """The portal on a free port, paying through the suite's Stripe stand-in.

    The server gets the stand-in's API address and webhook secret, and its
    ``/stripe/webhook`` is registered with the stand-in for this test only.
    """
    port = free_port()
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    shutil.copyfile(e2e_template, var_dir / "portal.sqlite3")
    env = _env(var_dir, port)
    env.pop("STRIPE_SECRET_KEY", None)
    env["STRIPE_API_BASE"] = stripe_standin.base_url
    env["STRIPE_WEBHOOK_SECRET"] = stripe_standin.webhook_secret
    with serving(env, port, tmp_path) as url:
        endpoint = f"e2e-{port}"
        httpx.post(
            f"{stripe_standin.base_url}/_config/webhooks/{endpoint}",
            data={"url": f"{url}/stripe/webhook", "secret": stripe_standin.webhook_secret},
            timeout=10,
        ).raise_for_status()
        try:
            yield LiveServer(url=url, env=env, var_dir=var_dir, stripe=stripe_standin)
        finally:
            httpx.delete(f"{stripe_standin.base_url}/_config/webhooks/{endpoint}", timeout=10)


@contextlib.contextmanager
def serving(env: dict[str, str], port: int, tmp_path: Path) -> Iterator[str]:
    """`portal serve` with ``env`` on ``port`` until the block ends; its URL once healthy
    (its output in ``tmp_path/server.log``).

    A port free when chosen can be taken before the server binds it (a start takes
    seconds on a busy machine, and another suite may run beside this one): the server
    then starts on another free port, written into ``env`` (``PORT``, ``BASE_URL``).
    """
    for _attempt in range(3):
        process, url = _start(env, port, tmp_path)
        if url is not None:
            break
        port = free_port()
        env.update(PORT=str(port), BASE_URL=f"http://127.0.0.1:{port}")
    else:
        raise RuntimeError("no free port for the portal server after three tries")
    try:
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def _start(
    env: dict[str, str], port: int, tmp_path: Path
) -> tuple[subprocess.Popen[bytes], str | None]:
    """The server process and its URL once healthy; no URL if its port was taken."""
    log_path = tmp_path / "server.log"
    with log_path.open("a") as log:
        process = subprocess.Popen(
            [PORTAL, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90  # imports alone take 15 s on a busy machine
    while True:
        try:
            if load.answered_by(httpx.get(f"{url}/healthz", timeout=1), process.pid):
                return process, url
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            output = log_path.read_text()
            if process.returncode is not None and "address already in use" in output:
                return process, None
            process.kill()
            raise RuntimeError("portal server did not start:\n" + output)
        time.sleep(0.1)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        message = f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
        if IN_CI:
            pytest.fail(message)
        sys.stderr.write(f"\n{'!' * 78}\n!! SKIPPING browser tests: {message}\n{'!' * 78}\n")
        pytest.skip(message)
    playwright = await async_playwright().start()
    browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        yield browser
    finally:
        await browser.close()
        await playwright.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Iterator[pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed
    return report


_CALL_FAILED = pytest.StashKey[bool]()


@pytest.fixture
async def page(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    page = await context.new_page()
    try:
        yield page
        if request.node.stash.get(_CALL_FAILED, False):
            # What the browser showed when the test failed, in the report.
            with contextlib.suppress(Exception):
                text = await page.locator("body").inner_text(timeout=2_000)
                sys.stderr.write(f"\nThe page at failure: {page.url}\n{text[:4000]}\n")
    finally:
        await context.close()


async def sign_in(page: Page, server: LiveServer, email: str, password: str) -> None:
    """Sign in through the form, as a person would."""
    await page.goto(f"{server.url}/login")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await page.wait_for_load_state()
