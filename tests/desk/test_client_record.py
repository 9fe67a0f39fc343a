"""The client record as the front desk's hub, finding clients, creating them, writing to them.

The record shows what the desk needs (sessions left, appointments, purchases and
refunds, notes as privacy allows, intake with health flags) and the actions Book,
Sell and Message with the client chosen; clients are found by name, email or a
phone number typed any usual way; a client made at the desk is invited by email to
choose a password, once however often the form is sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import quote

import httpx

from portal.audit.tables import AuditLog
from portal.auth.service import CLIENT, OWNER, CurrentUser
from portal.auth.tables import User
from portal.bookings import service as bookings
from portal.clients import service as clients
from portal.clients.phones import phone_digits
from portal.clients.tables import ClientIntake, ClientProfile
from portal.email.tables import OutboxMessage
from portal.locations.tables import Location
from portal.notes import service as notes
from portal.timeutil import utcnow
from tests import factories
from tests.bookings.conftest import Clinic
from tests.notes.conftest import COMPLETE, given_session


@asynccontextmanager
async def _signed_in(app, account: factories.Account) -> AsyncIterator[httpx.AsyncClient]:
    async with factories.make_client(app) as client:
        await factories.login(client, account)
        yield client


async def _flag_blood_thinners(client_id: int) -> None:
    await ClientIntake.insert(
        ClientIntake(
            client=client_id, version=1, created_at=utcnow(), consent_at=utcnow(),
            concerns=json.dumps(["neck"]), health_flags=json.dumps(["blood_thinners"]),
            health_details="Warfarin daily", pain_level=6, goals="Turn my head",
        )
    ).run()  # fmt: skip


async def test_the_record_shows_what_the_desk_needs_and_its_actions(app, clinic: Clinic):
    await _flag_blood_thinners(clinic.client.id)
    past = await given_session(clinic, days_ago=3)
    note_id = await notes.start_note(clinic.as_therapist(), past, COMPLETE)
    upcoming = await bookings.book(
        clinic.as_client(), client_id=clinic.client.id, location_id=clinic.location_id,
        service_id=clinic.service_id, start_at=factories.ny(factories.future_day(3), 11),
        therapist_id=clinic.therapist_id,
    )  # fmt: skip
    async with _signed_in(app, clinic.manager) as browser:
        page = await browser.get(f"/clients/{clinic.client.id}")
    assert page.status_code == 200
    html = page.text
    # Sessions left: 5 bought, one given, one booked -> 4 not used yet (1 of them booked).
    assert re.search(rf'data-sessions-left="{clinic.sale_id}">\s*4 of 5', html), html
    assert f"/appointments/{upcoming}" in html and f"/appointments/{past}" in html
    # Each appointment's row: to come, with its therapist; past, with its outcome.
    coming = re.search(rf'/appointments/{upcoming}".*?</tr>', html, re.S)
    given = re.search(rf'/appointments/{past}".*?</tr>', html, re.S)
    assert coming and "<td>" in coming[0] and "Completed" not in coming[0]
    assert given and "Completed" in given[0], given
    assert f"/sales/{clinic.sale_id}" in html
    # The note is listed (a draft, by its session), its contents are not on the record.
    assert f"/notes/{note_id}" in html
    assert COMPLETE.assessment not in html and COMPLETE.subjective not in html
    # Health flags above everything, with the way to the intake.
    assert "Blood thinners (anticoagulants)" in html and "Warfarin daily" in html
    email = quote(clinic.client.email, safe="")
    assert f"/appointments/new?client_email={email}" in html
    assert f"/sales/new?client_email={email}" in html
    assert f"/clients/{clinic.client.id}/message" in html


async def test_the_record_keeps_a_manager_to_their_locations(app, clinic: Clinic):
    other_manager = await factories.make_user("manager", location_ids=[clinic.other_location_id])
    async with _signed_in(app, other_manager) as browser:
        page = await browser.get(f"/clients/{clinic.client.id}")
    assert page.status_code == 403


async def test_clients_are_found_by_a_phone_typed_any_usual_way(app, clinic: Clinic):
    await ClientProfile.insert(
        ClientProfile(user=clinic.client.id, phone="+1 503 555 0142",
                      phone_national=phone_digits("+1 503 555 0142"), created_at=utcnow(),
                      updated_at=utcnow())
    ).run()  # fmt: skip
    owner = CurrentUser(0, "", "", OWNER, frozenset())
    for typed in ("(503) 555-0142", "503.555.0142", "+15035550142", "5035550142"):
        page = await clients.list_clients(owner, search=typed)
        assert [r["id"] for r in page.rows] == [clinic.client.id], typed
    assert not (await clients.list_clients(owner, search="(503) 555-0143")).rows
    # The type-ahead of the sale and booking forms offers the client as an option.
    async with _signed_in(app, clinic.manager) as browser:
        answer = await browser.get("/clients/lookup", params={"client_email": "503-555-0142"})
    assert answer.status_code == 200
    assert f'<option value="{clinic.client.email}">' in answer.text


async def test_an_empty_location_means_all_my_locations(app, clinic: Clinic):
    async with _signed_in(app, clinic.manager) as browser:
        sale_form = await browser.get("/sales/new?location=")
        schedule = await browser.get("/appointments?location=")
        prefilled = await browser.get(
            "/sales/new", params={"location": "", "client_email": clinic.client.email}
        )
    assert sale_form.status_code == 200, sale_form.text
    assert schedule.status_code == 200, schedule.text
    assert factories.input_value(prefilled.text, "client_email") == clinic.client.email


async def _new_client_form(browser) -> dict[str, str]:
    page = await browser.get("/clients/new")
    assert page.status_code == 200
    key = factories.input_value(page.text, "request_key")
    assert key
    return {"request_key": key}


async def test_the_desk_creates_a_client_who_is_invited_to_choose_a_password(app, clinic: Clinic):
    async with _signed_in(app, clinic.manager) as browser:
        form = await _new_client_form(browser)
        form |= {"name": "Dana Desk", "email": "Dana@Example.test", "phone": "(503) 555-0177",
                 "location_id": str(clinic.location_id)}  # fmt: skip
        first = await factories.post_form(browser, "/clients/new", form)
        again = await factories.post_form(browser, "/clients/new", form)
        created = await User.select().where(User.email == "dana@example.test").run()
        assert len(created) == 1 and created[0]["role"] == CLIENT
        client_id = created[0]["id"]
        assert first.status_code == again.status_code == 303
        assert first.headers["location"] == again.headers["location"] == f"/clients/{client_id}"
        record = await browser.get(f"/clients/{client_id}")
        assert record.status_code == 200, "the manager sees the client the desk created"
    profile = await ClientProfile.select().where(ClientProfile.user == client_id).first().run()
    assert profile["phone"] == "(503) 555-0177"
    owner = CurrentUser(0, "", "", OWNER, frozenset())
    found = await clients.list_clients(owner, search="+1 503.555.0177")
    assert [r["id"] for r in found.rows] == [client_id]  # by phone, typed another way
    assert profile["preferred_location"] == clinic.location_id
    audit = await AuditLog.select().where(AuditLog.entity_id == str(client_id)).run()
    assert [a["action"] for a in audit] == ["create"]
    invitations = (
        await OutboxMessage.select().where(OutboxMessage.to_address == "dana@example.test").run()
    )
    assert [m["kind"] for m in invitations] == ["client_invitation"]
    link = re.search(r"/password/reset/\S+", invitations[0]["body_text"])
    assert link, invitations[0]["body_text"]
    async with factories.make_client(app) as visitor:
        choose = await visitor.get(link.group(0))
        assert choose.status_code == 200
        done = await factories.post_form(
            visitor, link.group(0),
            {"password": "a long new password 42", "confirm_password": "a long new password 42"},
        )  # fmt: skip
    assert done.status_code == 303 and done.headers["location"] == "/account"


async def test_a_refused_new_client_form_keeps_what_was_typed(app, clinic: Clinic):
    async with _signed_in(app, clinic.manager) as browser:
        form = await _new_client_form(browser)
        form |= {"name": "Eli", "email": clinic.client.email, "phone": "call me",
                 "location_id": str(clinic.other_location_id)}  # fmt: skip
        bad = await factories.post_form(browser, "/clients/new", form)
        assert bad.status_code == 422
        assert factories.field_error(bad.text, "phone")
        assert factories.input_value(bad.text, "name") == "Eli"
        form["phone"] = ""
        not_mine = await factories.post_form(browser, "/clients/new", form)
        assert not_mine.status_code == 422 and factories.field_error(not_mine.text, "location_id")
        form["location_id"] = str(clinic.location_id)
        taken = await factories.post_form(browser, "/clients/new", form)
        assert taken.status_code == 422 and factories.field_error(taken.text, "email")
    assert await User.count().where(User.name == "Eli").run() == 0


async def test_message_goes_through_the_outbox_signed_by_the_clinic_once(app, clinic: Clinic):
    async with _signed_in(app, clinic.manager) as browser:
        page = await browser.get(f"/clients/{clinic.client.id}/message")
        assert page.status_code == 200
        form = {
            "request_key": factories.input_value(page.text, "request_key"),
            "location_id": str(clinic.location_id),
            "subject": "Your next visit",
            "body": "Bring loose clothes, please.",
        }
        empty = await factories.post_form(browser, f"/clients/{clinic.client.id}/message",
                                          {**form, "body": ""})  # fmt: skip
        assert empty.status_code == 422 and factories.field_error(empty.text, "body")
        for _ in range(2):
            sent = await factories.post_form(browser, f"/clients/{clinic.client.id}/message", form)
            assert sent.status_code == 303
    messages = await OutboxMessage.select().where(OutboxMessage.kind == "client_message").run()
    assert len(messages) == 1
    assert messages[0]["to_address"] == clinic.client.email
    assert "Bring loose clothes, please." in messages[0]["body_text"]
    clinic_name = (await Location.select().where(Location.id == clinic.location_id))[0]["name"]
    assert clinic_name in messages[0]["subject"] and clinic_name in messages[0]["body_text"]
    audit = await AuditLog.select().where(AuditLog.action == "message").run()
    assert len(audit) == 1 and audit[0]["entity_id"] == str(clinic.client.id)


async def test_notes_for_staff_are_edited_on_the_record_and_never_overwrite_a_colleague(
    app, clinic: Clinic
):
    path = f"/clients/{clinic.client.id}/staff-notes"
    owner = await factories.make_user(OWNER)
    async with _signed_in(app, clinic.manager) as first, _signed_in(app, owner) as second:
        record = await first.get(f"/clients/{clinic.client.id}")
        assert path in record.text
        mine = await first.get(path)
        theirs = await second.get(path)
        assert mine.status_code == theirs.status_code == 200
        seen = factories.input_value(mine.text, "seen") or ""
        assert seen == ""
        saved = await factories.post_form(
            second, path, {"staff_notes": "Prefers the ground-floor room", "seen": seen}
        )
        assert saved.status_code == 303
        # The manager opened the form before the owner saved: refused, both texts shown.
        stale = await factories.post_form(
            first, path, {"staff_notes": "Call before 10:00", "seen": seen}
        )
        assert stale.status_code == 422
        assert "changed these notes" in (factories.field_error(stale.text, "staff_notes") or "")
        assert "Prefers the ground-floor room" in stale.text and "Call before 10:00" in stale.text
        fresh = factories.input_value(stale.text, "seen")
        assert fresh == "Prefers the ground-floor room"
        too_long = await factories.post_form(
            first, path, {"staff_notes": "x" * 4001, "seen": fresh}
        )
        assert too_long.status_code == 422 and factories.field_error(too_long.text, "staff_notes")
        done = await factories.post_form(
            first,
            path,
            {"staff_notes": "Prefers the ground-floor room\r\nCall before 10:00", "seen": fresh},
        )
        assert done.status_code == 303
        record = await first.get(f"/clients/{clinic.client.id}")
    assert "Call before 10:00" in record.text
    profile = (
        await ClientProfile.select(ClientProfile.staff_notes)
        .where(ClientProfile.user == clinic.client.id)
        .first()
    )
    assert profile is not None
    assert profile["staff_notes"] == "Prefers the ground-floor room\nCall before 10:00"
    edits = await AuditLog.select().where(AuditLog.action == "edit_staff_notes").run()
    assert [e["actor_id"] for e in edits] == [owner.id, clinic.manager.id]
