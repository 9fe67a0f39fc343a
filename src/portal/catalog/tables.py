from piccolo.columns import Boolean, ForeignKey, Integer, Serial, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from portal.locations.tables import Location


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


class PriceVersionColumns:
    """The columns of every price version table (a service's, a package's, a membership
    plan's; ``pricing.PriceVersion`` reads them): an amount in a currency from a time
    on, who added it and why."""

    amount_cents = Integer(required=True)
    currency = Varchar(length=3, required=True)
    effective_from = Timestamptz()
    created_at = Timestamptz()
    created_by = Integer(null=True, default=None)
    note = Varchar(length=200, default="")


class ServicePrice(PriceVersionColumns, Table, tablename="service_price"):
    """One version of a service's single-session list price.

    Append-only (the database refuses UPDATE and DELETE): a new price is a new
    row effective from its date; the row in effect at T is the one with the
    latest ``effective_from`` ≤ T (ties: the later row).
    """

    id: Serial
    service = ForeignKey(references=Service, on_delete=OnDelete.restrict, required=True, index=True)


class Package(Table, tablename="package"):
    """A service × N sessions, valid for some days after purchase.

    The service and the number of sessions are fixed once created (price
    versions are prices *for those sessions*); a different series is another
    package.
    """

    id: Serial
    name = Varchar(length=120, unique=True, required=True)
    service = ForeignKey(references=Service, on_delete=OnDelete.restrict, required=True, index=True)
    sessions = Integer(required=True)
    validity_days = Integer(required=True)
    description = Text(default="")
    sellable_online = Boolean(default=True, index=True)
    # Where its sessions may be booked: "selling_clinic" or "all_clinics" (inputs.REDEEMABLE).
    redeemable = Varchar(length=20, default="all_clinics")
    # An introductory offer: sold at most once to each client (``sales.IntroClaim``).
    introductory = Boolean(default=False)
    active = Boolean(default=True, index=True)
    created_at = Timestamptz()
    updated_at = Timestamptz()


class PackagePrice(PriceVersionColumns, Table, tablename="package_price"):
    """One version of a package price: the base price (no location) or a
    location's override.

    Append-only like ``ServicePrice``. An override row with ``clears_override``
    ends the location's override from its date: the base price applies again.
    """

    id: Serial
    package = ForeignKey(references=Package, on_delete=OnDelete.restrict, required=True, index=True)
    location = ForeignKey(
        references=Location, on_delete=OnDelete.restrict, null=True, default=None, index=True
    )
    clears_override = Boolean(default=False)
