"""Therapists, their hours, time off and credentials: the staff context's rules.

The rules live in one module per seam, from the bottom up: ``credentials``
(licence and insurance status, the compliance report), ``therapists``
(profiles, access, sign-in accounts), ``photos``, ``schedule`` (weekly
working hours), ``timeoff``, and ``bookability`` (whether a therapist may be
booked then, built on the others). This module re-exports their names for
the contexts that ask the staff context as a whole (bookings asks
``is_bookable``); the staff pages import the module they use.
"""

from __future__ import annotations

from portal.pagination import Page
from portal.staff import hours as h
from portal.staff.bookability import (
    Bookability,
    is_bookable,
)
from portal.staff.credentials import (
    LATER_DAYS,
    SOON_DAYS,
    ComplianceItem,
    LocationCompliance,
    compliance,
    credential_status,
)
from portal.staff.photos import (
    MAX_PHOTO_BYTES,
    PHOTO_TYPES,
    get_photo,
    has_photo,
    initials_avatar,
    remove_photo,
    set_photo,
    sniff_image,
)
from portal.staff.schedule import (
    OVERLAP_HORIZON_DAYS,
    HoursInterval,
    check_intervals,
    hours_of,
    parse_hours_form,
    set_hours,
    week_summary,
)
from portal.staff.therapists import (
    PHONE_RE,
    PROFILE_FIELDS,
    STATUSES,
    TherapistInput,
    can_deactivate,
    can_manage,
    create_account,
    create_therapist,
    expiry_warnings,
    get_therapist,
    get_therapist_for,
    link_account,
    list_therapists,
    location_names,
    parse_date,
    parse_therapist_form,
    service_choices,
    service_names,
    set_active,
    therapist_location_ids,
    therapist_of_account,
    therapist_service_ids,
    unlinked_therapist_accounts,
    update_therapist,
)
from portal.staff.timeoff import (
    MAX_TIME_OFF_DAYS,
    TimeOffInput,
    add_time_off,
    describe_time_off,
    get_time_off_for,
    list_time_off,
    parse_time_off_form,
    remove_time_off,
    time_off_span,
)

__all__ = [
    "LATER_DAYS",
    "MAX_PHOTO_BYTES",
    "MAX_TIME_OFF_DAYS",
    "OVERLAP_HORIZON_DAYS",
    "PHONE_RE",
    "PHOTO_TYPES",
    "PROFILE_FIELDS",
    "SOON_DAYS",
    "STATUSES",
    "Bookability",
    "ComplianceItem",
    "HoursInterval",
    "LocationCompliance",
    "Page",
    "TherapistInput",
    "TimeOffInput",
    "add_time_off",
    "can_deactivate",
    "can_manage",
    "check_intervals",
    "compliance",
    "create_account",
    "create_therapist",
    "credential_status",
    "describe_time_off",
    "expiry_warnings",
    "get_photo",
    "get_therapist",
    "get_therapist_for",
    "get_time_off_for",
    "h",
    "has_photo",
    "hours_of",
    "initials_avatar",
    "is_bookable",
    "link_account",
    "list_therapists",
    "list_time_off",
    "location_names",
    "parse_date",
    "parse_hours_form",
    "parse_therapist_form",
    "parse_time_off_form",
    "remove_photo",
    "remove_time_off",
    "service_choices",
    "service_names",
    "set_active",
    "set_hours",
    "set_photo",
    "sniff_image",
    "therapist_location_ids",
    "therapist_of_account",
    "therapist_service_ids",
    "time_off_span",
    "unlinked_therapist_accounts",
    "update_therapist",
    "week_summary",
]
