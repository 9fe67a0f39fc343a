"""The client record as the front desk's hub, and writing to a client. No HTTP here.

Everything the desk needs about one client on one page, each part read through
its own context's readers and rules: packages and memberships with their
sessions left (``bookings.account.summary``, the client's own numbers),
appointments to come and past, purchases with their refunds, notes as the
notes' privacy rules allow (``notes.list_notes``: metadata only; the contents
stay behind the note's own page), whether the progress chart is open to the
reader, and the intake with its health flags. A manager sees only what
happened at their locations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from portal import access, db
from portal.audit import service as audit
from portal.auth.service import CurrentUser
from portal.bookings import account
from portal.bookings.reading import client_appointments
from portal.clients import service as clients
from portal.email import messages
from portal.errors import Forbidden, Invalid
from portal.fields import parse_id, require_text
from portal.locations.service import get_location
from portal.memberships import subscriptions
from portal.notes import service as notes
from portal.onetime import service as onetime
from portal.payments import listing
from portal.settings import Settings
from portal.timeutil import utcnow

PAST_APPOINTMENTS = 20
MESSAGED = "client_message"


def _visible(actor: CurrentUser, rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """The rows at locations ``actor`` may see."""
    scope = access.visible_locations(actor)
    return rows if scope is None else [r for r in rows if int(r[key]) in scope]


async def _purchases(receipts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The paid purchases with each one's refunds."""
    for row in receipts:
        row["refunds"] = await listing.refunds_of(int(row["sale_id"]))
    return receipts


async def _may_read_progress(actor: CurrentUser, client_id: int) -> bool:
    try:
        await notes.ensure_progress_access(actor, client_id)
    except Forbidden:
        return False
    return True


async def client_record(actor: CurrentUser, client_id: int) -> dict[str, Any]:
    """Everything the client's record shows ``actor`` (who may read the client)."""
    client = await clients.get_client_for(actor, client_id)
    now = utcnow()
    summary = await account.summary(client_id, now=now)
    past = [
        row
        for row in await client_appointments(client_id, limit=PAST_APPOINTMENTS + 50)
        if row["start_at"] <= now or row["status"] != "booked"
    ][:PAST_APPOINTMENTS]
    packages = _visible(actor, summary["packages"], "location_id")
    memberships = await subscriptions.list_memberships(actor, client_id=client_id, limit=20)
    for row in memberships:
        row["sessions_left"] = await subscriptions.sessions_left(int(row["id"]))
        row["status_label"] = subscriptions.STATUS_LABELS.get(row["status"], row["status"])
    receipts = _visible(actor, summary["receipts"], "location_id")
    note_page = await notes.list_notes(
        actor, notes.NoteFilters(client_id=client_id), after=None, limit=20
    )
    latest = await clients.current_intake(client_id)
    return {
        "client": client,
        "packages": packages,
        "memberships": memberships,
        "upcoming": _visible(actor, summary["appointments"], "location"),
        "past": _visible(actor, past, "location"),
        "purchases": await _purchases(receipts),
        "notes": note_page.rows,
        "progress": await _may_read_progress(actor, client_id),
        "intake": clients.present_intake(latest) if latest else None,
    }


# -- writing to a client ----------------------------------------------------------------


@dataclass(frozen=True)
class MessageInput:
    subject: str
    body: str
    location_id: int
    request_key: str | None


def parse_message(actor: CurrentUser, values: dict[str, str]) -> MessageInput:
    errors: dict[str, str] = {}
    subject = require_text(values, errors, "subject", label="Subject", max_length=150)
    body = require_text(values, errors, "body", label="Message", max_length=5000)
    location_id = parse_id(values.get("location_id", ""))
    if location_id is None or not access.can_write(actor, location_id):
        errors["location_id"] = "Choose the clinic the message comes from."
    if errors:
        raise Invalid(errors)
    assert location_id is not None
    return MessageInput(subject, body, location_id, onetime.parse(values.get(onetime.FIELD)))


@dataclass(frozen=True)
class Sent:
    message_id: int
    repeated: bool


async def message_client(
    settings: Settings,
    actor: CurrentUser,
    client_id: int,
    data: MessageInput,
    *,
    address: str = "",
) -> Sent:
    """Email the client through the outbox, signed with the clinic's name; audited.

    The form's one-time key makes a resent form one message: the key's claim,
    the audit record and the stored message commit together.
    """
    client = await clients.get_client_for(actor, client_id)
    access.ensure_write(actor, data.location_id)
    clinic = await get_location(data.location_id)
    async with db.transaction():
        earlier = await onetime.claim(data.request_key, user_id=actor.id, action=MESSAGED)
        if earlier:
            return Sent(int(earlier.partition(":")[2]), repeated=True)
        await audit.record(
            actor,
            "message",
            "client",
            client_id,
            after={"subject": data.subject, "location_id": data.location_id},
            address=address,
        )
        # Stored with the claim (deferred: no SMTP inside the transaction); the
        # caller delivers it once the answer is out.
        message_id = await messages.send_client_message(
            client["email"],
            name=client["name"] or client["email"],
            clinic_name=str(clinic["name"]),
            subject=data.subject,
            body=data.body,
            settings=settings,
            defer=True,
        )
        await onetime.finish(data.request_key, f"message:{message_id}")
    return Sent(message_id, repeated=False)
