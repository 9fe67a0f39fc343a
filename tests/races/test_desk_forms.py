"""Desk forms that create something, clicked at once against both processes: a new client
(one account, one invitation) and an API token (one token). Every click is answered
with the first one's result."""

from __future__ import annotations

from portal.auth.tables import ApiToken, User
from portal.email.tables import OutboxMessage
from tests.races.conftest import Clinic, at_once, describe
from tests.servers import Portal

CLICKS = 6


async def test_new_client_form_clicked_at_once(portal: Portal, clinic: Clinic) -> None:
    manager = await portal.signed_in(clinic.manager)
    form = await manager.form("/clients/new", "/clients/new")
    email = f"walk-in-{clinic.location_id}@example.test"
    form.update(name="Wally Walkin", email=email, phone="(503) 555-0188",
                location_id=str(clinic.location_id))  # fmt: skip

    answers = await at_once(manager.post("/clients/new", form, process=i) for i in range(CLICKS))

    made = await User.select(User.id).where(User.email == email).run()
    assert len(made) == 1, f"{CLICKS} clicks made {made}"
    client_id = made[0]["id"]
    assert {(a.status_code, a.headers.get("location")) for a in answers} == {
        (303, f"/clients/{client_id}")
    }, describe(answers)
    invitations = await OutboxMessage.select().where(OutboxMessage.to_address == email).run()
    assert [m["kind"] for m in invitations] == ["client_invitation"], invitations
    assert form.get("request_key"), "the new-client form carries a one-time request_key"


async def test_token_form_clicked_at_once(portal: Portal, clinic: Clinic) -> None:
    manager = await portal.signed_in(clinic.manager)
    form = await manager.form("/account/tokens", "/account/tokens")
    form["name"] = f"Books {clinic.location_id}"

    answers = await at_once(manager.post("/account/tokens", form, process=i) for i in range(CLICKS))

    made = await ApiToken.select().where(ApiToken.user == clinic.manager.id).run()
    assert len(made) == 1, f"{CLICKS} clicks made {made}"
    assert {(a.status_code, a.headers.get("location")) for a in answers} == {
        (303, "/account/tokens")
    }, describe(answers)
    # Reloading the page the answers lead to makes nothing either.
    for _ in range(2):
        assert (await manager.get("/account/tokens")).status_code == 200
    assert await ApiToken.count().where(ApiToken.user == clinic.manager.id).run() == 1
