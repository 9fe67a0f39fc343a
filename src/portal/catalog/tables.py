from piccolo.columns import Boolean, Integer, Serial, Text, Timestamptz, Varchar
from piccolo.table import Table


class Service(Table, tablename="service"):
    """A treatment type, e.g. "Neuromuscular massage, 60 min".

    The single-session list price is versioned separately (price versions);
    ``required_equipment`` lists room equipment tags the service needs.
    """

    id: Serial
    name = Varchar(length=120, unique=True, required=True)
    description = Text(default="")
    treatment_type = Varchar(length=60, default="")
    duration_minutes = Integer(required=True)
    buffer_after_minutes = Integer(default=0)
    required_equipment = Text(default="")
    active = Boolean(default=True, index=True)
    created_at = Timestamptz()
    updated_at = Timestamptz()
