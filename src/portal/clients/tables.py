from piccolo.columns import Boolean, Date, ForeignKey, Integer, Serial, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from portal.auth.tables import PasswordReset as PasswordReset
from portal.auth.tables import User
from portal.locations.tables import Location


class ClientProfile(Table, tablename="client_profile"):
    """Contact details and preferences of a client (an ``app_user`` with role client).

    One per client (``user`` is unique). A client created by an owner under
    Users has none until the first save; the portal shows empty values then.
    """

    id: Serial

    user = ForeignKey(references=User, on_delete=OnDelete.cascade, required=True, unique=True)
    phone = Varchar(length=40, default="")
    # The phone's national digits, written with it (``portal.clients.phones``): what the
    # staff's search compares, by its index. NULL when the phone is no number.
    phone_national = Varchar(length=20, null=True, default=None)
    date_of_birth = Date(null=True, default=None)
    address = Text(default="")
    emergency_contact_name = Varchar(length=120, default="")
    emergency_contact_phone = Varchar(length=40, default="")
    email_reminders = Boolean(default=True)
    # Whether the client agreed to marketing email (the client's choice; staff record it).
    marketing_consent = Boolean(default=False)
    # What staff should know about the client (not clinical notes); staff only.
    staff_notes = Text(default="")
    preferred_location = ForeignKey(
        references=Location, on_delete=OnDelete.set_null, null=True, default=None, index=True
    )
    # When the client accepted the terms and privacy notice at sign-up.
    terms_accepted_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz()
    updated_at = Timestamptz()


class ClientIntake(Table, tablename="client_intake"):
    """One version of a client's intake questionnaire. Never updated: an edit
    appends the next version; the current intake is the highest version.
    (client, version) is unique (constraints migration).

    Multi-choice answers (concerns, regions, health flags) are JSON lists of
    codes; the vocabularies are in ``portal.clients.intake`` and
    ``portal.clients.regions``.
    """

    id: Serial

    client = ForeignKey(references=User, on_delete=OnDelete.cascade, required=True, index=True)
    version = Integer(required=True)
    created_at = Timestamptz()
    concerns = Text(default="[]")
    concerns_other = Varchar(length=200, default="")
    pain_where = Text(default="")
    pain_duration = Varchar(length=40, default="")
    pain_worse = Text(default="")
    pain_better = Text(default="")
    pain_level = Integer(default=0)
    regions = Text(default="[]")
    work_posture = Varchar(length=40, default="")
    daily_activities = Text(default="")
    sports = Text(default="")
    goals = Text(default="")
    health_flags = Text(default="[]")
    health_details = Text(default="")
    pressure = Varchar(length=20, default="unsure")
    # Consent to treatment, given with this version (required to save one).
    consent_at = Timestamptz()


class SignupConfirmation(Table, tablename="signup_confirmation"):
    """A sign-up waiting for its emailed link: no account exists until the link is used.

    Holds what the form gave (the password only as its argon2 hash) and the
    page to go on to (``next_url``). The email holds the token; we keep its hash.
    """

    id: Serial

    token_hash = Varchar(length=64, unique=True, required=True)
    email = Varchar(length=254, required=True, index=True)
    name = Varchar(length=120, default="")
    password_hash = Varchar(length=255, required=True)
    next_url = Varchar(length=500, default="")
    created_at = Timestamptz()
    expires_at = Timestamptz(index=True)
    used_at = Timestamptz(null=True, default=None)
    address = Varchar(length=64, default="")


class AccountRequest(Table, tablename="account_request"):
    """Sign-ups and reset requests, counted per address and per account for throttling."""

    id: Serial

    kind = Varchar(length=20, required=True)
    account_key = Varchar(length=254, required=True)
    address = Varchar(length=64, required=True)
    at = Timestamptz()
