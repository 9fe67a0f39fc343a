"""``portal demo`` holds months of the front desk's history at every clinic, made through
the services: the reports show several months of revenue everywhere, their daily totals
equal the rows, every journal entry balances, and the therapist has a note to write."""

from __future__ import annotations

from datetime import timedelta

from portal import demo
from portal.auth.service import ACCOUNTANT, OWNER, THERAPIST, CurrentUser
from portal.auth.tables import User
from portal.clients import service as clients
from portal.ledger.tables import JournalLine
from portal.locations.tables import Location
from portal.notes import service as notes
from portal.notes.tables import TreatmentNote
from portal.payments.tables import Payout, Refund
from portal.reports import filters as report_filters
from portal.reports import service as reports
from portal.reports import totals
from portal.sales.tables import Sale
from portal.timeutil import utcnow
from tests.reports import helpers


async def test_the_demo_shows_a_living_chain(db) -> None:
    assert await demo.load_demo()
    today = utcnow().date()
    start = today - timedelta(days=130)
    for location in await Location.select(Location.id, Location.name):
        f = await report_filters.parse(
            helpers.actor(ACCOUNTANT),
            {"start": [start.isoformat()], "end": [today.isoformat()], "group": ["month"],
             "location": [str(location["id"])]},
        )  # fmt: skip
        months = [row.label for row in (await reports.revenue(f)).rows if row.service > 0]
        assert len(months) >= 4, (location["name"], months)
        # Sold at the desk and online, and refunded, at every clinic.
        channels = {
            r["channel"]
            for r in await Sale.select(Sale.channel).where(Sale.location == location["id"])
        }
        assert {"online", "front_desk"} <= channels, location["name"]
        assert await Refund.count().where(Refund.sale.location == location["id"]) >= 1

    # The daily totals the reports read equal the rows (`portal reports verify`).
    verification = await totals.verify()
    assert verification.differences == [] and verification.checked >= 4
    # Every journal entry balances.
    lines = await JournalLine.select(
        JournalLine.entry, JournalLine.debit_cents, JournalLine.credit_cents
    )
    balance: dict[int, int] = {}
    for line in lines:
        balance[line["entry"]] = (
            balance.get(line["entry"], 0) + line["debit_cents"] - line["credit_cents"]
        )
    assert len(balance) > 100 and set(balance.values()) == {0}
    # Stripe paid the months' card payments out; the therapist signed her notes and has
    # her latest sessions still to write up.
    assert await Payout.count() >= 2
    assert await TreatmentNote.count().where(TreatmentNote.status == "signed") >= 10
    therapist = await User.select(User.id).where(User.email == "therapist@demo.clinic").first()
    assert therapist is not None
    writer = CurrentUser(therapist["id"], "therapist@demo.clinic", "", THERAPIST, frozenset())
    assert await notes.sessions_to_write(writer)
    # The desk finds the demo's clients by phone, typed another way than stored.
    owner = CurrentUser(0, "", "", OWNER, frozenset())
    found = (await clients.list_clients(owner, search="(503) 555-0199")).rows
    assert [r["email"] for r in found] == ["client@demo.clinic"]
