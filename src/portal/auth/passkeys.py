"""Passkeys (WebAuthn, through the ``webauthn`` package). No HTTP here.

The relying party is the portal at ``BASE_URL``: its host is the RP id, its
scheme and host the only origin accepted. Every ceremony starts with a random
challenge kept server-side (``webauthn_challenge``) behind a ticket the browser
sends back; a challenge is taken (deleted) when it is answered, so it works
once, and it expires after five minutes. Passkeys are discoverable (resident
keys) and user verification is required, so a passkey alone signs in.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from portal import db, records
from portal.auth.service import hash_token
from portal.auth.tables import Passkey, WebauthnChallenge
from portal.errors import Invalid
from portal.settings import Settings
from portal.timeutil import utcnow

RP_NAME = "Clinic Portal"
CHALLENGE_MINUTES = 5
TIMEOUT_MS = 120_000
REGISTER = "register"
SIGN_IN = "sign_in"  # a passkey alone
SECOND_STEP = "second_step"  # after the password
PURPOSES = (REGISTER, SIGN_IN, SECOND_STEP)
NAME_MAX = 80
T = TypeVar("T")
NOT_ACCEPTED = "The passkey was not accepted. Try again, or use another way to sign in."


def rp_id(settings: Settings) -> str:
    return urlsplit(settings.base_url).hostname or "localhost"


def expected_origin(settings: Settings) -> str:
    parts = urlsplit(settings.base_url)
    return f"{parts.scheme}://{parts.netloc}"


def user_handle(settings: Settings, user_id: int) -> bytes:
    """The opaque user handle given to authenticators: stable per account, not its id or email."""
    return hmac.new(
        settings.secret_key.encode(), f"webauthn-user:{user_id}".encode(), hashlib.sha256
    ).digest()


async def _store_challenge(purpose: str, user_id: int | None, challenge: bytes) -> str:
    now = utcnow()
    # Housekeeping: challenges nobody answered.
    await WebauthnChallenge.delete().where(WebauthnChallenge.expires_at < now).run()
    ticket = secrets.token_urlsafe(32)
    await WebauthnChallenge.insert(
        WebauthnChallenge(
            token_hash=hash_token(ticket),
            purpose=purpose,
            user=user_id,
            challenge=bytes_to_base64url(challenge),
            expires_at=now + timedelta(minutes=CHALLENGE_MINUTES),
        )
    ).run()
    return ticket


async def take_challenge(ticket: str, purpose: str, user_id: int | None) -> bytes:
    """The challenge behind ``ticket``, deleted as it is read (single use); ``Invalid`` when
    it is unknown, used, expired, for another purpose or another account."""
    if not ticket or len(ticket) > 100:
        raise Invalid({"passkey": NOT_ACCEPTED})
    rows = (
        await WebauthnChallenge.delete()
        .where(WebauthnChallenge.token_hash == hash_token(ticket))
        .returning(
            WebauthnChallenge.purpose,
            WebauthnChallenge.user,
            WebauthnChallenge.challenge,
            WebauthnChallenge.expires_at,
        )
        .run()
    )
    if not rows:
        raise Invalid({"passkey": "This request has expired. Try again."})
    row = rows[0]
    if row["purpose"] != purpose or row["user"] != user_id or row["expires_at"] <= utcnow():
        raise Invalid({"passkey": "This request has expired. Try again."})
    return base64url_to_bytes(row["challenge"])


def _verified(verify: Callable[..., T], settings: Settings, **answer: Any) -> T:
    """A ceremony's answer checked by ``webauthn`` against this relying party and origin,
    user verification required; ``Invalid`` (one message, whatever failed) otherwise."""
    try:
        return verify(
            expected_rp_id=rp_id(settings),
            expected_origin=expected_origin(settings),
            require_user_verification=True,
            **answer,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
        raise Invalid({"passkey": NOT_ACCEPTED}) from exc


def _options_json(options: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(options_to_json(options))
    return data


async def passkeys_of(user_id: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = (
        await Passkey.select(Passkey.id, Passkey.name, Passkey.created_at, Passkey.last_used_at)
        .where(Passkey.user == user_id)
        .order_by(Passkey.id)
        .run()
    )
    return rows


async def has_passkey(user_id: int) -> bool:
    return bool(await Passkey.exists().where(Passkey.user == user_id).run())


async def _descriptors(user_id: int) -> list[PublicKeyCredentialDescriptor]:
    rows = await Passkey.select(Passkey.credential_id).where(Passkey.user == user_id).run()
    return [PublicKeyCredentialDescriptor(id=base64url_to_bytes(r["credential_id"])) for r in rows]


# -- registration --------------------------------------------------------------------


async def registration_options(
    settings: Settings, user_id: int, email: str, name: str
) -> dict[str, Any]:
    """Options for ``navigator.credentials.create`` and the ticket to send back."""
    options = generate_registration_options(
        rp_id=rp_id(settings),
        rp_name=RP_NAME,
        user_name=email,
        user_id=user_handle(settings, user_id),
        user_display_name=name or email,
        timeout=TIMEOUT_MS,
        attestation=AttestationConveyancePreference.NONE,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            require_resident_key=True,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=await _descriptors(user_id),
    )
    ticket = await _store_challenge(REGISTER, user_id, options.challenge)
    return {"ticket": ticket, "publicKey": _options_json(options)}


def clean_name(name: str) -> str:
    name = " ".join(name.split())
    if not name:
        raise Invalid({"name": "Give the passkey a name, such as the device it is on."})
    if len(name) > NAME_MAX:
        raise Invalid({"name": f"Use at most {NAME_MAX} characters."})
    return name


@dataclass(frozen=True)
class NewPasskey:
    """A verified registration, not stored yet."""

    name: str
    credential_id: str
    public_key: str
    sign_count: int


async def verify_registration(
    settings: Settings, user_id: int, ticket: str, credential: Any, name: str
) -> NewPasskey:
    """Check the browser's answer to the registration challenge; ``Invalid`` otherwise."""
    name = clean_name(name)
    challenge = await take_challenge(ticket, REGISTER, user_id)
    if not isinstance(credential, dict):
        raise Invalid({"passkey": NOT_ACCEPTED})
    verified = _verified(
        verify_registration_response, settings, credential=credential, expected_challenge=challenge
    )
    return NewPasskey(
        name=name,
        credential_id=bytes_to_base64url(verified.credential_id),
        public_key=bytes_to_base64url(verified.credential_public_key),
        sign_count=verified.sign_count,
    )


async def store(user_id: int, new: NewPasskey) -> int:
    """Keep a verified passkey; its id."""
    async with records.unique_or_invalid({"passkey": "This passkey is already registered."}):
        passkey_id = await db.insert_row(
            Passkey(
                user=user_id,
                name=new.name,
                credential_id=new.credential_id,
                public_key=new.public_key,
                sign_count=new.sign_count,
                created_at=utcnow(),
                last_used_at=None,
            )
        )
    return passkey_id


async def remove(user_id: int, passkey_id: int) -> dict[str, Any] | None:
    """Delete one of the user's passkeys; the row removed, or None when it is not theirs."""
    rows = (
        await Passkey.delete()
        .where((Passkey.id == passkey_id) & (Passkey.user == user_id))
        .returning(Passkey.id, Passkey.name)
        .run()
    )
    return rows[0] if rows else None


async def set_name(user_id: int, passkey_id: int, name: str) -> None:
    await (
        Passkey.update({Passkey.name: name})
        .where((Passkey.id == passkey_id) & (Passkey.user == user_id))
        .run()
    )


async def get(user_id: int, passkey_id: int) -> dict[str, Any] | None:
    row: dict[str, Any] | None = (
        await Passkey.select(Passkey.id, Passkey.name, Passkey.created_at, Passkey.last_used_at)
        .where((Passkey.id == passkey_id) & (Passkey.user == user_id))
        .first()
        .run()
    )
    return row


async def remove_all(user_id: int) -> int:
    rows = await Passkey.delete().where(Passkey.user == user_id).returning(Passkey.id).run()
    return len(rows)


# -- authentication ----------------------------------------------------------------------


async def authentication_options(
    settings: Settings, purpose: str, user_id: int | None = None
) -> dict[str, Any]:
    """Options for ``navigator.credentials.get``: for a known user (the second step) their
    passkeys; for a passkey alone none, so the browser offers the discoverable ones."""
    options = generate_authentication_options(
        rp_id=rp_id(settings),
        timeout=TIMEOUT_MS,
        allow_credentials=await _descriptors(user_id) if user_id is not None else [],
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    ticket = await _store_challenge(purpose, user_id, options.challenge)
    return {"ticket": ticket, "publicKey": _options_json(options)}


async def authenticate(
    settings: Settings, ticket: str, credential: Any, purpose: str, user_id: int | None = None
) -> int:
    """Verify an assertion; the id of the passkey's user. ``Invalid`` otherwise.

    With ``user_id`` (the second step) the passkey must be that user's.
    """
    challenge = await take_challenge(ticket, purpose, user_id)
    if not isinstance(credential, dict) or not isinstance(credential.get("id"), str):
        raise Invalid({"passkey": NOT_ACCEPTED})
    row = (
        await Passkey.select(Passkey.id, Passkey.user, Passkey.public_key, Passkey.sign_count)
        .where(Passkey.credential_id == credential["id"][:1400])
        .first()
        .run()
    )
    if row is None or (user_id is not None and row["user"] != user_id):
        raise Invalid({"passkey": NOT_ACCEPTED})
    response = credential.get("response")
    handle = response.get("userHandle") if isinstance(response, dict) else None
    if handle and handle != bytes_to_base64url(user_handle(settings, row["user"])):
        raise Invalid({"passkey": NOT_ACCEPTED})
    verified = _verified(
        verify_authentication_response,
        settings,
        credential=credential,
        expected_challenge=challenge,
        credential_public_key=base64url_to_bytes(row["public_key"]),
        credential_current_sign_count=row["sign_count"],
    )
    await (
        Passkey.update(
            {Passkey.sign_count: verified.new_sign_count, Passkey.last_used_at: utcnow()}
        )
        .where(Passkey.id == row["id"])
        .run()
    )
    return int(row["user"])
