"""Start the stand-in as a child process, for the tests and ``make run``.

The stand-in runs in its own process because localstripe keeps module-level
state and an aiohttp loop of its own; a separate process also means the
portal talks to it over real HTTP through the Stripe SDK, exactly as it
would to Stripe.

The child binds a free port itself (``--port 0``) and announces it on its
first stdout line, so there is no window in which another program could take
a port we picked. It watches its stdin and exits when the parent goes away,
so an interrupted test run leaves no stand-in behind.

This module does not import localstripe: it only needs the standard library,
so it can be used wherever the portal runs.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

READY_PREFIX = "standin listening on "


class StandInStartError(RuntimeError):
    """The stand-in did not come up; the message includes the end of its log."""


def _tail(path: Path | None, lines: int = 30) -> str:
    if path is None or not path.exists():
        return "(no log file; pass log_file= to keep the stand-in's log)"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def _read_ready_line(proc: subprocess.Popen[bytes], deadline: float, log: Path | None) -> str:
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    buffer = b""
    try:
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StandInStartError(f"the Stripe stand-in did not start in time.\n{_tail(log)}")
            if not selector.select(timeout=min(remaining, 0.2)):
                if proc.poll() is not None:
                    break
                continue
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            buffer += chunk
    finally:
        selector.close()
    line = buffer.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    if not line.startswith(READY_PREFIX):
        code = proc.poll()
        raise StandInStartError(
            f"the Stripe stand-in failed to start (exit code {code}).\n{_tail(log)}"
        )
    return line[len(READY_PREFIX) :]


def wait_until_healthy(base_url: str, timeout: float = 10.0) -> None:
    """Poll ``/_standin/health`` until it answers 200."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base_url}/_standin/health", timeout=2) as response:  # noqa: S310
                if response.status == 200 and json.load(response).get("status") == "ok":
                    return
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last_error = str(exc)
        time.sleep(0.05)
    raise StandInStartError(f"the Stripe stand-in at {base_url} does not answer: {last_error}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.stdin is not None:
        proc.stdin.close()  # --exit-with-parent: the child stops on EOF
    try:
        proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


@contextmanager
def standin_process(
    *,
    webhook_urls: Sequence[str] = (),
    webhook_secret: str | None = None,
    port: int = 0,
    log_file: Path | None = None,
    quiet: bool = False,
    retry_delays: Sequence[float] | None = None,
    startup_timeout: float = 20.0,
    python: str = sys.executable,
) -> Iterator[str]:
    """Run a fresh stand-in for the duration of the ``with`` block; yields its base URL.

    ``webhook_urls`` receive every event signed with ``webhook_secret``; more
    endpoints can be added at runtime with ``POST {base}/_config/webhooks/{id}``
    (``url``, ``secret``). The stand-in's log goes to ``log_file`` (appended),
    or nowhere.
    """
    command = [
        python,
        "-m",
        "stripe_standin",
        "--port",
        str(port),
        "--exit-with-parent",
    ]
    for url in webhook_urls:
        command += ["--webhook-url", url]
    if webhook_secret:
        command += ["--webhook-secret", webhook_secret]
    if retry_delays is not None:
        command += ["--retry-delays", ",".join(str(d) for d in retry_delays)]
    if quiet:
        command.append("--quiet")
    log: IO[bytes] | None = None
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        log = log_file.open("ab")
    try:
        proc = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log if log is not None else subprocess.DEVNULL,
        )
    finally:
        if log is not None:
            log.close()  # the child holds its own descriptor
    try:
        deadline = time.monotonic() + startup_timeout
        base_url = _read_ready_line(proc, deadline, log_file)
        wait_until_healthy(base_url, timeout=max(deadline - time.monotonic(), 1.0))
        yield base_url
    finally:
        _stop(proc)
