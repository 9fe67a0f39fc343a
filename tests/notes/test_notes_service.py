"""Writing, signing and amending notes; who may read them; immutability (service and database)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest

from portal.audit.tables import AuditLog
from portal.auth.service import CLIENT, MANAGER
from portal.bookings import service as bookings
from portal.errors import Forbidden
from portal.notes import form as note_form
from portal.notes import service as notes
from portal.notes.tables import NoteAccessLog, NoteAmendment, NoteTriggerPoint, TreatmentNote
from portal.timeutil import utcnow
from portal.web.forms import ValidationFailed
from tests import factories
from tests.notes.conftest import (
    COMPLETE,
    accountant_user,
    as_user,
    given_session,
    owner_user,
    second_therapist,
    signed_note,
)

# -- the form -------------------------------------------------------------------------------


def _form(**values: str) -> dict[str, str]:
    return {"pain_before": "5", **values}


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"pain_before": "11"}, "pain_before"),
        ({"pain_before": "-1"}, "pain_before"),
        ({"pain_before": "seven"}, "pain_before"),
        ({"pain_before": ""}, "pain_before"),
        ({"pain_after": "12"}, "pain_after"),
        ({"symptom_per_week": "-2", "symptom": "Headaches"}, "symptom_per_week"),
        ({"symptom_per_week": "2"}, "symptom"),
        ({"pressure": "crushing"}, "pressure"),
        ({"tp-0-region": "elbow_bone", "tp-0-side": "left", "tp-0-severity": "2"}, "tp-0-region"),
        ({"tp-0-region": "rhomboids", "tp-0-side": "up", "tp-0-severity": "2"}, "tp-0-side"),
        ({"tp-0-region": "rhomboids", "tp-0-side": "left", "tp-0-severity": "4"}, "tp-0-severity"),
        ({"tp-0-region": "rhomboids", "tp-0-side": "left", "tp-0-severity": "0"}, "tp-0-severity"),
        ({"tp-2-severity": "2", "tp-2-side": "left"}, "tp-2-region"),
    ],
)
def test_bad_values_are_refused_with_a_message_per_field(values, field):
    with pytest.raises(ValidationFailed) as caught:
        note_form.parse_note(_form(**values), {})
    assert field in caught.value.errors


def test_regions_and_techniques_come_from_the_fixed_lists():
    with pytest.raises(ValidationFailed) as caught:
        note_form.parse_note(_form(), {"regions": ["neck", "left_earlobe"], "techniques": ["x"]})
    assert "left_earlobe" in caught.value.errors["regions"]
    assert "techniques" in caught.value.errors
    data = note_form.parse_note(
        _form(**{"tp-1-region": "piriformis", "tp-1-side": "bilateral", "tp-1-severity": "3",
                 "tp-1-reproduced": "on", "tp-1-referral": "back of the thigh"}),
        {"regions": ["lower_back", "piriformis"], "techniques": ["pin_and_stretch"]},
    )  # fmt: skip
    assert data.regions == ["lower_back", "piriformis"]
    assert data.trigger_points == [
        note_form.TriggerPointInput("piriformis", "bilateral", 3, True, "back of the thigh")
    ]


def test_a_note_is_complete_for_signing_only_with_its_essentials():
    assert note_form.missing_for_signing({"pain_before": 5}).keys() == {
        "subjective", "pain_after", "regions", "techniques", "assessment",
    }  # fmt: skip
    ready = {**COMPLETE.columns(), "regions": ["neck"], "techniques": ["effleurage"]}
    assert note_form.missing_for_signing(ready) == {}


# -- writing and signing --------------------------------------------------------------------


async def test_the_sessions_therapist_writes_and_signs_a_note(clinic):
    appointment_id = await given_session(clinic)
    therapist = clinic.as_therapist()
    note_id = await notes.start_note(therapist, appointment_id, COMPLETE)
    note = await notes.note_detail(await notes.get_note(note_id))
    assert note["status"] == notes.DRAFT
    assert note["client"] == clinic.client.id and note["therapist"] == clinic.therapist_id
    assert note["session_label"] == "Session 1 of 5"
    assert [tp["severity"] for tp in note["trigger_points"]] == [3, 2]
    await notes.sign(therapist, note_id, confirmed=True)
    signed = await notes.get_note(note_id)
    assert signed["status"] == notes.SIGNED and signed["signed_at"] is not None
    with pytest.raises(notes.NoteExists):
        await notes.start_note(therapist, appointment_id, COMPLETE)


async def test_audit_records_ids_and_status_never_clinical_contents(clinic):
    note_id = await signed_note(clinic)
    await notes.amend(
        clinic.as_therapist(), note_id,
        note_form.AmendmentInput("plan", None, "Add heat.", "Forgot to write it."),
    )  # fmt: skip
    rows = (
        await AuditLog.select()
        .where((AuditLog.entity == "treatment_note") & (AuditLog.entity_id == str(note_id)))
        .order_by(AuditLog.id)
        .run()
    )
    assert [r["action"] for r in rows] == ["note_create", "note_sign", "note_amend"]
    for row in rows:
        recorded = {**json.loads(row["before"] or "{}"), **json.loads(row["after"] or "{}")}
        assert set(recorded) <= {
            "status", "appointment_id", "client_id", "signed_at", "amendment_id",
        }  # fmt: skip
        assert "Headaches" not in row["after"] and "heat" not in row["after"]


async def test_only_the_appointments_therapist_writes_its_note(clinic):
    appointment_id = await given_session(clinic)
    _, other_therapist = await second_therapist(clinic)
    for actor in (
        other_therapist,
        clinic.as_manager(),
        clinic.as_client(),
        await owner_user(),
    ):
        with pytest.raises(Forbidden):
            await notes.start_note(actor, appointment_id, COMPLETE)
    assert await TreatmentNote.count().run() == 0


async def test_no_note_before_the_session_or_for_a_cancelled_one(clinic):
    future = (utcnow() + timedelta(days=3)).replace(hour=15, minute=0, second=0, microsecond=0)
    upcoming = await bookings.book(
        clinic.as_client(), client_id=clinic.client.id, location_id=clinic.location_id,
        service_id=clinic.service_id, start_at=future, therapist_id=clinic.therapist_id,
    )  # fmt: skip
    with pytest.raises(ValidationFailed) as caught:
        await notes.start_note(clinic.as_therapist(), upcoming, COMPLETE)
    assert "begun" in caught.value.errors["form"]
    await bookings.cancel(clinic.as_client(), upcoming)
    with pytest.raises(ValidationFailed) as caught:
        await notes.start_note(clinic.as_therapist(), upcoming, COMPLETE)
    assert "cancelled" in caught.value.errors["form"]


async def test_signing_needs_a_completed_session_a_complete_note_and_confirmation(clinic):
    therapist = clinic.as_therapist()
    begun = await given_session(clinic, complete=False)
    note_id = await notes.start_note(
        therapist, begun, note_form.NoteInput(pain_before=6, subjective="Sore.")
    )
    with pytest.raises(ValidationFailed) as caught:
        await notes.sign(therapist, note_id, confirmed=True)
    assert "completed" in caught.value.errors["form"]
    assert {"pain_after", "regions", "techniques", "assessment"} <= caught.value.errors.keys()
    # Every problem at once: the missing confirmation among them.
    with pytest.raises(ValidationFailed) as caught:
        await notes.sign(therapist, note_id, confirmed=False)
    assert {"form", "pain_after", "confirm"} <= caught.value.errors.keys()
    await bookings.complete(clinic.as_manager(), begun)
    await notes.save_draft(therapist, note_id, COMPLETE)
    with pytest.raises(ValidationFailed) as caught:
        await notes.sign(therapist, note_id, confirmed=False)
    assert caught.value.errors.keys() == {"confirm"}
    _, other = await second_therapist(clinic)
    with pytest.raises(Forbidden):
        await notes.sign(other, note_id, confirmed=True)
    assert (await notes.get_note(note_id))["status"] == notes.DRAFT
    await notes.sign(therapist, note_id, confirmed=True)
    assert (await notes.get_note(note_id))["status"] == notes.SIGNED


# -- immutability ---------------------------------------------------------------------------


async def _snapshot(note_id: int) -> tuple[dict, list]:
    note = await TreatmentNote.select().where(TreatmentNote.id == note_id).first().run()
    points = (
        await NoteTriggerPoint.select().where(NoteTriggerPoint.note == note_id)
        .order_by(NoteTriggerPoint.id).run()
    )  # fmt: skip
    return note, points


async def test_the_service_refuses_to_change_a_signed_note(clinic):
    note_id = await signed_note(clinic)
    before = await _snapshot(note_id)
    with pytest.raises(ValidationFailed) as caught:
        await notes.save_draft(clinic.as_therapist(), note_id, replace(COMPLETE, pain_after=1))
    assert "signed" in caught.value.errors["form"]
    with pytest.raises(ValidationFailed):
        await notes.sign(clinic.as_therapist(), note_id, confirmed=True)
    assert await _snapshot(note_id) == before


async def _refused(query, *words: str) -> None:
    """The query fails with the engine's own error, naming one of ``words``."""
    words = words or ("a signed note never changes", "append-only")
    with pytest.raises(Exception) as caught:
        await query.run()
    assert any(w in str(caught.value) for w in words), caught.value


async def test_the_database_refuses_to_change_a_signed_note(clinic):
    note_id = await signed_note(clinic)
    before = await _snapshot(note_id)
    await _refused(TreatmentNote.update({TreatmentNote.pain_after: 1})
                   .where(TreatmentNote.id == note_id))  # fmt: skip
    await _refused(TreatmentNote.update({TreatmentNote.status: notes.DRAFT})
                   .where(TreatmentNote.id == note_id))  # fmt: skip
    await _refused(TreatmentNote.delete().where(TreatmentNote.id == note_id))
    await _refused(NoteTriggerPoint.update({NoteTriggerPoint.severity: 1})
                   .where(NoteTriggerPoint.note == note_id))  # fmt: skip
    await _refused(NoteTriggerPoint.delete().where(NoteTriggerPoint.note == note_id))
    await _refused(
        NoteTriggerPoint.insert(
            NoteTriggerPoint(note=note_id, position=9, region="neck", side="left", severity=1)
        )
    )
    assert await _snapshot(note_id) == before


async def test_the_database_keeps_amendments_and_the_access_log_append_only(clinic):
    note_id = await signed_note(clinic)
    await notes.amend(
        clinic.as_therapist(), note_id,
        note_form.AmendmentInput("pain_after", 5, "", "Typo."),
    )  # fmt: skip
    await notes.record_read(clinic.as_client(), notes.VIEW, clinic.client.id, note_id=note_id)
    await _refused(NoteAmendment.update({NoteAmendment.reason: "x"}).where(NoteAmendment.id > 0))
    await _refused(NoteAmendment.delete().where(NoteAmendment.id > 0))
    await _refused(NoteAccessLog.update({NoteAccessLog.actor_email: "x"})
                   .where(NoteAccessLog.id > 0))  # fmt: skip
    await _refused(NoteAccessLog.delete().where(NoteAccessLog.id > 0))
    assert await NoteAmendment.count().run() == 1
    assert await NoteAccessLog.count().run() == 1


async def test_the_database_checks_scores_and_refuses_amending_a_draft(clinic):
    appointment_id = await given_session(clinic)
    note_id = await notes.start_note(clinic.as_therapist(), appointment_id, COMPLETE)
    await _refused(
        TreatmentNote.update({TreatmentNote.pain_before: 11}).where(TreatmentNote.id == note_id),
        "treatment_note_pain_before", "treatment_note_check",
    )  # fmt: skip
    await _refused(
        NoteTriggerPoint.update({NoteTriggerPoint.severity: 4})
        .where(NoteTriggerPoint.note == note_id),
        "note_trigger_point_severity", "note_trigger_point_check",
    )  # fmt: skip
    await _refused(
        NoteAmendment.insert(
            NoteAmendment(note=note_id, author=clinic.therapist_account.id, field="plan",
                          text="x", reason="y", at=utcnow())
        ),
        "only signed notes are amended",
    )  # fmt: skip
    # A draft still changes freely.
    await (
        TreatmentNote.update({TreatmentNote.pain_before: 2})
        .where(TreatmentNote.id == note_id)
        .run()
    )
    assert (await notes.get_note(note_id))["pain_before"] == 2


# -- amendments -----------------------------------------------------------------------------


async def test_amendments_correct_a_signed_note_and_keep_the_original(clinic):
    note_id = await signed_note(clinic)
    therapist = clinic.as_therapist()
    with pytest.raises(ValidationFailed) as caught:
        note_form.parse_amendment({"field": "pain_after", "value": "11", "reason": "x"})
    assert "value" in caught.value.errors
    with pytest.raises(ValidationFailed) as caught:
        note_form.parse_amendment({"field": "plan", "text": "Heat."})
    assert "reason" in caught.value.errors
    with pytest.raises(ValidationFailed) as caught:
        note_form.parse_amendment({"field": "spleen", "text": "x", "reason": "y"})
    assert "field" in caught.value.errors
    data = note_form.parse_amendment(
        {"field": "pain_after", "value": "5", "reason": "Client said 5 at checkout."}
    )
    _, other = await second_therapist(clinic)
    with pytest.raises(Forbidden):
        await notes.amend(other, note_id, data)
    await notes.amend(therapist, note_id, data)
    await notes.amend(
        therapist, note_id, note_form.AmendmentInput("pain_after", 6, "", "Second thoughts.")
    )
    note = await notes.note_detail(await notes.get_note(note_id))
    assert note["pain_after"] == 4  # as signed
    assert note["pain_after_effective"] == 6 and note["pain_after_corrected"]
    assert note["pain_before_effective"] == 7 and not note["pain_before_corrected"]
    assert [a["value"] for a in note["amendments"]] == [5, 6]


async def test_a_draft_is_edited_not_amended(clinic):
    appointment_id = await given_session(clinic)
    note_id = await notes.start_note(clinic.as_therapist(), appointment_id, COMPLETE)
    with pytest.raises(ValidationFailed):
        await notes.amend(
            clinic.as_therapist(), note_id, note_form.AmendmentInput("plan", None, "x", "y")
        )
    await notes.save_draft(clinic.as_therapist(), note_id, replace(COMPLETE, trigger_points=[]))
    assert (await notes.note_detail(await notes.get_note(note_id)))["trigger_points"] == []


# -- who reads what -------------------------------------------------------------------------


async def test_who_reads_a_note(clinic):
    note_id = await signed_note(clinic)
    draft_appointment = await given_session(clinic, 5)
    draft_id = await notes.start_note(clinic.as_therapist(), draft_appointment, COMPLETE)
    signed, draft = await notes.get_note(note_id), await notes.get_note(draft_id)

    assert await notes.note_access(await owner_user(), signed) == notes.FULL
    assert await notes.note_access(await owner_user(), draft) == notes.FULL
    assert await notes.note_access(clinic.as_client(), signed) == notes.FULL
    assert await notes.note_access(clinic.as_client(), draft) == notes.PENDING
    assert await notes.note_access(clinic.as_therapist(), draft) == notes.FULL
    assert await notes.note_access(clinic.as_manager(), signed) == notes.META

    stranger = as_user(await factories.make_user(CLIENT))
    other_manager = as_user(
        await factories.make_user(MANAGER, location_ids=[clinic.other_location_id]),
        frozenset({clinic.other_location_id}),
    )
    second_id, second = await second_therapist(clinic)
    for reader in (stranger, other_manager, second, await accountant_user()):
        with pytest.raises(Forbidden):
            await notes.note_access(reader, signed)
    # Once the second therapist has treated the client, the signed notes open to them.
    await given_session(clinic, 3, therapist_id=second_id)
    assert await notes.note_access(second, signed) == notes.FULL
    assert await notes.note_access(second, draft) == notes.PENDING


async def test_who_sees_a_clients_progress(clinic):
    await signed_note(clinic)
    client_id = clinic.client.id
    for reader in (await owner_user(), clinic.as_client(), clinic.as_therapist()):
        await notes.ensure_progress_access(reader, client_id)
    _, second = await second_therapist(clinic)
    stranger = as_user(await factories.make_user(CLIENT))
    for reader in (clinic.as_manager(), await accountant_user(), second, stranger):
        with pytest.raises(Forbidden):
            await notes.ensure_progress_access(reader, client_id)


async def test_managers_list_notes_of_their_locations_without_contents(clinic):
    note_id = await signed_note(clinic)
    page = await notes.list_notes(clinic.as_manager(), notes.NoteFilters(), after=None)
    assert [r["id"] for r in page.rows] == [note_id]
    assert "subjective" not in page.rows[0] and "pain_before" not in page.rows[0]
    other = as_user(
        await factories.make_user(MANAGER, location_ids=[clinic.other_location_id]),
        frozenset({clinic.other_location_id}),
    )
    assert (await notes.list_notes(other, notes.NoteFilters(), after=None)).rows == []
    with pytest.raises(Forbidden):
        await notes.list_notes(await accountant_user(), notes.NoteFilters(), after=None)
    meta = notes.metadata(await notes.get_note(note_id))
    assert "subjective" not in meta and meta["status"] == notes.SIGNED


# -- progress -------------------------------------------------------------------------------


async def test_progress_figures_come_from_the_signed_notes(clinic):
    tp = note_form.TriggerPointInput
    await signed_note(
        clinic, 10, pain_before=7, pain_after=4, symptom_per_week=3,
        trigger_points=[tp("upper_trapezius", "right", 3, True), tp("upper_trapezius", "left", 2),
                        tp("suboccipitals", "bilateral", 3, True)],
    )  # fmt: skip
    second = await signed_note(
        clinic, 6, pain_before=5, pain_after=3, symptom_per_week=2,
        trigger_points=[tp("upper_trapezius", "right", 2), tp("levator_scapulae", "left", 1)],
    )  # fmt: skip
    await signed_note(clinic, 2, pain_before=3, pain_after=1, symptom_per_week=1, trigger_points=[])
    # A draft does not count.
    draft_appointment = await given_session(clinic, 1)
    await notes.start_note(clinic.as_therapist(), draft_appointment,
                           replace(COMPLETE, pain_before=10))  # fmt: skip
    await notes.amend(
        clinic.as_therapist(), second, note_form.AmendmentInput("pain_after", 2, "", "Typo.")
    )

    progress = await notes.progress(clinic.client.id)
    sessions = progress.sessions
    assert [s["session_label"] for s in sessions] == [
        "Session 1 of 5", "Session 2 of 5", "Session 3 of 5",
    ]  # fmt: skip
    assert [(s["before"], s["after"], s["change"]) for s in sessions] == [
        (7, 4, -3), (5, 2, -3), (3, 1, -2),
    ]  # fmt: skip
    assert [s["pain_after_corrected"] for s in sessions] == [False, True, False]
    assert [s["symptom_per_week"] for s in sessions] == [3, 2, 1]
    assert [s["tp_count"] for s in sessions] == [3, 2, 0]
    assert [s["tp_average"] for s in sessions] == [Decimal("2.7"), Decimal("1.5"), None]
    assert [s["tp_reproduced"] for s in sessions] == [2, 0, 0]
    rows = {r.code: r.cells for r in progress.regions}
    assert list(rows) == ["upper_trapezius", "levator_scapulae", "suboccipitals"]
    assert rows["upper_trapezius"][0] == notes.TriggerCell(2, Decimal("2.5"))
    assert rows["upper_trapezius"][0].level == 3  # 2.5 rounds half up
    assert rows["upper_trapezius"][1] == notes.TriggerCell(1, Decimal("2.0"))
    assert rows["upper_trapezius"][2] is None
    assert rows["levator_scapulae"] == [None, notes.TriggerCell(1, Decimal("1.0")), None]
    assert rows["suboccipitals"] == [notes.TriggerCell(1, Decimal("3.0")), None, None]
    assert progress.summary == {
        "count": 3, "first_before": 7, "last_before": 3, "last_after": 1, "first_tp": 3,
        "last_tp": 0, "average_relief": Decimal("2.7"),
    }  # fmt: skip
    assert [s["sessions_total"] for s in progress.series] == [5]
    assert progress.series[0]["used"] == 4  # four sessions given (one note still a draft)


async def test_a_client_without_notes_has_an_empty_progress(clinic):
    progress = await notes.progress(clinic.client.id)
    assert progress.sessions == [] and progress.regions == [] and progress.summary == {"count": 0}


async def test_two_tabs_starting_the_same_note_make_one_note(clinic):
    import asyncio

    appointment_id = await given_session(clinic)
    results = await asyncio.gather(
        *[notes.start_note(clinic.as_therapist(), appointment_id, COMPLETE) for _ in range(4)],
        return_exceptions=True,
    )
    created = [r for r in results if isinstance(r, int)]
    assert len(created) == 1
    assert all(isinstance(r, notes.NoteExists) and r.note_id == created[0]
               for r in results if not isinstance(r, int))  # fmt: skip
    assert await TreatmentNote.count().run() == 1
    assert await NoteTriggerPoint.count().run() == 2
