from typing import Any

from piccolo.columns import (
    Boolean,
    Bytea,
    Date,
    ForeignKey,
    Integer,
    Serial,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from portal.auth.tables import User
from portal.catalog.tables import Service
from portal.locations.tables import Location


class Therapist(Table, tablename="therapist"):
    """A therapist's profile. Deactivated, never deleted.

    ``account`` is the optional sign-in (an ``app_user`` with role therapist);
    its location assignments follow ``TherapistLocation``. Licence and
    insurance are valid through their expiry dates, in the zone of the
    location where the therapist works that day.
    """

    id: Serial

    name = Varchar(length=120, required=True)
    email = Varchar(length=254, default="")
    phone = Varchar(length=40, default="")
    bio = Text(default="")
    account = ForeignKey(
        references=User, on_delete=OnDelete.set_null, null=True, default=None, unique=True
    )
    licence_number = Varchar(length=60, default="")
    licence_state = Varchar(length=60, default="")
    licence_expires = Date(null=True, default=None)
    insurance_expires = Date(null=True, default=None)
    active = Boolean(default=True, index=True)
    created_at = Timestamptz()
    updated_at = Timestamptz()


class TherapistLocation(Table, tablename="therapist_location"):
    """The locations a therapist works at (unique per pair, see the constraints migration)."""

    id: Serial

    therapist = ForeignKey(
        references=Therapist, on_delete=OnDelete.cascade, required=True, index=True
    )
    location = ForeignKey(
        references=Location, on_delete=OnDelete.restrict, required=True, index=True
    )


class TherapistService(Table, tablename="therapist_service"):
    """The catalog services a therapist may perform."""

    id: Serial

    therapist = ForeignKey(
        references=Therapist, on_delete=OnDelete.cascade, required=True, index=True
    )
    service = ForeignKey(references=Service, on_delete=OnDelete.restrict, required=True, index=True)


class WorkingHours(Table, tablename="working_hours"):
    """One weekly interval at one location, in the location's wall-clock time.

    Stored as minutes since local midnight (``end_minute`` may be 1440, i.e.
    24:00) because the same hours repeat every week across DST changes; they
    become instants only for a given date (``portal.staff.hours``).
    ``weekday`` is 0 for Monday … 6 for Sunday.
    """

    id: Serial

    therapist = ForeignKey(
        references=Therapist, on_delete=OnDelete.cascade, required=True, index=True
    )
    location = ForeignKey(
        references=Location, on_delete=OnDelete.restrict, required=True, index=True
    )
    weekday = Integer(required=True)
    start_minute = Integer(required=True)
    end_minute = Integer(required=True)


TIME_OFF_PENDING, TIME_OFF_APPROVED, TIME_OFF_DECLINED = "pending", "approved", "declined"


class TimeOff(Table, tablename="time_off"):
    """A period a therapist is away: [starts_at, ends_at) in UTC, unless cancelled.

    ``timezone`` is the zone the period was entered in, so it is shown the way
    it was entered.
    """

    id: Serial

    therapist = ForeignKey(
        references=Therapist, on_delete=OnDelete.cascade, required=True, index=True
    )
    starts_at = Timestamptz()
    ends_at = Timestamptz()
    all_day = Boolean(default=False)
    timezone = Varchar(length=64, default="UTC")
    reason = Varchar(length=200, default="")
    created_at = Timestamptz()
    # Removed time off is kept (cancelled), not deleted: the history stays whole.
    cancelled_at = Timestamptz(null=True, default=None)
    # Recorded by a manager: approved. Requested by the therapist: pending until a
    # manager approves or declines it. Only approved time off blocks booking.
    status = Varchar(length=20, default="approved")

    @classmethod
    def in_force(cls) -> Any:
        """The condition of time off that blocks booking: approved and not removed."""
        return cls.cancelled_at.is_null() & (cls.status == TIME_OFF_APPROVED)


class TherapistPhoto(Table, tablename="therapist_photo"):
    """A profile photo, kept apart so lists never load image bytes."""

    id: Serial

    therapist = ForeignKey(
        references=Therapist, on_delete=OnDelete.cascade, required=True, unique=True
    )
    content_type = Varchar(length=40, required=True)
    data = Bytea()
    updated_at = Timestamptz()
