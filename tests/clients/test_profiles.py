"""Profiles (the client's own and staff edits, audited) and the staff's client list."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta

import pytest

from portal.audit.tables import AuditLog
from portal.auth.service import CurrentUser
from portal.auth.tables import User
from portal.clients import service
from portal.clients.tables import ClientIntake, ClientProfile
from portal.timeutil import utcnow
from tests import factories

PROFILE = {
    "name": "Casey Morgan",
    "phone": "+1 503 555 0199",
    "date_of_birth": "1988-03-14",
    "address": "2231 NW Johnson St\nPortland, OR 97210",
    "emergency_contact_name": "Jamie Morgan",
    "emergency_contact_phone": "+1 503 555 0123",
    "email_reminders": "on",
    "preferred_location_id": "",
}


def _client_links(html: str) -> int:
    """The clients listed on a page (links to a client's record)."""
    return len(re.findall(r'href="/clients/\d+"', html))


async def test_a_new_client_without_a_profile_sees_an_account_page(client):
    account = await factories.make_user("client")
    await factories.login(client, account)
    page = await client.get("/account")
    assert page.status_code == 200
    assert "Add a phone number" in page.text
    assert "No appointments booked yet." in page.text
    assert (await client.get("/account/profile")).status_code == 200


async def test_a_client_edits_their_own_profile(client, locations):
    account = await factories.make_user("client")
    await factories.login(client, account)
    data = {
        **PROFILE, "preferred_location_id": str(locations[1]), "email_reminders": "",
        "marketing_consent": "on",
    }  # fmt: skip
    form = await client.get("/account/profile")
    assert 'name="marketing_consent"' in form.text
    response = await factories.post_form(client, "/account/profile", data)
    assert response.status_code == 303 and response.headers["location"] == "/account"
    row = await ClientProfile.select().where(ClientProfile.user == account.id).first().run()
    assert row["phone"] == "+1 503 555 0199"
    assert row["date_of_birth"] == date(1988, 3, 14)
    assert row["preferred_location"] == locations[1]
    assert row["email_reminders"] is False
    assert row["marketing_consent"] is True
    user = await User.select(User.name).where(User.id == account.id).first().run()
    assert user["name"] == "Casey Morgan"
    page = await client.get("/account")
    assert "Beta Clinic" in page.text and "14 Mar 1988" in page.text
    assert "News and offers by email</dt><dd>Yes" in page.text
    audit = await AuditLog.select().where(AuditLog.entity == "client").first().run()
    assert audit["actor_email"] == account.email and audit["action"] == "update"
    assert json.loads(audit["after"])["marketing_consent"] is True
    assert await service.wants_email_reminders(account.id) is False
    # Saving the same again changes nothing and records nothing.
    await factories.post_form(client, "/account/profile", data)
    assert await AuditLog.count().where(AuditLog.entity == "client").run() == 1


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"phone": ""}, "phone", "phone number is needed"),
        ({"phone": "call me maybe"}, "phone", "digits"),
        ({"date_of_birth": "14/03/1988"}, "date_of_birth", "such as"),
        (
            {"date_of_birth": (date.today() + timedelta(days=2)).isoformat()},
            "date_of_birth",
            "future",
        ),
        ({"emergency_contact_phone": ""}, "emergency_contact_phone", "emergency contact"),
        ({"emergency_contact_name": ""}, "emergency_contact_name", "name"),
        ({"preferred_location_id": "99999"}, "preferred_location_id", "from the list"),
        ({"name": ""}, "name", "required"),
    ],
)
async def test_bad_profile_input_is_refused_beside_the_field(client, change, field, message):
    account = await factories.make_user("client")
    await factories.login(client, account)
    response = await factories.post_form(client, "/account/profile", {**PROFILE, **change})
    assert response.status_code == 422
    shown = factories.field_error(response.text, field)
    assert shown and message in shown, shown
    if field != "phone":
        assert factories.input_value(response.text, "phone") == PROFILE["phone"]
    assert await ClientProfile.count().run() == 0
    assert await AuditLog.count().run() == 0


async def test_staff_edit_a_clients_profile_and_owners_see_the_history(
    app, owner_client, manager_client, locations
):
    account = await factories.make_user("client", email="edit-me@example.test")
    # Managers edit the clients of their locations: this one chose location A.
    await ClientProfile.insert(
        ClientProfile(
            user=account.id, preferred_location=locations[0], marketing_consent=True,
            staff_notes="Came over from the old system",
        )
    ).run()  # fmt: skip
    page = await manager_client.get(f"/clients/{account.id}/edit")
    assert page.status_code == 200
    assert '<input type="checkbox" id="marketing_consent" name="marketing_consent" checked>' in (
        page.text
    )
    response = await factories.post_form(
        manager_client,
        f"/clients/{account.id}/edit",
        {**PROFILE, "preferred_location_id": str(locations[0])},
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"/clients/{account.id}"
    audit = await AuditLog.select().where(AuditLog.entity == "client").first().run()
    assert audit["action"] == "update" and audit["entity_id"] == str(account.id)
    assert audit["actor_email"].startswith("manager")
    assert json.loads(audit["before"])["phone"] == ""
    assert json.loads(audit["after"])["phone"] == "+1 503 555 0199"
    # The form left the consent unticked: the client no longer agrees (audited).
    assert json.loads(audit["before"])["marketing_consent"] is True
    assert json.loads(audit["after"])["marketing_consent"] is False
    detail = await manager_client.get(f"/clients/{account.id}")
    assert "+1 503 555 0199" in detail.text and "Alpha Clinic" in detail.text
    assert '<dd id="marketing-consent">No</dd>' in detail.text
    assert "Came over from the old system" in detail.text  # notes for staff, kept
    assert f'href="/clients/{account.id}/history"' not in detail.text
    assert (await manager_client.get(f"/clients/{account.id}/history")).status_code == 403
    history = await owner_client.get(f"/clients/{account.id}/history")
    assert history.status_code == 200 and "+1 503 555 0199" in history.text
    bad = await factories.post_form(
        owner_client, f"/clients/{account.id}/edit", {**PROFILE, "phone": "nope"}
    )
    assert bad.status_code == 422 and factories.field_error(bad.text, "phone")


async def test_client_pages_are_for_clients_only(owner, manager, owner_client):
    staff = await owner_client.get(f"/clients/{owner.id}")
    assert staff.status_code == 404  # staff accounts are not clients
    for url in ("/account", "/account/profile", "/account/intake", "/account/intake/edit"):
        assert (await owner_client.get(url)).status_code == 403, url
    actor = CurrentUser(
        id=owner.id, email=owner.email, name="", role="owner", location_ids=frozenset()
    )
    other = await factories.make_user("client")
    same = await factories.make_user("client")
    me = CurrentUser(id=same.id, email=same.email, name="", role="client", location_ids=frozenset())
    data = await service.parse_profile_form(PROFILE)
    with pytest.raises(Exception, match="own profile"):
        await service.save_profile(me, other.id, data)
    assert await service.save_profile(actor, other.id, data) is True


async def test_the_client_list_searches_filters_and_pages_by_keyset(owner_client, locations, owner):
    # The owner sees every client (managers see their locations' clients: tests/bookings).
    ids = []
    for n in range(55):
        account = await factories.make_user("client", email=f"c{n:02d}@example.test")
        await User.update({User.name: f"Client {n:02d}"}).where(User.id == account.id).run()
        ids.append(account.id)
    await factories.make_user("therapist", location_ids=[locations[0]])
    first = await owner_client.get("/clients")
    assert first.status_code == 200
    assert _client_links(first.text) == 50
    assert "Client 00" in first.text and "Client 49" in first.text and "Client 50" not in first.text
    assert "Therapist Person" not in first.text and owner.email not in first.text
    cursor = first.text.split("after=")[1].split('"')[0]
    second = await owner_client.get(f"/clients?after={cursor}")
    assert _client_links(second.text) == 5
    assert "Client 50" in second.text and "Client 54" in second.text

    found = await owner_client.get("/clients?q=C07@")
    assert _client_links(found.text) == 1 and "Client 07" in found.text
    by_name = await owner_client.get("/clients?q=client 1")
    assert _client_links(by_name.text) == 10

    await ClientIntake.insert(
        ClientIntake(client=ids[3], version=1, created_at=utcnow(), consent_at=utcnow())
    ).run()
    await ClientProfile.insert(
        ClientProfile(user=ids[4], preferred_location=locations[1], phone="+1 555 0101")
    ).run()
    done = await owner_client.get("/clients?intake=done")
    assert _client_links(done.text) == 1 and "Client 03" in done.text
    missing = await owner_client.get("/clients?intake=missing")
    assert "Client 03" not in missing.text
    at_beta = await owner_client.get(f"/clients?location={locations[1]}")
    assert _client_links(at_beta.text) == 1 and "+1 555 0101" in at_beta.text
    await User.update({User.active: False}).where(User.id == ids[0]).run()
    assert "Client 00" not in (await owner_client.get("/clients")).text
    assert "Client 00" in (await owner_client.get("/clients?status=inactive")).text
