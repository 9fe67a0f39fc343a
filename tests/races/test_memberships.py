"""A membership's Stripe events delivered many times at once, to both processes, in both
orders: joining (Checkout, the subscription, its first invoice) and a renewal. Every answer
is 2xx and each paid invoice grants its period's sessions once, with one journal entry."""

from __future__ import annotations

import secrets

import pytest

from portal.memberships import desk
from portal.memberships.tables import Membership, MembershipPeriod
from portal.payments.tables import Payment
from portal.sales.tables import SaleSession
from tests.memberships.helpers import age, make_plan
from tests.memberships.test_desk_freeze_fee import freeze_or_resume
from tests.races.conftest import Clinic, at_once, describe
from tests.races.invariants import assert_whole, rows
from tests.servers import Portal
from tests.stripe_standin import WebhookReceiver

COPIES = 4


async def _deliver_at_once(portal: Portal, bodies: list[bytes]) -> None:
    sends = []
    for copy in range(COPIES):
        ordered = bodies if copy % 2 == 0 else list(reversed(bodies))
        sends += [(copy + n, body) for n, body in enumerate(ordered)]
    answers = await at_once(portal.post_webhook(process, body) for process, body in sends)
    statuses = [(a.request.url.port, a.status_code, a.text[:80]) for a in answers]
    assert all(200 <= a.status_code < 300 for a in answers), statuses


async def _clicked_at_once(
    portal: Portal, clinic: Clinic, membership_id: int, path: str, methods: tuple[str, str]
) -> None:
    """The membership page's form at ``path`` sent six times at once (one form, one key) by
    the first manager and twice by a second manager with a form of their own: the form
    heard first is done (each of its clicks answers with it), the other one is refused
    (the page again, 422, the reason beside its field)."""
    first = await portal.signed_in(clinic.manager, "first")
    second = await portal.signed_in(clinic.manager2, "second")
    form = {**await first.form(f"/memberships/{membership_id}", path), "method": methods[0]}
    other = {**await second.form(f"/memberships/{membership_id}", path), "method": methods[1]}
    assert form["request_key"] != other["request_key"]
    answers = await at_once(
        [first.post(path, form, process=i % 2) for i in range(6)]
        + [second.post(path, other, process=i % 2) for i in range(2)]
    )
    by_form = ({a.status_code for a in answers[:6]}, {a.status_code for a in answers[6:]})
    assert sorted(by_form, key=sorted) == [{303}, {422}], describe(answers)


async def _granted(membership_id: int) -> tuple[list[str], int, list[str]]:
    periods = (
        await MembershipPeriod.select().where(MembershipPeriod.membership == membership_id).run()
    )
    sale_ids = [int(p["sale_id"]) for p in periods if p["sale_id"]]
    credits = await SaleSession.count().where(SaleSession.sale.is_in(sale_ids or [-1])).run()
    entries = await rows(
        "SELECT kind FROM journal_entry WHERE reference IN "
        "(SELECT 'sale:' || sale_id FROM membership_period WHERE membership = {}) ORDER BY id",
        membership_id,
    )
    return (
        sorted(str(p["status"]) for p in periods),
        int(credits),
        [str(e["kind"]) for e in entries],
    )


@pytest.mark.parametrize("renewal", [False, True])
async def test_membership_events_delivered_many_times_at_once(
    portal: Portal, clinic: Clinic, webhook_receiver: WebhookReceiver, renewal: bool
) -> None:
    plan = await make_plan(clinic.location_id, clinic.service_id, name="Race monthly", sessions=2)
    portal.detach_webhooks()
    client = await portal.signed_in(clinic.client, "member")
    path = f"/memberships/join/{plan}"
    fields = await client.form(f"/book/{clinic.slug}/memberships", path)
    joined = await client.post(path, fields)
    assert joined.status_code == 303, joined.text[:300]
    mark = len(webhook_receiver.deliveries)
    await portal.standin.complete_session(joined.headers["location"].rsplit("/", 1)[-1])
    await portal.standin.drain(timeout=30)
    bodies = [d.body for d in webhook_receiver.deliveries[mark:]]
    membership = await Membership.select().where(Membership.plan == plan).first().run()
    assert membership is not None and membership["status"] == "pending"

    await _deliver_at_once(portal, bodies)
    membership = await Membership.select().where(Membership.plan == plan).first().run()
    assert membership["status"] == "active"
    assert await _granted(membership["id"]) == (["paid"], 2, ["sale_paid", "processing_fee"])

    if renewal:
        mark = len(webhook_receiver.deliveries)
        await portal.standin.advance_subscription(str(membership["subscription_id"]))
        await portal.standin.drain(timeout=30)
        await _deliver_at_once(portal, [d.body for d in webhook_receiver.deliveries[mark:]])
        assert await _granted(membership["id"]) == (
            ["paid", "paid"], 4, ["sale_paid", "processing_fee"] * 2,
        )  # fmt: skip
    await assert_whole(portal)


async def test_a_desk_period_payment_clicked_at_once_is_recorded_once(
    portal: Portal, clinic: Clinic
) -> None:
    """ "Record this period's payment" clicked six times at once (one form, one key) and by a
    second manager with a form of their own: one payment, one sale, one journal entry."""
    plan = await make_plan(clinic.location_id, clinic.service_id, name="Desk monthly", sessions=2)
    membership_id = await desk.enrol(
        clinic.as_manager(), clinic.client.id, plan, "cash", request_key=secrets.token_urlsafe(24)
    )
    await age(membership_id, 27)  # the next period begins within the week
    path = f"/memberships/{membership_id}/payment"
    await _clicked_at_once(portal, clinic, membership_id, path, ("cash", "terminal"))
    periods = (
        await MembershipPeriod.select()
        .where(MembershipPeriod.membership == membership_id)
        .order_by(MembershipPeriod.period_start)
        .run()
    )
    assert [p["status"] for p in periods] == ["paid", "paid"]
    sale_ids = [int(p["sale_id"]) for p in periods]
    assert await Payment.count().where(Payment.sale.is_in(sale_ids)) == 2
    entries = await rows(
        "SELECT kind FROM journal_entry WHERE reference IN "
        "(SELECT 'sale:' || sale_id FROM membership_period WHERE membership = {}) ORDER BY id",
        membership_id,
    )
    assert [e["kind"] for e in entries] == ["sale_paid", "sale_paid"]
    assert await SaleSession.count().where(SaleSession.sale.is_in(sale_ids)) == 4
    await assert_whole(portal)


async def test_a_desk_freeze_with_its_fee_clicked_at_once_charges_the_fee_once(
    portal: Portal, clinic: Clinic
) -> None:
    """ "Freeze and record the fee paid" clicked six times at once (one form) and by a second
    manager with a form of their own: frozen once, one fee entry (Dr cash on hand)."""
    plan = await make_plan(
        clinic.location_id, clinic.service_id, name="Desk pausable", sessions=2,
        freeze_allowed=True, freeze_fee=1000,
    )  # fmt: skip
    membership_id = await desk.enrol(
        clinic.as_manager(), clinic.client.id, plan, "cash", request_key=secrets.token_urlsafe(24)
    )
    path = f"/memberships/{membership_id}/freeze"
    await _clicked_at_once(portal, clinic, membership_id, path, ("cash", "terminal"))
    membership = await Membership.select().where(Membership.id == membership_id).first().run()
    assert membership is not None and membership["paused"]
    lines = await rows(
        "SELECT account, debit_cents, credit_cents FROM journal_line WHERE entry IN "
        "(SELECT id FROM journal_entry WHERE kind = 'membership_fee' AND location = {}) "
        "ORDER BY id",
        clinic.location_id,
    )
    # $10.00 (the clinic charges no tax), taken once whoever's click came first.
    assert [(r["account"], int(r["debit_cents"]), int(r["credit_cents"])) for r in lines] == [
        ("cash_on_hand", 1000, 0), ("service_revenue", 0, 1000),
    ]  # fmt: skip
    assert await _fee_payments(clinic.location_id) == [1000]  # one payment of it
    await assert_whole(portal)


async def _fee_payments(location_id: int) -> list[int]:
    """The payments of the location's freeze fees (sales of no sessions), in cents."""
    found = await rows(
        "SELECT p.amount_cents FROM payment p JOIN sale s ON s.id = p.sale "
        "WHERE s.location = {} AND s.sessions_total = 0 AND p.status = 'succeeded' "
        "ORDER BY p.id",
        location_id,
    )
    return [int(r["amount_cents"]) for r in found]


async def test_a_frozen_periods_fee_taken_at_once_at_the_desk_is_taken_once(
    portal: Portal, clinic: Clinic
) -> None:
    """Still frozen a period later, the next frozen period's fee is the desk's next payment:
    "Record $10.00 paid" clicked six times at once and by a second manager: one more entry."""
    plan = await make_plan(
        clinic.location_id, clinic.service_id, name="Desk frozen on", sessions=2,
        freeze_allowed=True, freeze_fee=1000,
    )  # fmt: skip
    manager = clinic.as_manager()
    membership_id = await desk.enrol(
        manager, clinic.client.id, plan, "cash", request_key=secrets.token_urlsafe(24)
    )
    await freeze_or_resume(manager, membership_id, True, secrets.token_urlsafe(24), "cash")
    await age(membership_id, 35)
    await desk.fall_due()  # the first frozen period begins
    await age(membership_id, 25)  # the next one begins within the week
    path = f"/memberships/{membership_id}/payment"
    await _clicked_at_once(portal, clinic, membership_id, path, ("cash", "cheque"))
    entries = await rows(
        "SELECT event_key FROM journal_entry WHERE kind = 'membership_fee' AND location = {}",
        clinic.location_id,
    )
    assert len(entries) == 2  # the fee taken at the freeze, and this period's once
    periods = await MembershipPeriod.select().where(MembershipPeriod.membership == membership_id)
    assert [p["status"] for p in periods] == ["paid"]  # a fee buys no period
    assert await Payment.count().where(Payment.sale == periods[0]["sale_id"]) == 1
    assert await _fee_payments(clinic.location_id) == [1000, 1000]
    await assert_whole(portal)
