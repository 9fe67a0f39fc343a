"""The freeze fee of a member paid at the front desk: taken in the clinic when staff freeze
the membership (the first frozen period's fee), then as the desk's next payment for each
later frozen period; journalled like a card member's fee (earned when charged), once per
frozen period however often the form is sent.

The plan: $120.00 a month + 8.25 % tax; its freeze fee $10.00 + 8.25 % tax = $10.83."""

from __future__ import annotations

import secrets
from typing import cast

import pytest

from portal.audit.tables import AuditLog
from portal.auth.service import CLIENT, CurrentUser
from portal.errors import Invalid
from portal.ledger.tables import JournalEntry, JournalLine
from portal.memberships import desk, subscriptions
from portal.payments.gateway import StripeGateway
from tests import factories
from tests.memberships.conftest import Club
from tests.memberships.helpers import age, make_plan
from tests.memberships.test_desk_billing import NoStripe, _enrol, _key, _periods

FEE, FEE_TAX = 1083, 83


async def _fee_entries(membership_id: int) -> list[list[tuple[str, int, int]]]:
    """The membership's freeze-fee entries, each as its lines (account, debit, credit)."""
    entries = (
        await JournalEntry.select(JournalEntry.id)
        .where(
            (JournalEntry.kind == "membership_fee")
            & JournalEntry.reference.like(f"desk-freeze:{membership_id}:%")
        )
        .order_by(JournalEntry.id)
        .run()
    )
    out = []
    for entry in entries:
        lines = (
            await JournalLine.select()
            .where(JournalLine.entry == entry["id"])
            .order_by(JournalLine.id)
            .run()
        )
        out.append([(r["account"], int(r["debit_cents"]), int(r["credit_cents"])) for r in lines])
    return out


FEE_LINES = [("cash_on_hand", FEE, 0), ("service_revenue", 0, 1000), ("tax_payable", 0, FEE_TAX)]


async def freeze_or_resume(
    user: CurrentUser, membership_id: int, frozen: bool, key: str, method: str = ""
) -> int:
    """Freeze (or resume) with a gateway that must not be used: desk members have none."""
    gateway = cast(StripeGateway, NoStripe())
    return await subscriptions.set_frozen(
        gateway, user, membership_id, frozen, request_key=key, method=method
    )


async def _freezable(club: Club) -> tuple[int, CurrentUser]:
    plan = await make_plan(
        club.location, club.service, name="Pausable", freeze_allowed=True, freeze_fee=1000
    )
    return await _enrol(club, plan)


async def test_staff_freeze_a_desk_member_taking_the_fee_once(club: Club) -> None:
    membership_id, staff = await _freezable(club)
    member = CurrentUser(club.member.id, club.member.email, "", CLIENT, frozenset())
    with pytest.raises(Invalid) as refused:
        await freeze_or_resume(member, membership_id, True, "c" * 24)
    assert refused.value.errors == {
        "form": "Freezing costs $10.83 a period, paid at the front desk: ask the clinic to "
        "freeze it."
    }
    with pytest.raises(Invalid) as no_method:
        await freeze_or_resume(staff, membership_id, True, "n" * 24)
    assert no_method.value.errors == {"method": "Choose how the client paid the freeze fee."}
    assert not (await subscriptions.get_membership(membership_id))["paused"]
    assert await _fee_entries(membership_id) == []

    key = secrets.token_urlsafe(24)
    taken = await freeze_or_resume(staff, membership_id, True, key, "cash")
    assert taken == FEE
    # The same form sent twice answers as the first did, and takes nothing more.
    assert await freeze_or_resume(staff, membership_id, True, key, "cash") == FEE
    with pytest.raises(Invalid) as again:  # another form, made before the freeze
        await freeze_or_resume(staff, membership_id, True, "a" * 24, "cash")
    assert again.value.errors == {"form": "The membership is already frozen."}
    assert await _fee_entries(membership_id) == [FEE_LINES]
    membership = await subscriptions.get_membership(membership_id)
    assert membership["paused"] and membership["status"] == "active"
    assert await _periods(membership_id) == [("paid", 12990)]  # no period, no sessions
    assert await subscriptions.sessions_left(membership_id) == 2
    # Nothing more is due for the frozen period already paid for.
    due = await desk.next_due(membership)
    assert (due.reason, due.freeze_fee) == ("The membership is frozen: nothing is due.", False)

    # Resumed and frozen again within the period: its fee is not taken twice.
    await freeze_or_resume(staff, membership_id, False, "r" * 24)
    twice = await freeze_or_resume(staff, membership_id, True, "t" * 24, "terminal")
    assert twice == 0
    assert await _fee_entries(membership_id) == [FEE_LINES]
    audits = (
        await AuditLog.select(AuditLog.action, AuditLog.after)
        .where((AuditLog.entity == "membership") & (AuditLog.entity_id == str(membership_id)))
        .order_by(AuditLog.id)
        .run()
    )
    assert [a["action"] for a in audits] == ["desk_join", "freeze", "resume", "freeze"]
    assert '"freeze_fee_cents": 1083' in str(audits[1]["after"]).replace("'", '"')


async def test_each_later_frozen_period_owes_its_fee_at_the_desk(club: Club) -> None:
    membership_id, staff = await _freezable(club)
    await freeze_or_resume(staff, membership_id, True, "f" * 24, "cash")
    await age(membership_id, 35)
    assert await desk.fall_due() == []  # the frozen period begins, its fee paid already
    membership = await subscriptions.get_membership(membership_id)
    due = await desk.next_due(membership)  # the next frozen period's fee, a month away
    assert (due.freeze_fee, due.amount_cents, due.start) == (
        True, FEE, membership["current_period_end"],
    )  # fmt: skip
    assert due.reason == "The next period is not payable yet."
    with pytest.raises(Invalid):
        await desk.record_payment(staff, membership_id, "cash", request_key="e" * 24)

    await age(membership_id, 25)  # a few days before the next frozen period
    membership = await subscriptions.get_membership(membership_id)
    due = await desk.next_due(membership)
    assert (due.freeze_fee, due.reason, due.amount_cents) == (True, "", FEE)
    manager = await factories.make_user("manager", location_ids=[club.location])
    async with factories.make_client(club.app) as web:
        await factories.login(web, manager)
        page = (await web.get(f"/memberships/{membership_id}")).text
    assert "Record the freeze fee</h2>" in page and "Record $10.83 paid" in page
    assert "$10.83 freeze fee for " in page
    key = secrets.token_urlsafe(24)
    assert await desk.record_payment(staff, membership_id, "cheque", request_key=key) == 0
    assert await desk.record_payment(staff, membership_id, "cheque", request_key=key) == 0
    assert len(await _fee_entries(membership_id)) == 2
    with pytest.raises(Invalid) as nothing:
        await desk.record_payment(staff, membership_id, "cash", request_key="z" * 24)
    assert nothing.value.errors == {"method": "The membership is frozen: nothing is due."}
    assert len(await _fee_entries(membership_id)) == 2
    assert await _periods(membership_id) == [("paid", 12990)]


async def test_the_membership_page_shows_the_fee_and_freezes_at_the_desk(club: Club) -> None:
    membership_id, _ = await _freezable(club)
    manager = await factories.make_user("manager", location_ids=[club.location])
    async with factories.make_client(club.app) as web:
        await factories.login(web, club.member)
        own = await web.get(f"/memberships/{membership_id}")
    assert "Freezing costs $10.83 a period, paid at the front desk" in own.text
    assert 'id="freeze-method"' not in own.text
    async with factories.make_client(club.app) as web:
        await factories.login(web, manager)
        page = await web.get(f"/memberships/{membership_id}")
        assert "Freeze fee $10.83 for the frozen period from" in page.text
        assert '<label for="freeze-method">Fee paid by' in page.text
        form = {"request_key": _key(page.text), "_csrf_token": web.cookies["portal_csrf"]}
        path = f"/memberships/{membership_id}/freeze"
        bad = await web.post(path, data={**form, "method": "bitcoin"})
        assert bad.status_code == 422  # the page again, the reason beside the field
        assert (
            '<small class="field-error" id="freeze-method-error">Choose how the client paid '
            "the freeze fee.</small>" in bad.text
        )
        assert f'value="{form["request_key"]}"' in bad.text  # the form's key kept
        assert not (await subscriptions.get_membership(membership_id))["paused"]
        done = await web.post(path, data={**form, "method": "cash"})
        assert done.status_code == 303
        after = await web.get(done.headers["location"])
    assert "Frozen: the freeze fee of $10.83 is recorded paid" in after.text
    assert await _fee_entries(membership_id) == [FEE_LINES]
    assert (await subscriptions.get_membership(membership_id))["paused"]
