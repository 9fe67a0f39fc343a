"""Authenticator codes (TOTP, RFC 6238) and one-time recovery codes. No HTTP here.

A code is accepted for the current 30-second step and one step either side
(clocks drift), and only for a step later than the last one accepted: the same
code, or an older one, never signs in twice. Enrolment keeps an unconfirmed
secret until the person types a first code from their app.

Secrets are sealed at rest (AES-GCM under a key derived from ``SECRET_KEY``): a
copy of the database alone does not give anyone the codes. A row written before
sealing existed is read as it is and sealed at its next accepted code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyotp
import segno
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from portal import db
from portal.auth.tables import RecoveryCode, TotpFactor
from portal.errors import Invalid
from portal.settings import get_settings
from portal.timeutil import utcnow

ISSUER = "Clinic Portal"
DIGITS = 6
# Steps either side of now that are still accepted (30 s each).
DRIFT_STEPS = 1
RECOVERY_CODE_COUNT = 10
# No 0/o, 1/l/i: codes are read from paper and typed.
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


@dataclass(frozen=True)
class Enrolment:
    """What the enrolment page shows: the setup key as text and as a QR code."""

    secret: str
    uri: str
    qr_svg: str

    @property
    def grouped_secret(self) -> str:
        return " ".join(self.secret[i : i + 4] for i in range(0, len(self.secret), 4))


_SEALED = "v1:"


def _sealing_key() -> AESGCM:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"portal totp secret")
    return AESGCM(key.derive(get_settings().secret_key.encode()))


def seal(secret: str) -> str:
    """The secret as stored: a fresh nonce and its AES-GCM ciphertext, base64."""
    nonce = os.urandom(12)
    sealed = _sealing_key().encrypt(nonce, secret.encode(), b"totp")
    return _SEALED + base64.urlsafe_b64encode(nonce + sealed).decode()


def unseal(stored: str) -> str:
    """The secret of a stored value (one written before sealing is read as it is)."""
    if not stored.startswith(_SEALED):
        return stored
    raw = base64.urlsafe_b64decode(stored[len(_SEALED) :])
    try:
        return _sealing_key().decrypt(raw[:12], raw[12:], b"totp").decode()
    except InvalidTag:
        # Sealed under another SECRET_KEY: no code can be checked against it.
        raise Invalid(
            {
                "code": "This authenticator app cannot be checked any more: use a recovery code "
                "or a passkey, or ask an owner to reset your two-step sign-in."
            }
        ) from None


def new_secret() -> str:
    return pyotp.random_base32()  # 32 base32 characters: 160 bits


def provisioning_uri(secret: str, email: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=ISSUER)


def qr_svg(uri: str) -> str:
    """The QR code as inline SVG, made here (no image service, no CDN)."""
    svg: str = segno.make(uri, error="m").svg_inline(scale=5, border=2, title="Setup QR code")
    return svg


def clean_code(code: str) -> str:
    return "".join(code.split())


def matching_step(secret: str, code: str, at: datetime) -> int | None:
    """The time step ``code`` belongs to, within the drift around ``at``; None if none."""
    code = clean_code(code)
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    now_step = totp.timecode(at)
    for step in range(now_step - DRIFT_STEPS, now_step + DRIFT_STEPS + 1):
        if step >= 0 and hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


# -- the factor --------------------------------------------------------------------


async def factor_of(user_id: int) -> dict[str, Any] | None:
    row: dict[str, Any] | None = (
        await TotpFactor.select().where(TotpFactor.user == user_id).first().run()
    )
    return row


async def is_active(user_id: int) -> bool:
    return bool(
        await TotpFactor.exists()
        .where((TotpFactor.user == user_id) & TotpFactor.confirmed_at.is_not_null())
        .run()
    )


async def start_enrolment(user_id: int, email: str) -> Enrolment:
    """The pending secret (kept until confirmed, so a reload shows the same QR code)."""
    row = await factor_of(user_id)
    if row is not None and row["confirmed_at"] is not None:
        raise Invalid({"code": "An authenticator app is already set up. Remove it first."})
    if row is None:
        secret = new_secret()
        try:
            await TotpFactor.insert(
                TotpFactor(
                    user=user_id,
                    secret=seal(secret),
                    created_at=utcnow(),
                    confirmed_at=None,
                    last_step=0,
                )
            ).run()
        except Exception as exc:
            if not db.is_unique_violation(exc):
                raise
            # A second tab started at the same moment: show its secret.
            row = await factor_of(user_id)
            assert row is not None
            secret = unseal(row["secret"])
    else:
        secret = unseal(row["secret"])
    uri = provisioning_uri(secret, email)
    return Enrolment(secret=secret, uri=uri, qr_svg=qr_svg(uri))


async def confirm_enrolment(user_id: int, code: str, *, at: datetime | None = None) -> None:
    """Activate the pending secret with a first code from the app; ``Invalid`` otherwise."""
    row = await factor_of(user_id)
    if row is None or row["confirmed_at"] is not None:
        raise Invalid({"code": "Start again: there is no authenticator app waiting to be set up."})
    at = at or utcnow()
    step = matching_step(unseal(row["secret"]), code, at)
    if step is None:
        raise Invalid({"code": "That code is not right. Check your app's clock and try again."})
    confirmed = await db.update_where(
        TotpFactor,
        {TotpFactor.confirmed_at: at, TotpFactor.last_step: step},
        (TotpFactor.id == row["id"]) & TotpFactor.confirmed_at.is_null(),
    )
    if not confirmed:
        raise Invalid({"code": "This authenticator app was already set up."})


async def verify(user_id: int, code: str, *, at: datetime | None = None) -> bool:
    """A sign-in code: right, within the drift, and of a later step than any used before.

    The step is claimed with a compare-and-set, so two requests with the same
    code cannot both pass.
    """
    row = await factor_of(user_id)
    if row is None or row["confirmed_at"] is None:
        return False
    secret = unseal(row["secret"])
    step = matching_step(secret, code, at or utcnow())
    if step is None or step <= row["last_step"]:
        return False
    changes: dict[Any, Any] = {TotpFactor.last_step: step}
    if not row["secret"].startswith(_SEALED):
        changes[TotpFactor.secret] = seal(secret)
    condition = (TotpFactor.id == row["id"]) & (TotpFactor.last_step < step)
    return await db.update_where(TotpFactor, changes, condition)


async def remove(user_id: int) -> bool:
    rows = (
        await TotpFactor.delete().where(TotpFactor.user == user_id).returning(TotpFactor.id).run()
    )
    return bool(rows)


# -- recovery codes ------------------------------------------------------------------


def _normalise_recovery(code: str) -> str:
    return "".join(ch for ch in code.lower() if ch.isalnum())


def hash_recovery_code(code: str) -> str:
    return hashlib.sha256(_normalise_recovery(code).encode()).hexdigest()


def _new_recovery_code() -> str:
    raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(10))
    return f"{raw[:5]}-{raw[5:]}"


async def replace_recovery_codes(user_id: int) -> list[str]:
    """Ten new codes (shown once, only their hashes kept); the old ones stop working."""
    codes = [_new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
    now = utcnow()
    async with db.transaction():
        await RecoveryCode.delete().where(RecoveryCode.user == user_id).run()
        await RecoveryCode.insert(
            *[
                RecoveryCode(user=user_id, code_hash=hash_recovery_code(c), created_at=now)
                for c in codes
            ]
        ).run()
    return codes


async def recovery_codes_left(user_id: int) -> int:
    return int(
        await RecoveryCode.count()
        .where((RecoveryCode.user == user_id) & RecoveryCode.used_at.is_null())
        .run()
    )


async def use_recovery_code(user_id: int, code: str) -> bool:
    """Spend one recovery code (compare-and-set: each works once)."""
    normalised = _normalise_recovery(code)
    if len(normalised) != 10:
        return False
    return await db.update_where(
        RecoveryCode,
        {RecoveryCode.used_at: utcnow()},
        (RecoveryCode.user == user_id)
        & (RecoveryCode.code_hash == hash_recovery_code(normalised))
        & RecoveryCode.used_at.is_null(),
    )


async def remove_recovery_codes(user_id: int) -> None:
    await RecoveryCode.delete().where(RecoveryCode.user == user_id).run()
