"""Structured logs: one format for every line the portal writes, and the context they carry.

Every module keeps logging through the standard library (``logging.getLogger``);
:func:`configure` puts one handler on the root logger whose structlog formatter
turns each record into a line with a timestamp, level, logger name, the
record's ``extra`` fields and whatever is bound to the current context —
plain ``key=value`` text for a person at a terminal (``make run``), one JSON
object per line for a log pipeline (``LOG_FORMAT=json``).

The context is a set of context variables (structlog's ``contextvars``): the
request middleware binds ``request_id`` for the length of a request, so every
line written while serving it — a service's warning, the traceback of a 500,
the request line itself — carries the id that the error page shows. A job
run does the same with :func:`bound`::

    with logs.bound(job="packages.expire", job_id=job.id):
        ...  # every line logged here carries job= and job_id=

Nothing here knows of HTTP; the web layer and the job worker both use it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import structlog

TEXT = "text"
JSON = "json"
FORMATS = (TEXT, JSON)

# The standard library's handler installed by :func:`configure` (replaced, not
# stacked, when it is called again).
_HANDLER_NAME = "portal"


def _drop_color_message(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """uvicorn hands its messages a second time with terminal colours; one is enough."""
    event.pop("color_message", None)
    return event


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        # ``logger.info("request", extra={...})``: the extra fields become keys.
        structlog.stdlib.ExtraAdder(),
        _drop_color_message,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
    ]


def formatter(fmt: str = TEXT) -> logging.Formatter:
    """The formatter of every portal log line in ``fmt`` (``text`` or ``json``)."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    renderer: Any
    if fmt == JSON:
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
        exceptions: list[Any] = [structlog.processors.format_exc_info]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
        exceptions = []  # the console renderer prints the traceback itself
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *exceptions,
            renderer,
        ],
    )


def configure(fmt: str = TEXT, *, level: str = "info", stream: IO[str] | None = None) -> None:
    """Send every log record (the portal's, uvicorn's, Litestar's) through one formatter.

    Called once per process by the entry points (``portal.asgi``, the
    ``portal`` command), never by ``create_app``: tests keep pytest's own
    capture.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter(fmt))
    root = logging.getLogger()
    for existing in list(root.handlers):
        if existing.get_name() == _HANDLER_NAME:
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn's loggers print on their own handlers when it configures them;
    # the portal's entry points hand it ``log_config=None``, so they reach the
    # root's handler instead. Its access log is replaced by the request line
    # (uvicorn writes access lines whenever that logger has a handler, its
    # ancestors' included).
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    structlog.configure(
        processors=[
            *_shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


@contextmanager
def bound(**values: Any) -> Iterator[None]:
    """Add ``values`` to every log line written inside the block (this task only).

    The job worker wraps each run in ``bound(job=..., job_id=...)``; the request
    middleware wraps each request in ``bound(request_id=...)``. Values bound
    outside the block come back when it ends.
    """
    with structlog.contextvars.bound_contextvars(**values):
        yield


def current(key: str) -> Any:
    """A value bound by :func:`bound` around the running code, or None."""
    return structlog.contextvars.get_contextvars().get(key)
