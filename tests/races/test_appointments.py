"""Appointment actions clicked at once: one completion, one cancellation, one winner.

Each person's form carries its own one-time key; each person clicks several
times. The key that won is answered with the appointment page every time; the
other person's clicks are refused with a message (409/422), never a 5xx.
"""

from __future__ import annotations

import secrets
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from portal.bookings.tables import Appointment
from portal.sales.tables import SaleSession
from tests.races.conftest import Clinic, at_once, book, describe, local_ten_am
from tests.races.invariants import assert_whole, rows
from tests.servers import Browser, Portal, refusal_message

CLICKS = 3  # per person; two people, so six requests at once


async def _appointment(appointment_id: int) -> dict[str, Any]:
    row = await Appointment.select().where(Appointment.id == appointment_id).first().run()
    assert row is not None
    return row


async def _credit(appointment: dict[str, Any]) -> dict[str, Any]:
    row = (
        await SaleSession.select()
        .where(SaleSession.id == appointment["sale_session"])
        .first()
        .run()
    )
    assert row is not None
    return row


async def _journal_keys(appointment_id: int) -> list[str]:
    found = await rows(
        "SELECT event_key FROM journal_entry WHERE event_key LIKE {} ORDER BY id",
        f"appointment:{appointment_id}:%",
    )
    return [str(r["event_key"]) for r in found]


async def _audited(appointment_id: int) -> list[str]:
    found = await rows(
        "SELECT action FROM audit_log WHERE entity = 'appointment' AND entity_id = {} ORDER BY id",
        str(appointment_id),
    )
    return [str(r["action"]) for r in found]


async def _race(
    sends: list[tuple[Browser, str, dict[str, str]]],
) -> list[tuple[int, httpx.Response]]:
    """Each (browser, action, form) clicked CLICKS times, all at once, alternating processes."""
    jobs = [
        (n, browser, action, form)
        for _ in range(CLICKS)
        for n, (browser, action, form) in enumerate(sends)
    ]
    answers = await at_once(
        browser.post(action, form, process=i) for i, (_, browser, action, form) in enumerate(jobs)
    )
    return [(n, answer) for (n, *_), answer in zip(jobs, answers, strict=True)]


def _one_winner(answers: list[tuple[int, httpx.Response]], page: str) -> int:
    """Exactly one form won: all its clicks answered with ``page``; all others refused."""
    everything = describe(a for _, a in answers)
    assert not [a for _, a in answers if a.status_code >= 500], everything
    by_form: dict[int, list[httpx.Response]] = {}
    for n, answer in answers:
        by_form.setdefault(n, []).append(answer)
    winners = [
        n for n, got in by_form.items()
        if all((a.status_code, a.headers.get("location")) == (303, page) for a in got)
    ]  # fmt: skip
    assert len(winners) == 1, f"one form wins, every click of it answered with {page}: {everything}"
    for n, got in by_form.items():
        if n == winners[0]:
            continue
        for answer in got:
            assert answer.status_code in (409, 422), everything
            assert refusal_message(answer.text), f"refused without a message: {answer.text[:500]}"
    return winners[0]


def _assert_keys(forms: list[dict[str, str]]) -> None:
    keys = [form.get("request_key") for form in forms]
    assert all(keys) and len(set(keys)) == len(keys), (
        f"each form carries its own one-time key: {keys}"
    )


async def test_completed_by_therapist_and_manager_at_once(portal: Portal, clinic: Clinic) -> None:
    appointment_id = await book(clinic, local_ten_am(-1))  # yesterday: it has started
    path = f"/appointments/{appointment_id}"
    therapist = await portal.signed_in(clinic.therapist, "therapist")
    manager = await portal.signed_in(clinic.manager, "manager")
    forms = [await b.form(path, f"{path}/complete") for b in (therapist, manager)]

    answers = await _race(
        [(therapist, f"{path}/complete", forms[0]), (manager, f"{path}/complete", forms[1])]
    )

    appointment = await _appointment(appointment_id)
    assert appointment["status"] == "completed"
    assert (await _credit(appointment))["state"] == "redeemed"
    assert await _journal_keys(appointment_id) == [
        f"appointment:{appointment_id}:session_completed"
    ]
    assert [a for a in await _audited(appointment_id) if a == "complete"] == ["complete"]
    await assert_whole(portal)
    _one_winner(answers, path)
    _assert_keys(forms)


async def test_cancelled_by_client_and_manager_at_once(portal: Portal, clinic: Clinic) -> None:
    appointment_id = await book(clinic, local_ten_am(3))  # outside the 24-hour window
    path = f"/appointments/{appointment_id}"
    client = await portal.signed_in(clinic.client, "client")
    manager = await portal.signed_in(clinic.manager, "manager")
    forms = []
    for browser in (client, manager):
        form = await browser.form(path, f"{path}/cancel")
        form["reason"] = f"Cannot make it ({browser.name})"
        forms.append(form)
    before = await _credit(await _appointment(appointment_id))
    assert before["state"] == "held"

    answers = await _race(
        [(client, f"{path}/cancel", forms[0]), (manager, f"{path}/cancel", forms[1])]
    )

    appointment = await _appointment(appointment_id)
    assert appointment["status"] == "cancelled"
    credit = await _credit(appointment)
    assert (credit["state"], credit["appointment_id"]) == ("available", None), credit
    open_credits = (
        await SaleSession.count()
        .where((SaleSession.sale == before["sale"]) & (SaleSession.state == "available"))
        .run()
    )
    assert open_credits == 5, "the credit came back once; the package is whole again"
    assert await _journal_keys(appointment_id) == []
    assert [a for a in await _audited(appointment_id) if "cancel" in a] == ["cancel"]
    await assert_whole(portal)
    _one_winner(answers, path)
    _assert_keys(forms)


async def test_complete_races_cancel(portal: Portal, clinic: Clinic) -> None:
    """The therapist marks it completed while a manager cancels it (inside the window)."""
    appointment_id = await book(clinic, local_ten_am(-1))
    path = f"/appointments/{appointment_id}"
    therapist = await portal.signed_in(clinic.therapist, "therapist")
    manager = await portal.signed_in(clinic.manager, "manager")
    complete = await therapist.form(path, f"{path}/complete")
    # The manager's page was opened before the session started, when it still
    # showed the cancel form: the same fields (this session's CSRF token, a
    # fresh one-time key as every money form carries), sent now.
    page = await manager.form(path, f"{path}/complete")
    cancel = {"_csrf_token": page["_csrf_token"], "reason": "Client called in sick"}
    if page.get("request_key"):
        cancel["request_key"] = secrets.token_urlsafe(24)

    answers = await _race(
        [(therapist, f"{path}/complete", complete), (manager, f"{path}/cancel", cancel)]
    )

    appointment = await _appointment(appointment_id)
    credit = await _credit(appointment)
    outcome = {
        "completed": ("redeemed", "session_completed"),
        "late_cancel": ("forfeited", "session_forfeited"),
    }
    assert appointment["status"] in outcome, appointment["status"]
    state, kind = outcome[appointment["status"]]
    assert credit["state"] == state, credit
    assert await _journal_keys(appointment_id) == [f"appointment:{appointment_id}:{kind}"]
    changes = [
        a for a in await _audited(appointment_id) if a in ("complete", "cancel", "late_cancel")
    ]
    assert len(changes) == 1, changes
    await assert_whole(portal)
    winner = _one_winner(answers, path)
    assert winner == (0 if appointment["status"] == "completed" else 1)
    _assert_keys([complete, page])


async def test_a_client_reschedule_races_a_managers_move_into_the_same_time(
    portal: Portal, clinic: Clinic
) -> None:
    """The client reschedules one appointment into 14:00 while a manager moves another
    into the same 14:00 (one therapist, one room): one of them gets it."""
    from datetime import timedelta

    from tests.races.conftest import ZONE

    first = await book(clinic, local_ten_am(3))
    second = await book(clinic, local_ten_am(4))
    target = local_ten_am(3) + timedelta(hours=4)
    local = target.astimezone(ZoneInfo(ZONE))
    client = await portal.signed_in(clinic.client, "client")
    manager = await portal.signed_in(clinic.manager, "manager")
    sends = []
    for browser, appointment_id in ((client, first), (manager, second)):
        action = f"/appointments/{appointment_id}/move"
        form = await browser.form(action, action)
        form.update(day=local.date().isoformat(), time=local.strftime("%H:%M"), therapist="")
        form.pop("room", None)
        sends.append((browser, action, form))

    answers = await _race(sends)

    everything = describe(a for _, a in answers)
    assert not [a for _, a in answers if a.status_code >= 500], everything
    at_target = [
        a for a in (await _appointment(first), await _appointment(second))
        if a["start_at"] == target
    ]  # fmt: skip
    assert len(at_target) == 1, everything
    winner = 0 if at_target[0]["id"] == first else 1
    for n, answer in answers:
        if n == winner:
            assert answer.status_code == 303, everything
        else:
            assert answer.status_code in (409, 422), everything
            assert refusal_message(answer.text), answer.text[:500]
    moved = "reschedule" if winner == 0 else "move"
    assert moved in await _audited(at_target[0]["id"])
    assert (await _credit(at_target[0]))["state"] == "held"
    await assert_whole(portal)
