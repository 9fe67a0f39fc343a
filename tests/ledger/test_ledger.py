from __future__ import annotations

import pytest

from portal.ledger import service as ledger
from portal.ledger.tables import JournalLine
from tests import factories


async def test_balanced_entry_and_balances(db):
    loc = await factories.make_location()
    entry = await ledger.post(
        event_key="sale:1:paid",
        kind="sale_paid",
        currency="USD",
        location_id=loc,
        lines=[
            ledger.debit("stripe_clearing", 10_825),
            ledger.credit("deferred_revenue", 10_000),
            ledger.credit("tax_payable", 825),
        ],
        sale_id=1,
        channel="online",
    )
    assert entry is not None
    assert await ledger.balance("stripe_clearing") == 10_825
    assert await ledger.balance("deferred_revenue", location_id=loc) == 10_000
    assert await ledger.balance("deferred_revenue", sale_id=2) == 0
    assert await ledger.totals() == (10_825, 10_825)


async def test_same_event_is_journalled_once(db):
    lines = [ledger.debit("processing_fees", 30), ledger.credit("stripe_clearing", 30)]
    first = await ledger.post(
        event_key="fee:ch_1", kind="fee", currency="USD", location_id=None, lines=lines
    )
    second = await ledger.post(
        event_key="fee:ch_1", kind="fee", currency="USD", location_id=None, lines=lines
    )
    assert first is not None and second is None
    assert await JournalLine.count().run() == 2


async def test_unbalanced_or_malformed_entries_are_refused(db):
    with pytest.raises(ledger.UnbalancedEntry):
        await ledger.post(
            event_key="x", kind="bad", currency="USD", location_id=None,
            lines=[ledger.debit("stripe_clearing", 100), ledger.credit("deferred_revenue", 99)],
        )  # fmt: skip
    with pytest.raises(ledger.UnbalancedEntry):
        ledger.debit("no_such_account", 1)
    with pytest.raises(ledger.UnbalancedEntry):
        ledger.Line("stripe_clearing", debit=-5)
    assert await JournalLine.count().run() == 0


async def test_journal_is_append_only(db):
    await ledger.post(
        event_key="k", kind="fee", currency="USD", location_id=None,
        lines=[ledger.debit("processing_fees", 5), ledger.credit("stripe_clearing", 5)],
    )  # fmt: skip
    with pytest.raises(Exception, match="append-only"):
        await JournalLine.update({JournalLine.debit_cents: 6}, force=True).run()
    with pytest.raises(Exception, match="append-only"):
        await JournalLine.delete(force=True).run()
