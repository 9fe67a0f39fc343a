from piccolo.columns import Boolean, ForeignKey, Serial, Timestamptz, Varchar
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
