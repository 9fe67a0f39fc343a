from piccolo.columns import (
    BigInt,
    Boolean,
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
from portal.locations.tables import Location
from portal.sales.tables import Sale


class Payment(Table, tablename="payment"):
    """Money received for a sale: a Stripe payment or an in-clinic one.

    Stripe ids are unique, so one Stripe object maps to one row whichever
    event or command records it first. ``status``: pending → succeeded, or
    pending → failed / cancelled; guarded transitions only.
    """

    id: Serial
    sale = ForeignKey(references=Sale, on_delete=OnDelete.restrict, required=True, index=True)
    # The sale's location, written with the payment: one clinic's payments of a
    # period are read in time order from (location, status, succeeded_at, id).
    location = ForeignKey(references=Location, on_delete=OnDelete.restrict, required=True)
    provider = Varchar(length=20, required=True)  # stripe | in_clinic
    method = Varchar(length=20, required=True)  # card | cash | cheque | terminal
    status = Varchar(length=20, required=True, index=True)
    amount_cents = BigInt(required=True)
    currency = Varchar(length=3, required=True)
    fee_cents = BigInt(null=True, default=None)
    net_cents = BigInt(null=True, default=None)
    checkout_session_id = Varchar(length=255, null=True, default=None, unique=True)
    checkout_url = Text(default="")
    payment_intent_id = Varchar(length=255, null=True, default=None, unique=True)
    charge_id = Varchar(length=255, null=True, default=None, unique=True)
    balance_transaction_id = Varchar(length=255, null=True, default=None)
    failure_message = Text(default="")
    created_at = Timestamptz()
    succeeded_at = Timestamptz(null=True, default=None, index=True)
    recorded_by = ForeignKey(references=User, on_delete=OnDelete.restrict, null=True)


class Refund(Table, tablename="refund"):
    """Money returned for a sale: computed by the portal, or made in Stripe (external)."""

    id: Serial
    sale = ForeignKey(references=Sale, on_delete=OnDelete.restrict, required=True, index=True)
    payment = ForeignKey(references=Payment, on_delete=OnDelete.restrict, required=True, index=True)
    amount_cents = BigInt(required=True)
    currency = Varchar(length=3, required=True)
    sessions_requested = Integer(default=0)
    sessions_revoked = Integer(default=0)
    rule = Varchar(length=30, default="")
    reason = Text(default="")
    status = Varchar(length=20, required=True, index=True)  # pending | succeeded | failed
    external = Boolean(default=False)
    stripe_refund_id = Varchar(length=255, null=True, default=None, unique=True)
    error = Text(default="")
    created_by = ForeignKey(references=User, on_delete=OnDelete.restrict, null=True)
    created_at = Timestamptz()
    completed_at = Timestamptz(null=True, default=None, index=True)
    # The tax given back by this refund: the tax of the sale's cumulative
    # refunded amount minus what earlier refunds gave back, so the refunds of
    # a sale never return more tax than was collected (set when it completes).
    tax_cents = BigInt(default=0)


class Dispute(Table, tablename="dispute"):
    """A chargeback: the sale's remaining sessions are frozen while it is open."""

    id: Serial
    sale = ForeignKey(references=Sale, on_delete=OnDelete.restrict, required=True, index=True)
    payment = ForeignKey(references=Payment, on_delete=OnDelete.restrict, required=True)
    stripe_dispute_id = Varchar(length=255, unique=True, required=True)
    amount_cents = BigInt(required=True)
    currency = Varchar(length=3, required=True)
    reason = Varchar(length=60, default="")
    status = Varchar(length=30, required=True)
    outcome = Varchar(length=20, default="")  # won | lost
    created_at = Timestamptz()
    closed_at = Timestamptz(null=True, default=None)
    # Stripe withdraws the disputed amount and its dispute fee when the dispute
    # opens, and puts the amount back (not the fee) if it is won.
    fee_cents = BigInt(default=0)
    withdrawn_at = Timestamptz(null=True, default=None, index=True)
    reinstated_at = Timestamptz(null=True, default=None, index=True)


class StripeEvent(Table, tablename="stripe_event"):
    """Every webhook event, stored first under its unique id: a repeat is a no-op."""

    id: Serial
    event_id = Varchar(length=255, unique=True, required=True)
    type = Varchar(length=80, required=True)
    stripe_created = Timestamptz(null=True, default=None)
    received_at = Timestamptz()
    processed_at = Timestamptz(null=True, default=None)
    payload = Text(default="")


class Payout(Table, tablename="payout"):
    """Money Stripe sent from its balance to the clinic's bank account.

    One row per Stripe payout (unique id), whichever of the webhook and the
    ``portal stripe payouts`` command sees it first. ``status`` only moves
    forward (pending → in_transit → paid → failed, or canceled).
    ``itemized``: its contents (``payout_line``) were read from Stripe, which
    lists them for automatic payouts only.
    """

    id: Serial
    stripe_payout_id = Varchar(length=255, unique=True, required=True)
    amount_cents = BigInt(required=True)
    currency = Varchar(length=3, required=True)
    status = Varchar(length=20, required=True)
    arrival_date = Date(index=True)
    automatic = Boolean(default=True)
    itemized = Boolean(default=False)
    failure_message = Text(default="")
    stripe_created = Timestamptz()
    imported_at = Timestamptz()
    updated_at = Timestamptz()


class PayoutLine(Table, tablename="payout_line"):
    """One balance transaction a payout contained, matched to the portal's records.

    ``type`` is Stripe's (charge, refund, adjustment, payout_failure, …);
    ``net = gross - fee``, and the lines of a payout add up to its amount.
    The payment, refund, sale and location are the portal's when the
    transaction is one of its own (empty otherwise).
    """

    id: Serial
    payout = ForeignKey(references=Payout, on_delete=OnDelete.restrict, required=True, index=True)
    balance_transaction_id = Varchar(length=255, unique=True, required=True)
    type = Varchar(length=40, required=True)
    source_id = Varchar(length=255, default="")
    payment_intent_id = Varchar(length=255, default="")
    description = Text(default="")
    gross_cents = BigInt(required=True)
    fee_cents = BigInt(required=True)
    net_cents = BigInt(required=True)
    currency = Varchar(length=3, required=True)
    payment = ForeignKey(references=Payment, on_delete=OnDelete.restrict, null=True)
    refund = ForeignKey(references=Refund, on_delete=OnDelete.restrict, null=True)
    sale = ForeignKey(references=Sale, on_delete=OnDelete.restrict, null=True)
    location = ForeignKey(references=Location, on_delete=OnDelete.restrict, null=True, index=True)
    stripe_created = Timestamptz()
