"""The rows of the staff's clients list, written in Python (``portal.htmlrows``): name
and email, phone, preferred location, intake and status, every value escaped."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from markupsafe import Markup

from portal.formatting import local_dt
from portal.htmlrows import active_badge, cell, escape, link, rows, text

__all__ = ["client_rows"]

_MISSING = '<span class="badge badge-warn">Missing</span>'


def client_rows(
    clients: Sequence[Mapping[str, Any]], tz: str, href: Callable[[int], str]
) -> Markup:
    """``service.list_clients``' rows; intake dates in the client's preferred location's
    zone, else ``tz``; ``href`` a client's record."""

    def cells(c: Mapping[str, Any]) -> list[str]:
        email = escape(c["email"])
        intake = c["intake"]
        if intake:
            day = local_dt(intake["created_at"], c["timezone"] or tz, "%d %b %Y")
            intake_cell = (
                f'<span class="badge badge-ok">Version {escape(intake["version"])}</span> '
                f'<small class="muted">{text(day)}</small>'
            )
        else:
            intake_cell = _MISSING
        return [
            cell(
                f"{link(href(c['id']), escape(c['name']) if c['name'] else email)}"
                f'<br><small class="muted">{email}</small>'
            ),
            cell(escape(c["phone"]) if c["phone"] else "—", "nowrap"),
            cell(text(c["location_name"]) if c["location_name"] else "Any"),
            cell(intake_cell),
            cell(active_badge(c["active"])),
        ]

    return rows(clients, cells)
