"""Two-step sign-in: the owners' policy, pending sign-ins, the second step, enrolment and
resets. No HTTP here.

* After the password, an account with a second factor (an authenticator app or a
  passkey) gets a *pending sign-in*, not a session: a row in ``pending_sign_in``
  behind its own cookie, valid for ten minutes, which no middleware or guard
  treats as signed in. The second step deletes it and opens a new session.
* Owners choose per staff role whether two-step sign-in is required. A member of
  such a role without a second factor is signed in *gated*
  (``CurrentUser.must_enrol``): every route but enrolment and sign-out sends them
  to enrol (``portal.web.guards``). The loader here marks the user on every
  request, so a policy switched on takes effect at once.
* Second-step attempts are throttled like passwords (``check_throttle`` and
  ``login_attempt``), under their own keys, so a right password does not clear
  the count of wrong codes.
* Every enrolment, removal, reset and recovery-code use is audited and emailed
  to the account's owner.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from typing import Any

from portal import db, records
from portal.audit import service as audit
from portal.auth import passkeys, service, tokens, totp
from portal.auth.tables import LoginAttempt, PendingSignIn, TwoStepPolicy, User, UserSession
from portal.email import messages
from portal.email.service import EmailError
from portal.errors import Conflict, Forbidden, Invalid, NotFound
from portal.identity import CLIENT, OWNER, STAFF_ROLES, CurrentUser
from portal.settings import Settings
from portal.timeutil import utcnow

logger = logging.getLogger("portal.twostep")

PENDING_MINUTES = 10
# Second-step attempts are counted under these prefixes in ``login_attempt``.
KEY_PREFIX = "2fa:"
WRONG_CODE = "That code is not right. Try again, or use a recovery code."


def _actor(user_id: int, email: str, name: str, role: str) -> CurrentUser:
    return CurrentUser(id=user_id, email=email, name=name, role=role, location_ids=frozenset())


# -- factors -----------------------------------------------------------------------


@dataclass(frozen=True)
class Factors:
    totp: bool
    passkeys: int
    recovery_codes_left: int

    @property
    def any(self) -> bool:
        return self.totp or self.passkeys > 0


async def factors_of(user_id: int) -> Factors:
    return Factors(
        totp=await totp.is_active(user_id),
        passkeys=len(await passkeys.passkeys_of(user_id)),
        recovery_codes_left=await totp.recovery_codes_left(user_id),
    )


async def has_second_factor(user_id: int) -> bool:
    return await totp.is_active(user_id) or await passkeys.has_passkey(user_id)


# -- the policy --------------------------------------------------------------------


async def policy() -> dict[str, bool]:
    """Staff role → whether two-step sign-in is required (clients choose for themselves)."""
    rows = await TwoStepPolicy.select(TwoStepPolicy.role, TwoStepPolicy.required).run()
    stored = {r["role"]: bool(r["required"]) for r in rows}
    return {role: stored.get(role, False) for role in STAFF_ROLES}


async def is_required(role: str) -> bool:
    if role not in STAFF_ROLES:
        return False
    return bool(
        await TwoStepPolicy.exists()
        .where((TwoStepPolicy.role == role) & (TwoStepPolicy.required == True))  # noqa: E712
        .run()
    )


async def set_policy(actor: CurrentUser, required_roles: set[str], *, address: str = "") -> bool:
    """Owners only; audited. Whether anything changed."""
    if actor.role != OWNER:
        raise Forbidden("Only owners choose who must sign in in two steps.")
    unknown = set(required_roles) - set(STAFF_ROLES)
    if unknown:
        raise Invalid({"roles": "Choose staff roles from the list."})
    before = await policy()
    after = {role: role in required_roles for role in STAFF_ROLES}
    if before == after:
        return False
    now = utcnow()
    async with db.transaction():
        for role in STAFF_ROLES:
            updated = await db.update_where(
                TwoStepPolicy,
                {TwoStepPolicy.required: after[role], TwoStepPolicy.updated_at: now},
                TwoStepPolicy.role == role,
            )
            if not updated:
                await TwoStepPolicy.insert(
                    TwoStepPolicy(role=role, required=after[role], updated_at=now)
                ).run()
        await audit.record(
            actor, "update", "two_step_policy", "roles", before=before, after=after, address=address
        )
    return True


async def needs_enrolment(user_id: int, role: str) -> bool:
    return await is_required(role) and not await has_second_factor(user_id)


async def load_session(settings: Settings, token: str) -> CurrentUser | None:
    """``auth.service.load_session``, with staff whose role requires a second factor they
    do not have marked ``must_enrol`` (the guards then only let them enrol)."""
    found = await service.session_of(settings, token)
    if found is None:
        return None
    user, required = found
    if required and user.role in STAFF_ROLES and not await has_second_factor(user.id):
        return replace(user, must_enrol=True)
    return user


async def authenticate_token(token: str) -> CurrentUser | None:
    """``auth.tokens.authenticate``, marked ``must_enrol`` like :func:`load_session`: a
    token created before the role required a second factor reads nothing until its
    user has enrolled (the middleware answers 403)."""
    user = await tokens.authenticate(token)
    if user is not None and user.role in STAFF_ROLES and await needs_enrolment(user.id, user.role):
        return replace(user, must_enrol=True)
    return user


# -- notices -----------------------------------------------------------------------


async def _notify(settings: Settings | None, user_id: int, event: str) -> None:
    """Email the account's owner (after the change committed); a mail problem is logged."""
    row = await User.select(User.email, User.name).where(User.id == user_id).first().run()
    if row is None:
        return
    try:
        await messages.send_two_step_notice(
            row["email"],
            name=row["name"] or row["email"],
            event=event,
            happened_at=utcnow(),
            settings=settings,
        )
    except EmailError:
        logger.warning("Could not email the two-step notice to user %s", user_id)


# -- enrolment and removal by the account's owner -----------------------------------------


async def confirm_totp(
    settings: Settings | None,
    user: CurrentUser,
    code: str,
    *,
    at: datetime | None = None,
    address: str = "",
) -> list[str]:
    """Activate the authenticator app; new recovery codes when the account had none left
    (returned, to be shown once), else []."""
    codes: list[str] = []
    async with db.transaction():
        await totp.confirm_enrolment(user.id, code, at=at)
        if await totp.recovery_codes_left(user.id) == 0:
            codes = await totp.replace_recovery_codes(user.id)
        await audit.record(
            user, "enrol_totp", "user", user.id, after={"authenticator_app": "on"}, address=address
        )
    await _notify(settings, user.id, "an authenticator app was set up for two-step sign-in.")
    return codes


async def add_passkey(
    settings: Settings,
    user: CurrentUser,
    ticket: str,
    credential: Any,
    name: str,
    *,
    address: str = "",
) -> int:
    new = await passkeys.verify_registration(settings, user.id, ticket, credential, name)
    async with db.transaction():
        passkey_id = await passkeys.store(user.id, new)
        await audit.record(
            user, "add_passkey", "user", user.id, after={"passkey": new.name}, address=address
        )
    await _notify(settings, user.id, f"a passkey named “{new.name}” was added.")
    return passkey_id


async def _refuse_last_factor(user: CurrentUser, *, removing_totp: bool, passkey_id: int) -> None:
    if not await is_required(user.role):
        return
    factors = await factors_of(user.id)
    left_totp = factors.totp and not removing_totp
    left_passkeys = factors.passkeys - (1 if passkey_id else 0)
    if not left_totp and left_passkeys <= 0:
        raise Conflict(
            "Your role requires two-step sign-in: add another passkey or an authenticator "
            "app before removing this one."
        )


async def remove_passkey(
    settings: Settings | None, user: CurrentUser, passkey_id: int, *, address: str = ""
) -> str:
    """Remove one of the user's own passkeys; its name."""
    row = await passkeys.get(user.id, passkey_id)
    if row is None:
        raise NotFound("No such passkey.")
    await _refuse_last_factor(user, removing_totp=False, passkey_id=passkey_id)
    async with db.transaction():
        removed = await passkeys.remove(user.id, passkey_id)
        if removed is None:
            raise NotFound("No such passkey.")
        await audit.record(
            user,
            "remove_passkey",
            "user",
            user.id,
            before={"passkey": removed["name"]},
            address=address,
        )
    await _notify(settings, user.id, f"the passkey named “{removed['name']}” was removed.")
    return str(removed["name"])


async def rename_passkeys(user: CurrentUser, names: dict[int, str], *, address: str = "") -> int:
    """New names for the user's own passkeys (``{passkey id: name}``; the name tells their
    devices apart); how many changed. Every name is checked before any is saved, and
    ``Invalid`` names each wrong field (``name-<id>``)."""
    own = {row["id"]: row["name"] for row in await passkeys.passkeys_of(user.id)}
    errors: dict[str, str] = {}
    cleaned: dict[int, str] = {}
    for passkey_id, name in names.items():
        if passkey_id not in own:
            raise NotFound("No such passkey.")
        try:
            cleaned[passkey_id] = passkeys.clean_name(name)
        except Invalid as exc:
            errors[f"name-{passkey_id}"] = exc.errors["name"]
    if errors:
        raise Invalid(errors)
    changed = {i: name for i, name in cleaned.items() if name != own[i]}
    async with db.transaction():
        for passkey_id, name in changed.items():
            await passkeys.set_name(user.id, passkey_id, name)
            await audit.record(
                user,
                "rename_passkey",
                "user",
                user.id,
                before={"passkey": own[passkey_id]},
                after={"passkey": name},
                address=address,
            )
    return len(changed)


async def remove_totp(settings: Settings | None, user: CurrentUser, *, address: str = "") -> None:
    if not await totp.is_active(user.id):
        await totp.remove(user.id)  # an unconfirmed setup, if any
        raise NotFound("No authenticator app is set up.")
    await _refuse_last_factor(user, removing_totp=True, passkey_id=0)
    async with db.transaction():
        await totp.remove(user.id)
        await audit.record(
            user,
            "remove_totp",
            "user",
            user.id,
            before={"authenticator_app": "on"},
            address=address,
        )
    await _notify(settings, user.id, "the authenticator app was removed from two-step sign-in.")


async def new_recovery_codes(
    settings: Settings | None, user: CurrentUser, *, address: str = ""
) -> list[str]:
    if not await has_second_factor(user.id):
        raise Conflict("Set up a passkey or an authenticator app first.")
    async with db.transaction():
        codes = await totp.replace_recovery_codes(user.id)
        await audit.record(
            user,
            "recovery_codes",
            "user",
            user.id,
            after={"recovery_codes": len(codes)},
            address=address,
        )
    await _notify(settings, user.id, "new recovery codes were made; the old ones no longer work.")
    return codes


async def reset(
    settings: Settings | None, actor: CurrentUser | None, user_id: int, *, address: str = ""
) -> Factors:
    """Remove every second factor and recovery code of ``user_id`` and end their sessions
    (an owner for another member, or ``portal users reset-2fa``); audited and emailed."""
    await records.first(User.select(User.id).where(User.id == user_id), "No such user.")
    if actor is not None:
        if actor.role != OWNER:
            raise Forbidden("Only owners reset another member's two-step sign-in.")
        if actor.id == user_id:
            raise Invalid({"user": "Reset your own from your account page, or ask another owner."})
    before = await factors_of(user_id)
    async with db.transaction():
        await totp.remove(user_id)
        await passkeys.remove_all(user_id)
        await totp.remove_recovery_codes(user_id)
        await PendingSignIn.delete().where(PendingSignIn.user == user_id).run()
        await service.end_sessions_of(user_id)
        await audit.record(
            actor,
            "reset_two_step",
            "user",
            user_id,
            before={
                "authenticator_app": "on" if before.totp else "off",
                "passkeys": before.passkeys,
                "recovery_codes_left": before.recovery_codes_left,
            },
            after={"authenticator_app": "off", "passkeys": 0, "recovery_codes_left": 0},
            address=address,
        )
    by = "an owner" if actor is not None else "an administrator"
    await _notify(
        settings,
        user_id,
        f"{by} reset your two-step sign-in: passkeys, authenticator app and recovery codes "
        "were removed.",
    )
    return before


# -- pending sign-ins ----------------------------------------------------------------


@dataclass(frozen=True)
class Pending:
    id: int
    user_id: int
    email: str
    name: str
    role: str
    next_url: str
    address: str
    user_agent: str
    expires_at: datetime

    @property
    def actor(self) -> CurrentUser:
        return _actor(self.user_id, self.email, self.name, self.role)


async def after_password(settings: Settings, session_token: str, next_url: str = "") -> str | None:
    """Called with the session ``sign_in`` just opened. When the account has a second
    factor, that session is ended before anyone uses it and a pending sign-in takes its
    place: its token is returned. None: no second step, the session stands."""
    row = (
        await UserSession.select(
            UserSession.id, UserSession.user, UserSession.address, UserSession.user_agent
        )
        .where(UserSession.token_hash == service.hash_token(session_token))
        .first()
        .run()
    )
    if row is None or not await has_second_factor(row["user"]):
        return None
    now = utcnow()
    async with db.transaction():
        await UserSession.delete().where(UserSession.id == row["id"]).run()
        await PendingSignIn.delete().where(PendingSignIn.expires_at <= now).run()
        return await service.store_secret(
            PendingSignIn,
            timedelta(minutes=PENDING_MINUTES),
            now=now,
            user=row["user"],
            address=row["address"],
            user_agent=row["user_agent"],
            next_url=next_url[:500],
        )


async def pending(token: str) -> Pending | None:
    """The pending sign-in behind ``token``; None when unknown, expired or its user inactive."""
    row = await service.row_by_token(
        PendingSignIn,
        token,
        PendingSignIn.id,
        *service.account_columns(PendingSignIn.user),
        PendingSignIn.next_url,
        PendingSignIn.address,
        PendingSignIn.user_agent,
        PendingSignIn.expires_at,
    )
    if row is None:
        return None
    if row["expires_at"] <= utcnow() or not row["active"]:
        await PendingSignIn.delete().where(PendingSignIn.id == row["id"]).run()
        return None
    return Pending(**{field.name: row[field.name] for field in fields(Pending)})


async def cancel(token: str) -> None:
    await PendingSignIn.delete().where(PendingSignIn.token_hash == service.hash_token(token)).run()


async def _finish(settings: Settings, step: Pending) -> str:
    """The pending sign-in is used up (once: compare-and-set) and a new session opened."""
    async with db.transaction():
        taken = (
            await PendingSignIn.delete()
            .where(PendingSignIn.id == step.id)
            .returning(PendingSignIn.id)
            .run()
        )
        if not taken:
            raise Invalid({"code": "This sign-in has expired. Sign in again."})
        return await service.open_session(
            settings, step.user_id, address=step.address, user_agent=step.user_agent
        )


# -- the second step ---------------------------------------------------------------


def _keys(email: str, address: str) -> tuple[str, str]:
    return (KEY_PREFIX + service.normalize_email(email))[:254], (KEY_PREFIX + address)[:64]


# Wrong second steps for one account from every address together, per window: far fewer
# than for passwords, as whoever is guessing here already has the password.
MAX_FAILURES_ALL_ADDRESSES = 10


async def _check_throttle(settings: Settings, email: str, address: str) -> None:
    account_key, address_key = _keys(email, address)
    await service.check_throttle(settings, account_key, address_key)
    now = utcnow()
    window = timedelta(minutes=settings.login_window_minutes)
    failures = await service.failures_since_success(
        LoginAttempt.account_key == account_key, now - window
    )
    if len(failures) >= MAX_FAILURES_ALL_ADDRESSES:
        oldest = failures[-MAX_FAILURES_ALL_ADDRESSES]
        raise service.Throttled(int((oldest + window - now).total_seconds()) + 1)


async def _record(email: str, address: str, ok: bool) -> None:
    await service.record_attempt(*_keys(email, address), ok)


async def second_step_code(
    settings: Settings,
    step: Pending,
    code: str,
    *,
    address: str,
    at: datetime | None = None,
) -> str:
    """An authenticator code (six digits) or a recovery code; the new session's token.

    ``service.Throttled`` after too many wrong codes; ``Invalid`` for a wrong one.
    """
    await _check_throttle(settings, step.email, address)
    cleaned = totp.clean_code(code)
    recovery = False
    if cleaned.isdigit() and len(cleaned) == totp.DIGITS:
        ok = await totp.verify(step.user_id, cleaned, at=at)
    else:
        ok = await totp.use_recovery_code(step.user_id, cleaned)
        recovery = ok
    await _record(step.email, address, ok)
    if not ok:
        raise Invalid({"code": WRONG_CODE})
    async with db.transaction():
        token = await _finish(settings, step)
        if recovery:
            left = await totp.recovery_codes_left(step.user_id)
            await audit.record(
                step.actor,
                "use_recovery_code",
                "user",
                step.user_id,
                after={"recovery_codes_left": left},
                address=address,
            )
    if recovery:
        await _notify(
            settings,
            step.user_id,
            f"a recovery code was used to sign in ({left} left).",
        )
    return token


async def second_step_passkey(
    settings: Settings, step: Pending, ticket: str, credential: Any, *, address: str
) -> str:
    await _check_throttle(settings, step.email, address)
    try:
        await passkeys.authenticate(
            settings, ticket, credential, passkeys.SECOND_STEP, user_id=step.user_id
        )
    except Invalid:
        await _record(step.email, address, False)
        raise
    await _record(step.email, address, True)
    return await _finish(settings, step)


async def passkey_sign_in(
    settings: Settings,
    ticket: str,
    credential: Any,
    *,
    address: str,
    browser: service.Browser = service.UNKNOWN_BROWSER,
) -> str:
    """A passkey alone (it is two factors: the device and its user verification); the new
    session's token. Failures are counted against the address."""
    address = address[:64]
    # Failures are counted against the address, under the second step's prefix.
    keys = ((KEY_PREFIX + address)[:254], (KEY_PREFIX + address)[:64])
    await service.check_throttle(settings, *keys)
    try:
        user_id = await passkeys.authenticate(settings, ticket, credential, passkeys.SIGN_IN)
        active = await User.exists().where((User.id == user_id) & (User.active == True)).run()  # noqa: E712
        if not active:
            raise Invalid({"passkey": passkeys.NOT_ACCEPTED})
    except Invalid:
        await service.record_attempt(*keys, False)
        raise
    return await service.replace_session(settings, user_id, address=address, browser=browser)


async def renew_session(
    settings: Settings, user: CurrentUser, *, address: str = "", user_agent: str = ""
) -> str:
    """A new session for ``user`` in place of the current one (after a gated enrolment)."""
    async with db.transaction():
        await UserSession.delete().where(UserSession.id == user.session_id).run()
        return await service.open_session(settings, user.id, address=address, user_agent=user_agent)


def opt_in_roles() -> tuple[str, ...]:
    """Who may set up two-step sign-in for themselves: every staff role and clients."""
    return (*STAFF_ROLES, CLIENT)


__all__ = [
    "Factors",
    "Pending",
    "after_password",
    "factors_of",
    "load_session",
    "policy",
    "reset",
    "set_policy",
]
