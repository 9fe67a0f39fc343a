"""Appointments' rules, for callers outside bookings: one import for every name.

The rules live in modules along their seams, each built on the ones before:

* :mod:`~portal.bookings.states` — the states, and the compare-and-set out of ``booked``;
* :mod:`~portal.bookings.reading` — appointments by id (with scope) and by time span;
* :mod:`~portal.bookings.credits` — the session credits a booking holds, gives back,
  forfeits or redeems, and the revenue they recognise;
* :mod:`~portal.bookings.availability` — free slots, therapists and rooms;
* :mod:`~portal.bookings.booking` — booking and moving;
* :mod:`~portal.bookings.outcomes` — cancelling, completing, no-shows.

Code inside bookings imports the module it needs; this one re-exports them for
other contexts (payments' disputes, rooms' day view and outage warnings,
notes), the tests and the bench, which know bookings as one service.
"""

from __future__ import annotations

from portal.bookings.availability import (
    SLOT_STEP_MINUTES,
    Slot,
    free_slots,
    free_slots_by_day,
    hours_and_time_off,
)
from portal.bookings.booking import SlotTaken, _is_overlap_violation, book, move
from portal.bookings.credits import (
    NoCredit,
    Released,
    credits_for,
    notify_released,
    release_held_credits,
)
from portal.bookings.outcomes import cancel, complete, mark_no_show
from portal.bookings.reading import (
    appointments_between,
    booked_in_room,
    client_appointments,
    get_appointment,
    get_appointment_for,
)
from portal.bookings.states import (
    BOOKED,
    BUSY_STATES,
    CANCELLED,
    COMPLETED,
    LATE_CANCEL,
    NO_SHOW,
    STATUS_LABELS,
    is_late,
    taking_the_time,
)
from portal.errors import Forbidden, Invalid, NotFound

__all__ = [
    "BOOKED",
    "BUSY_STATES",
    "CANCELLED",
    "COMPLETED",
    "LATE_CANCEL",
    "NO_SHOW",
    "SLOT_STEP_MINUTES",
    "STATUS_LABELS",
    "Forbidden",
    "Invalid",
    "NoCredit",
    "NotFound",
    "Released",
    "Slot",
    "SlotTaken",
    "_is_overlap_violation",
    "appointments_between",
    "book",
    "booked_in_room",
    "cancel",
    "client_appointments",
    "complete",
    "credits_for",
    "free_slots",
    "free_slots_by_day",
    "get_appointment",
    "get_appointment_for",
    "hours_and_time_off",
    "is_late",
    "mark_no_show",
    "move",
    "notify_released",
    "release_held_credits",
    "taking_the_time",
]
