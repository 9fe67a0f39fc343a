"""The portal's messages, one function each, so callers cannot forget a variable.

Each function names the template's context variables as keyword arguments
(the template headers in ``templates/email/`` list them too) and passes
``defer``/``settings`` through to :func:`portal.email.service.send`. Times are
UTC datetimes; the templates show them in ``timezone`` (the location's zone).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from portal.email import calendar
from portal.email.service import send
from portal.settings import Settings, get_settings
from portal.timeutil import utcnow

WELCOME = "welcome"
PASSWORD_RESET = "password_reset"
SIGNUP_CONFIRM = "signup_confirm"
SIGNUP_EXISTS = "signup_exists"
RECEIPT = "receipt"
BOOKING_CONFIRMATION = "booking_confirmation"
CANCELLATION = "cancellation"
REMINDER = "reminder"
TWO_STEP = "two_step"
JOB_FAILED = "job_failed"
REFUND_NOTICE = "refund_notice"
CLIENT_INVITATION = "client_invitation"
STAFF_INVITATION = "staff_invitation"
TIME_OFF_DECISION = "time_off_decision"
CLIENT_MESSAGE = "client_message"
MEMBERSHIP_PAYMENT_FAILED = "membership_payment_failed"
MEMBERSHIP_GRACE_ENDING = "membership_grace_ending"
MEMBERSHIP_LINK = "membership_link"
KINDS = {
    WELCOME: "Welcome",
    PASSWORD_RESET: "Password reset",
    SIGNUP_CONFIRM: "Sign-up confirmation",
    SIGNUP_EXISTS: "Sign-up with a taken address",
    RECEIPT: "Receipt",
    BOOKING_CONFIRMATION: "Booking confirmation",
    CANCELLATION: "Cancellation",
    REMINDER: "Reminder",
    TWO_STEP: "Two-step sign-in",
    JOB_FAILED: "Job failed",
    REFUND_NOTICE: "Refund notice",
    CLIENT_INVITATION: "Invitation to a new client",
    STAFF_INVITATION: "Invitation to a new staff member",
    TIME_OFF_DECISION: "Time off approved or declined",
    CLIENT_MESSAGE: "Message to a client",
    MEMBERSHIP_PAYMENT_FAILED: "Membership payment failed",
    MEMBERSHIP_GRACE_ENDING: "Membership grace period ending",
    MEMBERSHIP_LINK: "Membership payment link",
}


@dataclass(frozen=True)
class ReceiptLine:
    description: str
    amount_cents: int


@dataclass(frozen=True)
class Appointment:
    """What the booking messages say about one appointment."""

    appointment_id: int
    service_name: str
    therapist_name: str
    location_name: str
    location_address: str
    starts_at: datetime
    ends_at: datetime
    timezone: str

    def context(self) -> dict[str, Any]:
        """Every field, by its name: the booking templates name their variables so."""
        return asdict(self)


async def send_welcome(
    to: str,
    *,
    name: str,
    settings: Settings | None = None,
    defer: bool = False,
) -> int:
    return await send(to, WELCOME, {"name": name}, WELCOME, settings=settings, defer=defer)


async def send_invitation(
    to: str,
    kind: str,
    *,
    name: str,
    set_password_url: str,
    valid_days: int,
    settings: Settings | None = None,
    defer: bool = False,
) -> int:
    """An account made for someone (a client at the front desk: ``CLIENT_INVITATION``;
    staff: ``STAFF_INVITATION``); its holder chooses their password through this link."""
    context = {"name": name, "set_password_url": set_password_url, "valid_days": valid_days}
    return await send(to, kind, context, kind, settings=settings, defer=defer)


async def send_time_off_decision(
    to: str,
    *,
    name: str,
    time_off: str,
    reason: str,
    approved: bool,
    settings: Settings | None = None,
    defer: bool = False,
) -> int:
    """A manager's answer to time off the therapist requested."""
    context = {"name": name, "time_off": time_off, "reason": reason, "approved": approved}
    return await send(
        to, TIME_OFF_DECISION, context, TIME_OFF_DECISION, settings=settings, defer=defer
    )


async def send_client_message(
    to: str,
    *,
    name: str,
    clinic_name: str,
    subject: str,
    body: str,
    dedupe_key: str | None = None,
    settings: Settings | None = None,
    defer: bool = False,
) -> int:
    """What staff wrote to a client from the client's record, signed with the clinic's name."""
    return await send(
        to,
        CLIENT_MESSAGE,
        {"name": name, "clinic_name": clinic_name, "subject": subject, "body": body},
        CLIENT_MESSAGE,
        dedupe_key=dedupe_key,
        settings=settings,
        defer=defer,
    )


async def send_password_reset(
    to: str,
    *,
    name: str,
    reset_url: str,
    valid_minutes: int,
    settings: Settings | None = None,
    defer: bool = False,
) -> int:
    return await send(
        to,
        PASSWORD_RESET,
        {"name": name, "reset_url": reset_url, "valid_minutes": valid_minutes},
        PASSWORD_RESET,
        settings=settings,
        defer=defer,
    )


async def send_signup_confirmation(
    to: str,
    *,
    name: str,
    confirm_url: str,
    valid_hours: int,
    settings: Settings | None = None,
    defer: bool = False,
) -> int:
    return await send(
        to,
        SIGNUP_CONFIRM,
        {"name": name, "confirm_url": confirm_url, "valid_hours": valid_hours},
        SIGNUP_CONFIRM,
        settings=settings,
        defer=defer,
    )


async def send_signup_exists(
    to: str,
    *,
    name: str,
    login_url: str,
    reset_url: str,
    settings: Settings | None = None,
    defer: bool = False,
) -> int:
    return await send(
        to,
        SIGNUP_EXISTS,
        {"name": name, "login_url": login_url, "reset_url": reset_url},
        SIGNUP_EXISTS,
        settings=settings,
        defer=defer,
    )


async def send_receipt(
    to: str,
    *,
    name: str,
    receipt_number: str,
    location_name: str,
    paid_at: datetime,
    timezone: str,
    currency: str,
    lines: list[ReceiptLine],
    tax_cents: int,
    total_cents: int,
    payment_method: str = "",
    settings: Settings | None = None,
    defer: bool = False,
) -> int:
    """One receipt per ``receipt_number``: a repeated call (a webhook retried) sends nothing."""
    return await send(
        to,
        RECEIPT,
        {
            "name": name,
            "receipt_number": receipt_number,
            "location_name": location_name,
            "paid_at": paid_at,
            "timezone": timezone,
            "currency": currency,
            "lines": lines,
            "tax_cents": tax_cents,
            "total_cents": total_cents,
            "payment_method": payment_method,
        },
        RECEIPT,
        dedupe_key=f"receipt:{receipt_number}",
        settings=settings,
        defer=defer,
    )


async def send_refund_notice(
    to: str,
    *,
    name: str,
    refund_id: int,
    receipt_number: str,
    item_name: str,
    location_name: str,
    refunded_at: datetime,
    timezone: str,
    currency: str,
    amount_cents: int,
    sessions_revoked: int,
    to_card: bool,
    settings: Settings | None = None,
    defer: bool = False,
) -> int:
    """One notice per refund: a repeated call (a webhook retried, a form resent) sends nothing."""
    return await send(
        to,
        REFUND_NOTICE,
        {
            "name": name,
            "receipt_number": receipt_number,
            "item_name": item_name,
            "location_name": location_name,
            "refunded_at": refunded_at,
            "timezone": timezone,
            "currency": currency,
            "amount_cents": amount_cents,
            "sessions_revoked": sessions_revoked,
            "to_card": to_card,
        },
        REFUND_NOTICE,
        dedupe_key=f"refund:{refund_id}",
        settings=settings,
        defer=defer,
    )


async def send_booking_confirmation(
    to: str,
    *,
    name: str,
    appointment: Appointment,
    cancellation_window_hours: int,
    manage_url: str,
    settings: Settings | None = None,
    defer: bool = False,
) -> int:
    """One confirmation per appointment and start time (a moved appointment gets a new one),
    with the appointment as a calendar entry (``appointment.ics``)."""
    settings = settings or get_settings()
    where = ", ".join(p for p in (appointment.location_name, appointment.location_address) if p)
    entry = calendar.appointment_entry(
        appointment_id=appointment.appointment_id,
        summary=f"{appointment.service_name} with {appointment.therapist_name}",
        starts_at=appointment.starts_at,
        ends_at=appointment.ends_at,
        location=where,
        description=(
            f"{appointment.service_name} at {appointment.location_name} "
            f"(times in {appointment.timezone}). Cancel or see it: {manage_url}"
        ),
        base_url=settings.base_url,
        now=utcnow(),
    )
    return await send(
        to,
        BOOKING_CONFIRMATION,
        {
            "name": name,
            **appointment.context(),
            "cancellation_window_hours": cancellation_window_hours,
            "manage_url": manage_url,
        },
        BOOKING_CONFIRMATION,
        dedupe_key=f"booking:{appointment.appointment_id}:{appointment.starts_at.isoformat()}",
        settings=settings,
        defer=defer,
        attachments=[entry],
    )


async def send_cancellation(
    to: str,
    *,
    name: str,
    appointment: Appointment,
    credit_returned: bool,
    late: bool,
    reason: str = "",
    book_url: str = "",
    settings: Settings | None = None,
    defer: bool = False,
) -> int:
    return await send(
        to,
        CANCELLATION,
        {
            "name": name,
            **appointment.context(),
            "credit_returned": credit_returned,
            "late": late,
            "reason": reason,
            "book_url": book_url,
        },
        CANCELLATION,
        settings=settings,
        defer=defer,
    )


async def send_reminder(
    to: str,
    *,
    name: str,
    appointment: Appointment,
    manage_url: str,
    settings: Settings | None = None,
    defer: bool = False,
) -> int:
    """At most one reminder per appointment and start time (a moved appointment gets a new one).

    The caller checks the client's preference first
    (``portal.clients.service.wants_email_reminders``).
    """
    key = f"reminder:{appointment.appointment_id}:{appointment.starts_at.isoformat()}"
    return await send(
        to,
        REMINDER,
        {"name": name, **appointment.context(), "manage_url": manage_url},
        REMINDER,
        dedupe_key=key,
        settings=settings,
        defer=defer,
    )


async def send_two_step_notice(
    to: str,
    *,
    name: str,
    event: str,
    happened_at: datetime,
    settings: Settings | None = None,
    defer: bool = False,
) -> int:
    """Tell the account's owner that its two-step sign-in changed (or a recovery code was used)."""
    return await send(
        to,
        TWO_STEP,
        {"name": name, "event": event, "happened_at": happened_at},
        TWO_STEP,
        settings=settings,
        defer=defer,
    )


async def send_job_failed(
    to: str,
    *,
    name: str,
    job_label: str,
    error: str,
    jobs_url: str,
    run_id: int,
    settings: Settings | None = None,
) -> int:
    """Tell an owner a job failed; one message per run and owner, however often it is retried."""
    return await send(
        to,
        JOB_FAILED,
        {"name": name, "job_label": job_label, "error": error, "jobs_url": jobs_url},
        JOB_FAILED,
        dedupe_key=f"job-failed:{run_id}:{to.strip().lower()}",
        settings=settings,
    )


@dataclass(frozen=True)
class MembershipDue:
    """What the messages about a membership's unpaid renewal say."""

    membership_id: int
    plan_name: str
    location_name: str
    amount_cents: int
    currency: str
    grace_until: datetime
    timezone: str
    manage_url: str


async def send_membership_payment(
    to: str,
    *,
    name: str,
    due: MembershipDue,
    reminder: bool,
    dedupe: str,
    settings: Settings | None = None,
    defer: bool = False,
) -> int:
    """A renewal failed (``reminder``: its grace period ends soon); once per ``dedupe``
    (the failed invoice, or the grace period's end)."""
    kind = MEMBERSHIP_GRACE_ENDING if reminder else MEMBERSHIP_PAYMENT_FAILED
    return await send(
        to,
        "membership_payment",
        {"name": name, "reminder": reminder, **asdict(due)},
        kind,
        dedupe_key=f"{kind}:{due.membership_id}:{dedupe}",
        settings=settings,
        defer=defer,
    )


async def send_membership_link(
    to: str,
    *,
    name: str,
    plan_name: str,
    location_name: str,
    url: str,
    membership_id: int,
    settings: Settings | None = None,
) -> int:
    """The Checkout link of a membership started at the front desk; once per membership."""
    return await send(
        to,
        MEMBERSHIP_LINK,
        {"name": name, "plan_name": plan_name, "location_name": location_name, "url": url},
        MEMBERSHIP_LINK,
        dedupe_key=f"{MEMBERSHIP_LINK}:{membership_id}",
        settings=settings,
    )
