"""Accounts, roles, sign-in throttling and server-side sessions. No HTTP here."""

from __future__ import annotations

import hashlib
import math
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from portal import db
from portal.auth import passwords
from portal.auth.tables import (
    ApiToken,
    LoginAttempt,
    PendingSignIn,
    User,
    UserLocation,
    UserSession,
    WebauthnChallenge,
)

# Roles and the signed-in user live below every context (portal.identity); re-exported here.
from portal.identity import (  # noqa: F401
    ACCOUNTANT,
    CLIENT,
    LOCATION_BOUND_ROLES,
    MANAGER,
    OWNER,
    ROLE_LABELS,
    ROLES,
    STAFF_ROLES,
    THERAPIST,
    CurrentUser,
)
from portal.settings import Settings
from portal.timeutil import utcnow


@dataclass(frozen=True)
class Browser:
    """What a sign-in records of the browser, and the session it held before.

    That earlier session (``replace_token``) ends when the new one opens: whoever was
    signed in in this browser is signed out, and no token outlives a sign-in (fixation).
    """

    user_agent: str = ""
    replace_token: str | None = None


UNKNOWN_BROWSER = Browser()


class InvalidCredentials(Exception):
    """Wrong email or password, or an inactive account (deliberately not told apart)."""


class Throttled(Exception):
    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__("Too many failed sign-in attempts")
        self.retry_after_seconds = max(1, retry_after_seconds)

    @property
    def minutes(self) -> int:
        return max(1, math.ceil(self.retry_after_seconds / 60))


def normalize_email(email: str) -> str:
    return email.strip().lower()


# An address mail can be sent to without quoting: the dot-atom of RFC 5322 for
# the local part (no quotes, angle brackets, commas or semicolons, which would
# break the To header or split it into several recipients) and a domain of
# letter/digit/hyphen labels with a dot.
_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_DOMAIN = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
EMAIL_RE = re.compile(rf"^{_LOCAL}@{_DOMAIN}$")


def is_valid_email(email: str) -> bool:
    """Whether ``email`` (normalised) is an address the portal accepts and can mail."""
    return len(email) <= 254 and bool(EMAIL_RE.fullmatch(email))


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def store_secret(
    table: Any, lifetime: timedelta, *, now: datetime | None = None, **fields: Any
) -> str:
    """A new random token, stored in ``table`` as its hash with the row's other ``fields``.

    The row is created ``now`` and expires after ``lifetime``; the token itself is only
    returned (for the cookie or the email), so a copy of the database opens nothing.
    """
    token = secrets.token_urlsafe(32)
    now = now or utcnow()
    await table.insert(
        table(token_hash=hash_token(token), created_at=now, expires_at=now + lifetime, **fields)
    ).run()
    return token


async def row_by_token(table: Any, token: str, *columns: Any) -> dict[str, Any] | None:
    """The row of ``table`` (which keeps ``token_hash``) for this token, or None.

    Every secret the portal hands out (session, pending sign-in, link in an email) is
    stored only as its hash. An empty or over-long token is no token of ours: it is
    answered without a query.
    """
    if not token or len(token) > 100:
        return None
    row: dict[str, Any] | None = (
        await table.select(*columns).where(table.token_hash == hash_token(token)).first().run()
    )
    return row


async def failures_since_success(where: Any, since: datetime) -> list[datetime]:
    """Failure times matching ``where`` in the window, after its last success."""
    last_success = (
        await LoginAttempt.select(LoginAttempt.at)
        .where(where & (LoginAttempt.at >= since) & (LoginAttempt.success == True))  # noqa: E712
        .order_by(LoginAttempt.at, ascending=False)
        .first()
        .run()
    )
    start = last_success["at"] if last_success else since
    rows = (
        await LoginAttempt.select(LoginAttempt.at)
        .where(where & (LoginAttempt.at > start) & (LoginAttempt.success == False))  # noqa: E712
        .order_by(LoginAttempt.at)
        .run()
    )
    return [r["at"] for r in rows]


async def record_attempt(account_key: str, address: str, ok: bool) -> None:
    """One sign-in try (password, second step or passkey) for the throttle's counts."""
    await LoginAttempt.insert(
        LoginAttempt(account_key=account_key, address=address, at=utcnow(), success=ok)
    ).run()


async def _address_failures(address: str, since: datetime) -> list[datetime]:
    """Failure times from ``address`` in the window that still count against it.

    A success clears only its own account's earlier failures from the address:
    signing in to an account of one's own between guesses at another's resets
    nothing. (Refused, throttled tries are not recorded, so the rows read here
    stay few.)
    """
    rows = (
        await LoginAttempt.select(LoginAttempt.account_key, LoginAttempt.at, LoginAttempt.success)
        .where((LoginAttempt.address == address) & (LoginAttempt.at >= since))
        .order_by(LoginAttempt.at)
        .run()
    )
    last_success: dict[str, datetime] = {}
    for row in rows:
        if row["success"]:
            last_success[row["account_key"]] = row["at"]
    return [
        row["at"]
        for row in rows
        if not row["success"]
        and not (
            row["account_key"] in last_success and last_success[row["account_key"]] > row["at"]
        )
    ]


async def check_throttle(settings: Settings, account_key: str, address: str) -> None:
    """Refuse (``Throttled``) a sign-in try that has had too many failures before it.

    Three counts over the sliding window:

    * the account from this address (reset by its success from there): the
      owner's own device is not locked out by someone guessing elsewhere;
    * this address, whatever the account (a success clears only that
      account's own failures): one source cannot guess across accounts;
    * the account from every address (reset by its success), a generous limit
      against guessing spread over many addresses.
    """
    now = utcnow()
    window = timedelta(minutes=settings.login_window_minutes)
    since = now - window
    pair = (LoginAttempt.account_key == account_key) & (LoginAttempt.address == address)
    counts = (
        (
            await failures_since_success(pair, since),
            settings.login_max_failures_per_account,
        ),
        (await _address_failures(address, since), settings.login_max_failures_per_address),
        (
            await failures_since_success(LoginAttempt.account_key == account_key, since),
            settings.login_max_failures_per_account_total,
        ),
    )
    waits = [
        # Free again when the oldest counted failure leaves the window.
        int((failures[-limit] + window - now).total_seconds()) + 1
        for failures, limit in counts
        if len(failures) >= limit
    ]
    if waits:
        raise Throttled(max(waits))


async def sign_in(
    settings: Settings,
    email: str,
    password: str,
    *,
    address: str,
    browser: Browser = UNKNOWN_BROWSER,
) -> str:
    """Check credentials and open a new session; returns the session token.

    ``replace_token`` is the session the browser had before (if any): it is
    ended, so a session id never survives a sign-in (no fixation).
    """
    key = normalize_email(email)[:254]
    address = address[:64]
    await check_throttle(settings, key, address)
    user = await User.objects().where(User.email == key).first().run()
    ok = False
    if user is None:
        passwords.burn_time(password)
    else:
        ok = passwords.verify_password(user.password_hash, password) and user.active
    await record_attempt(key, address, ok)
    if not ok or user is None:
        raise InvalidCredentials()
    if passwords.needs_rehash(user.password_hash):
        await (
            User.update({User.password_hash: passwords.hash_password(password)})
            .where(User.id == user.id)
            .run()
        )
    return await replace_session(settings, user.id, address=address, browser=browser)


async def replace_session(
    settings: Settings, user_id: int, *, address: str, browser: Browser
) -> str:
    """A new session for ``user_id`` in ``browser``, ending the one it held before."""
    if browser.replace_token:
        await end_session(browser.replace_token)
    return await open_session(settings, user_id, address=address, user_agent=browser.user_agent)


async def open_session(
    settings: Settings, user_id: int, *, address: str = "", user_agent: str = ""
) -> str:
    now = utcnow()
    return await store_secret(
        UserSession,
        timedelta(hours=settings.session_absolute_hours),
        now=now,
        user=user_id,
        last_seen_at=now,
        address=address[:64],
        user_agent=user_agent[:255],
    )


async def end_session(token: str) -> None:
    await UserSession.delete().where(UserSession.token_hash == hash_token(token)).run()


async def end_sessions_of(user_id: int, *, except_session_id: int | None = None) -> None:
    query = UserSession.delete().where(UserSession.user == user_id)
    if except_session_id is not None:
        query = query.where(UserSession.id != except_session_id)
    await query.run()


async def end_access_of(user_id: int) -> None:
    """End every session of the user and revoke every API token they hold.

    For a new password (changed, reset or set by an owner), a new role and a
    deactivation: whoever held the old credentials loses them all. Revoked
    tokens stay revoked; a reactivated account starts without any.
    """
    await end_sessions_of(user_id)
    await (
        ApiToken.update({ApiToken.revoked_at: utcnow()})
        .where((ApiToken.user == user_id) & ApiToken.revoked_at.is_null())
        .run()
    )


async def location_ids_of(user_id: int) -> frozenset[int]:
    rows = (
        await UserLocation.select(UserLocation.location).where(UserLocation.user == user_id).run()
    )
    return frozenset(r["location"] for r in rows)


def account_columns(user: Any) -> list[Any]:
    """The joined account of a row that names one (a session, an API token, a pending
    sign-in, a reset link), given its ``user`` foreign key: ``user_id``, ``email``,
    ``name``, ``role`` and ``active``."""
    return [
        user.id.as_alias("user_id"),
        user.email.as_alias("email"),
        user.name.as_alias("name"),
        user.role.as_alias("role"),
        user.active.as_alias("active"),
    ]


async def actor_of(row: dict[str, Any], *, session_id: int = 0) -> CurrentUser:
    """The user a row read with :func:`account_columns` acts as, with their locations."""
    locations = (
        await location_ids_of(row["user_id"])
        if row["role"] in LOCATION_BOUND_ROLES
        else frozenset()
    )
    return CurrentUser(
        id=row["user_id"],
        email=row["email"],
        name=row["name"],
        role=row["role"],
        location_ids=locations,
        session_id=session_id,
    )


# The session, its account and whether the account's role must sign in in two steps,
# in one query: every page asks it first (``auth.twostep.load_session``).
_SESSION = (
    "SELECT s.id AS id, s.last_seen_at AS last_seen_at, s.expires_at AS expires_at, "
    "u.id AS user_id, u.email AS email, u.name AS name, u.role AS role, u.active AS active, "
    "EXISTS (SELECT 1 FROM two_step_policy t WHERE t.role = u.role AND t.required = {}) "
    'AS two_step_required FROM user_session s JOIN app_user u ON u.id = s."user" '
    "WHERE s.token_hash = {}"
)


async def session_of(settings: Settings, token: str) -> tuple[CurrentUser, bool] | None:
    """The user behind a session token and whether their role requires two-step
    sign-in, or None when the token is unknown or has expired.

    Touches ``last_seen_at`` at most once per ``session_touch_seconds`` so that
    reading pages does not write to the database on every request.
    """
    if not token or len(token) > 100:
        return None
    rows = await UserSession.raw(_SESSION, True, hash_token(token)).run()
    if not rows:
        return None
    row = rows[0]
    now = utcnow()
    idle_minutes = (
        settings.session_idle_minutes
        if row["role"] in STAFF_ROLES
        else settings.client_session_idle_minutes
    )
    expired = row["expires_at"] <= now or not row["active"]
    if now - row["last_seen_at"] > timedelta(minutes=idle_minutes):
        expired = True
    if expired:
        await UserSession.delete().where(UserSession.id == row["id"]).run()
        return None
    if (now - row["last_seen_at"]).total_seconds() >= settings.session_touch_seconds:
        await (
            UserSession.update({UserSession.last_seen_at: now})
            .where(UserSession.id == row["id"])
            .run()
        )
    return await actor_of(row, session_id=row["id"]), bool(row["two_step_required"])


async def load_session(settings: Settings, token: str) -> CurrentUser | None:
    """The user behind a session token, or None (:func:`session_of`)."""
    found = await session_of(settings, token)
    return None if found is None else found[0]


async def change_password(
    settings: Settings,
    user: CurrentUser,
    current_password: str,
    new_password: str,
    *,
    address: str = "",
    user_agent: str = "",
) -> tuple[str, dict[str, str]]:
    """Change the signed-in user's password; ``Throttled`` after too many wrong
    current passwords.

    Ends every session of the user (this one too) and opens a fresh one, whose
    token is returned. Errors are returned per field, nothing is changed then.
    """
    errors: dict[str, str] = {}
    # Guessing the current password from a signed-in browser is throttled like
    # signing in (the same counters: it is the same secret).
    key = normalize_email(user.email)[:254]
    address = address[:64]
    await check_throttle(settings, key, address)
    stored = await User.select(User.password_hash).where(User.id == user.id).first().run()
    ok = stored is not None and passwords.verify_password(stored["password_hash"], current_password)
    await record_attempt(key, address, ok)
    if not ok:
        errors["current_password"] = "This is not your current password."
    problem = passwords.password_problem(new_password, email=user.email)
    if problem:
        errors["new_password"] = problem
    if errors:
        return "", errors
    async with db.transaction():
        await (
            User.update(
                {
                    User.password_hash: passwords.hash_password(new_password),
                    User.password_changed_at: utcnow(),
                }
            )
            .where(User.id == user.id)
            .run()
        )
        await end_access_of(user.id)
        token = await open_session(settings, user.id, address=address, user_agent=user_agent)
    return token, {}


async def purge_expired(settings: Settings) -> int:
    """Delete expired sessions, pending sign-ins and WebAuthn challenges, and old
    sign-in attempts (housekeeping); the number of sessions deleted."""
    now = utcnow()
    sessions = (
        await UserSession.delete()
        .where(UserSession.expires_at <= now)
        .returning(UserSession.id)
        .run()
    )
    await PendingSignIn.delete().where(PendingSignIn.expires_at <= now).run()
    await WebauthnChallenge.delete().where(WebauthnChallenge.expires_at <= now).run()
    await LoginAttempt.delete().where(LoginAttempt.at < now - timedelta(days=30)).run()
    return len(sessions)
