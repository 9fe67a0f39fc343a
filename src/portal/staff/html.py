"""A therapist's credentials as badges, and the therapists list's cells written in Python
(``web.admin.list_body``), every value escaped."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from markupsafe import Markup, escape

from portal.staff.credentials import credential_status

__all__ = ["credential_badge", "insurance_cell", "licence_cell", "locations_cell"]


_BADGES = {
    "expired": '<span class="badge badge-danger">Expired {day}</span>',
    "soon": '<span class="badge badge-warn">Expires {day} ({days} d)</span>',
    "later": '<span class="badge badge-notice">Expires {day}</span>',
    "ok": '<span class="badge badge-ok">Valid to {day}</span>',
}


def credential_badge(expires: date | None, today: date) -> Markup:
    """A licence's or insurance's expiry as a badge (``credentials.credential_status``)."""
    if expires is None:
        return Markup('<span class="badge badge-warn">Not on file</span>')
    badge = _BADGES[credential_status(expires, today)]
    # A date and a number of days: nothing to escape.
    return Markup(badge.format(day=expires.isoformat(), days=(expires - today).days))  # noqa: S704


def locations_cell(row: Mapping[str, Any], _: Mapping[str, Any]) -> str:
    return str(escape(", ".join(row["locations"]))) or "—"


def licence_cell(row: Mapping[str, Any], context: Mapping[str, Any]) -> str:
    return credential_badge(row["licence_expires"], context["today"])


def insurance_cell(row: Mapping[str, Any], context: Mapping[str, Any]) -> str:
    return credential_badge(row["insurance_expires"], context["today"])
