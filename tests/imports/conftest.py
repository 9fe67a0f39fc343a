"""After every database test of imports: the journal's deferred revenue equals the value
of the session credits still owed (available or booked), whatever was imported or undone
(the suite's own fixture checks that the journal balances)."""

from __future__ import annotations

import pytest

from portal.ledger import service as ledger
from portal.sales.tables import SaleSession


@pytest.fixture
async def liability_equals_the_credits_owed(db):
    """Used by every database module here (``pytestmark``); after ``db``'s set-up, so
    checked before its tear-down."""
    yield
    rows = (
        await SaleSession.select(SaleSession.value_cents)
        .where(SaleSession.state.is_in(["available", "held"]))
        .run()
    )
    owed = sum(int(r["value_cents"]) for r in rows)
    assert await ledger.balance("deferred_revenue") == owed
