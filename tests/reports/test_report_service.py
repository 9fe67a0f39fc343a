"""The reports' figures on hand-computed scenarios, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest

from portal.auth.service import ACCOUNTANT, CLIENT, MANAGER, OWNER
from portal.errors import Forbidden
from portal.ledger import service as ledger
from portal.payments.tables import Payment
from portal.reports import filters as report_filters
from portal.reports import service
from portal.reports.periods import Period, bounds
from portal.web.forms import ValidationFailed
from tests import factories
from tests.reports import helpers
from tests.reports.scenario import build, utc


async def _filters(role=ACCOUNTANT, locations=(), **params):
    query = {
        k: [str(v)] if not isinstance(v, list) else [str(x) for x in v] for k, v in params.items()
    }
    user = helpers.actor(role, tuple(locations))
    return await report_filters.parse(user, query)


def _money(row):
    return (row.opening, row.sold, row.redeemed, row.expired, row.refunded, row.closing)


def _sessions(row):
    return (
        row.opening_sessions,
        row.sold_sessions,
        row.redeemed_sessions,
        row.expired_sessions,
        row.refunded_sessions,
        row.closing_sessions,
    )


async def _assert_identities(f):
    """Both identities, for every location of the filters."""
    rows = await service.liability(f)
    for row in rows:
        assert row.closing == row.opening + row.sold - row.redeemed - row.expired - row.refunded
        assert row.closing_sessions == row.computed_closing_sessions
        _, hi = bounds(row.location.timezone, f.period)
        assert row.closing == await ledger.balance(
            "deferred_revenue", location_id=row.location.id, before=hi
        )
        assert row.closing_session_value == row.closing
        assert row.balanced
    return rows


# -- package liability ----------------------------------------------------------------------


async def test_liability_march_by_hand(db):
    sc = await build()
    f = await _filters(start="2026-03-01", end="2026-03-31")
    rows = {r.location.id: r for r in await _assert_identities(f)}
    alpha, beta = rows[sc.alpha], rows[sc.beta]
    assert alpha.currency == "USD"
    assert _money(alpha) == (70000, 30000, 30000, 20000, 10000, 40000)
    assert _sessions(alpha) == (7, 3, 3, 2, 1, 4)
    assert beta.currency == "GBP"
    assert _money(beta) == (0, 20000, 10000, 0, 0, 10000)
    assert _sessions(beta) == (0, 2, 1, 0, 0, 1)


async def test_liability_months_chain_and_local_month_ends(db):
    sc = await build()
    feb = {r.location.id: r for r in await _assert_identities(
        await _filters(start="2026-02-01", end="2026-02-28"))}  # fmt: skip
    mar = {r.location.id: r for r in await _assert_identities(
        await _filters(start="2026-03-01", end="2026-03-31"))}  # fmt: skip
    apr = {r.location.id: r for r in await _assert_identities(
        await _filters(start="2026-04-01", end="2026-04-30"))}  # fmt: skip
    for loc in (sc.alpha, sc.beta):
        assert feb[loc].closing == mar[loc].opening and mar[loc].closing == apr[loc].opening
        assert feb[loc].closing_sessions == mar[loc].opening_sessions
        assert mar[loc].closing_sessions == apr[loc].opening_sessions
    # Alpha's session given 2026-04-01 05:00 UTC is 2026-03-31 in Los Angeles: March.
    assert apr[sc.alpha].redeemed == 0
    # Beta's sale at 2026-03-31 23:30 UTC is 2026-04-01 00:30 in London: April.
    assert (apr[sc.beta].sold, apr[sc.beta].sold_sessions) == (40000, 4)
    # A quarter is the sum of its months.
    q1 = {r.location.id: r for r in await _assert_identities(
        await _filters(start="2026-01-01", end="2026-03-31"))}  # fmt: skip
    assert q1[sc.alpha].sold == 20000 + 50000 + 30000
    assert q1[sc.alpha].opening == 0


async def test_liability_drill_down_adds_up_to_each_figure(db):
    sc = await build()
    f = await _filters(start="2026-03-01", end="2026-03-31")
    row = next(r for r in await service.liability(f) if r.location.id == sc.alpha)
    for column in service.LIABILITY_COLUMNS:
        page = await service.liability_sales(f, f.location(sc.alpha), column, limit=1)
        rows = list(page.rows)
        while page.next_cursor:
            page = await service.liability_sales(
                f, f.location(sc.alpha), column, after=page.next_cursor, limit=1
            )
            rows += page.rows
        assert sum(r.amount for r in rows) == getattr(row, column), column
        assert sum(r.sessions for r in rows) == getattr(row, f"{column}_sessions"), column
    sold = await service.liability_sales(f, f.location(sc.alpha), "sold")
    assert [(r.sale_id, r.amount, r.sessions) for r in sold.rows] == [(sc.s2, 30000, 3)]
    opening = await service.liability_sales(f, f.location(sc.alpha), "opening")
    assert {r.sale_id for r in opening.rows} == {sc.s1, sc.s3}


async def test_session_given_at_another_location(db):
    """Deferred revenue leaves the selling clinic; revenue lands where the session was given."""
    a = await factories.make_location(slug="a", timezone="America/New_York")
    b = await factories.make_location(slug="b", timezone="America/Chicago")
    client = await factories.make_user(CLIENT)
    therapist = await helpers.make_therapist("Roaming Therapist")
    sale = await helpers.make_sale(a, client.id, at=utc(2026, 5, 2, 15), net=30000, sessions=3)
    await helpers.redeem(sale, 1, at=utc(2026, 5, 10, 15), therapist_id=therapist, given_at=b)
    f = await _filters(start="2026-05-01", end="2026-05-31")
    rows = {r.location.id: r for r in await _assert_identities(f)}
    assert _money(rows[a]) == (0, 30000, 10000, 0, 0, 20000)
    assert _sessions(rows[a]) == (0, 3, 1, 0, 0, 2)
    assert _money(rows[b]) == (0, 0, 0, 0, 0, 0)
    revenue = await service.revenue(f)
    by_location = {r.location.id: r for r in revenue.rows}
    assert by_location[b].service == 10000 and by_location[a].service == 0
    assert [(t.location.id, t.therapist, t.service) for t in revenue.therapists] == [
        (b, "Roaming Therapist", 10000)
    ]
    assert (await service.trial_balance(f)).balanced
    only_a = await service.trial_balance(await _filters(start="2026-05-01", end="2026-05-31",
                                                        location=a))  # fmt: skip
    # Each clinic's half of the entry balances through the inter-location accounts.
    assert only_a.balanced
    assert {t.account: t.closing_credit for t in only_a.lines}["due_to_locations"] == 10000
    only_b = await service.trial_balance(await _filters(start="2026-05-01", end="2026-05-31",
                                                        location=b))  # fmt: skip
    assert only_b.balanced
    assert {t.account: t.closing_debit for t in only_b.lines}["due_from_locations"] == 10000


async def test_forfeited_sessions_count_as_redeemed(db):
    loc = await factories.make_location(timezone="Europe/Paris", currency="EUR")
    client = await factories.make_user(CLIENT)
    sale = await helpers.make_sale(loc, client.id, at=utc(2026, 6, 1, 9), net=25000,
                                   sessions=5, currency="EUR", method="cash")  # fmt: skip
    await helpers.redeem(sale, 2, at=utc(2026, 6, 3, 9), forfeit=True)
    f = await _filters(start="2026-06-01", end="2026-06-30")
    (row,) = await _assert_identities(f)
    assert (row.redeemed, row.redeemed_sessions, row.closing) == (10000, 2, 15000)


@pytest.mark.parametrize("seed", [3, 11])
async def test_identities_hold_over_random_event_sequences(db, seed):
    """Property: whatever happens in whatever order, the liability and the trial balance tie."""
    rng = random.Random(seed)
    locs = [
        await factories.make_location(slug=f"p{seed}a", timezone="America/Los_Angeles"),
        await factories.make_location(slug=f"p{seed}b", timezone="Europe/London",
                                      currency="GBP", tax_rate_bp=2000),
    ]  # fmt: skip
    currency = {locs[0]: "USD", locs[1]: "GBP"}
    client = await factories.make_user(CLIENT)
    therapist = await helpers.make_therapist("Any Therapist")
    open_sales: list[list[int]] = []  # [sale, available]
    moment = utc(2026, 1, 25, 12)
    for _ in range(24):
        moment += timedelta(hours=rng.randint(5, 120), minutes=rng.randint(0, 59))
        action = rng.choice(["sell", "sell", "redeem", "redeem", "refund", "expire"])
        if action == "sell" or not open_sales:
            loc = rng.choice(locs)
            n = rng.choice([1, 3, 5])
            net = rng.randint(5, 60) * 1000 + rng.randint(0, 99)
            tax = net * (2000 if loc == locs[1] else 0) // 10000
            sale = await helpers.make_sale(loc, client.id, at=moment, net=net, tax=tax,
                                           sessions=n, currency=currency[loc],
                                           fee=rng.randint(30, 400))  # fmt: skip
            open_sales.append([sale, n])
            continue
        entry = rng.choice(open_sales)
        sale, available = entry
        if action == "redeem":
            count = rng.randint(1, available)
            await helpers.redeem(sale, count, at=moment, therapist_id=therapist)
            entry[1] -= count
        elif action == "refund":
            count = rng.randint(1, available)
            await helpers.refund(sale, count, rng.randint(100, 5000), at=moment)
            entry[1] -= count
        else:
            await helpers.expire(sale, at=moment)
            entry[1] = 0
        if entry[1] == 0:
            open_sales.remove(entry)
    months = [date(2026, m, 1) for m in range(1, 8)]
    previous: dict[int, tuple[int, int]] = {}
    for first in months:
        last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
        f = await _filters(start=first.isoformat(), end=last.isoformat())
        for row in await _assert_identities(f):
            if row.location.id in previous:
                assert previous[row.location.id] == (row.opening, row.opening_sessions)
            previous[row.location.id] = (row.closing, row.closing_sessions)
        tb = await service.trial_balance(f)
        assert tb.balanced
    whole = await _filters(start="2026-01-01", end="2026-07-31")
    await _assert_identities(whole)


# -- payments ---------------------------------------------------------------------------


async def test_payments_march_by_hand(db):
    sc = await build()
    f = await _filters(start="2026-03-01", end="2026-03-31", group="day")
    summary = await service.payment_summary(f)
    usd = summary.totals["USD"]
    assert (usd.gross, usd.tax, usd.refunded, usd.fee, usd.net) == (33000, 2000, 11000, 987, 21013)
    assert (usd.payments, usd.refunds) == (1, 1)
    gbp = summary.totals["GBP"]
    assert (gbp.gross, gbp.tax, gbp.refunded, gbp.fee, gbp.net) == (24000, 4000, 0, 0, 24000)
    # The refund at 06:30 UTC on the 8th is the 7th in Los Angeles (PST, −8).
    assert [(r.label, r.location.name) for r in summary.rows] == [
        ("2026-03-07", "Alpha Clinic"),
        ("2026-03-08", "Alpha Clinic"),
        ("2026-03-29", "Beta Clinic"),
    ]
    page = await service.payment_lines(f)
    assert [(x.kind, x.date.isoformat(), x.sale_id) for x in page.rows] == [
        ("refund", "2026-03-07", sc.s1),
        ("payment", "2026-03-08", sc.s2),
        ("payment", "2026-03-29", sc.s5),
    ]
    refund = page.rows[0]
    assert (refund.gross, refund.tax, refund.refunded, refund.fee, refund.net) == (
        0, -1000, 11000, 0, -11000)  # fmt: skip
    monthly = await service.payment_summary(
        await _filters(start="2026-01-01", end="2026-04-30", group="month", location=sc.alpha)
    )
    assert [(r.label, r.totals.gross, r.totals.refunded) for r in monthly.rows] == [
        ("2026-01", 22000, 0),
        ("2026-02", 55000, 0),
        ("2026-03", 33000, 11000),
    ]


async def test_payment_days_across_both_dst_changes(db):
    """Days are Los Angeles days on both sides of the spring and autumn changes."""
    loc = await factories.make_location(timezone="America/Los_Angeles")
    client = await factories.make_user(CLIENT)
    instants = {
        # Spring forward on 2026-03-08 at 10:00 UTC (02:00 PST → 03:00 PDT).
        utc(2026, 3, 8, 6, 30): "2026-03-07",  # 22:30 PST
        utc(2026, 3, 8, 8, 0): "2026-03-08",  # 00:00 PST, the first instant of the 8th
        utc(2026, 3, 9, 6, 59): "2026-03-08",  # 23:59 PDT: the 8th has 23 hours
        utc(2026, 3, 9, 7, 0): "2026-03-09",  # 00:00 PDT
        # Fall back on 2026-11-01 at 09:00 UTC (02:00 PDT → 01:00 PST).
        utc(2026, 11, 1, 6, 59): "2026-10-31",  # 23:59 PDT
        utc(2026, 11, 2, 7, 30): "2026-11-01",  # 23:30 PST: the 1st has 25 hours
        utc(2026, 11, 2, 8, 0): "2026-11-02",  # 00:00 PST
    }
    for at in instants:
        await helpers.make_sale(loc, client.id, at=at, net=1000, sessions=1, method="cash")
    f = await _filters(start="2026-03-01", end="2026-11-30", group="day")
    summary = await service.payment_summary(f)
    counts = {r.label: r.totals.payments for r in summary.rows}
    expected: dict[str, int] = {}
    for day in instants.values():
        expected[day] = expected.get(day, 0) + 1
    assert counts == expected
    lines = await service.payment_lines(f)
    assert [x.date.isoformat() for x in lines.rows] == list(instants.values())
    # A one-day period holds exactly that local day.
    spring = await service.payment_summary(await _filters(start="2026-03-08", end="2026-03-08"))
    assert spring.totals["USD"].payments == 2
    autumn = await service.payment_summary(await _filters(start="2026-11-01", end="2026-11-01"))
    assert autumn.totals["USD"].payments == 1


async def test_payment_filters_and_keyset_walk(db):
    loc = await factories.make_location(timezone="Asia/Tokyo")
    client = await factories.make_user(CLIENT)
    at = utc(2026, 7, 1, 3)
    for i in range(5):  # the same instant: the keyset must not skip or repeat any
        await helpers.make_sale(loc, client.id, at=at, net=1000 + i, sessions=1,
                                package_id=7 if i % 2 else 8, method="card" if i < 3 else "cash",
                                fee=30)  # fmt: skip
    await Payment.insert(
        Payment(sale=1, location=loc, provider="stripe", method="card", status="failed",
                amount_cents=999, currency="USD", created_at=at)
    ).run()  # fmt: skip
    f = await _filters(start="2026-07-01", end="2026-07-31")
    seen = [x.id async for x in service.iter_payment_lines(f, batch=2)]
    assert sorted(seen) == seen and len(set(seen)) == 5
    only_cash = await service.payment_summary(await _filters(start="2026-07-01",
                                                             end="2026-07-31", method="cash"))  # fmt: skip
    assert only_cash.totals["USD"].payments == 2
    package = await service.payment_summary(await _filters(start="2026-07-01", end="2026-07-31",
                                                           package=7))  # fmt: skip
    assert package.totals["USD"].payments == 2
    failed = await service.payment_lines(await _filters(start="2026-07-01", end="2026-07-31",
                                                        status="failed"))  # fmt: skip
    assert [(x.gross, x.status) for x in failed.rows] == [(999, "failed")]
    fees = await service.fees(f)
    assert (fees.totals["USD"].payments, fees.totals["USD"].fee) == (3, 90)


# -- revenue, fees, journal, trial balance ----------------------------------------------------


async def test_revenue_fees_journal_and_trial_balance(db):
    sc = await build()
    f = await _filters(start="2026-03-01", end="2026-03-31")
    rev = await service.revenue(f)
    (alpha,) = [r for r in rev.rows if r.location.id == sc.alpha]
    assert (alpha.label, alpha.service, alpha.breakage, alpha.collected, alpha.refunded) == (
        "2026-03", 30000, 20000, 33000, 11000)  # fmt: skip
    assert (alpha.recognised, alpha.net_cash) == (50000, 22000)
    by_therapist = {(t.location.id, t.therapist): t.service for t in rev.therapists}
    assert by_therapist == {
        (sc.alpha, "Therapist One"): 20000,
        (sc.alpha, "Therapist Two"): 10000,
        (sc.beta, "Not attributed"): 10000,
    }
    fees = await service.fees(f)
    assert {c: (t.payments, t.fee) for c, t in fees.totals.items()} == {"USD": (1, 987)}
    lines = [x async for x in service.iter_journal_lines(f, batch=3)]
    assert sum(x.debit for x in lines if x.currency == "USD") == sum(
        x.credit for x in lines if x.currency == "USD"
    )
    # The session given 2026-04-01 05:00 UTC is dated 2026-03-31 in Los Angeles.
    assert any(x.date == date(2026, 3, 31) and x.account == "service_revenue" for x in lines)
    tb = await service.trial_balance(f)
    assert tb.balanced and set(tb.totals) == {"USD", "GBP"}
    usd = {t.account: t for t in tb.lines if t.currency == "USD"}
    assert usd["deferred_revenue"].closing_credit == 40000
    assert usd["processing_fees"].closing_debit == 1625 + 987
    accounts_only = await service.journal_lines(
        await _filters(start="2026-03-01", end="2026-03-31", account="breakage_revenue")
    )
    assert [(x.account, x.credit) for x in accounts_only[0]] == [("breakage_revenue", 20000)]


async def test_dashboard_series(db):
    sc = await build()
    f = await _filters(start="2026-01-01", end="2026-04-30")
    (usd,) = [s for s in await service.revenue_by_month(f) if s.currency == "USD"]
    assert usd.values[sc.alpha] == [0, 0, 50000, 0]
    trend = {s.currency: s for s in await service.liability_trend(f)}
    assert trend["USD"].values[sc.alpha] == [20000, 70000, 40000, 40000]
    assert trend["GBP"].values[sc.beta] == [0, 0, 10000, 50000]


# -- scope ------------------------------------------------------------------------------


async def test_filters_scope_and_validation(db):
    a = await factories.make_location(slug="own")
    b = await factories.make_location(slug="other")
    mine = await _filters(MANAGER, [a])
    assert mine.location_ids == [a] and not mine.include_unlocated
    with pytest.raises(Forbidden):
        await _filters(MANAGER, [a], location=b)
    with pytest.raises(Forbidden):
        await _filters(MANAGER, [a], location=[a, b])
    assert (await _filters(OWNER)).location_ids == sorted([a, b])
    assert (await _filters(ACCOUNTANT, location=b)).location_ids == [b]
    with pytest.raises(ValidationFailed) as bad:
        await _filters(start="2026-02-30", end="2026-01-01", group="year", method="bitcoin")
    assert set(bad.value.errors) == {"start", "group", "method"}
    with pytest.raises(ValidationFailed) as reversed_:
        await _filters(start="2026-03-02", end="2026-03-01")
    assert "end" in reversed_.value.errors


async def test_period_bounds_are_per_location():
    period = Period(date(2026, 3, 8), date(2026, 3, 8))
    assert bounds("America/Los_Angeles", period) == (
        datetime(2026, 3, 8, 8, tzinfo=UTC),
        datetime(2026, 3, 9, 7, tzinfo=UTC),
    )
    assert bounds("Europe/London", period) == (
        datetime(2026, 3, 8, 0, tzinfo=UTC),
        datetime(2026, 3, 9, 0, tzinfo=UTC),
    )


async def test_keyset_walk_interleaves_payments_and_refunds(db):
    loc = await factories.make_location(timezone="America/Chicago")
    client = await factories.make_user(CLIENT)
    base = utc(2026, 8, 3, 15)
    sales = [
        await helpers.make_sale(loc, client.id, at=base + timedelta(hours=i), net=3000,
                                sessions=3, fee=50)
        for i in range(6)
    ]  # fmt: skip
    await helpers.refund(sales[0], 1, 1000, at=base + timedelta(hours=2))  # same instant as #3
    await helpers.refund(sales[1], 1, 1000, at=base + timedelta(hours=4, minutes=30))
    await helpers.refund(sales[2], 2, 2000, at=base + timedelta(hours=9))  # after every payment
    f = await _filters(start="2026-08-01", end="2026-08-31")
    everything = [(x.kind, x.id) for x in (await service.payment_lines(f, limit=1000)).rows]
    assert len(everything) == 9
    assert everything[2:4] == [("payment", 3), ("refund", 1)]
    assert everything[-1] == ("refund", 3)
    for batch in (1, 2, 3, 4):
        walked = [(x.kind, x.id) async for x in service.iter_payment_lines(f, batch=batch)]
        assert walked == everything, batch


@pytest.mark.parametrize("grouping", ["week", "month"])
async def test_week_and_month_buckets_equal_the_days_they_hold(db, grouping):
    """Weeks and months are summed by the database from bucket bounds converted once
    per location; they must equal the local days added up, across both clock changes,
    a period starting mid-week and mid-month, two zones, and refunds."""
    from portal.reports.periods import bucket_start

    la = await factories.make_location(timezone="America/Los_Angeles")
    ny = await factories.make_location(timezone="America/New_York", tax_rate_bp=825)
    client = await factories.make_user(CLIENT)
    rng = random.Random(11)
    start = utc(2026, 2, 20)
    for n in range(60):
        at = start + timedelta(hours=rng.randrange(0, 24 * 280), minutes=rng.randrange(60))
        loc = la if n % 2 else ny
        sale = await helpers.make_sale(loc, client.id, at=at, net=1000 + n, sessions=3)
        if n % 7 == 0:
            await helpers.refund(sale, 1, 300, at=at + timedelta(days=rng.randrange(1, 30)))
    f = await _filters(start="2026-03-04", end="2026-11-18", group=grouping)
    by_bucket = await service.payment_summary(f)
    days = await service._payment_days(f)  # one row per local day
    expected = service._bucketed(f, days, grouping)
    assert [(r.start, r.location.id, r.totals) for r in by_bucket.rows] == [
        (r.start, r.location.id, r.totals) for r in expected
    ]
    assert len(by_bucket.rows) > 10
    assert all(bucket_start(r.start, grouping) <= r.start for r in by_bucket.rows)


async def test_refunds_of_given_sessions_reverse_recognised_revenue(db):
    """Money given back for sessions already given is contra-revenue, not lost from view."""
    loc = await factories.make_location(slug="rev", timezone="America/New_York")
    client = await factories.make_user(CLIENT)
    sale = await helpers.make_sale(
        loc, client.id, at=utc(2026, 5, 2, 15), net=50000, tax=0, sessions=5, currency="USD"
    )
    await helpers.redeem(sale, 4, at=utc(2026, 5, 10, 15))
    # The client gets 250.00 back for the last session (worth 100.00): 150.00 reverses revenue.
    await helpers.refund(sale, 1, 25000, at=utc(2026, 5, 20, 15))
    f = await _filters(start="2026-05-01", end="2026-05-31")
    (row,) = [r for r in (await service.revenue(f)).rows if r.location.id == loc]
    assert (row.service, row.breakage, row.reversals, row.recognised) == (
        40000, 0, -15000, 25000)  # fmt: skip
    assert row.as_dict()["revenue_reversals"] == -15000
