from piccolo.columns import Boolean, Integer, Serial, Text, Timestamptz, Varchar
from piccolo.table import Table


class Location(Table, tablename="location"):
    """A clinic. Its zone and currency govern how its times and money are shown."""

    id: Serial

    name = Varchar(length=120, required=True)
    slug = Varchar(length=60, unique=True, required=True)
    address = Text(default="")
    phone = Varchar(length=40, default="")
    timezone = Varchar(length=64, required=True)
    currency = Varchar(length=3, required=True)
    tax_rate_bp = Integer(default=0)
    prices_include_tax = Boolean(default=False)
    cancellation_window_hours = Integer(default=24)
    # How a refund of unused sessions is computed here (payments.service.REFUND_RULES).
    refund_rule = Varchar(length=20, default="list_price")
    active = Boolean(default=True, index=True)
    created_at = Timestamptz()
    updated_at = Timestamptz()
