from piccolo.columns import BigInt, Boolean, ForeignKey, Integer, Serial, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from portal.auth.tables import User
from portal.catalog.tables import PriceVersionColumns, Service
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


class MembershipPlanPrice(PriceVersionColumns, Table, tablename="membership_plan_price"):
    """One version of a plan's price per period, in its location's currency.

    Append-only (the database refuses UPDATE and DELETE); the version in
    effect at T is the one with the latest ``effective_from`` ≤ T (ties: the
    later row), the catalog's own rule.
    """

    id: Serial
    plan = ForeignKey(
        references=MembershipPlan, on_delete=OnDelete.restrict, required=True, index=True
    )


class Membership(Table, tablename="membership"):
    """A client's membership of a plan: the terms it was joined with and its Stripe subscription.

    ``terms`` is the frozen ``PlanTerms`` (JSON); the plan may change later
    without changing this. ``status`` follows ``service.MEMBERSHIP_MOVES``:
    pending (Checkout open) → active (first invoice paid) ⇄ past_due (a
    renewal failed; ``grace_until`` says until when its sessions may still be
    booked) → ended; pending → abandoned (Checkout expired; late money still
    activates it). The period fields mirror the subscription as Stripe last
    reported it.
    """

    id: Serial
    client = ForeignKey(references=User, on_delete=OnDelete.restrict, required=True, index=True)
    # Indexed as ``membership_by_plan`` (SQLite: "membership_plan" names a table).
    plan = ForeignKey(references=MembershipPlan, on_delete=OnDelete.restrict, required=True)
    location = ForeignKey(
        references=Location, on_delete=OnDelete.restrict, required=True, index=True
    )
    name = Varchar(length=120, required=True)
    terms = Text(required=True)
    currency = Varchar(length=3, required=True)
    total_cents = BigInt(required=True)  # charged per period, tax included
    sessions_per_period = Integer(required=True)
    status = Varchar(length=20, required=True, index=True)
    # stripe: a Stripe subscription renews it; desk: each period is paid at the front desk
    # (cash, cheque or card terminal), no subscription.
    billing = Varchar(length=10, default="stripe")
    checkout_session_id = Varchar(length=255, null=True, default=None)
    subscription_id = Varchar(length=255, null=True, default=None)  # unique (index)
    customer_id = Varchar(length=255, null=True, default=None)
    current_period_start = Timestamptz(null=True, default=None)
    current_period_end = Timestamptz(null=True, default=None)
    cancel_at = Timestamptz(null=True, default=None)
    paused = Boolean(default=False)
    grace_until = Timestamptz(null=True, default=None)
    created_at = Timestamptz()
    joined_at = Timestamptz(null=True, default=None)
    ended_at = Timestamptz(null=True, default=None)
    # A change of plan at a period end (``memberships.changes``): the plan, the terms it
    # will run on (frozen when scheduled) and the period start it applies from.
    next_plan = Integer(null=True, default=None)
    next_terms = Text(null=True, default=None)
    changes_at = Timestamptz(null=True, default=None)
    # Why Stripe's evidence could not be applied (an owner settles it).
    review_reason = Text(default="")


class MembershipPeriod(Table, tablename="membership_period"):
    """One billing period of a membership: its Stripe invoice and, once paid, the sale
    holding the period's session credits (``sale_id``; sales write every credit).

    ``status`` follows ``service.PERIOD_MOVES``: open → paid | failed,
    failed → paid (the client paid after a failed renewal).
    """

    id: Serial
    membership = ForeignKey(
        references=Membership, on_delete=OnDelete.restrict, required=True, index=True
    )
    invoice_id = Varchar(length=255, required=True)  # unique (index)
    period_start = Timestamptz()
    period_end = Timestamptz()
    amount_cents = BigInt(required=True)
    currency = Varchar(length=3, required=True)
    status = Varchar(length=20, required=True)
    sale_id = Integer(null=True, default=None)
    failed_at = Timestamptz(null=True, default=None)
    paid_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz()
