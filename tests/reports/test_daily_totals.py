"""The daily totals (``ledger.daily``): kept with the rows, rebuilt and verified, on
SQLite and PostgreSQL."""

from __future__ import annotations

import random
from datetime import date, timedelta

import pytest

from portal import db as portal_db
from portal.auth.service import ACCOUNTANT, CLIENT, OWNER
from portal.ledger import daily, periods
from portal.ledger import service as ledger
from portal.ledger.tables import CashMonth, CreditDay, LedgerDay, LedgerMonth
from portal.payments import states
from portal.payments import totals as payment_totals
from portal.payments.tables import Payment, Refund
from portal.reports import filters as report_filters
from portal.reports import rollup, totals
from portal.reports import service as reports
from portal.sales import service as sales
from tests import factories
from tests.reports import helpers
from tests.reports.scenario import build, utc


async def _clean() -> None:
    found = await totals.verify()
    assert not found.differences, "\n".join(d.line() for d in found.differences)


async def _rows(table):
    return sorted(tuple(r.values())[1:] for r in await table.select().order_by(table.id).run())


async def test_the_totals_equal_the_rows_of_the_hand_scenario(db):
    """Sales, sessions given across DST and a month end, a refund, an expiry, at two
    locations in two zones: every total equals the fresh aggregate of the rows."""
    s = await build()
    await _clean()
    # Alpha's March money, by the dating rule: the refund of 2026-03-08 06:30 UTC is
    # on Alpha's 2026-03-07 (PST), S2's session on 2026-04-01 05:00 UTC on 03-31.
    refund_day = daily.number_of(date(2026, 3, 7))
    rows = await LedgerDay.select().where(
        (LedgerDay.location == s.alpha) & (LedgerDay.day == refund_day)
        & (LedgerDay.account == "deferred_revenue")
    ).run()  # fmt: skip
    assert [(r["kind"], r["debit_cents"]) for r in rows] == [("refund", 10000)]
    given = await LedgerDay.select().where(
        (LedgerDay.location == s.alpha) & (LedgerDay.day == daily.number_of(date(2026, 3, 31)))
        & (LedgerDay.account == "service_revenue")
    ).run()  # fmt: skip
    assert [(r["therapist"], r["credit_cents"]) for r in given] == [(s.t2, 10000)]


async def test_totals_written_a_statement_at_a_time_are_the_same(db, monkeypatch):
    """Changes too many for one statement go table by table (and month by month) in
    the one statement's order: the same totals, months included."""
    monkeypatch.setattr(daily, "MAX_PARAMETERS", 0)
    monkeypatch.setattr(daily, "ROWS_PER_STATEMENT", 1)
    await build()
    await _clean()
    assert await LedgerMonth.count().run() > 0


async def test_a_rolled_back_posting_leaves_no_total(db):
    loc = await factories.make_location(slug="rb", timezone="Europe/London", currency="GBP")
    with pytest.raises(RuntimeError):
        async with portal_db.transaction():
            await ledger.post(
                event_key="test:rolled-back", kind="sale_paid", currency="GBP",
                location_id=loc, occurred_at=utc(2026, 5, 1, 12),
                lines=[ledger.debit("cash_on_hand", 500), ledger.credit("deferred_revenue", 500)],
            )  # fmt: skip
            raise RuntimeError("the caller failed after posting")
    assert await LedgerDay.count().run() == 0
    await ledger.post(
        event_key="test:kept", kind="sale_paid", currency="GBP", location_id=loc,
        occurred_at=utc(2026, 5, 1, 23, 30),  # 00:30 BST on 2 May
        lines=[ledger.debit("cash_on_hand", 700), ledger.credit("deferred_revenue", 700)],
    )  # fmt: skip
    rows = await LedgerDay.select(LedgerDay.day, LedgerDay.account).run()
    assert {(r["day"], r["account"]) for r in rows} == {
        (daily.number_of(date(2026, 5, 2)), "cash_on_hand"),
        (daily.number_of(date(2026, 5, 2)), "deferred_revenue"),
    }
    await _clean()


async def test_verify_names_each_difference_and_rebuild_repairs_it(db):
    s = await build()
    before_ledger, before_credits = await _rows(LedgerDay), await _rows(CreditDay)
    await (
        LedgerDay.update({LedgerDay.debit_cents: LedgerDay.debit_cents + 1})
        .where((LedgerDay.location == s.beta) & (LedgerDay.account == "cash_on_hand"))
        .run()
    )
    await CreditDay.delete().where(CreditDay.location == s.alpha).run()
    found = await totals.verify()
    tables = {d.table for d in found.differences}
    # The monthly rows no longer equal the sum of the (changed) daily ones either.
    assert tables == {"ledger_day", "credit_day", "ledger_month", "credit_month"}
    assert any(f"location {s.beta} " in d.line() and "cash_on_hand" in d.line()
               for d in found.differences)  # fmt: skip
    await totals.rebuild()
    await _clean()
    assert await _rows(LedgerDay) == before_ledger
    assert await _rows(CreditDay) == before_credits
    # A monthly row of its own: verify names it alone, rebuild derives it again.
    before_months = await _rows(LedgerMonth)
    await (
        LedgerMonth.update({LedgerMonth.credit_cents: LedgerMonth.credit_cents + 7})
        .where((LedgerMonth.location == s.alpha) & (LedgerMonth.account == "deferred_revenue"))
        .run()
    )
    await CashMonth.delete().where(CashMonth.location == s.beta).run()
    found = await totals.verify()
    assert {d.table for d in found.differences} == {"ledger_month", "cash_month"}
    assert all(f"location {s.alpha} " in d.line() and "deferred_revenue" in d.line()
               for d in found.differences if d.table == "ledger_month")  # fmt: skip
    await totals.rebuild()
    await _clean()
    assert await _rows(LedgerMonth) == before_months
    # --since: only days from then on are recomputed; earlier ones stay as they are.
    await (
        LedgerDay.update({LedgerDay.credit_cents: 0})
        .where(LedgerDay.day < daily.number_of(date(2026, 3, 1)))
        .run()
    )
    await totals.rebuild(date(2026, 3, 1))
    assert (await totals.verify()).differences
    await totals.rebuild(date(2026, 1, 1))
    await _clean()


@pytest.mark.parametrize("seed", [5, 17])
async def test_totals_equal_the_rows_over_random_event_sequences(db, seed, monkeypatch):
    """Property: sales at two zones, sessions given at the other clinic, forfeits,
    refunds of some sessions, refunds failing (sessions given back), re-dated credits,
    expiries and closed months, in random order: the totals equal the rows."""
    rng = random.Random(seed)
    locs = [
        await factories.make_location(slug=f"t{seed}a", timezone="America/New_York"),
        await factories.make_location(slug=f"t{seed}b", timezone="Australia/Sydney",
                                      currency="AUD", tax_rate_bp=1000),
    ]  # fmt: skip
    currency = {locs[0]: "USD", locs[1]: "AUD"}
    client = await factories.make_user(CLIENT)
    therapist = await helpers.make_therapist("Prop Therapist")
    owner = helpers.actor(OWNER)
    closed: dict[int, set[str]] = {loc: set() for loc in locs}
    open_sales: list[list[int]] = []
    moment = utc(2026, 3, 20, 3)
    for _ in range(30):
        moment += timedelta(hours=rng.randint(1, 90), minutes=rng.randint(0, 59))
        action = rng.choice(["sell", "sell", "redeem", "forfeit", "refund", "unrefund",
                             "expire", "close", "checkout", "settle", "refund_fails"])  # fmt: skip
        if action == "close":
            # Close the month before this one at one clinic: later postings dated
            # in it move to the first open day, and their totals with them.
            month = (moment.date().replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
            loc = rng.choice(locs)
            if month not in closed[loc]:
                await periods.close_month(owner, str(loc), month, now=moment + timedelta(days=3))
                closed[loc].add(month)
            continue
        if action == "sell" or not open_sales:
            loc = rng.choice(locs)
            n = rng.choice([1, 2, 4])
            sale = await helpers.make_sale(loc, client.id, at=moment, sessions=n,
                                           net=rng.randint(40, 90) * 100, tax=0,
                                           currency=currency[loc], fee=rng.randint(0, 300))  # fmt: skip
            open_sales.append([sale, n])
            continue
        entry = rng.choice(open_sales)
        sale = entry[0]
        if action in ("checkout", "settle", "refund_fails"):
            await _unsettled_money(rng, action, sale, moment)
            continue
        if action in ("redeem", "forfeit"):
            await helpers.redeem(sale, 1, at=moment, therapist_id=therapist,
                                 given_at=rng.choice(locs), forfeit=action == "forfeit")  # fmt: skip
            entry[1] -= 1
        elif action == "refund":
            await helpers.refund(sale, 1, rng.randint(100, 900), at=moment)
            entry[1] -= 1
        elif action == "unrefund":
            revoked = await sales.revoke_unused(sale, 1, refund_id=None)
            if revoked:
                await sales.date_credit(int(revoked[0]["id"]), moment - timedelta(hours=2))
                credit = int(revoked[0]["id"])
                assert await sales.move_credit(credit, sales.REVOKED, sales.AVAILABLE)
        else:
            await helpers.expire(sale, at=moment)
            entry[1] = 0
        if entry[1] == 0:
            open_sales.remove(entry)
    await _clean()
    await _summaries_equal_the_rows()
    await _monthly_reads_equal_daily_reads(monkeypatch)


async def _unsettled_money(rng: random.Random, action: str, sale: int, at) -> None:
    """Money asked for that has not moved: a checkout left pending, one that failed or
    was abandoned, a refund that failed; through the payments' own writers."""
    row = await sales.get_sale(sale)
    if action == "checkout":
        await states.insert_payment(
            sale, status=states.PENDING, amount_cents=rng.randint(1, 9) * 1000,
            currency=row["currency"], created_at=at,
        )  # fmt: skip
    elif action == "settle":
        pending = await Payment.select(Payment.id).where(
            (Payment.sale == sale) & (Payment.status == states.PENDING)
        ).run()  # fmt: skip
        for payment in pending:
            new = rng.choice([states.FAILED, states.CANCELLED])
            assert await states._set_payment(int(payment["id"]), states.PENDING, new)
    else:
        (paid,) = await Payment.select(Payment.id).where(
            (Payment.sale == sale) & (Payment.status == states.SUCCEEDED)
        ).run()  # fmt: skip
        refund_id = (await Refund.insert(
            Refund(sale=sale, payment=paid["id"], amount_cents=rng.randint(1, 30) * 100,
                   currency=row["currency"], sessions_requested=1, sessions_revoked=0,
                   rule="pro_rata", reason="test", status=states.PENDING, created_at=at)
        ).returning(Refund.id).run())[0]["id"]  # fmt: skip
        await payment_totals.added(refund=int(refund_id))
        if rng.random() < 0.7:
            await states._move_refund(int(refund_id), states.PENDING, states.FAILED)


async def _summaries_equal_the_rows() -> None:
    """The payments summary under each status filter (read from the daily totals)
    counts what the payment and refund rows hold."""
    accountant = helpers.actor(ACCOUNTANT)
    payments = await Payment.select().run()
    refunds = await Refund.select().run()
    statuses = {
        "succeeded": ({"succeeded"}, {"succeeded"}),
        "pending": ({"pending"}, {"pending"}),
        "failed": ({"failed", "cancelled"}, {"failed"}),
        "all": (
            {"succeeded", "pending", "failed", "cancelled"},
            {"succeeded", "pending", "failed"},
        ),
    }
    unsettled = {p["status"] for p in payments} | {r["status"] for r in refunds}
    assert unsettled - {"succeeded"}, "the sequence left no pending or failed money"
    for status, (paid, given) in statuses.items():
        f = await report_filters.parse(
            accountant, {"start": ["2026-01-01"], "end": ["2027-12-31"], "status": [status]}
        )
        summary = (await reports.payment_summary(f)).totals
        expected: dict[str, tuple[int, int, int, int]] = {}
        for currency in {p["currency"] for p in payments} | {r["currency"] for r in refunds}:
            ps = [p for p in payments if p["currency"] == currency and p["status"] in paid]
            rs = [r for r in refunds if r["currency"] == currency and r["status"] in given]
            if ps or rs:
                expected[currency] = (
                    len(ps), sum(p["amount_cents"] for p in ps),
                    len(rs), sum(r["amount_cents"] for r in rs),
                )  # fmt: skip
        got = {c: (t.payments, t.gross, t.refunds, t.refunded) for c, t in summary.items()}
        assert got == expected, status


# Whole months, months cut at both ends, one month, a period from a month's middle,
# and ranges around the sequence's months (it starts on 2026-03-20).
_PERIODS = (
    ("2026-01-01", "2026-12-31"),
    ("2026-03-15", "2026-05-10"),
    ("2026-04-01", "2026-04-30"),
    ("2026-04-10", "2026-07-31"),
    ("2026-05-01", "2027-02-28"),
)


async def _monthly_reads_equal_daily_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every report that reads whole months from the monthly totals gives the same
    figures as when it reads the daily ones alone."""
    accountant = helpers.actor(ACCOUNTANT)

    async def figures() -> list[object]:
        out: list[object] = []
        for start, end in _PERIODS:
            for status in ("succeeded", "all"):
                f = await report_filters.parse(
                    accountant,
                    {"start": [start], "end": [end], "group": ["month"], "status": [status]},
                )
                summary = await reports.payment_summary(f)
                out += [summary.rows, summary.totals]
            fees = await reports.fees(f)
            revenue = await reports.revenue(f)
            tb = await reports.trial_balance(f)
            out += [fees.rows, revenue.rows, revenue.totals, revenue.therapist_sums,
                    await reports.liability(f), tb.lines, tb.totals,
                    await reports.revenue_by_month(f), await reports.liability_trend(f)]  # fmt: skip
        return out

    year = await report_filters.parse(accountant, {"start": ["2026-01-01"], "end": ["2026-12-31"]})
    assert "ledger_month" in rollup.source("ledger_day", *rollup.days(year))
    with_months = await figures()
    assert any(with_months), "nothing to compare"
    monkeypatch.setattr(rollup, "_pieces", lambda *_args: [])  # the daily rows alone
    assert "ledger_month" not in rollup.source("ledger_day", *rollup.days(year))
    assert await figures() == with_months


async def test_periods_before_the_first_total_and_after_today_are_empty(db):
    """Reports for a range with no totals answer with nothing in it, never an error;
    the balances carried into a later period are the ones of the last day with money."""
    s = await build()
    accountant = helpers.actor(ACCOUNTANT)
    for start, end in (("1999-01-01", "1999-12-31"), ("2035-01-01", "2035-03-31")):
        f = await report_filters.parse(accountant, {"start": [start], "end": [end]})
        assert (await reports.payment_summary(f)).rows == []
        assert (await reports.fees(f)).rows == []
        assert (await reports.revenue(f)).rows == []
        rows = await reports.liability(f)
        assert all(r.sold == r.redeemed == r.expired == r.refunded == 0 for r in rows)
        tb = await reports.trial_balance(f)
        assert tb.balanced and all(t.debits == t.credits == 0 for t in tb.lines)
    later = await report_filters.parse(
        accountant, {"start": ["2035-01-01"], "end": ["2035-01-31"], "location": [str(s.alpha)]}
    )
    (alpha,) = await reports.liability(later)
    assert alpha.opening == alpha.closing == alpha.closing_session_value
    assert alpha.opening == await ledger.balance("deferred_revenue", location_id=s.alpha)
