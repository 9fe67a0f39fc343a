"""Therapists: profiles, where they work, what they may perform, weekly hours,
time off and credentials, and whether one may be booked at a given time.

No HTTP here. Access rules:

* owners see and change every therapist;
* a manager sees and changes therapists who work at one of their locations,
  but changes working hours only at their own locations, and adds or removes
  only their own locations on a profile;
* a therapist reads their own profile (the one linked to their account);
* nobody else sees therapists.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from portal import db, records
from portal.audit import service as audit
from portal.auth.service import (
    MANAGER,
    OWNER,
    THERAPIST,
    CurrentUser,
    end_access_of,
    is_valid_email,
)
from portal.auth.tables import User, UserLocation
from portal.catalog.tables import Service
from portal.errors import Forbidden, Invalid, NotFound
from portal.fields import optional_text, require_text
from portal.locations.service import ensure_location_access
from portal.locations.tables import Location
from portal.pagination import Page, keyset_page
from portal.staff import hours as h
from portal.staff.tables import (
    Therapist,
    TherapistLocation,
    TherapistPhoto,
    TherapistService,
    TimeOff,
    WorkingHours,
)
from portal.timeutil import utcnow
from portal.users import service as users

PHONE_RE = re.compile(r"^[0-9+()\-.\s]*$")
STATUSES = ("active", "inactive", "all")
PROFILE_FIELDS = (
    "name",
    "email",
    "phone",
    "bio",
    "licence_number",
    "licence_state",
    "licence_expires",
    "insurance_expires",
)
# Credentials expiring within these many days are flagged on the compliance page.
SOON_DAYS = 30
LATER_DAYS = 60
# Cross-zone overlap checks look at this many days ahead: a year holds every
# combination of the two zones' DST states.
OVERLAP_HORIZON_DAYS = 371
MAX_TIME_OFF_DAYS = 366
MAX_PHOTO_BYTES = 2 * 1024 * 1024
PHOTO_TYPES = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WebP"}


# -- input -------------------------------------------------------------------


@dataclass(frozen=True)
class TherapistInput:
    name: str
    email: str = ""
    phone: str = ""
    bio: str = ""
    licence_number: str = ""
    licence_state: str = ""
    licence_expires: date | None = None
    insurance_expires: date | None = None
    service_ids: frozenset[int] = field(default_factory=frozenset)
    location_ids: frozenset[int] = field(default_factory=frozenset)

    def profile(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in PROFILE_FIELDS}


def parse_date(
    values: dict[str, str], errors: dict[str, str], name: str, *, label: str
) -> date | None:
    raw = values.get(name, "").strip()
    if not raw:
        return None
    try:
        value = date.fromisoformat(raw)
    except ValueError:
        errors[name] = f"{label}: enter a date such as 2027-06-30."
        return None
    if not 1900 <= value.year <= 2200:
        errors[name] = f"{label}: enter a date between 1900 and 2200."
        return None
    return value


def _ids(raw: list[str], errors: dict[str, str], name: str, message: str) -> frozenset[int]:
    out: set[int] = set()
    for item in raw:
        try:
            out.add(int(item))
        except ValueError:
            errors[name] = message
    return frozenset(out)


def parse_therapist_form(values: dict[str, str], multi: dict[str, list[str]]) -> TherapistInput:
    errors: dict[str, str] = {}
    name = require_text(values, errors, "name", label="Name", max_length=120)
    email = values.get("email", "").strip().lower()
    if email and not is_valid_email(email):
        errors["email"] = "Enter a valid email address, such as name@example.com."
    phone = optional_text(values, errors, "phone", label="Phone", max_length=40)
    if phone and not PHONE_RE.match(phone):
        errors["phone"] = "Use digits, spaces and + ( ) - only."
    bio = optional_text(values, errors, "bio", label="Bio", max_length=2000)
    licence_number = optional_text(
        values, errors, "licence_number", label="Licence number", max_length=60
    )
    licence_state = optional_text(
        values, errors, "licence_state", label="Issuing state", max_length=60
    )
    licence_expires = parse_date(values, errors, "licence_expires", label="Licence expiry")
    insurance_expires = parse_date(values, errors, "insurance_expires", label="Insurance expiry")
    service_ids = _ids(
        multi.get("service_ids", []), errors, "service_ids", "Choose services from the list."
    )
    location_ids = _ids(
        multi.get("location_ids", []), errors, "location_ids", "Choose locations from the list."
    )
    if errors:
        raise Invalid(errors)
    return TherapistInput(
        name=name,
        email=email,
        phone=phone,
        bio=bio,
        licence_number=licence_number,
        licence_state=licence_state,
        licence_expires=licence_expires,
        insurance_expires=insurance_expires,
        service_ids=service_ids,
        location_ids=location_ids,
    )


def expiry_warnings(data: TherapistInput | dict[str, Any], today: date | None = None) -> list[str]:
    """Credentials already expired: saved anyway, but the user is told."""
    today = today or utcnow().date()
    get = data.get if isinstance(data, dict) else lambda k: getattr(data, k)
    out = []
    for key, label in (("licence_expires", "licence"), ("insurance_expires", "insurance")):
        value = get(key)
        if value is not None and value < today:
            out.append(
                f"The {label} expired on {value.isoformat()}: "
                "the therapist cannot be booked until it is renewed."
            )
    return out


# -- access ------------------------------------------------------------------


def can_manage(user: CurrentUser, location_ids: frozenset[int]) -> bool:
    """Whether ``user`` may change a therapist working at ``location_ids``."""
    if user.role == OWNER:
        return True
    return user.role == MANAGER and bool(location_ids & user.location_ids)


def can_deactivate(user: CurrentUser, location_ids: frozenset[int]) -> bool:
    """Deactivation takes a therapist out of every location, so a manager needs all of them."""
    if user.role == OWNER:
        return True
    return user.role == MANAGER and bool(location_ids) and location_ids <= user.location_ids


async def therapist_location_ids(therapist_id: int) -> frozenset[int]:
    rows = (
        await TherapistLocation.select(TherapistLocation.location)
        .where(TherapistLocation.therapist == therapist_id)
        .run()
    )
    return frozenset(int(r["location"]) for r in rows)


async def therapist_service_ids(therapist_id: int) -> frozenset[int]:
    rows = (
        await TherapistService.select(TherapistService.service)
        .where(TherapistService.therapist == therapist_id)
        .run()
    )
    return frozenset(int(r["service"]) for r in rows)


async def get_therapist(therapist_id: int) -> dict[str, Any]:
    row = await Therapist.select().where(Therapist.id == therapist_id).first().run()
    if row is None:
        raise NotFound("No such therapist.")
    row["location_ids"] = await therapist_location_ids(therapist_id)
    row["service_ids"] = await therapist_service_ids(therapist_id)
    return row


async def get_therapist_for(
    user: CurrentUser, therapist_id: int, *, write: bool = False
) -> dict[str, Any]:
    """The therapist if ``user`` may see (or change) it: 404 if unknown, 403 if not theirs."""
    row = await get_therapist(therapist_id)
    if can_manage(user, row["location_ids"]):
        return row
    if not write and user.role == THERAPIST and row["account"] == user.id:
        return row
    raise Forbidden("This therapist does not work at your locations.")


async def therapist_of_account(user_id: int) -> dict[str, Any] | None:
    row = await Therapist.select(Therapist.id).where(Therapist.account == user_id).first().run()
    return await get_therapist(int(row["id"])) if row else None


# -- reading -----------------------------------------------------------------


async def location_names(ids: frozenset[int] | set[int] | list[int]) -> dict[int, dict[str, Any]]:
    if not ids:
        return {}
    rows = (
        await Location.select(Location.id, Location.name, Location.timezone, Location.active)
        .where(Location.id.is_in(list(ids)))
        .run()
    )
    return {int(r["id"]): r for r in rows}


async def service_names(ids: frozenset[int] | set[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = await Service.select(Service.id, Service.name).where(Service.id.is_in(list(ids))).run()
    return {int(r["id"]): str(r["name"]) for r in rows}


async def service_choices(selected: frozenset[int] = frozenset()) -> list[dict[str, Any]]:
    """Active catalog services, plus inactive ones the therapist already has."""
    query = Service.select(Service.id, Service.name, Service.duration_minutes, Service.active)
    if selected:
        query = query.where((Service.active == True) | Service.id.is_in(list(selected)))  # noqa: E712
    else:
        query = query.where(Service.active == True)  # noqa: E712
    return await query.order_by(Service.name).run()


async def list_therapists(
    user: CurrentUser,
    *,
    search: str = "",
    location_id: int | None = None,
    status: str = "active",
    after: str | None = None,
    limit: int = 50,
) -> Page:
    """Therapists the user may see, ordered by name, one keyset page."""
    query = Therapist.select(
        Therapist.id,
        Therapist.name,
        Therapist.email,
        Therapist.phone,
        Therapist.active,
        Therapist.licence_expires,
        Therapist.insurance_expires,
        Therapist.account,
    )
    scope: list[int] | None = None
    if user.role != OWNER:
        scope = sorted(user.location_ids) if user.role == MANAGER else []
    if location_id is not None:
        if scope is not None and location_id not in scope:
            return Page(rows=[], next_cursor=None)
        scope = [location_id]
    if scope is not None:
        if not scope:
            return Page(rows=[], next_cursor=None)
        query = query.where(
            Therapist.id.is_in(
                TherapistLocation.select(TherapistLocation.therapist).where(
                    TherapistLocation.location.is_in(scope)
                )
            )
        )
    if status == "active":
        query = query.where(Therapist.active == True)  # noqa: E712
    elif status == "inactive":
        query = query.where(Therapist.active == False)  # noqa: E712
    if search:
        pattern = f"%{search}%"
        query = query.where(Therapist.name.ilike(pattern) | Therapist.email.ilike(pattern))
    page = await keyset_page(query, Therapist.name, Therapist.id, after=after, limit=limit)
    if page.rows:
        links = (
            await TherapistLocation.select(
                TherapistLocation.therapist, TherapistLocation.location.name.as_alias("name")
            )
            .where(TherapistLocation.therapist.is_in([r["id"] for r in page.rows]))
            .order_by(TherapistLocation.location.name)
            .run()
        )
        by_therapist: dict[int, list[str]] = {}
        for link in links:
            by_therapist.setdefault(int(link["therapist"]), []).append(str(link["name"]))
        for row in page.rows:
            row["locations"] = by_therapist.get(int(row["id"]), [])
    return page


async def _snapshot(row: dict[str, Any]) -> dict[str, Any]:
    """A therapist as the audit trail shows it: names rather than ids."""
    locations = await location_names(row["location_ids"])
    services = await service_names(row["service_ids"])
    out = {f: row.get(f) for f in PROFILE_FIELDS}
    out["locations"] = ", ".join(sorted(str(v["name"]) for v in locations.values()))
    out["services"] = ", ".join(sorted(services.values()))
    return out


# -- changes: profile -------------------------------------------------------


async def _check_references(
    actor: CurrentUser, data: TherapistInput, current: frozenset[int]
) -> frozenset[int]:
    """Unknown services or locations are refused; returns the final location set.

    A manager adds or removes only their own locations: the locations of the
    profile they do not manage stay as they are.
    """
    errors: dict[str, str] = {}
    if data.service_ids:
        known = {
            int(r["id"])
            for r in await Service.select(Service.id)
            .where(Service.id.is_in(list(data.service_ids)))
            .run()
        }
        unknown = data.service_ids - known
        if unknown:
            errors["service_ids"] = (
                "Unknown service"
                + ("s" if len(unknown) > 1 else "")
                + f" ({', '.join(str(i) for i in sorted(unknown))}): "
                "choose services from the catalog list."
            )
    final = data.location_ids
    if data.location_ids:
        known_locations = await location_names(data.location_ids)
        if set(known_locations) != set(data.location_ids):
            errors["location_ids"] = "Choose locations from the list."
    if actor.role == MANAGER:
        if not data.location_ids <= actor.location_ids:
            errors["location_ids"] = "You can only choose the locations you manage."
        final = (data.location_ids & actor.location_ids) | (current - actor.location_ids)
    if not final and "location_ids" not in errors:
        errors["location_ids"] = "Choose at least one location the therapist works at."
    if errors:
        raise Invalid(errors)
    return final


async def _sync_account_locations(account_id: int | None, location_ids: frozenset[int]) -> None:
    """A therapist's sign-in sees the locations the profile works at, no more."""
    if account_id is None:
        return
    await UserLocation.delete().where(UserLocation.user == account_id).run()
    if location_ids:
        await UserLocation.insert(
            *[UserLocation(user=account_id, location=loc) for loc in sorted(location_ids)]
        ).run()


async def create_therapist(actor: CurrentUser, data: TherapistInput, *, address: str = "") -> int:
    if actor.role not in (OWNER, MANAGER):
        raise Forbidden("Only owners and managers add therapists.")
    locations = await _check_references(actor, data, frozenset())
    now = utcnow()
    async with db.transaction():
        rows = (
            await Therapist.insert(
                Therapist(**data.profile(), active=True, created_at=now, updated_at=now)
            )
            .returning(Therapist.id)
            .run()
        )
        therapist_id = int(rows[0]["id"])
        await TherapistLocation.insert(
            *[TherapistLocation(therapist=therapist_id, location=loc) for loc in sorted(locations)]
        ).run()
        if data.service_ids:
            await TherapistService.insert(
                *[
                    TherapistService(therapist=therapist_id, service=s)
                    for s in sorted(data.service_ids)
                ]
            ).run()
        after = await _snapshot(
            {**data.profile(), "location_ids": locations, "service_ids": data.service_ids}
        )
        await audit.record(
            actor,
            "create",
            "therapist",
            therapist_id,
            after={"id": therapist_id, **after, "active": True},
            address=address,
        )
    return therapist_id


async def update_therapist(
    actor: CurrentUser, therapist_id: int, data: TherapistInput, *, address: str = ""
) -> None:
    before = await get_therapist_for(actor, therapist_id, write=True)
    locations = await _check_references(actor, data, before["location_ids"])
    old = await _snapshot(before)
    new = await _snapshot(
        {**data.profile(), "location_ids": locations, "service_ids": data.service_ids}
    )
    if old == new:
        return
    removed = before["location_ids"] - locations
    added = locations - before["location_ids"]
    async with db.transaction():
        await (
            Therapist.update({**data.profile(), "updated_at": utcnow()})  # type: ignore[dict-item]
            .where(Therapist.id == therapist_id)
            .run()
        )
        if removed:
            await (
                TherapistLocation.delete()
                .where(
                    (TherapistLocation.therapist == therapist_id)
                    & TherapistLocation.location.is_in(list(removed))
                )
                .run()
            )
            dropped = (
                await WorkingHours.delete()
                .where(
                    (WorkingHours.therapist == therapist_id)
                    & WorkingHours.location.is_in(list(removed))
                )
                .returning(WorkingHours.id)
                .run()
            )
            if dropped:
                names = await location_names(removed)
                new["hours_removed_at"] = ", ".join(sorted(str(n["name"]) for n in names.values()))
        if added:
            await TherapistLocation.insert(
                *[TherapistLocation(therapist=therapist_id, location=loc) for loc in sorted(added)]
            ).run()
        if data.service_ids != before["service_ids"]:
            await TherapistService.delete().where(TherapistService.therapist == therapist_id).run()
            if data.service_ids:
                await TherapistService.insert(
                    *[
                        TherapistService(therapist=therapist_id, service=s)
                        for s in sorted(data.service_ids)
                    ]
                ).run()
        if removed or added:
            await _sync_account_locations(before["account"], locations)
        await audit.record(
            actor, "update", "therapist", therapist_id, before=old, after=new, address=address
        )


async def set_active(
    actor: CurrentUser,
    therapist_id: int,
    active: bool,
    *,
    include_account: bool = False,
    address: str = "",
) -> bool:
    """Deactivate (or reactivate) a therapist; with ``include_account`` their sign-in too.

    Therapists are never deleted: their history, hours and (later) their
    appointments and notes stay. The sign-in is a separate choice (offered,
    and ticked by default, on the confirmation page) because an owner may
    want a departing therapist to keep reading their own records for a while.
    Returns False when the profile was already in that state.
    """
    row = await get_therapist_for(actor, therapist_id, write=True)
    if not can_deactivate(actor, row["location_ids"]):
        raise Invalid(
            {
                "active": "This therapist also works at locations you do not manage; "
                "only an owner can deactivate them. Remove your location from the "
                "profile instead."
            }
        )
    account = row["account"]

    async def sign_in_too() -> None:
        if not include_account or account is None:
            return
        # The sign-in follows the profile: the same compare-and-set and audit line.
        await records.set_active(
            actor,
            User,
            "user",
            account,
            active,
            address=address,
            also=None if active else (lambda: end_access_of(account)),
        )

    return await records.set_active(
        actor, Therapist, "therapist", therapist_id, active, address=address, also=sign_in_too
    )


# -- sign-in account -------------------------------------------------------


async def create_account(
    actor: CurrentUser, therapist_id: int, *, email: str, password: str, address: str = ""
) -> int:
    """Give the therapist a sign-in (role therapist) at the profile's locations."""
    row = await get_therapist_for(actor, therapist_id, write=True)
    if row["account"] is not None:
        raise Invalid({"account_email": "This therapist already has a sign-in account."})
    async with db.transaction():
        try:
            user_id = await users.create_user(
                actor,
                users.UserInput(
                    email=email,
                    name=row["name"],
                    role=THERAPIST,
                    location_ids=row["location_ids"],
                    password=password,
                ),
            )
        except Invalid as exc:
            raise Invalid(
                {
                    f"account_{k}" if k in ("email", "password") else k: v
                    for k, v in exc.errors.items()
                }
            ) from exc
        await _link(actor, therapist_id, user_id, row["location_ids"], address)
    return user_id


async def link_account(
    actor: CurrentUser, therapist_id: int, user_id: int, *, address: str = ""
) -> None:
    """Link an existing therapist-role account (owners only: accounts are chain-wide)."""
    if actor.role != OWNER:
        raise Forbidden("Only owners link existing accounts.")
    row = await get_therapist_for(actor, therapist_id, write=True)
    errors: dict[str, str] = {}
    user = await User.select(User.id, User.role).where(User.id == user_id).first().run()
    if row["account"] is not None:
        errors["account_user"] = "This therapist already has a sign-in account."
    elif user is None or user["role"] != THERAPIST:
        errors["account_user"] = "Choose an account with the role Therapist."
    elif await Therapist.exists().where(Therapist.account == user_id).run():
        errors["account_user"] = "That account already belongs to another therapist profile."
    if errors:
        raise Invalid(errors)
    async with db.transaction():
        await _link(actor, therapist_id, user_id, row["location_ids"], address)


async def _link(
    actor: CurrentUser,
    therapist_id: int,
    user_id: int,
    location_ids: frozenset[int],
    address: str,
) -> None:
    try:
        await (
            Therapist.update({Therapist.account: user_id, Therapist.updated_at: utcnow()})
            .where(Therapist.id == therapist_id)
            .run()
        )
    except Exception as exc:
        if db.is_unique_violation(exc):
            raise Invalid(
                {"account_user": "That account already belongs to another therapist profile."}
            ) from exc
        raise
    await _sync_account_locations(user_id, location_ids)
    email = await User.select(User.email).where(User.id == user_id).first().run()
    await audit.record(
        actor,
        "link_account",
        "therapist",
        therapist_id,
        before={"account": None},
        after={"account": email["email"] if email else user_id},
        address=address,
    )


async def unlinked_therapist_accounts() -> list[dict[str, Any]]:
    linked = Therapist.select(Therapist.account).where(Therapist.account.is_not_null())
    return (
        await User.select(User.id, User.email, User.name)
        .where((User.role == THERAPIST) & User.id.not_in(linked))
        .order_by(User.email)
        .run()
    )


# -- photo -------------------------------------------------------------------


def sniff_image(data: bytes) -> str | None:
    """The image type from its first bytes; the browser's claim is not trusted."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


async def set_photo(
    actor: CurrentUser, therapist_id: int, data: bytes, *, address: str = ""
) -> None:
    await get_therapist_for(actor, therapist_id, write=True)
    if not data:
        raise Invalid({"photo": "Choose an image file to upload."})
    if len(data) > MAX_PHOTO_BYTES:
        raise Invalid({"photo": f"The image is {len(data) / 1048576:.1f} MB; the limit is 2 MB."})
    content_type = sniff_image(data)
    if content_type is None:
        raise Invalid({"photo": "Upload a JPEG, PNG or WebP image."})
    now = utcnow()
    async with db.transaction():
        updated = (
            await TherapistPhoto.update(
                {
                    TherapistPhoto.content_type: content_type,
                    TherapistPhoto.data: data,
                    TherapistPhoto.updated_at: now,
                }
            )
            .where(TherapistPhoto.therapist == therapist_id)
            .returning(TherapistPhoto.id)
            .run()
        )
        if not updated:
            await TherapistPhoto.insert(
                TherapistPhoto(
                    therapist=therapist_id, content_type=content_type, data=data, updated_at=now
                )
            ).run()
        await audit.record(
            actor,
            "photo",
            "therapist",
            therapist_id,
            after={"photo": f"{PHOTO_TYPES[content_type]}, {len(data)} bytes"},
            address=address,
        )


async def remove_photo(actor: CurrentUser, therapist_id: int, *, address: str = "") -> bool:
    await get_therapist_for(actor, therapist_id, write=True)
    async with db.transaction():
        removed = (
            await TherapistPhoto.delete()
            .where(TherapistPhoto.therapist == therapist_id)
            .returning(TherapistPhoto.id)
            .run()
        )
        if removed:
            await audit.record(
                actor,
                "remove_photo",
                "therapist",
                therapist_id,
                before={"photo": "present"},
                after={"photo": None},
                address=address,
            )
    return bool(removed)


def initials_avatar(name: str) -> str:
    """A placeholder portrait: the initials on a tinted disc (SVG we write ourselves)."""
    from html import escape

    initials = "".join(part[0] for part in name.split()[:2] if part).upper() or "?"
    hue = sum(map(ord, name)) % 360
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 96 96" role="img">'
        f'<circle cx="48" cy="48" r="48" fill="hsl({hue} 35% 85%)"/>'
        f'<text x="48" y="60" font-family="sans-serif" font-size="34" font-weight="600" '
        f'text-anchor="middle" fill="hsl({hue} 40% 28%)">{escape(initials)}</text></svg>'
    )


async def get_photo(therapist_id: int) -> dict[str, Any] | None:
    return (
        await TherapistPhoto.select(
            TherapistPhoto.content_type, TherapistPhoto.data, TherapistPhoto.updated_at
        )
        .where(TherapistPhoto.therapist == therapist_id)
        .first()
        .run()
    )


async def has_photo(therapist_id: int) -> bool:
    return bool(await TherapistPhoto.exists().where(TherapistPhoto.therapist == therapist_id).run())


# -- working hours ------------------------------------------------------------

_HOURS_FIELD = re.compile(r"^d([0-6])_(\d{1,2})_(start|end)$")


@dataclass(frozen=True)
class HoursInterval:
    """One weekly interval at a location, in minutes since local midnight."""

    weekday: int
    start_minute: int
    end_minute: int
    key: str = ""  # the form row it came from, e.g. "d0_1" (Monday, second row)

    def label(self) -> str:
        return f"{h.WEEKDAYS[self.weekday]} {h.format_interval(self.start_minute, self.end_minute)}"


def parse_hours_form(values: dict[str, str]) -> list[HoursInterval]:
    """Rows ``d<weekday>_<n>_start`` / ``_end`` (HH:MM); an empty row is skipped.

    An end of 00:00 after a later start means midnight at the end of the day.
    """
    rows: dict[tuple[int, int], dict[str, str]] = {}
    for name, value in values.items():
        match = _HOURS_FIELD.match(name)
        if match:
            day, slot, part = int(match.group(1)), int(match.group(2)), match.group(3)
            rows.setdefault((day, slot), {})[part] = value.strip()
    errors: dict[str, str] = {}
    out: list[HoursInterval] = []
    for (day, slot), parts in sorted(rows.items()):
        key = f"d{day}_{slot}"
        start_raw, end_raw = parts.get("start", ""), parts.get("end", "")
        if not start_raw and not end_raw:
            continue
        if not start_raw:
            errors[f"{key}_start"] = "Enter a start time, or clear the end time."
            continue
        if not end_raw:
            errors[f"{key}_end"] = "Enter an end time, or clear the start time."
            continue
        start = h.parse_hhmm(start_raw)
        end = h.parse_hhmm(end_raw)
        if start is None or start >= h.MINUTES_PER_DAY:
            errors[f"{key}_start"] = "Enter a time such as 09:00."
        if end is None:
            errors[f"{key}_end"] = "Enter a time such as 17:30."
        if start is None or end is None or start >= h.MINUTES_PER_DAY:
            continue
        if end == 0 and start > 0:
            end = h.MINUTES_PER_DAY
        out.append(HoursInterval(day, start, end, key))
    if errors:
        raise Invalid(errors)
    return out


def _keyed(intervals: list[HoursInterval]) -> list[HoursInterval]:
    """Give intervals built in code a form key, so errors can point at them."""
    seen: dict[int, int] = {}
    out = []
    for iv in intervals:
        n = seen.get(iv.weekday, 0)
        seen[iv.weekday] = n + 1
        out.append(
            iv
            if iv.key
            else HoursInterval(iv.weekday, iv.start_minute, iv.end_minute, f"d{iv.weekday}_{n}")
        )
    return out


def check_intervals(intervals: list[HoursInterval]) -> dict[str, str]:
    """End after start, and no two intervals of one day overlapping."""
    errors: dict[str, str] = {}
    valid: list[HoursInterval] = []
    for iv in intervals:
        if not 0 <= iv.weekday <= 6:
            errors[f"{iv.key}_start"] = "Unknown weekday."
        elif (
            not 0 <= iv.start_minute < h.MINUTES_PER_DAY
            or not 0 < iv.end_minute <= h.MINUTES_PER_DAY
        ):
            errors[f"{iv.key}_start"] = "Times must lie within the day (00:00–24:00)."
        elif iv.end_minute == iv.start_minute:
            errors[f"{iv.key}_end"] = "The interval is empty: the end must be after the start."
        elif iv.end_minute < iv.start_minute:
            errors[f"{iv.key}_end"] = (
                f"The end ({h.format_minute(iv.end_minute)}) is before the start "
                f"({h.format_minute(iv.start_minute)}). Hours cannot run past midnight; "
                "split them over two days."
            )
        else:
            valid.append(iv)
    by_day: dict[int, list[HoursInterval]] = {}
    for iv in valid:
        by_day.setdefault(iv.weekday, []).append(iv)
    for day_intervals in by_day.values():
        day_intervals.sort(key=lambda iv: (iv.start_minute, iv.end_minute))
        for earlier, later in itertools.pairwise(day_intervals):
            if later.start_minute < earlier.end_minute:
                errors.setdefault(
                    f"{later.key}_start",
                    f"Overlaps {h.format_interval(earlier.start_minute, earlier.end_minute)} "
                    f"on {h.WEEKDAYS[later.weekday]}.",
                )
    return errors


async def _cross_location_conflicts(
    therapist_id: int,
    location_id: int,
    intervals: list[HoursInterval],
    *,
    today: date | None = None,
) -> dict[str, str]:
    """Intervals overlapping the therapist's hours at another location.

    Compared as real instants: each location's wall-clock interval is turned
    into UTC on concrete dates. Within one zone this is the same as comparing
    the wall times; across zones the offset between them changes with their
    DST dates, so a year of dates is checked and an example date reported.
    """
    others = (
        await WorkingHours.select(
            WorkingHours.location,
            WorkingHours.weekday,
            WorkingHours.start_minute,
            WorkingHours.end_minute,
        )
        .where((WorkingHours.therapist == therapist_id) & (WorkingHours.location != location_id))
        .run()
    )
    if not others or not intervals:
        return {}
    places = await location_names({location_id} | {int(o["location"]) for o in others})
    own_tz = ZoneInfo(str(places[location_id]["timezone"]))
    errors: dict[str, str] = {}
    start_day = today or utcnow().date()
    for iv in intervals:
        for other in others:
            place = places[int(other["location"])]
            other_tz = ZoneInfo(str(place["timezone"]))
            label = (
                f"{h.WEEKDAYS[other['weekday']]} "
                f"{h.format_interval(other['start_minute'], other['end_minute'])}"
            )
            if other_tz.key == own_tz.key:
                if other["weekday"] == iv.weekday and (
                    iv.start_minute < other["end_minute"] and other["start_minute"] < iv.end_minute
                ):
                    errors[f"{iv.key}_start"] = (
                        f"Overlaps {label} at {place['name']}: "
                        "a therapist cannot work at two locations at once."
                    )
                    break
                continue
            clash = _first_clash(iv, other, own_tz, other_tz, start_day)
            if clash is not None:
                errors[f"{iv.key}_start"] = (
                    f"Overlaps {label} ({place['timezone']}) at {place['name']}, "
                    f"e.g. on {clash.isoformat()}: a therapist cannot work at two "
                    "locations at once."
                )
                break
    return errors


def _first_clash(
    iv: HoursInterval, other: dict[str, Any], own_tz: ZoneInfo, other_tz: ZoneInfo, start: date
) -> date | None:
    offset = (iv.weekday - start.weekday()) % 7
    for week in range(OVERLAP_HORIZON_DAYS // 7 + 1):
        day = start + timedelta(days=offset + 7 * week)
        span = h.interval_span(day, iv.start_minute, iv.end_minute, own_tz)
        for delta in (-1, 0, 1):
            other_day = day + timedelta(days=delta)
            if other_day.weekday() != other["weekday"]:
                continue
            other_span = h.interval_span(
                other_day, other["start_minute"], other["end_minute"], other_tz
            )
            if span.overlaps(other_span):
                return day
    return None


async def hours_of(therapist_id: int, location_id: int | None = None) -> list[dict[str, Any]]:
    query = WorkingHours.select(
        WorkingHours.id,
        WorkingHours.location,
        WorkingHours.weekday,
        WorkingHours.start_minute,
        WorkingHours.end_minute,
    ).where(WorkingHours.therapist == therapist_id)
    if location_id is not None:
        query = query.where(WorkingHours.location == location_id)
    return await query.order_by(WorkingHours.weekday, WorkingHours.start_minute).run()


def week_summary(rows: list[dict[str, Any]]) -> dict[str, str]:
    """{"Monday": "09:00–12:00, 13:00–18:00", …} for the audit trail and pages."""
    out: dict[str, str] = {}
    for day in range(7):
        spans = [
            h.format_interval(r["start_minute"], r["end_minute"])
            for r in sorted(rows, key=lambda r: r["start_minute"])
            if r["weekday"] == day
        ]
        out[h.WEEKDAYS[day]] = ", ".join(spans) if spans else "—"
    return out


async def set_hours(
    actor: CurrentUser,
    therapist_id: int,
    location_id: int,
    intervals: list[HoursInterval],
    *,
    address: str = "",
    today: date | None = None,
) -> None:
    """Replace the therapist's weekly hours at one location.

    Refused (nothing saved) when an interval ends before it starts, is empty,
    overlaps another of the same day, or overlaps the therapist's hours at
    another location.
    """
    therapist = await get_therapist_for(actor, therapist_id, write=True)
    ensure_location_access(actor, location_id, write=True)
    if location_id not in therapist["location_ids"]:
        raise Invalid(
            {"form": "The therapist does not work at this location: add it to the profile first."}
        )
    intervals = _keyed(intervals)
    errors = check_intervals(intervals)
    if errors:
        raise Invalid(errors)
    before = await hours_of(therapist_id, location_id)
    place = (await location_names({location_id}))[location_id]
    async with db.transaction():
        # Touching the row first serialises concurrent edits of one therapist's
        # hours (a row lock on PostgreSQL; SQLite transactions are already
        # serial), so two locations cannot both pass the overlap check at once.
        await (
            Therapist.update({Therapist.updated_at: utcnow()})
            .where(Therapist.id == therapist_id)
            .run()
        )
        errors = await _cross_location_conflicts(therapist_id, location_id, intervals, today=today)
        if errors:
            raise Invalid(errors)
        await (
            WorkingHours.delete()
            .where(
                (WorkingHours.therapist == therapist_id) & (WorkingHours.location == location_id)
            )
            .run()
        )
        if intervals:
            await WorkingHours.insert(
                *[
                    WorkingHours(
                        therapist=therapist_id,
                        location=location_id,
                        weekday=iv.weekday,
                        start_minute=iv.start_minute,
                        end_minute=iv.end_minute,
                    )
                    for iv in sorted(intervals, key=lambda i: (i.weekday, i.start_minute))
                ]
            ).run()
        after_rows = [
            {"weekday": iv.weekday, "start_minute": iv.start_minute, "end_minute": iv.end_minute}
            for iv in intervals
        ]
        old, new = week_summary(before), week_summary(after_rows)
        if old != new:
            await audit.record(
                actor,
                "set_hours",
                "therapist",
                therapist_id,
                before={"location": place["name"], **old},
                after={"location": place["name"], **new},
                address=address,
            )


# -- time off ---------------------------------------------------------------


@dataclass(frozen=True)
class TimeOffInput:
    """Whole days (no times) or from a local date-time to another, in a location's zone."""

    location_id: int
    start_date: date
    end_date: date
    start_minute: int | None = None
    end_minute: int | None = None
    reason: str = ""

    @property
    def all_day(self) -> bool:
        return self.start_minute is None and self.end_minute is None


def parse_time_off_form(values: dict[str, str]) -> TimeOffInput:
    errors: dict[str, str] = {}
    try:
        location_id = int(values.get("location_id", ""))
    except ValueError:
        errors["location_id"] = "Choose the location whose time zone the dates are in."
        location_id = 0
    start_date = parse_date(values, errors, "start_date", label="First day")
    if start_date is None and "start_date" not in errors:
        errors["start_date"] = "Enter the first day."
    end_date = parse_date(values, errors, "end_date", label="Last day") or start_date
    times: dict[str, int | None] = {}
    for name in ("start_time", "end_time"):
        raw = values.get(name, "").strip()
        times[name] = None
        if raw:
            parsed = h.parse_hhmm(raw)
            if parsed is None or parsed >= h.MINUTES_PER_DAY:
                errors[name] = "Enter a time such as 13:00, or leave empty for whole days."
            times[name] = parsed
    if (times["start_time"] is None) != (times["end_time"] is None) and not errors:
        missing = "start_time" if times["start_time"] is None else "end_time"
        errors[missing] = "Give both times, or neither for whole days."
    reason = require_text(values, errors, "reason", label="Reason", max_length=200)
    if errors:
        raise Invalid(errors)
    assert start_date is not None and end_date is not None
    return TimeOffInput(
        location_id=location_id,
        start_date=start_date,
        end_date=end_date,
        start_minute=times["start_time"],
        end_minute=times["end_time"],
        reason=reason,
    )


def time_off_span(data: TimeOffInput, tz: ZoneInfo) -> tuple[h.Span | None, dict[str, str]]:
    errors: dict[str, str] = {}
    if data.all_day:
        if data.end_date < data.start_date:
            errors["end_date"] = "The last day is before the first day."
            return None, errors
        span = h.Span(
            h.wall_to_utc(data.start_date, 0, tz),
            h.wall_to_utc(data.end_date + timedelta(days=1), 0, tz),
        )
    else:
        start, problem = h.local_wall(data.start_date, data.start_minute, tz)
        if problem:
            errors["start_time"] = problem
        end, problem = h.local_wall(data.end_date, data.end_minute, tz)
        if problem:
            errors["end_time"] = problem
        if errors or start is None or end is None:
            return None, errors
        if end == start:
            errors["end_time"] = "The time off is empty: the end must be after the start."
            return None, errors
        if end < start:
            errors["end_time"] = "The end is before the start."
            return None, errors
        span = h.Span(start, end)
    if span.end - span.start > timedelta(days=MAX_TIME_OFF_DAYS):
        errors["end_date"] = "Time off can be at most a year; enter longer absences in parts."
        return None, errors
    return span, errors


async def add_time_off(
    actor: CurrentUser, therapist_id: int, data: TimeOffInput, *, address: str = ""
) -> int:
    therapist = await get_therapist_for(actor, therapist_id, write=True)
    if data.location_id not in therapist["location_ids"]:
        raise Invalid({"location_id": "Choose one of the therapist's locations."})
    place = (await location_names({data.location_id}))[data.location_id]
    tz = ZoneInfo(str(place["timezone"]))
    span, errors = time_off_span(data, tz)
    if errors or span is None:
        raise Invalid(errors)
    async with db.transaction():
        clash = (
            await TimeOff.select(
                TimeOff.starts_at, TimeOff.ends_at, TimeOff.reason, TimeOff.timezone
            )
            .where(
                (TimeOff.therapist == therapist_id)
                & TimeOff.cancelled_at.is_null()
                & (TimeOff.starts_at < span.end)
                & (TimeOff.ends_at > span.start)
            )
            .first()
            .run()
        )
        if clash:
            ztz = ZoneInfo(str(clash["timezone"]))
            raise Invalid(
                {
                    "start_date": "Overlaps time off already recorded "
                    f"({clash['starts_at'].astimezone(ztz):%Y-%m-%d %H:%M} to "
                    f"{clash['ends_at'].astimezone(ztz):%Y-%m-%d %H:%M}, {clash['reason']})."
                }
            )
        rows = (
            await TimeOff.insert(
                TimeOff(
                    therapist=therapist_id,
                    starts_at=span.start,
                    ends_at=span.end,
                    all_day=data.all_day,
                    timezone=tz.key,
                    reason=data.reason,
                    created_at=utcnow(),
                )
            )
            .returning(TimeOff.id)
            .run()
        )
        time_off_id = int(rows[0]["id"])
        await audit.record(
            actor,
            "add_time_off",
            "therapist",
            therapist_id,
            after={
                "time_off": describe_time_off(
                    {
                        "starts_at": span.start,
                        "ends_at": span.end,
                        "all_day": data.all_day,
                        "timezone": tz.key,
                    }
                ),
                "reason": data.reason,
            },
            address=address,
        )
    return time_off_id


def describe_time_off(row: dict[str, Any]) -> str:
    tz = ZoneInfo(str(row["timezone"]))
    start = row["starts_at"].astimezone(tz)
    end = row["ends_at"].astimezone(tz)
    if row["all_day"]:
        last = (end - timedelta(minutes=1)).date()
        if last == start.date():
            return f"{start:%Y-%m-%d} (whole day, {tz.key})"
        return f"{start:%Y-%m-%d} to {last:%Y-%m-%d} (whole days, {tz.key})"
    return f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} ({tz.key})"


async def list_time_off(
    therapist_id: int, *, since: datetime | None = None
) -> list[dict[str, Any]]:
    query = TimeOff.select().where(
        (TimeOff.therapist == therapist_id) & TimeOff.cancelled_at.is_null()
    )
    if since is not None:
        query = query.where(TimeOff.ends_at > since)
    rows = await query.order_by(TimeOff.starts_at).run()
    for row in rows:
        row["description"] = describe_time_off(row)
    return rows


async def get_time_off_for(
    actor: CurrentUser, therapist_id: int, time_off_id: int, *, write: bool = False
) -> dict[str, Any]:
    await get_therapist_for(actor, therapist_id, write=write)
    row = (
        await TimeOff.select()
        .where((TimeOff.id == time_off_id) & (TimeOff.therapist == therapist_id))
        .first()
        .run()
    )
    if row is None:
        raise NotFound("No such time off.")
    row["description"] = describe_time_off(row)
    return row


async def remove_time_off(
    actor: CurrentUser, therapist_id: int, time_off_id: int, *, address: str = ""
) -> bool:
    """Cancel time off: the row stays (with ``cancelled_at``) so history is whole.

    Returns False when it was already cancelled.
    """
    row = await get_time_off_for(actor, therapist_id, time_off_id, write=True)
    async with db.transaction():
        cancelled = (
            await TimeOff.update({TimeOff.cancelled_at: utcnow()})
            .where(
                (TimeOff.id == time_off_id)
                & (TimeOff.therapist == therapist_id)
                & TimeOff.cancelled_at.is_null()
            )
            .returning(TimeOff.id)
            .run()
        )
        if cancelled:
            await audit.record(
                actor,
                "remove_time_off",
                "therapist",
                therapist_id,
                before={"time_off": row["description"], "reason": row["reason"]},
                after={"time_off": None, "reason": None},
                address=address,
            )
    return bool(cancelled)


# -- bookability ----------------------------------------------------------------


@dataclass(frozen=True)
class Bookability:
    """Whether a therapist may be booked for [start, end) at a location, and why not."""

    bookable: bool
    reasons: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.bookable


def _no(*reasons: str) -> Bookability:
    return Bookability(False, tuple(reasons))


async def is_bookable(
    therapist_id: int,
    location_id: int,
    start_utc: datetime,
    end_utc: datetime,
    service_id: int | None = None,
) -> Bookability:
    """The staff side of the booking rules (appointments add their own checks).

    Bookable when the therapist is active, works at the location, holds a
    licence and insurance valid on every local date the interval touches (in
    the location's zone), the interval lies within their working hours there
    on those dates (DST-correct), no time off overlaps it, and, when a
    service is given, they may perform it. Every failing rule is reported.
    """
    if start_utc.tzinfo is None or end_utc.tzinfo is None:
        raise ValueError("is_bookable needs timezone-aware datetimes")
    wanted = h.Span(start_utc.astimezone(UTC), end_utc.astimezone(UTC))
    if wanted.end <= wanted.start:
        return _no("The end must be after the start.")
    therapist = await Therapist.select().where(Therapist.id == therapist_id).first().run()
    if therapist is None:
        return _no("No such therapist.")
    location = await Location.select().where(Location.id == location_id).first().run()
    if location is None:
        return _no("No such location.")
    tz = ZoneInfo(str(location["timezone"]))
    name = therapist["name"]
    reasons: list[str] = []
    if not therapist["active"]:
        reasons.append(f"{name} is inactive.")
    if not location["active"]:
        reasons.append(f"{location['name']} is inactive.")
    works_there = (
        await TherapistLocation.exists()
        .where(
            (TherapistLocation.therapist == therapist_id)
            & (TherapistLocation.location == location_id)
        )
        .run()
    )
    if not works_there:
        reasons.append(f"{name} does not work at {location['name']}.")
    first_day = h.local_date(wanted.start, tz)
    last_day = h.local_date(wanted.end - timedelta(microseconds=1), tz)
    for key, label in (
        ("licence_expires", "licence"),
        ("insurance_expires", "liability insurance"),
    ):
        expires = therapist[key]
        if expires is None:
            reasons.append(f"No {label} expiry date is on file for {name}.")
        elif expires < last_day:
            reasons.append(f"{name}'s {label} expired on {expires.isoformat()}.")
    if works_there:
        rows = await hours_of(therapist_id, location_id)
        spans = []
        for day in h.days_between(first_day - timedelta(days=1), last_day):
            spans += [
                h.interval_span(day, r["start_minute"], r["end_minute"], tz)
                for r in rows
                if r["weekday"] == day.weekday()
            ]
        if not any(span.contains(wanted) for span in h.merge(spans)):
            local_start = wanted.start.astimezone(tz)
            local_end = wanted.end.astimezone(tz)
            today = [r for r in rows if r["weekday"] == first_day.weekday()]
            worked = (
                ", ".join(h.format_interval(r["start_minute"], r["end_minute"]) for r in today)
                if today
                else "not working"
            )
            reasons.append(
                f"{local_start:%H:%M}–{local_end:%H:%M} on {first_day:%A %Y-%m-%d} is outside "
                f"{name}'s working hours at {location['name']} ({worked} that day)."
            )
    off = (
        await TimeOff.select()
        .where(
            (TimeOff.therapist == therapist_id)
            & TimeOff.cancelled_at.is_null()
            & (TimeOff.starts_at < wanted.end)
            & (TimeOff.ends_at > wanted.start)
        )
        .run()
    )
    for row in off:
        reasons.append(f"{name} is on time off: {row['reason']} ({describe_time_off(row)}).")
    if service_id is not None:
        service = await Service.select(Service.name).where(Service.id == service_id).first().run()
        if service is None:
            reasons.append("No such service.")
        elif (
            not await TherapistService.exists()
            .where(
                (TherapistService.therapist == therapist_id)
                & (TherapistService.service == service_id)
            )
            .run()
        ):
            reasons.append(f"{name} is not permitted to perform {service['name']}.")
    return Bookability(not reasons, tuple(reasons))


# -- compliance -------------------------------------------------------------------


@dataclass(frozen=True)
class ComplianceItem:
    therapist_id: int
    therapist_name: str
    credential: str  # "Licence" or "Liability insurance"
    expires: date | None
    days_left: int | None
    detail: str = ""


@dataclass
class LocationCompliance:
    location: dict[str, Any]
    today: date
    expired: list[ComplianceItem] = field(default_factory=list)
    within_30: list[ComplianceItem] = field(default_factory=list)
    within_60: list[ComplianceItem] = field(default_factory=list)
    missing: list[ComplianceItem] = field(default_factory=list)

    @property
    def clear(self) -> bool:
        return not (self.expired or self.within_30 or self.within_60 or self.missing)


async def compliance(user: CurrentUser, *, now: datetime | None = None) -> list[LocationCompliance]:
    """Per location the user manages: licences and insurance expired, expiring
    within 30 days, within 60 days, or not on file — for active therapists,
    with "today" taken in each location's own zone."""
    if user.role not in (OWNER, MANAGER):
        raise Forbidden("Only owners and managers see compliance.")
    now = now or utcnow()
    query = Location.select(Location.id, Location.name, Location.timezone, Location.active).where(
        Location.active == True  # noqa: E712
    )
    if user.role == MANAGER:
        query = query.where(Location.id.is_in(sorted(user.location_ids) or [-1]))
    report = []
    for location in await query.order_by(Location.name).run():
        today = now.astimezone(ZoneInfo(str(location["timezone"]))).date()
        horizon = today + timedelta(days=LATER_DAYS)
        rows = (
            await Therapist.select(
                Therapist.id,
                Therapist.name,
                Therapist.licence_number,
                Therapist.licence_state,
                Therapist.licence_expires,
                Therapist.insurance_expires,
            )
            .where(
                (Therapist.active == True)  # noqa: E712
                & Therapist.id.is_in(
                    TherapistLocation.select(TherapistLocation.therapist).where(
                        TherapistLocation.location == location["id"]
                    )
                )
                & (
                    Therapist.licence_expires.is_null()
                    | Therapist.insurance_expires.is_null()
                    | (Therapist.licence_expires <= horizon)
                    | (Therapist.insurance_expires <= horizon)
                )
            )
            .order_by(Therapist.name)
            .run()
        )
        entry = LocationCompliance(location=location, today=today)
        for row in rows:
            licence_detail = " ".join(p for p in (row["licence_state"], row["licence_number"]) if p)
            for key, label, detail in (
                ("licence_expires", "Licence", licence_detail),
                ("insurance_expires", "Liability insurance", ""),
            ):
                expires = row[key]
                days = (expires - today).days if expires is not None else None
                item = ComplianceItem(
                    int(row["id"]), str(row["name"]), label, expires, days, detail
                )
                if days is None:
                    entry.missing.append(item)
                elif days < 0:
                    entry.expired.append(item)
                elif days <= SOON_DAYS:
                    entry.within_30.append(item)
                elif days <= LATER_DAYS:
                    entry.within_60.append(item)
        for bucket in (entry.expired, entry.within_30, entry.within_60):
            bucket.sort(key=lambda i: (i.expires or date.min, i.therapist_name))
        report.append(entry)
    return report


def credential_status(expires: date | None, today: date | None = None) -> str:
    """'expired', 'soon' (≤30 days), 'later' (≤60 days), 'ok' or 'missing' — for badges."""
    if expires is None:
        return "missing"
    days = (expires - (today or utcnow().date())).days
    if days < 0:
        return "expired"
    if days <= SOON_DAYS:
        return "soon"
    if days <= LATER_DAYS:
        return "later"
    return "ok"
