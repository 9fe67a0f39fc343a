"""A hand-computed scenario across a month end and DST changes, at two locations.

Alpha (America/Los_Angeles, USD, 10 % tax) and Beta (Europe/London, GBP,
20 % tax). US clocks go forward on 2026-03-08 at 10:00 UTC (PST −8 → PDT −7);
UK clocks on 2026-03-29 at 01:00 UTC (GMT → BST +1).

Alpha, March 2026 (local) = [2026-03-01 08:00 UTC, 2026-04-01 07:00 UTC):
* S1 sold 2026-02-20 (February): 5 sessions, net 500.00 + tax 50.00, fee 16.25.
  Two sessions given 2026-03-05 by Therapist One (2 × 100.00).
  One session refunded 2026-03-08 06:30 UTC = 2026-03-07 22:30 PST: 110.00
  (tax 10.00, net 100.00 = the session's value).
* S2 sold 2026-03-08 10:30 UTC = 03:30 PDT on the 8th: 3 sessions, net 300.00
  + tax 30.00, fee 9.87. One session given 2026-04-01 05:00 UTC = 2026-03-31
  22:00 PDT (still March locally) by Therapist Two.
* S3 sold 2026-01-10, paid cash: 2 sessions, net 200.00 + tax 20.00; both
  expire 2026-03-20 (200.00 breakage).

  Liability: opening 700.00 (7 sessions) + sold 300.00 (3) − redeemed 300.00 (3)
  − expired 200.00 (2) − refunded 100.00 (1) = closing 400.00 (4).
  Payments: S2 (gross 330.00, tax 30.00, fee 9.87) and the refund (110.00, tax
  −10.00): gross 330.00, tax 20.00, refunds 110.00, fees 9.87, net 210.13.

Beta, March 2026 (local) = [2026-03-01 00:00 UTC, 2026-03-31 23:00 UTC):
* S5 sold 2026-03-29 00:30 UTC (GMT, before the change), cash: 2 sessions, net
  200.00 + tax 40.00; one session given 2026-03-29 23:30 UTC = 2026-03-30 00:30 BST.
* S4 sold 2026-03-31 23:30 UTC = 2026-04-01 00:30 BST: April, not March.

  Liability: 0 + 200.00 (2) − 100.00 (1) = 100.00 (1).
  Payments: gross 240.00, tax 40.00, no fees, net 240.00.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from portal.auth.service import CLIENT
from tests import factories
from tests.reports import helpers


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@dataclass
class Scenario:
    alpha: int
    beta: int
    s1: int
    s2: int
    s3: int
    s4: int
    s5: int
    t1: int
    t2: int
    client_email: str


async def build() -> Scenario:
    alpha = await factories.make_location(
        name="Alpha Clinic", slug="alpha", timezone="America/Los_Angeles", tax_rate_bp=1000
    )
    beta = await factories.make_location(
        name="Beta Clinic", slug="beta", timezone="Europe/London", currency="GBP",
        tax_rate_bp=2000,
    )  # fmt: skip
    client = await factories.make_user(CLIENT, email="client@example.test")
    t1 = await helpers.make_therapist("Therapist One")
    t2 = await helpers.make_therapist("Therapist Two")
    s1 = await helpers.make_sale(alpha, client.id, at=utc(2026, 2, 20, 18), net=50000, tax=5000,
                                 sessions=5, fee=1625)  # fmt: skip
    s3 = await helpers.make_sale(alpha, client.id, at=utc(2026, 1, 10, 18), net=20000, tax=2000,
                                 sessions=2, method="cash", item="2 × 60 min sports")  # fmt: skip
    await helpers.redeem(s1, 2, at=utc(2026, 3, 5, 19), therapist_id=t1)
    await helpers.refund(s1, 1, 11000, at=utc(2026, 3, 8, 6, 30))
    s2 = await helpers.make_sale(alpha, client.id, at=utc(2026, 3, 8, 10, 30), net=30000,
                                 tax=3000, sessions=3, fee=987, package_id=2,
                                 item="3 × 60 min neuromuscular")  # fmt: skip
    await helpers.expire(s3, at=utc(2026, 3, 20, 12))
    await helpers.redeem(s2, 1, at=utc(2026, 4, 1, 5), therapist_id=t2)
    s5 = await helpers.make_sale(beta, client.id, at=utc(2026, 3, 29, 0, 30), net=20000,
                                 tax=4000, sessions=2, currency="GBP", method="cash")  # fmt: skip
    await helpers.redeem(s5, 1, at=utc(2026, 3, 29, 23, 30))
    s4 = await helpers.make_sale(beta, client.id, at=utc(2026, 3, 31, 23, 30), net=40000,
                                 tax=8000, sessions=4, currency="GBP", fee=1500)  # fmt: skip
    return Scenario(alpha, beta, s1, s2, s3, s4, s5, t1, t2, client.email)
