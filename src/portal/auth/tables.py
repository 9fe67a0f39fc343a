from piccolo.columns import BigInt, Boolean, ForeignKey, Serial, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from portal.locations.tables import Location


class User(Table, tablename="app_user"):
    """Anyone who signs in: staff of every role and clients."""

    id: Serial

    email = Varchar(length=254, unique=True, required=True)
    name = Varchar(length=120, default="")
    password_hash = Varchar(length=255, default="")
    role = Varchar(length=20, required=True, index=True)
    active = Boolean(default=True)
    created_at = Timestamptz()
    password_changed_at = Timestamptz()


class UserLocation(Table, tablename="user_location"):
    """The locations a manager (or therapist) is assigned to."""

    id: Serial

    user = ForeignKey(references=User, on_delete=OnDelete.cascade, required=True, index=True)
    location = ForeignKey(
        references=Location, on_delete=OnDelete.restrict, required=True, index=True
    )


class UserSession(Table, tablename="user_session"):
    """A server-side session; the cookie holds a random token, we keep its hash."""

    id: Serial

    token_hash = Varchar(length=64, unique=True, required=True)
    user = ForeignKey(references=User, on_delete=OnDelete.cascade, required=True, index=True)
    created_at = Timestamptz()
    last_seen_at = Timestamptz()
    expires_at = Timestamptz()
    address = Varchar(length=64, default="")
    user_agent = Varchar(length=255, default="")


class LoginAttempt(Table, tablename="login_attempt"):
    """Every sign-in try, for throttling and for the security review."""

    id: Serial

    account_key = Varchar(length=254, required=True)
    address = Varchar(length=64, required=True)
    at = Timestamptz()
    success = Boolean(default=False)


class ApiToken(Table, tablename="api_token"):
    """A personal API token: read-only access to the JSON API as its user.

    Only a hash is stored; the token is shown once, when it is created.
    """

    id: Serial
    user = ForeignKey(references=User, on_delete=OnDelete.cascade, required=True, index=True)
    name = Varchar(length=80, required=True)
    prefix = Varchar(length=16, required=True)
    token_hash = Varchar(length=64, unique=True, required=True)
    created_at = Timestamptz()
    last_used_at = Timestamptz(null=True, default=None)
    revoked_at = Timestamptz(null=True, default=None)


class PendingSignIn(Table, tablename="pending_sign_in"):
    """Password accepted, second step still to do: not a session, never a signed-in user.

    The browser holds a random token in its own short-lived cookie; we keep its
    hash. Deleted when the second step succeeds (a new session is opened then)
    or when it expires, ten minutes after the password.
    """

    id: Serial

    token_hash = Varchar(length=64, unique=True, required=True)
    user = ForeignKey(references=User, on_delete=OnDelete.cascade, required=True, index=True)
    created_at = Timestamptz()
    expires_at = Timestamptz(index=True)
    address = Varchar(length=64, default="")
    user_agent = Varchar(length=255, default="")
    next_url = Varchar(length=500, default="")


class TotpFactor(Table, tablename="totp_factor"):
    """An authenticator app (RFC 6238). Active once ``confirmed_at`` is set by a first code.

    ``last_step`` is the 30-second time step of the last code accepted: a code of
    that step or an earlier one is never accepted again (no replay).
    """

    id: Serial

    user = ForeignKey(references=User, on_delete=OnDelete.cascade, required=True, unique=True)
    secret = Text(required=True)  # sealed: see auth/totp.py
    created_at = Timestamptz()
    confirmed_at = Timestamptz(null=True, default=None)
    last_step = BigInt(default=0)


class RecoveryCode(Table, tablename="recovery_code"):
    """One-time recovery codes: only a SHA-256 of each is kept, each is used once."""

    id: Serial

    user = ForeignKey(references=User, on_delete=OnDelete.cascade, required=True, index=True)
    code_hash = Varchar(length=64, unique=True, required=True)
    created_at = Timestamptz()
    used_at = Timestamptz(null=True, default=None)


class Passkey(Table, tablename="passkey"):
    """A WebAuthn credential (a passkey) registered by its user, with the name they gave it."""

    id: Serial

    user = ForeignKey(references=User, on_delete=OnDelete.cascade, required=True, index=True)
    name = Varchar(length=80, required=True)
    credential_id = Varchar(length=1400, unique=True, required=True)  # base64url
    public_key = Text(required=True)  # base64url of the COSE key
    sign_count = BigInt(default=0)
    created_at = Timestamptz()
    last_used_at = Timestamptz(null=True, default=None)


class WebauthnChallenge(Table, tablename="webauthn_challenge"):
    """A WebAuthn challenge handed to a browser: single use, expires after five minutes.

    The browser gets a random ticket with the options and sends it back with the
    answer; we keep the ticket's hash, the purpose and (when known) the user.
    """

    id: Serial

    token_hash = Varchar(length=64, unique=True, required=True)
    purpose = Varchar(length=20, required=True)
    user = ForeignKey(references=User, on_delete=OnDelete.cascade, null=True, default=None)
    challenge = Varchar(length=128, required=True)  # base64url
    expires_at = Timestamptz(index=True)


class TwoStepPolicy(Table, tablename="two_step_policy"):
    """Whether the members of a staff role must sign in in two steps (owners decide)."""

    id: Serial

    role = Varchar(length=20, unique=True, required=True)
    required = Boolean(default=False)
    updated_at = Timestamptz()


class PasswordReset(Table, tablename="password_reset"):
    """A single-use link to choose a password: a reset, or an invitation to a new
    account. The email holds the token; we keep its hash."""

    id: Serial

    token_hash = Varchar(length=64, unique=True, required=True)
    user = ForeignKey(references=User, on_delete=OnDelete.cascade, required=True, index=True)
    created_at = Timestamptz()
    expires_at = Timestamptz()
    used_at = Timestamptz(null=True, default=None)
    address = Varchar(length=64, default="")
