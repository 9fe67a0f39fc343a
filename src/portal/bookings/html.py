"""The rows of the appointment list, written in Python (``portal.htmlrows``): local time,
client, therapist, service, room, location and status, every value escaped."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from markupsafe import Markup

from portal.formatting import local_dt
from portal.htmlrows import cell, escape, link, rows, text

__all__ = ["appointment_rows"]


def appointment_rows(
    appointments: Sequence[Mapping[str, Any]],
    labels: Mapping[str, str],
    href: Callable[[int], str],
) -> Markup:
    """``listing.list_appointments``' rows, each time in its clinic's zone; ``labels``
    the statuses' words, ``href`` an appointment's page."""

    def cells(a: Mapping[str, Any]) -> list[str]:
        when = local_dt(a["start_at"], a["timezone"], "%a %Y-%m-%d %H:%M")
        status = str(a["status"])
        return [
            cell(link(href(a["id"]), escape(when)), "nowrap"),
            cell(escape(a["client_name"] or a["client_email"])),
            cell(text(str(a["therapist_name"]))),
            cell(text(str(a["service_name"]))),
            cell(text(str(a["room_name"]))),
            cell(text(str(a["location_name"]))),
            cell(
                f'<span class="badge appt-status appt-status-{text(status)}">'
                f"{text(str(labels.get(status, status)))}</span>"
            ),
        ]

    return rows(appointments, cells)
