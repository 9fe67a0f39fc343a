"""Outgoing email. No HTTP here.

``send`` renders ``templates/email/<template>.txt`` (and ``.html`` when it
exists), stores the message in the outbox table and, when ``SMTP_HOST`` is
configured, delivers it through that server. Without an SMTP server (the
embedded default) the outbox is where messages stay: owners read them at
``/outbox``. Every message is kept either way, with its status.

A text template's first line is ``Subject: …``; the rest is the body. The
HTML template gets the same context plus ``subject``.

Call ``send`` after the transaction that caused the message has committed: it
writes in its own transaction, and SMTP delivery (a network round trip) must
not hold a database lock. ``defer=True`` stores the message and leaves the
delivery to ``deliver(message_id)``, e.g. in a response's background task, so
a page answers at the same speed whether or not a message went out.
"""

from __future__ import annotations

import asyncio
import json
import re
import smtplib
import ssl
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from portal import db, progress, records
from portal.email.tables import OutboxMessage
from portal.formatting import local_dt, money
from portal.pagination import Page, decode_cursor, encode_cursor
from portal.settings import Settings, get_settings
from portal.timeutil import utcnow

QUEUED = "queued"
SENDING = "sending"
SENT = "sent"
FAILED = "failed"
STATUSES = (QUEUED, SENDING, SENT, FAILED)
# Each status reads as its own name on the outbox page.
STATUS_LABELS = {status: status.capitalize() for status in STATUSES}
SMTP = "smtp"
OUTBOX = "outbox"

SMTP_TIMEOUT_SECONDS = 20
_TEMPLATE_RE = re.compile(r"^[a-z][a-z0-9_]{0,59}$")
_ADDRESS_RE = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")


class EmailError(ValueError):
    """A message that cannot be built (bad address, unknown template)."""


@dataclass(frozen=True)
class Attachment:
    """A text file sent with a message (a calendar entry: ``text/calendar``)."""

    filename: str
    content_type: str
    content: str


def _attachments_json(attachments: list[Attachment] | None) -> str:
    if not attachments:
        return ""
    return json.dumps([a.__dict__ for a in attachments])


def attachments_of(stored: str) -> list[Attachment]:
    """The attachments stored with a message."""
    return [Attachment(**a) for a in json.loads(stored)] if stored else []


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


# -- rendering -----------------------------------------------------------------


@lru_cache(maxsize=4)
def _environment(templates_dir: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir),
        # Text bodies are plain text; only the HTML alternative is escaped.
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html",), default_for_string=False, default=False
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["money"] = money
    env.filters["local_dt"] = local_dt
    return env


def render(template: str, context: dict[str, Any], settings: Settings | None = None) -> Rendered:
    """Subject, text body and (optional) HTML body of one message."""
    settings = settings or get_settings()
    if not _TEMPLATE_RE.match(template):
        raise EmailError(f"Bad email template name {template!r}")
    env = _environment(str(settings.templates_dir))
    values = {"portal_name": settings.clinic_name, "base_url": settings.base_url, **context}
    try:
        text = env.get_template(f"email/{template}.txt").render(values)
    except jinja2.TemplateNotFound as exc:
        raise EmailError(f"No email template email/{template}.txt") from exc
    text = text.lstrip()
    first, _, body = text.partition("\n")
    if not first.startswith("Subject:"):
        raise EmailError(f"email/{template}.txt must start with a 'Subject:' line")
    subject = " ".join(first[len("Subject:") :].split())
    html = ""
    html_path = Path(settings.templates_dir) / "email" / f"{template}.html"
    if html_path.exists():
        html = env.get_template(f"email/{template}.html").render({**values, "subject": subject})
    return Rendered(subject=subject[:255], text=body.strip() + "\n", html=html)


def _clean_address(to: str) -> str:
    address = to.strip()
    if not _ADDRESS_RE.match(address) or len(address) > 254:
        raise EmailError(f"Not a single email address: {to!r}")
    return address


# -- sending -------------------------------------------------------------------


async def send(
    to: str,
    template: str,
    context: dict[str, Any],
    kind: str,
    dedupe_key: str | None = None,
    *,
    settings: Settings | None = None,
    defer: bool = False,
    attachments: list[Attachment] | None = None,
) -> int:
    """Store one message (and deliver it when SMTP is configured); its outbox id.

    With a ``dedupe_key`` already used, nothing new is stored or sent and the
    earlier message's id is returned, except that an earlier *failed*
    delivery is tried again (still at most one message is ever sent).
    """
    settings = settings or get_settings()
    address = _clean_address(to)
    if dedupe_key is not None:
        dedupe_key = dedupe_key[:200]
        existing = await _by_dedupe_key(dedupe_key)
        if existing is not None:
            return await _retry_failed(existing, settings, defer=defer)
    rendered = render(template, context, settings)
    transport = SMTP if settings.smtp_host else OUTBOX
    try:
        async with db.transaction():
            message_id = await db.insert_row(
                OutboxMessage(
                    created_at=utcnow(),
                    to_address=address,
                    subject=rendered.subject,
                    template=template,
                    kind=kind[:40],
                    body_text=rendered.text,
                    body_html=rendered.html,
                    transport=transport,
                    status=QUEUED,
                    error="",
                    attempts=0,
                    sent_at=None,
                    message_id="",
                    dedupe_key=dedupe_key,
                    attachments=_attachments_json(attachments),
                )
            )
    except Exception as exc:
        # Another process stored the same deduplicated message first.
        if dedupe_key is not None and db.is_unique_violation(exc):
            existing = await _by_dedupe_key(dedupe_key)
            if existing is not None:
                return int(existing["id"])
        raise
    if transport == SMTP and not defer:
        await deliver(message_id, settings=settings)
    return message_id


async def _by_dedupe_key(key: str) -> dict[str, Any] | None:
    row: dict[str, Any] | None = (
        await OutboxMessage.select(OutboxMessage.id, OutboxMessage.status, OutboxMessage.transport)
        .where(OutboxMessage.dedupe_key == key)
        .first()
        .run()
    )
    return row


async def _retry_failed(existing: dict[str, Any], settings: Settings, *, defer: bool) -> int:
    message_id = int(existing["id"])
    if existing["status"] != FAILED or not settings.smtp_host:
        return message_id
    reclaimed = (
        await OutboxMessage.update({OutboxMessage.status: QUEUED, OutboxMessage.transport: SMTP})
        .where((OutboxMessage.id == message_id) & (OutboxMessage.status == FAILED))
        .returning(OutboxMessage.id)
        .run()
    )
    if reclaimed and not defer:
        await deliver(message_id, settings=settings)
    return message_id


async def deliver(message_id: int, *, settings: Settings | None = None) -> str:
    """Send a queued SMTP message; returns its status afterwards.

    The message is claimed with a compare-and-set (queued → sending), so two
    workers never send it twice. Outbox-only messages stay as they are.
    """
    settings = settings or get_settings()
    claimed = (
        await OutboxMessage.update(
            {
                OutboxMessage.status: SENDING,
                OutboxMessage.attempts: OutboxMessage.attempts + 1,
                OutboxMessage.last_attempt_at: utcnow(),
            }
        )
        .where(
            (OutboxMessage.id == message_id)
            & (OutboxMessage.status == QUEUED)
            & (OutboxMessage.transport == SMTP)
        )
        .returning(
            OutboxMessage.id,
            OutboxMessage.to_address,
            OutboxMessage.subject,
            OutboxMessage.body_text,
            OutboxMessage.body_html,
            OutboxMessage.attachments,
        )
        .run()
    )
    if not claimed:
        status = await db.value_where(OutboxMessage.status, OutboxMessage.id == message_id)
        return str(status or "")
    row = claimed[0]
    message = build_message(
        settings,
        row["to_address"],
        row["subject"],
        row["body_text"],
        row["body_html"],
        attachments_of(row["attachments"]),
    )
    try:
        if not settings.smtp_host:
            raise smtplib.SMTPException("No SMTP server is configured (SMTP_HOST).")
        await asyncio.to_thread(_smtp_send, settings, message)
    except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
        error = f"{type(exc).__name__}: {exc}"[:1000]
        await (
            OutboxMessage.update({OutboxMessage.status: FAILED, OutboxMessage.error: error})
            .where(OutboxMessage.id == message_id)
            .run()
        )
        return FAILED
    await (
        OutboxMessage.update(
            {
                OutboxMessage.status: SENT,
                OutboxMessage.error: "",
                OutboxMessage.sent_at: utcnow(),
                OutboxMessage.message_id: str(message["Message-ID"])[:255],
            }
        )
        .where(OutboxMessage.id == message_id)
        .run()
    )
    return SENT


# -- the outbox job: delivery that did not happen on the spot, and retries -------

# A failed delivery is tried again after 2, 4, 8, 16 … minutes (doubling from the
# attempt count), at most MAX_ATTEMPTS times in all; then it stays failed for
# an owner to read in the outbox.
MAX_ATTEMPTS = 6
RETRY_BASE_MINUTES = 1
# A message stored with ``defer=True`` is delivered by the page's background
# task; the job only takes those still queued after this long.
QUEUED_GRACE = timedelta(minutes=1)
# A message "sending" for this long was being sent by a process that stopped
# mid-conversation. Whether the server accepted it cannot be known, so it is
# marked failed (never sent twice) and left for an owner.
INTERRUPTED_AFTER = timedelta(minutes=15)
INTERRUPTED_ERROR = (
    "Delivery was interrupted (the process sending it stopped); it may or may not "
    "have been sent, so it is not tried again automatically."
)


@dataclass(frozen=True)
class DeliveryRun:
    sent: int
    failed: int
    interrupted: int
    gave_up: int  # failed for the last time: MAX_ATTEMPTS reached

    def summary(self) -> str:
        parts = [f"{self.sent} sent", f"{self.failed} failed"]
        if self.gave_up:
            parts.append(f"{self.gave_up} given up after {MAX_ATTEMPTS} attempts")
        if self.interrupted:
            parts.append(f"{self.interrupted} interrupted mid-delivery (see the outbox)")
        return "Outbox: " + ", ".join(parts) + "."


def retry_due_at(attempts: int, last_attempt_at: datetime) -> datetime:
    """When a message that failed ``attempts`` times may be tried again (back-off)."""
    return last_attempt_at + timedelta(minutes=RETRY_BASE_MINUTES * 2 ** max(0, attempts))


async def deliver_due(
    *, now: datetime | None = None, settings: Settings | None = None
) -> DeliveryRun:
    """Deliver what is queued for SMTP and retry failed deliveries whose back-off has passed.

    Safe with any number of runs at once: each message is claimed by
    :func:`deliver`'s compare-and-set. Reports its progress.
    """
    settings = settings or get_settings()
    now = now or utcnow()
    interrupted = (
        await OutboxMessage.update(
            {
                OutboxMessage.status: FAILED,
                OutboxMessage.error: INTERRUPTED_ERROR,
                OutboxMessage.attempts: MAX_ATTEMPTS,
            }
        )
        .where(
            (OutboxMessage.status == SENDING)
            & (OutboxMessage.last_attempt_at < now - INTERRUPTED_AFTER)
        )
        .returning(OutboxMessage.id)
        .run()
    )
    if not settings.smtp_host:
        return DeliveryRun(sent=0, failed=0, interrupted=len(interrupted), gave_up=0)
    rows = (
        await OutboxMessage.select(
            OutboxMessage.id,
            OutboxMessage.status,
            OutboxMessage.attempts,
            OutboxMessage.last_attempt_at,
            OutboxMessage.created_at,
        )
        .where(
            (OutboxMessage.transport == SMTP)
            & (
                (
                    (OutboxMessage.status == QUEUED)
                    & (OutboxMessage.created_at <= now - QUEUED_GRACE)
                )
                | ((OutboxMessage.status == FAILED) & (OutboxMessage.attempts < MAX_ATTEMPTS))
            )
        )
        .order_by(OutboxMessage.id)
        .run()
    )
    due = [
        row
        for row in rows
        if row["status"] == QUEUED
        or retry_due_at(int(row["attempts"]), row["last_attempt_at"] or row["created_at"]) <= now
    ]
    sent = failed = gave_up = 0
    for done, row in enumerate(due):
        await progress.report(done, len(due), "Delivering email")
        message_id = int(row["id"])
        if row["status"] == FAILED:
            requeued = (
                await OutboxMessage.update({OutboxMessage.status: QUEUED})
                .where((OutboxMessage.id == message_id) & (OutboxMessage.status == FAILED))
                .returning(OutboxMessage.id)
                .run()
            )
            if not requeued:
                continue  # taken by another run meanwhile
        status = await deliver(message_id, settings=settings)
        if status == SENT:
            sent += 1
        elif status == FAILED:
            failed += 1
            gave_up += int(row["attempts"]) + 1 >= MAX_ATTEMPTS
    await progress.report(len(due), len(due), "Delivering email")
    return DeliveryRun(sent=sent, failed=failed, interrupted=len(interrupted), gave_up=gave_up)


def build_message(
    settings: Settings,
    to: str,
    subject: str,
    text: str,
    html: str = "",
    attachments: list[Attachment] | None = None,
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    domain = parseaddr(settings.smtp_from)[1].rpartition("@")[2] or "localhost"
    message["Message-ID"] = make_msgid(domain=domain)
    # Tells mail servers and auto-responders that no person typed this.
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text)
    if html:
        message.add_alternative(html, subtype="html")
    for attachment in attachments or []:
        maintype, _, subtype = attachment.content_type.partition("/")
        message.add_attachment(
            attachment.content.encode(),
            maintype=maintype,
            subtype=subtype,
            filename=attachment.filename,
        )
    return message


def _smtp_send(settings: Settings, message: EmailMessage) -> None:
    """Blocking SMTP conversation; runs in a worker thread."""
    context = ssl.create_default_context()
    if settings.smtp_port == 465:
        with smtplib.SMTP_SSL(
            settings.smtp_host, settings.smtp_port, timeout=SMTP_TIMEOUT_SECONDS, context=context
        ) as smtp:
            if settings.smtp_user:
                smtp.login(settings.smtp_user, settings.smtp_password)
            smtp.send_message(message)
        return
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=SMTP_TIMEOUT_SECONDS) as smtp:
        if settings.smtp_starttls:
            smtp.starttls(context=context)
        if settings.smtp_user:
            smtp.login(settings.smtp_user, settings.smtp_password)
        smtp.send_message(message)


# -- reading the outbox --------------------------------------------------------


async def list_messages(
    *,
    search: str = "",
    status: str = "",
    kind: str = "",
    after: str | None = None,
    limit: int = 50,
) -> Page:
    """Newest first, by keyset on the id (the cursor is the last id shown)."""
    limit = max(1, min(limit, 200))
    query = OutboxMessage.select(
        OutboxMessage.id,
        OutboxMessage.created_at,
        OutboxMessage.to_address,
        OutboxMessage.subject,
        OutboxMessage.kind,
        OutboxMessage.transport,
        OutboxMessage.status,
        OutboxMessage.sent_at,
    )
    if search:
        query = query.where(OutboxMessage.to_address.ilike(f"%{search.strip().lower()}%"))
    if status in STATUSES:
        query = query.where(OutboxMessage.status == status)
    if kind:
        query = query.where(OutboxMessage.kind == kind)
    position = decode_cursor(after)
    if position is not None:
        query = query.where(OutboxMessage.id < position[1])
    rows = await query.order_by(OutboxMessage.id, ascending=False).limit(limit + 1).run()
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1]["id"], rows[-1]["id"]) if more and rows else None
    return Page(rows=rows, next_cursor=next_cursor)


# Password-reset and sign-up confirmation links are bearer secrets for their
# recipient's mailbox only: the outbox pages show these instead (SMTP delivery
# still sends the real links).
RESET_LINK_RE = re.compile(r"(?:https?://[^\s\"'<>]*)?/password/reset/[A-Za-z0-9_\-]+")
HIDDEN_RESET_LINK = "[reset link hidden]"
CONFIRM_LINK_RE = re.compile(r"(?:https?://[^\s\"'<>]*)?/signup/confirm/[A-Za-z0-9_\-]+")
HIDDEN_CONFIRM_LINK = "[confirmation link hidden]"


def hide_reset_links(text: str) -> str:
    """``text`` with reset and sign-up confirmation links replaced."""
    text = RESET_LINK_RE.sub(HIDDEN_RESET_LINK, text or "")
    return CONFIRM_LINK_RE.sub(HIDDEN_CONFIRM_LINK, text)


async def read_message(message_id: int) -> dict[str, Any]:
    """A message as the outbox pages show it to owners: reset and confirmation links hidden."""
    row = await get_message(message_id)
    return {
        **row,
        "body_text": hide_reset_links(row["body_text"]),
        "body_html": hide_reset_links(row["body_html"]),
    }


async def get_message(message_id: int) -> dict[str, Any]:
    return await records.get(OutboxMessage, message_id, "No such message.")
