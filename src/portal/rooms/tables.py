from piccolo.columns import Boolean, ForeignKey, Serial, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from portal.locations.tables import Location


class Room(Table, tablename="room"):
    """A treatment room at one location. Deactivated, never deleted.

    ``equipment`` holds lowercase tags separated by commas (e.g.
    ``hydraulic table,hot stones``), the same form as a catalog service's
    ``required_equipment``. The name is unique per location, ignoring case
    (a unique index on ``(location, lower(name))``).
    """

    id: Serial

    location = ForeignKey(
        references=Location, on_delete=OnDelete.restrict, required=True, index=True
    )
    name = Varchar(length=80, required=True)
    equipment = Text(default="")
    notes = Text(default="")
    active = Boolean(default=True, index=True)
    created_at = Timestamptz()
    updated_at = Timestamptz()


class RoomOutage(Table, tablename="room_outage"):
    """An out-of-service window (maintenance, cleaning): [starts_at, ends_at) in UTC.

    Cancelled windows keep their row (``cancelled_at``) and no longer count.
    """

    id: Serial

    room = ForeignKey(references=Room, on_delete=OnDelete.cascade, required=True, index=True)
    starts_at = Timestamptz()
    ends_at = Timestamptz()
    reason = Varchar(length=200, default="")
    created_at = Timestamptz()
    created_by = Varchar(length=254, default="")
    # Removed windows are kept (cancelled), not deleted: the history stays whole.
    cancelled_at = Timestamptz(null=True, default=None)
