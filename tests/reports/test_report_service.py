"""The reports' figures on a hand-computed scenario, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date

import pytest

from portal.auth.service import ACCOUNTANT, MANAGER
from portal.ledger import service as ledger
from portal.reports import filters as report_filters
from portal.reports import service
from portal.reports.periods import bounds, Period
from tests.reports import helpers
from tests.reports.scenario import build


async def _filters(role=ACCOUNTANT, locations=(), **params):
    query = {k: [str(v)] if not isinstance(v, list) else [str(x) for x in v] for k, v in params.items()}
    user = helpers.actor(role, tuple(locations))
    return await report_filters.parse(user, query)


async def test_liability_march_by_hand(db):
    sc = await build()
    f = await _filters(start="2026-03-01", end="2026-03-31")
    rows = {r.location.id: r for r in await service.liability(f)}
    a = rows[sc.alpha]
    assert (a.currency, a.opening, a.sold, a.redeemed, a.expired, a.refunded, a.closing) == (
        "USD", 70000, 30000, 30000, 20000, 10000, 40000)
    assert (a.opening_sessions, a.sold_sessions, a.redeemed_sessions, a.expired_sessions,
            a.refunded_sessions, a.closing_sessions) == (7, 3, 3, 2, 1, 4)
    assert a.closing_session_value == 40000 and a.balanced
    b = rows[sc.beta]
    assert (b.currency, b.opening, b.sold, b.redeemed, b.expired, b.refunded, b.closing) == (
        "GBP", 0, 20000, 10000, 0, 0, 10000)
    assert (b.opening_sessions, b.sold_sessions, b.redeemed_sessions, b.closing_sessions) == (0, 2, 1, 1)
    for loc_id, row in rows.items():
        tz = f.location(loc_id).timezone
        _, hi = bounds(tz, f.period)
        assert row.closing == await ledger.balance("deferred_revenue", location_id=loc_id, before=hi)


async def test_payments_march_by_hand(db):
    sc = await build()
    f = await _filters(start="2026-03-01", end="2026-03-31", group="day")
    summary = await service.payment_summary(f)
    usd = summary.totals["USD"]
    assert (usd.gross, usd.tax, usd.refunded, usd.fee, usd.net) == (33000, 2000, 11000, 987, 21013)
    gbp = summary.totals["GBP"]
    assert (gbp.gross, gbp.tax, gbp.refunded, gbp.fee, gbp.net) == (24000, 4000, 0, 0, 24000)
    days = [(r.label, r.location.name) for r in summary.rows]
    # The refund at 06:30 UTC on the 8th is the 7th in Los Angeles (PST, −8).
    assert days == [("2026-03-07", "Alpha Clinic"), ("2026-03-08", "Alpha Clinic"),
                    ("2026-03-29", "Beta Clinic")]
    page = await service.payment_lines(f)
    assert [(l.kind, l.date.isoformat(), l.sale_id) for l in page.rows] == [
        ("refund", "2026-03-07", sc.s1), ("payment", "2026-03-08", sc.s2),
        ("payment", "2026-03-29", sc.s5)]


async def test_revenue_and_trial_balance(db):
    sc = await build()
    f = await _filters(start="2026-03-01", end="2026-03-31")
    rev = await service.revenue(f)
    alpha = [r for r in rev.rows if r.location.id == sc.alpha]
    assert len(alpha) == 1
    a = alpha[0]
    assert (a.label, a.service, a.breakage, a.collected, a.refunded) == ("2026-03", 30000, 20000, 33000, 11000)
    by_t = {(t.location.id, t.therapist): t.service for t in rev.therapists}
    assert by_t == {(sc.alpha, "Therapist One"): 20000, (sc.alpha, "Therapist Two"): 10000,
                    (sc.beta, "Not attributed"): 10000}
    tb = await service.trial_balance(f)
    assert tb.balanced
    assert set(tb.totals) == {"USD", "GBP"}
