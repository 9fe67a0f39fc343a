from piccolo.columns import (
    Boolean,
    ForeignKey,
    Integer,
    Serial,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from portal.catalog.tables import Service
from portal.locations.tables import Location


class MembershipPlan(Table, tablename="membership_plan"):
    """A recurring plan one location sells: every period grants sessions of one service.

    The terms here are what a client joins under *today*; a membership keeps
    the snapshot it was sold with, so changing a plan never rewrites what was
    sold. The per-period price is versioned separately
    (``membership_plan_price``), exactly like package prices.
    """

    id: Serial
    location = ForeignKey(
        references=Location, on_delete=OnDelete.restrict, required=True, index=True
    )
    name = Varchar(length=120, required=True)
    service = ForeignKey(references=Service, on_delete=OnDelete.restrict, required=True, index=True)
    description = Text(default="")
    interval = Varchar(length=10, required=True)  # month | 4weeks
    sessions_per_period = Integer(required=True)
    # Unused sessions carried into the next period, at most this many (0: none);
    # carried sessions expire at the end of that next period.
    rollover_cap = Integer(default=0)
    min_term_periods = Integer(default=0)  # paid periods before a cancel takes effect
    notice_days = Integer(default=0)  # a cancel takes effect at the first period end this far out
    freeze_allowed = Boolean(default=False)
    freeze_fee_cents = Integer(default=0)  # per frozen period, in the plan's currency
    member_discount_bp = Integer(default=0)  # off extra sessions and packages for members
    ends_at = Timestamptz(null=True, default=None)  # open-ended when None: no joins after it
    sellable_online = Boolean(default=True)
    active = Boolean(default=True, index=True)
    created_at = Timestamptz()
    updated_at = Timestamptz()


class MembershipPlanPrice(Table, tablename="membership_plan_price"):
    """One version of a plan's price per period, in its location's currency.

    Append-only (the database refuses UPDATE and DELETE); the version in
    effect at T is the one with the latest ``effective_from`` ≤ T (ties: the
    later row), the catalog's own rule.
    """

    id: Serial
    plan = ForeignKey(
        references=MembershipPlan, on_delete=OnDelete.restrict, required=True, index=True
    )
    amount_cents = Integer(required=True)
    currency = Varchar(length=3, required=True)
    effective_from = Timestamptz()
    created_at = Timestamptz()
    created_by = Integer(null=True, default=None)
    note = Varchar(length=200, default="")
