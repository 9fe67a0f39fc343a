"""An appointment as a calendar entry (iCalendar, RFC 5545), attached to its confirmation.

Times are written in UTC (``…Z``), which every calendar shows in its own zone,
so no zone table has to travel with the file; the clinic's zone is named in
the description. The UID is the appointment's own and the same in every
message about it, so a moved appointment's new confirmation (a newer DTSTAMP) updates the entry
instead of adding a second one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlsplit

from portal.email.service import Attachment

CALENDAR = "text/calendar"
FILENAME = "appointment.ics"


def _utc(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _text(value: str) -> str:
    """A TEXT value escaped as RFC 5545 asks (backslash, semicolon, comma, newline)."""
    return (
        value.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
    )


def _folded(line: str) -> str:
    """Lines longer than 75 octets folded (a space starts each continuation)."""
    data = line.encode()
    if len(data) <= 75:
        return line
    parts: list[str] = []
    while data:
        cut = min(len(data), 75 if not parts else 74)
        while cut < len(data) and (data[cut] & 0xC0) == 0x80:
            cut -= 1  # never split a UTF-8 character
        parts.append(data[:cut].decode())
        data = data[cut:]
    return "\r\n ".join(parts)


def appointment_uid(appointment_id: int, base_url: str) -> str:
    """The entry's UID: the appointment's id at the portal's host, the same every time."""
    host = urlsplit(base_url).hostname or "clinic-portal"
    return f"appointment-{appointment_id}@{host}"


def appointment_entry(
    *,
    appointment_id: int,
    summary: str,
    starts_at: datetime,
    ends_at: datetime,
    location: str,
    description: str,
    base_url: str,
    now: datetime,
) -> Attachment:
    """The ``appointment.ics`` of one appointment."""
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//Clinic Portal//Appointments//EN",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        "BEGIN:VEVENT",
        f"UID:{appointment_uid(appointment_id, base_url)}",
        f"DTSTAMP:{_utc(now)}",
        f"DTSTART:{_utc(starts_at)}",
        f"DTEND:{_utc(ends_at)}",
        f"SUMMARY:{_text(summary)}",
        f"LOCATION:{_text(location)}",
        f"DESCRIPTION:{_text(description)}",
        "STATUS:CONFIRMED",
        "END:VEVENT",
        "END:VCALENDAR",
    ]
    content = "\r\n".join(_folded(line) for line in lines) + "\r\n"
    return Attachment(filename=FILENAME, content_type=CALENDAR, content=content)
