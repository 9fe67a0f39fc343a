"""Two-step sign-in: pending sign-ins, authenticator apps, recovery codes, passkeys,
WebAuthn challenges and the owners' policy per role."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.base import OnDelete, OnUpdate
from piccolo.columns.column_types import (
    BigInt,
    Boolean,
    ForeignKey,
    Serial,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.indexes import IndexMethod
from piccolo.table import Table


class User(Table, tablename="app_user", schema=None):
    id = Serial(
        null=False,
        primary_key=True,
        unique=False,
        index=False,
        index_method=IndexMethod.btree,
        choices=None,
        db_column_name="id",
        secret=False,
    )


ID = "2026-12-05T10:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "two-step sign-in"


def _params(**extra):
    params = {
        "null": False,
        "primary_key": False,
        "unique": False,
        "index": False,
        "index_method": IndexMethod.btree,
        "choices": None,
        "db_column_name": None,
        "secret": False,
    }
    params.update(extra)
    return params


def _user_fk(**extra):
    return _params(
        references=User,
        on_delete=OnDelete.cascade,
        on_update=OnUpdate.cascade,
        target_column=None,
        **extra,
    )


# (class name, table name, [(column, class, params)])
TABLES = [
    (
        "PendingSignIn",
        "pending_sign_in",
        [
            ("token_hash", Varchar, _params(length=64, default="", unique=True)),
            ("user", ForeignKey, _user_fk(index=True)),
            ("created_at", Timestamptz, _params(default=TimestamptzNow())),
            ("expires_at", Timestamptz, _params(default=TimestamptzNow(), index=True)),
            ("address", Varchar, _params(length=64, default="")),
            ("user_agent", Varchar, _params(length=255, default="")),
            ("next_url", Varchar, _params(length=500, default="")),
        ],
    ),
    (
        "TotpFactor",
        "totp_factor",
        [
            ("user", ForeignKey, _user_fk(unique=True)),
            ("secret", Varchar, _params(length=64, default="")),
            ("created_at", Timestamptz, _params(default=TimestamptzNow())),
            ("confirmed_at", Timestamptz, _params(default=None, null=True)),
            ("last_step", BigInt, _params(default=0)),
        ],
    ),
    (
        "RecoveryCode",
        "recovery_code",
        [
            ("user", ForeignKey, _user_fk(index=True)),
            ("code_hash", Varchar, _params(length=64, default="", unique=True)),
            ("created_at", Timestamptz, _params(default=TimestamptzNow())),
            ("used_at", Timestamptz, _params(default=None, null=True)),
        ],
    ),
    (
        "Passkey",
        "passkey",
        [
            ("user", ForeignKey, _user_fk(index=True)),
            ("name", Varchar, _params(length=80, default="")),
            ("credential_id", Varchar, _params(length=1400, default="", unique=True)),
            ("public_key", Text, _params(default="")),
            ("sign_count", BigInt, _params(default=0)),
            ("created_at", Timestamptz, _params(default=TimestamptzNow())),
            ("last_used_at", Timestamptz, _params(default=None, null=True)),
        ],
    ),
    (
        "WebauthnChallenge",
        "webauthn_challenge",
        [
            ("token_hash", Varchar, _params(length=64, default="", unique=True)),
            ("purpose", Varchar, _params(length=20, default="")),
            ("user", ForeignKey, _user_fk(null=True, default=None)),
            ("challenge", Varchar, _params(length=128, default="")),
            ("expires_at", Timestamptz, _params(default=TimestamptzNow(), index=True)),
        ],
    ),
    (
        "TwoStepPolicy",
        "two_step_policy",
        [
            ("role", Varchar, _params(length=20, default="", unique=True)),
            ("required", Boolean, _params(default=False)),
            ("updated_at", Timestamptz, _params(default=TimestamptzNow())),
        ],
    ),
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)
    for class_name, tablename, columns in TABLES:
        manager.add_table(class_name=class_name, tablename=tablename, schema=None, columns=None)
        manager.add_column(
            table_class_name=class_name, tablename=tablename, column_name="id",
            db_column_name="id", column_class_name="Serial", column_class=Serial,
            params=_params(default=None, primary_key=True), schema=None,
        )
        for name, column_class, params in columns:
            manager.add_column(
                table_class_name=class_name, tablename=tablename, column_name=name,
                db_column_name=name, column_class_name=column_class.__name__,
                column_class=column_class, params=params, schema=None,
            )
    return manager
