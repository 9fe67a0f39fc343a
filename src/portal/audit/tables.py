from piccolo.columns import Integer, Serial, Text, Timestamptz, Varchar
from piccolo.table import Table


class AuditLog(Table, tablename="audit_log"):
    """Append-only: who changed what, when, with the row before and after.

    The database refuses UPDATE and DELETE on this table (triggers in the
    migration), so not even a bug in the portal can rewrite history.
    """

    id: Serial

    at = Timestamptz()
    actor_id = Integer(null=True, default=None)
    actor_email = Varchar(length=254, default="")
    actor_name = Varchar(length=120, default="")
    action = Varchar(length=40, required=True)
    entity = Varchar(length=40, required=True)
    entity_id = Varchar(length=40, required=True)
    before = Text(default="")
    after = Text(default="")
    address = Varchar(length=64, default="")
    # The clinic the change belongs to (None: chain-wide), for the audit log's filter.
    location_id = Integer(null=True, default=None)
