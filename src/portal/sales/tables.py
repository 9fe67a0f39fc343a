from piccolo.columns import BigInt, Boolean, ForeignKey, Integer, Serial, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from portal.auth.tables import User
from portal.locations.tables import Location


class Sale(Table, tablename="sale"):
    """A sold package: a snapshot of every term it was sold with.

    Nothing here changes when the catalog changes. ``status`` moves
    pending → active (paid) or pending → cancelled (checkout abandoned); an
    active sale may become refunded (fully). Sessions used and remaining are
    never stored as counters: they are the states of the sale's
    ``sale_session`` rows.
    """

    id: Serial
    # client, location and status are found through the indexes that start with them
    # (sale_client_id, sale_location_id, sale_status_id; migrations).
    client = ForeignKey(references=User, on_delete=OnDelete.restrict, required=True)
    location = ForeignKey(references=Location, on_delete=OnDelete.restrict, required=True)
    package_id = Integer(required=True)
    price_version_id = Integer(required=True)
    price_is_override = Boolean(default=False)
    service_id = Integer(required=True)
    service_name = Varchar(length=120, default="")
    item_name = Varchar(length=160, required=True)
    sessions_total = Integer(required=True)
    validity_days = Integer(required=True)
    currency = Varchar(length=3, required=True)
    price_cents = BigInt(required=True)
    unit_list_price_cents = BigInt(null=True, default=None)
    net_cents = BigInt(required=True)
    tax_cents = BigInt(required=True)
    total_cents = BigInt(required=True)
    tax_rate_bp = Integer(default=0)
    prices_include_tax = Boolean(default=False)
    redeemable = Varchar(length=20, default="all_clinics")  # the package's rule when sold
    terms = Text(default="")  # the full snapshot as JSON, for receipts and audits
    status = Varchar(length=20, required=True)
    channel = Varchar(length=20, required=True)  # online | front_desk
    payment_method = Varchar(length=20, default="card")  # card | cash | cheque | terminal
    sold_by = ForeignKey(references=User, on_delete=OnDelete.restrict, null=True)
    frozen = Boolean(default=False)  # an open dispute freezes remaining sessions
    created_at = Timestamptz()
    activated_at = Timestamptz(null=True, default=None)
    valid_until = Timestamptz(null=True, default=None)
    closed_at = Timestamptz(null=True, default=None)
    # The front-desk form's one-time token: a resubmitted form (double click, a
    # browser retry after a lost response) finds this sale instead of selling again.
    # Unique through the index ``sale_request_key`` (SQLite cannot add a UNIQUE column).
    request_key = Varchar(length=64, null=True, default=None)
    # Why a payment event could not be applied (status ``needs_review``): the
    # amount, currency or identity Stripe reported does not match this sale.
    review_reason = Text(default="")


class SaleSession(Table, tablename="sale_session"):
    """One session credit of a sale, with its exact share of the price.

    ``value_cents`` (net, revenue) and ``total_cents`` (what the client paid
    for it, tax included) are the sale's price split so that they add up
    exactly. ``state``: available, held (booked), redeemed (given), revoked
    (refunded or lost to a dispute), expired (validity passed), forfeited
    (late cancel / no-show). State changes are compare-and-set updates.
    """

    id: Serial
    # Found through the unique (sale, position) index, sale_session_position.
    sale = ForeignKey(references=Sale, on_delete=OnDelete.restrict, required=True)
    position = Integer(required=True)
    value_cents = BigInt(required=True)
    total_cents = BigInt(required=True)
    state = Varchar(length=20, required=True, index=True)
    changed_at = Timestamptz()
    appointment_id = Integer(null=True, default=None, index=True)
    refund_id = Integer(null=True, default=None)


class IntroClaim(Table, tablename="intro_claim"):
    """The one introductory offer a client may buy: one row per client (unique).

    Claimed with the pending sale of an introductory package, in its
    transaction. A claim whose sale was cancelled (an abandoned checkout) may
    be taken over by a new sale, compare-and-set on ``sale_id``; any other
    claim refuses a second introductory sale.
    """

    id: Serial
    client = Integer(unique=True)
    sale_id = Integer()
    claimed_at = Timestamptz()
