"""Staff start a membership for a client at the front desk: the Checkout link shown and
emailed; paying it starts the membership like joining online."""

from __future__ import annotations

import re

from portal.audit.tables import AuditLog
from portal.auth.service import MANAGER
from portal.clients.tables import ClientProfile
from portal.email.tables import OutboxMessage
from portal.memberships import subscriptions
from portal.memberships.tables import Membership
from portal.timeutil import utcnow
from tests import factories
from tests.memberships.conftest import Club
from tests.memberships.helpers import make_plan


async def _manager_of(club: Club) -> factories.Account:
    """A manager of the club, whose client the member is (the club is their preferred one)."""
    await ClientProfile.insert(
        ClientProfile(user=club.member.id, preferred_location=club.location, created_at=utcnow(),
                      updated_at=utcnow())
    ).run()  # fmt: skip
    return await factories.make_user(MANAGER, location_ids=[club.location])


def _key(html: str) -> str:
    found = re.search(r'name="request_key" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


async def test_a_manager_starts_a_membership_and_the_client_pays_the_emailed_link(
    club: Club, club_webhook
) -> None:
    desk_only = await make_plan(club.location, club.service, name="Desk only", online=False)
    manager = await _manager_of(club)
    elsewhere = await factories.make_location(slug="elsewhere")
    await make_plan(elsewhere, club.service, name="Not ours")
    async with factories.make_client(club.app) as staff:
        await factories.login(staff, manager)
        detail = await staff.get(f"/clients/{club.member.id}")
        assert f'href="/memberships/desk/{club.member.id}"' in detail.text
        page = await staff.get(f"/memberships/desk/{club.member.id}")
        assert page.status_code == 200
        assert "Desk only — " in page.text and "Monthly 60 min — " in page.text
        assert "Not ours" not in page.text
        csrf = staff.cookies["portal_csrf"]
        empty = await staff.post(
            f"/memberships/desk/{club.member.id}",
            data={"request_key": _key(page.text), "_csrf_token": csrf},
        )
        assert empty.status_code == 400 and "Choose a plan." in empty.text
        form = {"request_key": _key(page.text), "plan_id": str(desk_only), "_csrf_token": csrf}
        answer = await staff.post(f"/memberships/desk/{club.member.id}", data=form)
        assert answer.status_code == 200, answer.text
        link = re.search(r'data-testid="checkout-link">([^<]+)<', answer.text)
        assert link is not None
        again = await staff.post(f"/memberships/desk/{club.member.id}", data=form)
        assert link.group(1) in again.text  # the same form twice: one membership
    (membership,) = await Membership.select().where(Membership.client == club.member.id).run()
    assert (membership["status"], membership["plan"]) == ("pending", desk_only)
    (mail,) = await OutboxMessage.select().where(OutboxMessage.kind == "membership_link").run()
    assert mail["to_address"] == club.member.email and link.group(1) in mail["body_text"]
    (record,) = await AuditLog.select().where(AuditLog.action == "desk_join").run()
    assert (record["actor_id"], record["entity_id"]) == (manager.id, str(membership["id"]))

    await club.standin.complete_session(link.group(1).rsplit("/", 1)[-1])
    await club.standin.drain()
    fresh = await subscriptions.get_membership(int(membership["id"]))
    assert fresh["status"] == "active"
    assert await subscriptions.sessions_left(int(membership["id"])) == 2


async def test_a_manager_cannot_sell_another_locations_plan(club: Club) -> None:
    elsewhere = await factories.make_location(slug="elsewhere")
    theirs = await make_plan(elsewhere, club.service, name="Not ours")
    manager = await _manager_of(club)
    async with factories.make_client(club.app) as staff:
        await factories.login(staff, manager)
        page = await staff.get(f"/memberships/desk/{club.member.id}")
        answer = await staff.post(
            f"/memberships/desk/{club.member.id}",
            data={"request_key": _key(page.text), "plan_id": str(theirs),
                  "_csrf_token": staff.cookies["portal_csrf"]},
        )  # fmt: skip
        assert answer.status_code == 403
    assert await Membership.count().run() == 0
