"""Progress of long work: ``await progress.report(done, total, step)``.

Any service may call :func:`report` while it works through a list (a report
rebuild, an import, the outbox); it costs nothing when nobody listens. The
job runner (``portal.jobs``) listens while it runs a job: it stores the
figures on the job's run, so the jobs page can show them, and the CLI draws
a bar on a terminal. This module sits in the core and imports nothing of the
portal, so every context can use it without depending on the jobs context.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar

Listener = Callable[[int, int, str], Awaitable[None]]

_listeners: ContextVar[tuple[Listener, ...]] = ContextVar("portal_progress", default=())


async def report(done: int, total: int, step: str = "") -> None:
    """Tell whoever runs this work that ``done`` of ``total`` are done, now at ``step``."""
    done = max(0, done)
    total = max(done, total)
    for listener in _listeners.get():
        await listener(done, total, step[:200])


@contextlib.contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Send the reports made inside the block (this task and the ones it starts) to ``listener``."""
    token = _listeners.set((*_listeners.get(), listener))
    try:
        yield
    finally:
        _listeners.reset(token)
