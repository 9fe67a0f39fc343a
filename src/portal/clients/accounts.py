"""Self sign-up and password reset by an emailed link. No HTTP here.

Both are open to anyone, so both are throttled like sign-in: requests are
counted per email address and per network address over a sliding window, the
same way whether or not an account exists. Neither answer says whether an
account exists; only the mailbox owner learns it:

* a sign-up creates no account. A new address is emailed a confirmation link
  (the account is created, and its holder signed in, when the link is used);
  the owner of an existing account is emailed that someone tried to sign up
  with their address. The answer ("check your email") and the work done before
  it are the same either way; the lookup and the message come after it.
* a reset request always gets the same answer, and the link goes only to an
  existing account.

Links carry a random token; only its SHA-256 is stored, with an expiry (30
minutes for a reset, 24 hours for a confirmation). The link itself is in the
stored message, which SMTP delivers; the owners' outbox pages show "[reset link
hidden]" or "[confirmation link hidden]" in its place. Using a link is a
compare-and-set on ``used_at``, so a link works once even when submitted twice
at the same moment.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from portal import access, db
from portal.audit import service as audit
from portal.auth import passwords
from portal.auth.service import (
    CLIENT,
    MANAGER,
    OWNER,
    UNKNOWN_BROWSER,
    Browser,
    CurrentUser,
    Throttled,
    account_columns,
    end_access_of,
    is_valid_email,
    normalize_email,
    replace_session,
    row_by_token,
    store_secret,
)
from portal.auth.tables import LoginAttempt, User
from portal.clients.phones import phone_digits
from portal.clients.service import create_profile
from portal.clients.tables import AccountRequest, ClientProfile, PasswordReset, SignupConfirmation
from portal.email import messages
from portal.errors import Forbidden, Invalid
from portal.fields import parse_id
from portal.onetime import service as onetime
from portal.settings import Settings
from portal.timeutil import utcnow
from portal.users import invitations
from portal.users import service as users

SIGNUP = "signup"
RESET = "reset"
# Short: the link is a bearer secret while it is valid.
RESET_VALID_FOR = timedelta(minutes=30)
# Sign-ups from one network address per window (a household or an office
# signs up a few people; a script trying thousands of addresses is stopped).
SIGNUP_MAX_PER_ADDRESS = 10
# Reset emails per account per window: enough for "it did not arrive", not a mail bomb.
RESET_MAX_PER_ACCOUNT = 3
# Sign-ups per email per window (each one mails the address).
SIGNUP_MAX_PER_ACCOUNT = 5
# A confirmation link signs its holder in: long enough to find the email, no longer.
SIGNUP_VALID_FOR = timedelta(hours=24)


@dataclass(frozen=True)
class SignupInput:
    name: str
    email: str
    password: str
    confirm_password: str
    consent: bool


@dataclass(frozen=True)
class SignedIn:
    user_id: int
    role: str
    session_token: str
    message_id: int | None = None
    next_url: str = ""


class ResetLinkInvalid(Exception):
    """An unknown (400), used or expired (410) reset or sign-up confirmation link; for a
    confirmation link also 409 when an account took the email meanwhile."""

    def __init__(self, status_code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.reason = reason
        self.message = message


# -- throttling -----------------------------------------------------------------


async def _check_throttle(kind: str, checks: list[tuple[Any, str, int]], window: timedelta) -> None:
    now = utcnow()
    since = now - window
    for column, value, limit in checks:
        rows = (
            await AccountRequest.select(AccountRequest.at)
            .where((AccountRequest.kind == kind) & (column == value) & (AccountRequest.at >= since))
            .order_by(AccountRequest.at, ascending=False)
            .limit(limit)
            .run()
        )
        if len(rows) >= limit:
            # Free again when the oldest counted request leaves the window.
            oldest = rows[-1]["at"]
            raise Throttled(int((oldest + window - now).total_seconds()) + 1)


async def _log_request(kind: str, account_key: str, address: str) -> None:
    await AccountRequest.insert(
        AccountRequest(kind=kind, account_key=account_key, address=address, at=utcnow())
    ).run()


# -- sign-up ----------------------------------------------------------------------


@dataclass(frozen=True)
class AcceptedSignup:
    """A valid sign-up form, answered; what :func:`send_signup_link` needs afterwards."""

    email: str
    name: str
    password_hash: str
    next_url: str = ""


async def accept_sign_up(
    settings: Settings, data: SignupInput, *, address: str, next_url: str = ""
) -> AcceptedSignup:
    """The part of a sign-up answered before replying: the same for every address.

    Throttles (``Throttled``), records the request and checks the form
    (``Invalid``), then hashes the password. Whether an account already has the
    email is not looked at here: :func:`send_signup_link` decides what to mail
    after the answer has gone out, so neither the answer nor its timing tells.
    ``next_url`` must already be a local path (the caller checks it).
    """
    address = address[:64]
    key = normalize_email(data.email)[:254]
    await _check_throttle(
        SIGNUP,
        [
            (AccountRequest.address, address, SIGNUP_MAX_PER_ADDRESS),
            (AccountRequest.account_key, key, SIGNUP_MAX_PER_ACCOUNT),
        ],
        timedelta(minutes=settings.login_window_minutes * 4),
    )
    await _log_request(SIGNUP, key, address)
    errors: dict[str, str] = {}
    name = " ".join(data.name.split())
    if not name:
        errors["name"] = "Tell us your name."
    elif len(name) > 120:
        errors["name"] = "Name must be at most 120 characters."
    if not key:
        errors["email"] = "Enter your email address."
    elif not is_valid_email(key):
        errors["email"] = "Enter a valid email address, such as name@example.com."
    problem = passwords.password_problem(data.password, email=key)
    if problem:
        errors["password"] = problem
    elif data.password != data.confirm_password:
        errors["confirm_password"] = "The two passwords differ."
    if not data.consent:
        errors["consent"] = "Please accept the terms and the privacy notice to create an account."
    if errors:
        raise Invalid(errors)
    return AcceptedSignup(
        email=key,
        name=name,
        password_hash=passwords.hash_password(data.password),
        next_url=next_url[:500],
    )


async def send_signup_link(
    settings: Settings, signup: AcceptedSignup, *, address: str, defer: bool = True
) -> int | None:
    """Mail the sign-up's address (sent through SMTP unless ``defer``); the outbox id.

    A new address gets a confirmation link (the account is created when it is
    used); the owner of an existing account, staff or client, is told that
    someone tried to sign up with it, with links to sign in and to reset the
    password. Nothing is created or changed for an existing account.
    """
    user = await User.select(User.email, User.name).where(User.email == signup.email).first().run()
    if user is not None:
        return await messages.send_signup_exists(
            user["email"],
            name=user["name"] or user["email"],
            login_url=f"{settings.base_url}/login",
            reset_url=f"{settings.base_url}/password/forgot",
            settings=settings,
            defer=defer,
        )
    token = await store_secret(
        SignupConfirmation,
        SIGNUP_VALID_FOR,
        used_at=None,
        address=address[:64],
        email=signup.email,
        name=signup.name,
        password_hash=signup.password_hash,
        next_url=signup.next_url,
    )
    return await messages.send_signup_confirmation(
        signup.email,
        name=signup.name,
        confirm_url=f"{settings.base_url}/signup/confirm/{token}",
        valid_hours=int(SIGNUP_VALID_FOR.total_seconds() // 3600),
        settings=settings,
        defer=defer,
    )


async def sign_up(
    settings: Settings, data: SignupInput, *, address: str, next_url: str = ""
) -> int | None:
    """Both steps at once (scripts and tests): the outbox id of the message to deliver.
    The web answers after :func:`accept_sign_up` and runs :func:`send_signup_link`
    after the answer has gone out."""
    signup = await accept_sign_up(settings, data, address=address, next_url=next_url)
    return await send_signup_link(settings, signup, address=address)


def _link_invalid(status_code: int, reason: str) -> ResetLinkInvalid:
    text = {
        "unknown": "This confirmation link is not valid. Check that you copied the whole "
        "link, or sign up again.",
        "used": "This confirmation link has already been used. Sign in with the email "
        "and password you chose.",
        "expired": "This confirmation link has expired (links work for "
        f"{int(SIGNUP_VALID_FOR.total_seconds() // 3600)} hours). Sign up again.",
        "exists": "An account with this email already exists. Sign in, or reset your "
        "password if you do not remember it.",
    }[reason]
    return ResetLinkInvalid(status_code, reason, text)


async def check_signup_token(token: str) -> dict[str, Any]:
    """The sign-up waiting behind ``token``, or ``ResetLinkInvalid`` (400 unknown,
    410 used or expired)."""
    row = await row_by_token(SignupConfirmation, token)
    if row is None:
        raise _link_invalid(400, "unknown")
    if row["used_at"] is not None:
        raise _link_invalid(410, "used")
    if row["expires_at"] <= utcnow():
        raise _link_invalid(410, "expired")
    return dict(row)


async def confirm_sign_up(
    settings: Settings,
    token: str,
    *,
    address: str = "",
    browser: Browser = UNKNOWN_BROWSER,
) -> SignedIn:
    """Use a confirmation link: create the client account and its profile with what
    the form gave, queue the welcome email, open a session.

    The link is claimed by compare-and-set in the same transaction, so it works
    once even when used twice at the same moment; every other open link for
    the email is used up too. When an account took the email meanwhile,
    ``ResetLinkInvalid`` (409, ``exists``) and nothing changes. The welcome
    email is stored (``defer``); the caller delivers it after answering.
    """
    pending = await check_signup_token(token)
    key = pending["email"]
    name = pending["name"]
    now = utcnow()
    try:
        async with db.transaction():
            if not await _claim_link(SignupConfirmation, int(pending["id"]), now):
                raise _link_invalid(410, "used")
            # The form's password is kept only as its hash: the account is created
            # with a throwaway one, replaced by the stored hash in the same transaction.
            user_id = await users.create_user(
                None,
                users.UserInput(
                    email=key, name=name, role=CLIENT, password=secrets.token_urlsafe(24)
                ),
            )
            await (
                User.update({User.password_hash: pending["password_hash"]})
                .where(User.id == user_id)
                .run()
            )
            await _use_up_links(SignupConfirmation, SignupConfirmation.email == key, now)
            await create_profile(user_id, terms_accepted=True)
            me = CurrentUser(
                id=user_id, email=key, name=name, role=CLIENT, location_ids=frozenset()
            )
            await audit.record(
                me,
                "signup",
                "client",
                user_id,
                after={"email": key, "name": name, "terms_accepted": True},
                address=address,
            )
    except Invalid as exc:
        # An account with this email exists (created since, or by another link).
        raise _link_invalid(409, "exists") from exc
    message_id = await messages.send_welcome(key, name=name, settings=settings, defer=True)
    session = await replace_session(settings, user_id, address=address, browser=browser)
    return SignedIn(
        user_id=user_id,
        role=CLIENT,
        session_token=session,
        message_id=message_id,
        next_url=pending["next_url"],
    )


# -- password reset ---------------------------------------------------------------


async def accept_reset_request(settings: Settings, email: str, *, address: str) -> str:
    """The part of a reset request answered before replying: the same for every address.

    Throttles (``Throttled`` for any address, existing or not) and records the
    request; returns the normalised email for :func:`send_reset_link`, which
    the caller runs after answering. Nothing here depends on whether an
    account exists, so neither the answer nor its timing can tell.
    """
    address = address[:64]
    key = normalize_email(email)[:254]
    window = timedelta(minutes=settings.login_window_minutes)
    await _check_throttle(
        RESET,
        [
            (AccountRequest.account_key, key, RESET_MAX_PER_ACCOUNT),
            (AccountRequest.address, address, settings.login_max_failures_per_address),
        ],
        window,
    )
    await _log_request(RESET, key, address)
    return key


async def send_reset_link(
    settings: Settings, key: str, *, address: str, defer: bool = True
) -> int | None:
    """Store a reset link for the active account with this email and the message
    that carries it (sent through SMTP unless ``defer``); None when there is none."""
    user = (
        await User.select(User.id, User.email, User.name)
        .where((User.email == key) & (User.active == True))  # noqa: E712
        .first()
        .run()
    )
    if user is None:
        return None
    token = await store_secret(
        PasswordReset, RESET_VALID_FOR, used_at=None, address=address[:64], user=user["id"]
    )
    return await messages.send_password_reset(
        user["email"],
        name=user["name"] or user["email"],
        reset_url=f"{settings.base_url}/password/reset/{token}",
        valid_minutes=int(RESET_VALID_FOR.total_seconds() // 60),
        settings=settings,
        defer=defer,
    )


async def request_password_reset(settings: Settings, email: str, *, address: str) -> int | None:
    """Both steps at once (scripts and tests): the outbox id of the message to
    deliver, or None. The web answers after :func:`accept_reset_request` and
    runs :func:`send_reset_link` after the answer has gone out."""
    key = await accept_reset_request(settings, email, address=address)
    return await send_reset_link(settings, key, address=address)


async def _claim_link(
    table: type[SignupConfirmation] | type[PasswordReset], link_id: int, now: datetime
) -> bool:
    """Mark a one-time link used, unless it was used or expired meanwhile: the
    compare-and-set that lets only one of two simultaneous clicks through."""
    condition = (table.id == link_id) & table.used_at.is_null() & (table.expires_at > now)
    return await db.update_where(table, {table.used_at: now}, condition)


async def _use_up_links(
    table: type[SignupConfirmation] | type[PasswordReset], owner: Any, now: datetime
) -> None:
    """Mark every open link matching ``owner`` used: once one link has set the password,
    an older email for the same account can no longer set it again."""
    await table.update({table.used_at: now}).where(owner & table.used_at.is_null()).run()


async def check_reset_token(token: str) -> dict[str, Any]:
    """The open reset behind ``token`` with its user, or ``ResetLinkInvalid``."""
    row = await row_by_token(
        PasswordReset,
        token,
        PasswordReset.id,
        PasswordReset.expires_at,
        PasswordReset.used_at,
        *account_columns(PasswordReset.user),
    )
    if row is None or not row["active"]:
        raise ResetLinkInvalid(
            400,
            "unknown",
            "This reset link is not valid. Check that you copied the whole link, "
            "or ask for a new one.",
        )
    if row["used_at"] is not None:
        raise ResetLinkInvalid(
            410,
            "used",
            "This reset link has already been used. If you still cannot sign in, "
            "ask for a new one.",
        )
    if row["expires_at"] <= utcnow():
        raise ResetLinkInvalid(
            410,
            "expired",
            "This reset link has expired (links work for "
            f"{int(RESET_VALID_FOR.total_seconds() // 60)} minutes). Ask for a new one.",
        )
    return dict(row)


async def reset_password(
    settings: Settings,
    token: str,
    password: str,
    confirm_password: str,
    *,
    address: str = "",
    browser: Browser = UNKNOWN_BROWSER,
) -> SignedIn:
    """Set a new password through a reset link and open a session.

    Ends every session of the user, uses up this link and any other open
    link of theirs, and clears the sign-in throttle for the account (the
    mailbox owner has proved who they are). Nothing changes on bad input.
    """
    reset = await check_reset_token(token)
    errors: dict[str, str] = {}
    problem = passwords.password_problem(password, email=reset["email"])
    if problem:
        errors["password"] = problem
    elif password != confirm_password:
        errors["confirm_password"] = "The two passwords differ."
    if errors:
        raise Invalid(errors)
    password_hash = passwords.hash_password(password)
    user_id = int(reset["user_id"])
    now = utcnow()
    async with db.transaction():
        if not await _claim_link(PasswordReset, int(reset["id"]), now):
            raise ResetLinkInvalid(
                410, "used", "This reset link has already been used. Ask for a new one."
            )
        await (
            User.update({User.password_hash: password_hash, User.password_changed_at: now})
            .where(User.id == user_id)
            .run()
        )
        await _use_up_links(PasswordReset, PasswordReset.user == user_id, now)
        await end_access_of(user_id)
        await LoginAttempt.insert(
            LoginAttempt(account_key=reset["email"], address=address[:64], at=now, success=True)
        ).run()
        me = CurrentUser(
            id=user_id,
            email=reset["email"],
            name=reset["name"],
            role=reset["role"],
            location_ids=frozenset(),
        )
        await audit.record(
            me,
            "reset_password",
            "user",
            user_id,
            after={"password": "reset by emailed link"},
            address=address,
        )
    # Whoever was signed in in this browser before is signed out (no fixation).
    session = await replace_session(settings, user_id, address=address, browser=browser)
    return SignedIn(user_id=user_id, role=reset["role"], session_token=session)


@dataclass(frozen=True)
class AccountsPurge:
    password_resets: int
    signups: int
    requests: int


async def purge_expired(*, now: Any = None) -> AccountsPurge:
    """Delete reset and sign-up confirmation links past their expiry, and old request counts.

    A link past its expiry is refused whether or not its row exists, so
    nothing changes for anyone holding one; the rows hold a password hash (a
    sign-up's) and addresses, which are kept no longer than needed. The
    throttle counts look back minutes to hours: a month is ample.
    """
    now = now or utcnow()
    resets = (
        await PasswordReset.delete()
        .where(PasswordReset.expires_at <= now)
        .returning(PasswordReset.id)
        .run()
    )
    signups = (
        await SignupConfirmation.delete()
        .where(SignupConfirmation.expires_at <= now)
        .returning(SignupConfirmation.id)
        .run()
    )
    requests = (
        await AccountRequest.delete()
        .where(AccountRequest.at < now - timedelta(days=30))
        .returning(AccountRequest.id)
        .run()
    )
    return AccountsPurge(password_resets=len(resets), signups=len(signups), requests=len(requests))


# -- clients created at the front desk ------------------------------------------------

INVITE_VALID_FOR = invitations.INVITE_VALID_FOR
CREATED = "client_created"


@dataclass(frozen=True)
class NewClientInput:
    name: str
    email: str
    phone: str
    location_id: int  # the clinic whose desk creates the account


@dataclass(frozen=True)
class CreatedClient:
    client_id: int
    message_id: int | None  # the invitation (None for a repeated form)


def parse_new_client(values: dict[str, str]) -> NewClientInput:
    """The front desk's new-client form: name, email and phone, every error at once."""
    errors: dict[str, str] = {}
    name = " ".join(values.get("name", "").split())
    if not name:
        errors["name"] = "Enter the client's name."
    elif len(name) > 120:
        errors["name"] = "Name must be at most 120 characters."
    email = normalize_email(values.get("email", ""))[:254]
    if not email:
        errors["email"] = "Enter the client's email address: the invitation goes there."
    elif not is_valid_email(email):
        errors["email"] = "Enter a valid email address, such as name@example.com."
    phone = values.get("phone", "").strip()
    if phone and not phone_digits(phone):
        errors["phone"] = "Use digits, spaces and + ( ) - only, e.g. +1 503 555 0142."
    location_id = parse_id(values.get("location_id", ""))
    if location_id is None:
        errors["location_id"] = "Choose the clinic the client came to."
    if errors:
        raise Invalid(errors)
    assert location_id is not None
    return NewClientInput(name=name, email=email, phone=phone[:40], location_id=location_id)


async def create_client(
    settings: Settings,
    actor: CurrentUser,
    data: NewClientInput,
    *,
    request_key: str | None,
    address: str = "",
) -> CreatedClient:
    """A client account made at the desk, and an invitation to choose a password.

    The account gets an unguessable password nobody knows; the invitation is a
    password link (the reset machinery, valid :data:`INVITE_VALID_FOR`), so the
    client sets their own. The clinic the client came to is their preferred
    location until they choose another: it makes them a client of that clinic's
    managers (``clients.service._ties``). The form's one-time key is claimed with the account:
    the same form sent twice makes one client and one invitation, and the
    repeat is answered with the first one's client.
    """
    if actor.role not in (OWNER, MANAGER):
        raise Forbidden("Only owners and managers create clients.")
    if not access.can_write(actor, data.location_id):
        raise Invalid({"location_id": "Choose one of your clinics."})
    async with db.transaction():
        earlier = await onetime.claim(request_key, user_id=actor.id, action=CREATED)
        if earlier:
            return CreatedClient(client_id=int(earlier.partition(":")[2]), message_id=None)
        user_id = await users.create_user(
            actor,
            users.UserInput(
                email=data.email,
                name=data.name,
                role=CLIENT,
                password=invitations.unknown_password(),
            ),
            address=address,
        )
        await create_profile(user_id, terms_accepted=False)
        await (
            ClientProfile.update(
                {
                    ClientProfile.phone: data.phone,
                    ClientProfile.phone_national: phone_digits(data.phone),
                    ClientProfile.preferred_location: data.location_id,
                }
            )
            .where(ClientProfile.user == user_id)
            .run()
        )
        set_password_url = await invitations.set_password_url(settings, user_id, address=address)
        await onetime.finish(request_key, f"client:{user_id}")
    message_id = await messages.send_invitation(
        data.email,
        messages.CLIENT_INVITATION,
        name=data.name,
        set_password_url=set_password_url,
        valid_days=INVITE_VALID_FOR.days,
        settings=settings,
        defer=True,
    )
    return CreatedClient(client_id=user_id, message_id=message_id)
