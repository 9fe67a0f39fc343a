"""Small factories for test data, and HTTP helpers that speak the portal's forms."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from portal.auth import passwords
from portal.auth.service import end_session, open_session
from portal.auth.tables import User, UserLocation
from portal.locations.tables import Location
from portal.settings import Settings
from portal.staff import hours as _hours
from portal.timeutil import utcnow
from portal.web.middleware import SESSION_COOKIE

PASSWORD = "correct-horse-battery"
_seq = itertools.count(1)


@dataclass(frozen=True)
class Account:
    id: int
    email: str
    role: str
    password: str = PASSWORD


_HASH_CACHE: dict[str, str] = {}

NY = ZoneInfo("America/New_York")  # the zone make_location gives a clinic


def future_day(days: int = 10) -> date:
    """A day ``days`` ahead in the clinic's zone, whatever the hour in UTC."""
    return (datetime.now(NY) + timedelta(days=days)).date()


def ny(day: date, hour: int, minute: int = 0) -> datetime:
    """The UTC instant of a clinic wall-clock time, so bookings land inside working hours."""
    return _hours.wall_to_utc(day, hour * 60 + minute, NY)


def _hash(password: str) -> str:
    # Hashing is deliberately slow; one hash per distinct password is enough for tests.
    if password not in _HASH_CACHE:
        _HASH_CACHE[password] = passwords.hash_password(password)
    return _HASH_CACHE[password]


async def make_location(**overrides: Any) -> int:
    n = next(_seq)
    now = utcnow()
    values: dict[str, Any] = {
        "name": f"Clinic {n}",
        "slug": f"clinic-{n}",
        "address": "1 Main St",
        "phone": "+1 555 0100",
        "timezone": "America/New_York",
        "currency": "USD",
        "tax_rate_bp": 0,
        "prices_include_tax": False,
        "cancellation_window_hours": 24,
        "active": True,
        "created_at": now,
        "updated_at": now,
    }
    values.update(overrides)
    rows = await Location.insert(Location(**values)).returning(Location.id).run()
    return int(rows[0]["id"])


async def make_user(
    role: str,
    *,
    email: str | None = None,
    location_ids: Iterable[int] = (),
    password: str = PASSWORD,
    active: bool = True,
) -> Account:
    email = email or f"{role}{next(_seq)}@example.test"
    now = utcnow()
    rows = (
        await User.insert(
            User(
                email=email,
                name=f"{role.title()} Person",
                role=role,
                password_hash=_hash(password),
                active=active,
                created_at=now,
                password_changed_at=now,
            )
        )
        .returning(User.id)
        .run()
    )
    user_id = int(rows[0]["id"])
    for loc in location_ids:
        await UserLocation.insert(UserLocation(user=user_id, location=loc)).run()
    return Account(id=user_id, email=email, role=role, password=password)


def make_client(app: Any, base_url: str = "http://testserver") -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("203.0.113.7", 50000)),
        base_url=base_url,
        follow_redirects=False,
    )


async def csrf_token(client: httpx.AsyncClient) -> str:
    token = client.cookies.get("portal_csrf")
    if not token:
        await client.get("/login")
        token = client.cookies.get("portal_csrf")
    assert token, "the app did not set a CSRF cookie"
    return token


async def post_form(
    client: httpx.AsyncClient, url: str, data: dict[str, Any] | None = None
) -> httpx.Response:
    """POST a form the way a browser does, CSRF token included."""
    fields: dict[str, Any] = dict(data or {})
    fields["_csrf_token"] = await csrf_token(client)
    return await client.post(url, data=fields)


async def login(
    client: httpx.AsyncClient, account: Account, password: str | None = None
) -> httpx.Response | None:
    """Sign ``client`` in as ``account``.

    The fast way, for every test that is not about signing in: a session row
    opened as a sign-in opens it (``portal.auth.service.open_session``: the
    token's hash stored, the client's address and user agent) and its cookie
    on the client; a session the client had is ended, as a sign-in ends it.
    No form, no argon2. Returns None.

    With ``password`` (a test checking that a password works) it goes through
    the form: :func:`login_by_form`, which the tests of signing in use.
    """
    if password is not None:
        return await login_by_form(client, account, password)
    await csrf_token(client)  # a browser has the form's CSRF cookie by now
    previous = client.cookies.get(SESSION_COOKIE)
    if previous:
        await end_session(previous)
    transport = client._transport
    app = getattr(transport, "app", None)
    settings = getattr(getattr(app, "state", None), "settings", None)
    address = getattr(transport, "client", ("", 0))[0]
    token = await open_session(
        settings if isinstance(settings, Settings) else _DEFAULT_SETTINGS,
        account.id,
        address=address,
        user_agent=client.headers.get("user-agent", ""),
    )
    client.cookies.set(SESSION_COOKIE, token)
    return None


async def login_by_form(
    client: httpx.AsyncClient, account: Account, password: str | None = None
) -> httpx.Response:
    """Sign in through ``POST /login`` as a browser does (argon2, throttle, rotation)."""
    response = await post_form(
        client, "/login", {"email": account.email, "password": password or account.password}
    )
    assert response.status_code == 303, response.text[:500]
    return response


# Only for the session lifetime, when a client is not on an app of the suite.
_DEFAULT_SETTINGS = Settings(database_url="sqlite:///unused", secret_key="x" * 32, embedded=False)


def field_error(html: str, field: str) -> str | None:
    """The message shown beside a form field, if any."""
    match = re.search(
        rf'<small class="field-error" id="{re.escape(field)}-error">([^<]*)</small>', html
    )
    return match.group(1) if match else None


def input_value(html: str, field: str) -> str | None:
    match = re.search(rf'<input[^>]*name="{re.escape(field)}"[^>]*value="([^"]*)"', html)
    return match.group(1) if match else None
