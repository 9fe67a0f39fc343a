"""Note pages over HTTP: bad input kept with messages, refusals, privacy, the access log."""

from __future__ import annotations

import re

from portal.auth.service import ACCOUNTANT, MANAGER, OWNER
from portal.bookings import credits
from portal.bookings.tables import Appointment
from portal.notes import service as notes
from portal.notes.tables import NoteAccessLog, TreatmentNote
from portal.staff.tables import Therapist
from tests import factories
from tests.bookings.conftest import add_therapist
from tests.notes.conftest import COMPLETE, given_session, signed_note


async def _signed_in(app, account):
    client = factories.make_client(app)
    await client.__aenter__()
    await factories.login(client, account)
    return client


async def _log() -> list[dict]:
    return await NoteAccessLog.select().order_by(NoteAccessLog.id).run()


async def test_the_writing_page_shows_the_intake_and_earlier_notes(app, clinic):
    from portal.clients import intake as intake_form
    from portal.clients import service as clients

    await clients.save_intake(
        clinic.as_client(), clinic.client.id,
        intake_form.IntakeInput(concerns=["tension_headaches"], pain_level=6,
                                goals="Fewer headaches; turn my head when driving."),
    )  # fmt: skip
    await signed_note(clinic, 9, assessment="Upper trapezius very reactive.")
    appointment_id = await given_session(clinic, 2)
    therapist = await _signed_in(app, clinic.therapist_account)
    page = await therapist.get(f"/notes/appointment/{appointment_id}")
    assert page.status_code == 200
    assert "Fewer headaches; turn my head when driving." in page.text  # the intake's goals
    assert "Upper trapezius very reactive." in page.text  # the earlier note
    assert "Session 2 of 5" in page.text
    log = await _log()
    assert [(r["action"], r["client_id"], r["actor_id"]) for r in log] == [
        (notes.COMPOSE, clinic.client.id, clinic.therapist_account.id)
    ]
    await therapist.aclose()


async def test_bad_input_is_refused_beside_the_fields_and_kept(app, clinic):
    appointment_id = await given_session(clinic)
    therapist = await _signed_in(app, clinic.therapist_account)
    response = await factories.post_form(
        therapist,
        f"/notes/appointment/{appointment_id}",
        {
            "subjective": "Better this week.",
            "pain_before": "11",
            "pain_after": "-1",
            "regions": "spleen",
            "tp-0-region": "upper_trapezius",
            "tp-0-side": "left",
            "tp-0-severity": "5",
            "tp-0-referral": "temple",
        },
    )
    assert response.status_code == 422
    html = response.text
    assert "between 0" in factories.field_error(html, "pain_before")
    assert "between 0" in factories.field_error(html, "pain_after")
    assert "Choose from the list" in factories.field_error(html, "regions")
    assert "1 (mild)" in factories.field_error(html, "tp-0-severity")
    assert factories.input_value(html, "pain_before") == "11"
    assert factories.input_value(html, "tp-0-referral") == "temple"
    assert "Better this week." in html
    assert 'value="upper_trapezius" selected' in html
    assert await TreatmentNote.count().run() == 0
    await therapist.aclose()


async def test_a_note_for_someone_elses_appointment_is_forbidden(app, clinic):
    appointment_id = await given_session(clinic)
    other_account = await factories.make_user("therapist", location_ids=[clinic.location_id])
    await add_therapist("Other", clinic.location_id, clinic.service_id, account_id=other_account.id)
    other = await _signed_in(app, other_account)
    assert (await other.get(f"/notes/appointment/{appointment_id}")).status_code == 403
    response = await factories.post_form(
        other, f"/notes/appointment/{appointment_id}", {"pain_before": "5"}
    )
    assert response.status_code == 403
    assert await TreatmentNote.count().run() == 0
    await other.aclose()


async def test_write_review_and_sign_then_editing_is_refused(app, clinic):
    appointment_id = await given_session(clinic)
    therapist = await _signed_in(app, clinic.therapist_account)
    form = {
        "subjective": "Two headaches this week.", "symptom": "Headaches",
        "symptom_per_week": "2", "pain_before": "4", "pain_after": "2",
        "regions": ["neck", "upper_trapezius"], "techniques": ["ischemic_compression"],
        "pressure": "firm", "assessment": "Less reactive.", "plan": "Keep stretching.",
        "tp-0-region": "upper_trapezius", "tp-0-side": "right", "tp-0-severity": "2",
        "action": "review",
    }  # fmt: skip
    response = await factories.post_form(therapist, f"/notes/appointment/{appointment_id}", form)
    assert response.status_code == 303
    note_id = int(re.search(r"/notes/(\d+)/sign", response.headers["location"]).group(1))
    review = await therapist.get(f"/notes/{note_id}/sign")
    assert review.status_code == 200 and "Sign note" in review.text
    refused = await factories.post_form(therapist, f"/notes/{note_id}/sign", {})
    assert refused.status_code == 422
    assert "Tick the box" in factories.field_error(refused.text, "confirm")
    signed = await factories.post_form(therapist, f"/notes/{note_id}/sign", {"confirm": "on"})
    assert signed.status_code == 303
    stored = await TreatmentNote.select().where(TreatmentNote.id == note_id).first().run()
    assert stored["status"] == notes.SIGNED

    # Editing the signed note: refused with a clear message, input kept, nothing changed.
    edit = await therapist.get(f"/notes/{note_id}/edit")
    assert edit.status_code == 303 and edit.headers["location"] == f"/notes/{note_id}"
    response = await factories.post_form(
        therapist, f"/notes/{note_id}/edit", {**form, "pain_after": "0", "action": "save"}
    )
    assert response.status_code == 422
    assert "can no longer be changed" in response.text
    assert factories.input_value(response.text, "pain_after") == "0"
    after = await TreatmentNote.select().where(TreatmentNote.id == note_id).first().run()
    assert after == stored

    # A correction is an amendment.
    bad = await factories.post_form(
        therapist, f"/notes/{note_id}/amend", {"field": "pain_after", "value": "12"}
    )
    assert bad.status_code == 422
    assert factories.field_error(bad.text, "value") and factories.field_error(bad.text, "reason")
    good = await factories.post_form(
        therapist, f"/notes/{note_id}/amend",
        {"field": "pain_after", "value": "3", "reason": "Client said 3 at checkout."},
    )  # fmt: skip
    assert good.status_code == 303
    page = await therapist.get(f"/notes/{note_id}")
    assert "Client said 3 at checkout." in page.text and "corrected to" in page.text
    await therapist.aclose()


async def test_reads_are_logged_and_managers_see_no_contents(app, clinic):
    note_id = await signed_note(clinic, subjective="Private words about headaches.")
    client = await _signed_in(app, clinic.client)
    page = await client.get(f"/notes/{note_id}")
    assert page.status_code == 200 and "Private words about headaches." in page.text
    progress = await client.get("/account/progress")
    assert progress.status_code == 200 and "<svg" in progress.text

    await (
        Therapist.update({Therapist.licence_number: "LMT-4471", Therapist.licence_state: "NY"})
        .where(Therapist.id == clinic.therapist_id)
        .run()
    )
    printout = await client.get("/account/progress/print")
    assert printout.status_code == 200 and "Treatment progress summary" in printout.text
    # A letterhead for the physician: the clinic's name, address and phone, the licence.
    head = printout.text.split('<header class="print-head">')[1].split("</header>")[0]
    assert "1 Main St" in head and "+1 555 0100" in head and "licence NY LMT-4471" in head
    assert "Clinic Portal ·" not in head
    await client.aclose()
    log = await _log()
    assert [(r["action"], r["note_id"], r["client_id"], r["actor_email"]) for r in log] == [
        (notes.VIEW, note_id, clinic.client.id, clinic.client.email),
        (notes.PROGRESS, None, clinic.client.id, clinic.client.email),
        (notes.PRINT, None, clinic.client.id, clinic.client.email),
    ]

    manager = await _signed_in(app, clinic.manager)
    page = await manager.get(f"/notes/{note_id}")
    assert page.status_code == 200
    assert "Signed" in page.text and "Private words" not in page.text
    assert (await manager.get(f"/progress/{clinic.client.id}")).status_code == 403
    await manager.aclose()
    accountant = await _signed_in(app, await factories.make_user(ACCOUNTANT))
    for url in (f"/notes/{note_id}", "/notes", f"/progress/{clinic.client.id}"):
        assert (await accountant.get(url)).status_code == 403
    await accountant.aclose()
    assert len(await _log()) == 3  # neither the manager nor the accountant read contents


async def test_pages_obey_the_content_security_policy(app, clinic):
    await signed_note(clinic)
    client = await _signed_in(app, clinic.client)
    for url in ("/account/progress", "/account/progress/print"):
        html = (await client.get(url)).text
        assert "style=" not in html
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline script"
        assert "<svg" in html and "<title" in html
    await client.aclose()


async def test_the_appointment_link_leads_to_the_note(app, clinic):
    appointment_id = await given_session(clinic)
    client = await _signed_in(app, clinic.client)
    page = await client.get(f"/notes/appointment/{appointment_id}")
    assert page.status_code == 200 and "No note has been written" in page.text
    note_id = await notes.start_note(clinic.as_therapist(), appointment_id, COMPLETE)
    response = await client.get(f"/notes/appointment/{appointment_id}")
    assert response.status_code == 303 and response.headers["location"] == f"/notes/{note_id}"
    draft = await client.get(f"/notes/{note_id}")
    assert "still writing" in draft.text and "Headaches three times" not in draft.text
    await client.aclose()


async def test_owners_review_the_access_log_with_filters_and_pages(app, clinic):
    note_id = await signed_note(clinic)
    for _ in range(55):
        await notes.record_read(clinic.as_client(), notes.VIEW, clinic.client.id, note_id=note_id)
    await notes.record_read(clinic.as_therapist(), notes.PROGRESS, clinic.client.id)
    owner = await _signed_in(app, await factories.make_user(OWNER))
    page = await owner.get("/notes/access-log")
    assert page.status_code == 200
    assert page.text.count("<tr>") == 51  # header + 50 rows
    assert clinic.therapist_account.email in page.text  # newest first
    next_url = re.search(r'href="([^"]*after=[^"]+)"', page.text).group(1).replace("&amp;", "&")
    second = await owner.get(next_url)
    assert second.text.count("<tr>") == 1 + 6
    only = await owner.get("/notes/access-log", params={"action": "progress"})
    assert only.text.count("<tr>") == 2
    by_actor = await owner.get(
        "/notes/access-log", params={"actor": clinic.therapist_account.email}
    )
    assert by_actor.text.count("<tr>") == 2
    by_client = await owner.get("/notes/access-log", params={"client": "nobody-here"})
    assert "No readings match." in by_client.text
    await owner.aclose()
    manager = await _signed_in(app, clinic.manager)
    assert (await manager.get("/notes/access-log")).status_code == 403
    await manager.aclose()


async def test_the_notes_list_for_each_role(app, clinic):
    note_id = await signed_note(clinic)
    waiting = await given_session(clinic, 1)
    therapist = await _signed_in(app, clinic.therapist_account)
    page = await therapist.get("/notes")
    assert page.status_code == 200
    assert f"/notes/appointment/{waiting}" in page.text and f"/notes/{note_id}" in page.text
    await therapist.aclose()
    other_manager = await factories.make_user(MANAGER, location_ids=[clinic.other_location_id])
    manager = await _signed_in(app, other_manager)
    page = await manager.get("/notes")
    assert page.status_code == 200 and f"/notes/{note_id}" not in page.text
    await manager.aclose()


def test_the_pain_chart_is_plain_svg():
    from portal.notes.charts import PainPoint, pain_chart

    svg = pain_chart(
        [PainPoint("1/5", "20 Nov", 7, 4), PainPoint("2/5", "27 Nov", 5, 2, corrected=True)],
        intake=8,
    )
    assert svg.startswith("<svg") and "style=" not in svg and "<script" not in svg
    assert "1/5, before: 7 / 10" in svg and "2/5, after: 2 / 10 (corrected)" in svg
    assert "At intake: 8 / 10" in svg


async def test_sessions_are_numbered_in_the_order_given_not_booked(app, clinic):
    # The client books the later session first: its credit is the package's first.
    later = await given_session(clinic, 2)
    earlier = await given_session(clinic, 10)
    therapist = clinic.as_therapist()
    ids = {}
    for name, appointment_id in (("later", later), ("earlier", earlier)):
        ids[name] = await notes.start_note(therapist, appointment_id, COMPLETE)
        await notes.sign(therapist, ids[name], confirmed=True)
    assert (await notes.get_note(ids["earlier"]))["session_label"] == "Session 1 of 5"
    assert (await notes.get_note(ids["later"]))["session_label"] == "Session 2 of 5"
    progress = await notes.progress(clinic.client.id)
    assert [s["session_label"] for s in progress.sessions] == ["Session 1 of 5", "Session 2 of 5"]
    listed = await notes.list_notes(therapist, notes.NoteFilters(), after=None)
    assert {r["id"]: r["session_label"] for r in listed.rows} == {
        ids["earlier"]: "Session 1 of 5", ids["later"]: "Session 2 of 5",
    }  # fmt: skip

    client = await _signed_in(app, clinic.client)
    page = await client.get(f"/notes/{ids['earlier']}")
    assert "Session 1 of 5" in page.text and "Session 2 of 5" not in page.text
    printout = await client.get("/account/progress/print")
    first, second = printout.text.index("Session 1 of 5"), printout.text.index("Session 2 of 5")
    assert first < second
    await client.aclose()
    staff = await _signed_in(app, clinic.therapist_account)
    listing = await staff.get("/notes")
    row = re.search(rf'href="/notes/{ids["later"]}".*?</tr>', listing.text, re.S)
    assert row and "Session 2 of 5" in row.group(0)
    await staff.aclose()
    # The writing page names the session the same way.
    credit = await Appointment.select().where(Appointment.id == earlier).first().run()
    label = await credits.credit_label(credit["sale_session"], earlier)
    assert label is not None and label.startswith("Session 1 of 5")
