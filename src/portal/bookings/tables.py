from piccolo.columns import Boolean, ForeignKey, Integer, Serial, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from portal.auth.tables import User
from portal.catalog.tables import Service
from portal.locations.tables import Location
from portal.rooms.tables import Room
from portal.sales.tables import SaleSession
from portal.staff.tables import Therapist


class Appointment(Table, tablename="appointment"):
    """A client × therapist × room × service at a location over [start_at, end_at) UTC.

    ``busy_until`` is the end plus the service's buffer (room turnover): the
    therapist and the room are busy until then. The database refuses two
    busy appointments of one therapist or one room that overlap (an exclusion
    constraint on PostgreSQL, triggers on SQLite), so concurrent requests can
    never double-book. ``sale_session`` is the session credit the booking
    holds. Status: booked → completed | cancelled | late_cancel | no_show.

    A client who books and pays in one flow first *holds* the time: status
    ``held`` for the pending sale ``hold_sale`` until ``hold_until``; the
    payment makes it ``booked`` (with the sale's credit), an abandoned order
    or a lapsed hold ``cancelled``. A held time is busy like a booked one
    until ``hold_until``; after that the next booking of it releases it.
    """

    id: Serial
    client = ForeignKey(references=User, on_delete=OnDelete.restrict, required=True, index=True)
    therapist = ForeignKey(
        references=Therapist, on_delete=OnDelete.restrict, required=True, index=True
    )
    room = ForeignKey(references=Room, on_delete=OnDelete.restrict, required=True, index=True)
    location = ForeignKey(
        references=Location, on_delete=OnDelete.restrict, required=True, index=True
    )
    service = ForeignKey(references=Service, on_delete=OnDelete.restrict, required=True)
    start_at = Timestamptz(index=True)
    end_at = Timestamptz()
    busy_until = Timestamptz()
    status = Varchar(length=20, required=True, index=True)
    sale_session = ForeignKey(references=SaleSession, on_delete=OnDelete.restrict, null=True)
    series_id = Varchar(length=40, null=True, default=None, index=True)
    booked_by = ForeignKey(references=User, on_delete=OnDelete.restrict, null=True)
    created_at = Timestamptz()
    updated_at = Timestamptz()
    cancelled_at = Timestamptz(null=True, default=None)
    cancel_reason = Text(default="")
    waived = Boolean(default=False)
    waive_reason = Text(default="")
    completed_at = Timestamptz(null=True, default=None)
    reminder_sent_at = Timestamptz(null=True, default=None)
    hold_sale = Integer(null=True, default=None, index=True)
    hold_until = Timestamptz(null=True, default=None)
