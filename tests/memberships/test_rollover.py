"""Rollover up to the plan's cap, with exact figures: 2 sessions a month at $120.00 + 8.25 %
tax, each worth $60.00 of revenue; at most 1 unused session carries into the next period,
where it ends. What does not carry is breakage, and deferred revenue always equals the
value of the sessions still open."""

from __future__ import annotations

import secrets
from collections import Counter
from datetime import timedelta

from portal.auth.service import CLIENT, CurrentUser
from portal.ledger.tables import JournalLine
from portal.memberships import subscriptions
from portal.sales import service as sales
from portal.sales.tables import SaleSession
from tests.memberships.conftest import Club
from tests.memberships.helpers import make_plan


async def _lines(location: int) -> Counter[str]:
    """Net credit balance per account of the location's journal (credits − debits)."""
    out: Counter[str] = Counter()
    for line in await JournalLine.select().where(JournalLine.location == location).run():
        out[line["account"]] += int(line["credit_cents"]) - int(line["debit_cents"])
    return out


async def _credits(sale_id: int) -> list[str]:
    rows = await SaleSession.select(SaleSession.state).where(SaleSession.sale == sale_id).run()
    return sorted(str(r["state"]) for r in rows)


async def test_up_to_the_cap_rolls_over_once_and_the_rest_is_breakage(
    club: Club, club_webhook
) -> None:
    plan = await make_plan(club.location, club.service, name="Rollover", rollover_cap=1)
    member = CurrentUser(club.member.id, club.member.email, "", CLIENT, frozenset())
    membership_id, url = await subscriptions.join(
        club.gateway, member, plan, base_url="http://portal.test",
        request_key=secrets.token_urlsafe(24),
    )  # fmt: skip
    await club.standin.complete_session(url.rsplit("/", 1)[-1])
    await club.standin.drain()
    subscription = str((await subscriptions.get_membership(membership_id))["subscription_id"])
    (first,) = await subscriptions.periods_of(membership_id)
    sale1 = int(first["sale_id"])
    assert (await sales.get_sale(sale1))["valid_until"] == first["period_end"] + timedelta(days=1)

    await club.standin.advance_subscription(subscription)
    await club.standin.drain()
    second, _ = await subscriptions.periods_of(membership_id)
    sale2 = int(second["sale_id"])
    assert await _credits(sale1) == ["available", "expired"]  # one carried, one breakage
    assert (await sales.get_sale(sale1))["valid_until"] == second["period_end"]
    assert await subscriptions.sessions_left(membership_id) == 3
    balance = await _lines(club.location)
    assert balance["breakage_revenue"] == 6000
    assert balance["deferred_revenue"] == 3 * 6000  # 2 × 12000 − 6000

    # The carried session ends with the second period; it is not carried again.
    run = await sales.expire_due(second["period_end"])
    assert (run.sessions, run.value_cents) == (1, {"USD": 6000})
    assert await _credits(sale1) == ["expired", "expired"]
    await club.standin.advance_subscription(subscription)
    await club.standin.drain()
    assert await _credits(sale2) == ["available", "expired"]
    assert await subscriptions.sessions_left(membership_id) == 3  # 1 carried + 2 new
    balance = await _lines(club.location)
    assert balance["breakage_revenue"] == 3 * 6000
    assert balance["deferred_revenue"] == 3 * 6000  # 3 × 12000 − 18000
    assert balance["tax_payable"] == 3 * 990
