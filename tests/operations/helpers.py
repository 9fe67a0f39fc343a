"""Capturing the portal's log lines as the production formatter writes them."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx

from portal import logs


def client_from(app: Any, peer: str) -> httpx.AsyncClient:
    """An HTTP client on ``app`` whose connections come from ``peer``."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(peer, 50000)),
        base_url="http://testserver",
        follow_redirects=False,
    )


class Captured:
    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]

    def requests(self) -> list[dict[str, Any]]:
        return [line for line in self.json_lines() if line.get("logger") == "portal.request"]


@contextlib.contextmanager
def captured(fmt: str = logs.JSON, logger: str = "portal") -> Iterator[Captured]:
    """Lines of ``logger`` (and below) at INFO and up, through ``logs.formatter(fmt)``."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.formatter(fmt))
    target = logging.getLogger(logger)
    level = target.level
    target.addHandler(handler)
    target.setLevel(logging.INFO)
    try:
        yield Captured(stream)
    finally:
        target.removeHandler(handler)
        target.setLevel(level)
