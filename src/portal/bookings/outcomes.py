"""What becomes of a booked appointment: cancelled, completed, or a no-show.

Cancelling before the location's window returns the credit; later (late
cancel) or not coming (no-show) forfeits it unless a manager waives it with a
reason. Completing a session redeems the credit: its value moves from
deferred revenue at the clinic that sold it to service revenue at the clinic
that gave it, with the therapist named on the journal line. Each runs under
the lock of the sale whose credit the appointment holds.
"""

from __future__ import annotations

from datetime import datetime

from portal import access
from portal.audit import service as audit
from portal.auth.service import CLIENT, MANAGER, OWNER, THERAPIST, CurrentUser
from portal.bookings import notify
from portal.bookings.credits import (
    forfeit_or_return,
    redeem,
    sale_of_credit_locked,
    under_dispute,
)
from portal.bookings.reading import get_appointment, get_appointment_for
from portal.bookings.states import (
    BOOKED,
    CANCELLED,
    COMPLETED,
    LATE_CANCEL,
    NO_SHOW,
    is_late,
    leave_booked,
    not_booked_message,
)
from portal.errors import Forbidden, Invalid
from portal.onetime import service as onetime
from portal.settings import Settings
from portal.timeutil import utcnow


async def cancel(
    actor: CurrentUser,
    appointment_id: int,
    *,
    reason: str = "",
    waive: bool = False,
    waive_reason: str = "",
    now: datetime | None = None,
    notify_client: bool = True,
    settings: Settings | None = None,
    deferred: list[int] | None = None,
    request_key: str | None = None,
) -> str:
    """Cancel a booked appointment; returns ``cancelled`` or ``late_cancel``.

    Before the window the credit comes back. Inside it the credit is
    forfeited, unless a manager or owner waives the forfeit with a reason.
    The client is told once the cancellation has committed. The same form
    sent again (``request_key``) answers the first outcome and changes nothing.
    """
    now = now or utcnow()
    appointment = await get_appointment_for(actor, appointment_id, write=actor.role != CLIENT)
    if waive:
        if actor.role not in (OWNER, MANAGER):
            raise Forbidden("Only managers waive a late cancellation.")
        if not waive_reason.strip():
            raise Invalid({"waive_reason": "Say why the forfeit is waived."})
    async with sale_of_credit_locked(appointment["sale_session"]) as sale:
        first = await onetime.claim(request_key, user_id=actor.id, action="cancel", field="status")
        if first is not None:
            return first or CANCELLED  # the form was sent before: its outcome, once
        appointment = await get_appointment(appointment_id)
        if appointment["status"] != BOOKED:
            message = not_booked_message(appointment["status"], "cancelled")
            raise Invalid({"status": message})
        late = is_late(appointment, now)
        # No revenue is recognised on money under dispute: the credit goes back
        # (the frozen package cannot be booked until the dispute closes).
        forfeit = late and not waive and not under_dispute(sale)
        await leave_booked(
            appointment_id,
            LATE_CANCEL if late else CANCELLED,
            cancelled_at=now,
            cancel_reason=reason.strip()[:1000],
            waived=late and waive,
            waive_reason=waive_reason.strip()[:1000] if late and waive else "",
        )
        await forfeit_or_return(appointment, forfeit, "Late cancellation", at=now)
        await audit.record(
            actor,
            "late_cancel" if late else "cancel",
            "appointment",
            appointment_id,
            before={"status": BOOKED},
            after={
                "status": LATE_CANCEL if late else CANCELLED,
                "reason": reason.strip(),
                "credit": "forfeited" if forfeit else "returned",
                "waive_reason": waive_reason.strip() if late and waive else "",
            },
        )
        await onetime.finish(request_key, LATE_CANCEL if late else CANCELLED)
    if notify_client:
        note = waive_reason.strip() if late and waive else reason.strip()
        await notify.booking_cancelled(
            appointment_id,
            credit_returned=not forfeit,
            late=late,
            reason=note,
            settings=settings,
            deferred=deferred,
        )
    return LATE_CANCEL if late else CANCELLED


async def mark_no_show(
    actor: CurrentUser,
    appointment_id: int,
    *,
    waive: bool = False,
    waive_reason: str = "",
    now: datetime | None = None,
    request_key: str | None = None,
) -> None:
    now = now or utcnow()
    if actor.role not in (OWNER, MANAGER):
        raise Forbidden("Managers record no-shows.")
    appointment = await get_appointment_for(actor, appointment_id, write=True)
    if waive and not waive_reason.strip():
        raise Invalid({"waive_reason": "Say why the forfeit is waived."})
    async with sale_of_credit_locked(appointment["sale_session"]) as sale:
        if await onetime.claim(request_key, user_id=actor.id, action="no_show", field="status"):
            return  # recorded by the first submission of this form
        appointment = await get_appointment(appointment_id)
        if appointment["status"] != BOOKED or appointment["start_at"] > now:
            raise Invalid(
                {"status": "Only a booked appointment that has started can be a no-show."}
            )
        await leave_booked(
            appointment_id, NO_SHOW, waived=waive, waive_reason=waive_reason.strip()[:1000]
        )
        # As for a late cancel: no revenue on money under dispute, the credit goes back.
        forfeit = not waive and not under_dispute(sale)
        await forfeit_or_return(appointment, forfeit, "No-show")
        await audit.record(
            actor, "no_show", "appointment", appointment_id,
            before={"status": BOOKED},
            after={"status": NO_SHOW, "credit": "forfeited" if forfeit else "returned",
                   "waive_reason": waive_reason.strip()},
        )  # fmt: skip
        await onetime.finish(request_key, NO_SHOW)


async def complete(
    actor: CurrentUser,
    appointment_id: int,
    *,
    now: datetime | None = None,
    request_key: str | None = None,
) -> None:
    """The session was given: redeem its credit and recognise the revenue.

    Under the sale's lock: a session of a package whose payment is disputed
    cannot be recorded as given until the dispute closes. The same form sent
    again (``request_key``) changes nothing.
    """
    now = now or utcnow()
    appointment = await get_appointment(appointment_id)
    if actor.role == THERAPIST:
        if appointment["therapist_account"] != actor.id:
            raise Forbidden("This is not your appointment.")
    elif actor.role in (OWNER, MANAGER):
        access.ensure_write(actor, int(appointment["location"]))
    else:
        raise Forbidden("Therapists and managers complete sessions.")
    async with sale_of_credit_locked(appointment["sale_session"]) as sale:
        if await onetime.claim(request_key, user_id=actor.id, action="complete", field="status"):
            return  # recorded by the first submission of this form
        appointment = await get_appointment(appointment_id)
        if appointment["status"] != BOOKED:
            raise Invalid({"status": not_booked_message(appointment["status"], "completed")})
        if appointment["start_at"] > now:
            raise Invalid({"status": "A session cannot be completed before it starts."})
        if under_dispute(sale):
            raise Invalid(
                {
                    "status": "The client disputed the payment for this package with their "
                    "card issuer. The session cannot be recorded as given until the dispute "
                    "is settled."
                }
            )
        await leave_booked(appointment_id, COMPLETED, completed_at=now)
        await redeem(appointment)
        await audit.record(
            actor, "complete", "appointment", appointment_id,
            before={"status": BOOKED}, after={"status": COMPLETED},
        )  # fmt: skip
        await onetime.finish(request_key, COMPLETED)
