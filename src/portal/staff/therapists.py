"""Therapists: profiles, where they work, what they may perform, their sign-in account.

No HTTP here. Access rules:

* owners see and change every therapist;
* a manager sees and changes therapists who work at one of their locations,
  and adds or removes only their own locations on a profile;
* a therapist reads their own profile (the one linked to their account);
* nobody else sees therapists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Unpack

from portal import db, records
from portal.access import writable_among
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
from portal.errors import Forbidden, Invalid
from portal.fields import FIRST_YEAR, LAST_YEAR, optional_text, plausible, require_text
from portal.locations.tables import Location
from portal.pagination import Page
from portal.settings import Settings
from portal.staff.tables import (
    Therapist,
    TherapistLocation,
    TherapistService,
    WorkingHours,
)
from portal.timeutil import utcnow
from portal.users import invitations
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
    if not plausible(value):
        errors[name] = f"{label}: enter a date between {FIRST_YEAR} and {LAST_YEAR}."
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
    """Whether ``user`` may change a therapist working at ``location_ids``: they
    may change one of those locations (a therapist at none: owners only)."""
    if not location_ids:
        return user.role == OWNER
    return bool(writable_among(user, location_ids))


def can_deactivate(user: CurrentUser, location_ids: frozenset[int]) -> bool:
    """Deactivation takes a therapist out of every location, so it needs all of them."""
    if not location_ids:
        return user.role == OWNER
    return len(writable_among(user, location_ids)) == len(location_ids)


async def _linked_ids(link: Any, column: Any, therapist_id: int) -> frozenset[int]:
    """The ids one of the therapist's link tables ties them to (``column`` of ``link``)."""
    rows = await link.select(column).where(link.therapist == therapist_id).run()
    return frozenset(int(r[column._meta.name]) for r in rows)


async def therapist_location_ids(therapist_id: int) -> frozenset[int]:
    return await _linked_ids(TherapistLocation, TherapistLocation.location, therapist_id)


async def therapist_service_ids(therapist_id: int) -> frozenset[int]:
    return await _linked_ids(TherapistService, TherapistService.service, therapist_id)


async def get_therapist(therapist_id: int) -> dict[str, Any]:
    row = await records.get(Therapist, therapist_id, "No such therapist.")
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


def _working_at(location_ids: list[int]) -> Any:
    """Therapists who work at one of the locations."""
    return Therapist.id.is_in(
        TherapistLocation.select(TherapistLocation.therapist).where(
            TherapistLocation.location.is_in(location_ids)
        )
    )


async def list_therapists(user: CurrentUser, **filters: Unpack[records.ListQuery]) -> Page:
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
    if user.role not in (OWNER, MANAGER):
        return Page(rows=[], next_cursor=None)
    page = await records.list_page(
        query,
        Therapist,
        (Therapist.name, Therapist.email),
        user=user,
        within=_working_at,
        **filters,
    )
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
    if data.location_ids:
        known_locations = await location_names(data.location_ids)
        if set(known_locations) != set(data.location_ids):
            errors["location_ids"] = "Choose locations from the list."
    # The locations this actor may not change stay as they are.
    mine = frozenset(writable_among(actor, data.location_ids | current))
    if not data.location_ids <= mine:
        errors["location_ids"] = "You can only choose the locations you manage."
    final = (data.location_ids & mine) | (current - mine)
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
        therapist_id = await records.insert(
            Therapist, **data.profile(), active=True, created_at=now, updated_at=now
        )
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
    actor: CurrentUser,
    therapist_id: int,
    *,
    email: str,
    address: str = "",
    settings: Settings | None = None,
) -> int:
    """Give the therapist a sign-in (role therapist) at the profile's locations; they
    are emailed an invitation to choose their password."""
    row = await get_therapist_for(actor, therapist_id, write=True)
    if row["account"] is not None:
        raise Invalid({"account_email": "This therapist already has a sign-in account."})
    async with db.transaction():
        try:
            user_id = await invitations.invite_staff(
                actor,
                users.UserInput(
                    email=email, name=row["name"], role=THERAPIST, location_ids=row["location_ids"]
                ),
                address=address,
                settings=settings,
            )
        except Invalid as exc:
            raise Invalid(
                {f"account_{k}" if k == "email" else k: v for k, v in exc.errors.items()}
            ) from exc
        await _link(actor, therapist_id, user_id, row["location_ids"], address)
    return user_id


ACCOUNT_TAKEN = {"account_user": "That account already belongs to another therapist profile."}


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
        errors.update(ACCOUNT_TAKEN)
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
    async with records.unique_or_invalid(ACCOUNT_TAKEN):
        await (
            Therapist.update({Therapist.account: user_id, Therapist.updated_at: utcnow()})
            .where(Therapist.id == therapist_id)
            .run()
        )
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
