"""Every rendering of the note-writing page that shows the client's earlier notes
writes its row in the access log first: the first page, a re-render with more
trigger-point rows and one with a validation error, for a new note and for a
draft alike."""

from __future__ import annotations

from portal.notes import service as notes
from portal.notes.tables import NoteAccessLog
from tests import factories
from tests.notes.conftest import given_session, signed_note

EARLIER = "Upper trapezius very reactive."


async def _compose_rows() -> list[tuple[str, int, int | None]]:
    rows = await NoteAccessLog.select().order_by(NoteAccessLog.id).run()
    return [(r["action"], r["client_id"], r["note_id"]) for r in rows]


async def test_every_writing_page_that_shows_earlier_notes_is_logged(app, clinic):
    await signed_note(clinic, 9, assessment=EARLIER)
    appointment_id = await given_session(clinic, 2)
    client_id = clinic.client.id
    async with factories.make_client(app) as therapist:
        await factories.login(therapist, clinic.therapist_account)
        url = f"/notes/appointment/{appointment_id}"
        pages = [
            await therapist.get(url),
            await factories.post_form(
                therapist, url, {"pain_before": "4", "action": "more_rows", "extra_rows": "0"}
            ),
            await factories.post_form(therapist, url, {"pain_before": "11"}),
        ]
        for page in pages:
            assert EARLIER in page.text
        assert await _compose_rows() == [(notes.COMPOSE, client_id, None)] * 3

        # The same for a draft being edited.
        created = await factories.post_form(therapist, url, {"pain_before": "4"})
        assert created.status_code == 303
        note_id = await notes.note_for_appointment(appointment_id)
        assert note_id is not None
        edit = f"/notes/{note_id}/edit"
        pages = [
            await therapist.get(edit),
            await factories.post_form(
                therapist, edit, {"pain_before": "4", "action": "more_rows", "extra_rows": "3"}
            ),
            await factories.post_form(therapist, edit, {"pain_before": "-3"}),
        ]
        for page in pages:
            assert EARLIER in page.text
        assert (await _compose_rows())[3:] == [(notes.COMPOSE, client_id, note_id)] * 3
