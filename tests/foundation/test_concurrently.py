"""``db.concurrently``: independent reads together, and none left behind when one fails."""

from __future__ import annotations

import asyncio
import inspect

import pytest

from portal import db as portal_db
from portal.locations.tables import Location
from tests import factories


async def test_results_come_back_in_the_order_asked(db):
    first = await factories.make_location(name="First")
    second = await factories.make_location(name="Second")
    names = await portal_db.concurrently(
        Location.select(Location.name).where(Location.id == second).first().run(),
        Location.select(Location.name).where(Location.id == first).first().run(),
    )
    assert [row["name"] for row in names] == ["Second", "First"]


async def test_a_failing_read_stops_the_others(db):
    finished: list[str] = []

    async def fails() -> None:
        raise LookupError("no such page")

    async def slow() -> None:
        await asyncio.sleep(5)
        finished.append("slow")

    other = slow()
    with pytest.raises(LookupError):
        await portal_db.concurrently(fails(), other)
    # Not started (in turn) or cancelled (together): closed either way, never finished,
    # so nothing runs on unobserved and no coroutine is left un-awaited.
    assert inspect.getcoroutinestate(other) == inspect.CORO_CLOSED
    await asyncio.sleep(0)
    assert finished == []
