"""User accounts and roles, administered by owners (and by the `portal users` command)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from portal import db, records
from portal.audit import service as audit
from portal.auth import passwords
from portal.auth.service import (
    LOCATION_BOUND_ROLES,
    MANAGER,
    ROLES,
    CurrentUser,
    end_access_of,
    is_valid_email,
    location_ids_of,
    normalize_email,
)
from portal.auth.tables import User, UserLocation
from portal.errors import Invalid
from portal.locations.tables import Location
from portal.pagination import Page, keyset_page
from portal.timeutil import utcnow


@dataclass(frozen=True)
class UserInput:
    email: str
    name: str
    role: str
    location_ids: frozenset[int] = field(default_factory=frozenset)
    password: str = ""


def _public(row: dict[str, Any], location_ids: frozenset[int]) -> dict[str, Any]:
    return {
        "email": row["email"],
        "name": row["name"],
        "role": row["role"],
        "active": row["active"],
        "location_ids": sorted(location_ids),
    }


EMAIL_TAKEN = {"email": "Another account already uses this email."}


async def _validate(data: UserInput, *, user_id: int | None, password_required: bool) -> UserInput:
    errors: dict[str, str] = {}
    email = normalize_email(data.email)
    if not email:
        errors["email"] = "Email is required."
    elif not is_valid_email(email):
        errors["email"] = "Enter a valid email address, such as name@example.com."
    else:
        taken = User.exists().where(User.email == email)
        if user_id is not None:
            taken = taken.where(User.id != user_id)
        if await taken.run():
            errors.update(EMAIL_TAKEN)
    name = data.name.strip()
    if len(name) > 120:
        errors["name"] = "Name must be at most 120 characters."
    if data.role not in ROLES:
        errors["role"] = "Choose one of the roles in the list."
    locations = frozenset(data.location_ids)
    if locations:
        known = await Location.select(Location.id).where(Location.id.is_in(list(locations))).run()
        if len(known) != len(locations):
            errors["location_ids"] = "Choose locations from the list."
    if data.role == MANAGER and not locations:
        errors["location_ids"] = "A manager needs at least one location."
    if data.role not in LOCATION_BOUND_ROLES:
        locations = frozenset()
    if password_required or data.password:
        problem = passwords.password_problem(data.password, email=email)
        if problem:
            errors["password"] = problem
    if errors:
        raise Invalid(errors)
    return UserInput(
        email=email, name=name, role=data.role, location_ids=locations, password=data.password
    )


async def create_user(actor: CurrentUser | None, data: UserInput, *, address: str = "") -> int:
    clean = await _validate(data, user_id=None, password_required=True)
    now = utcnow()
    async with records.unique_or_invalid(EMAIL_TAKEN), db.transaction():
        user_id = await records.insert(
            User,
            email=clean.email,
            name=clean.name,
            role=clean.role,
            password_hash=passwords.hash_password(clean.password),
            active=True,
            created_at=now,
            password_changed_at=now,
        )
        if clean.location_ids:
            await UserLocation.insert(
                *[UserLocation(user=user_id, location=loc) for loc in clean.location_ids]
            ).run()
        await audit.record(
            actor,
            "create",
            "user",
            user_id,
            after={
                "id": user_id,
                **_public({**clean.__dict__, "active": True}, clean.location_ids),
            },
            address=address,
        )
    return user_id


async def get_user(user_id: int) -> dict[str, Any]:
    row = await records.first(
        User.select(User.id, User.email, User.name, User.role, User.active, User.created_at).where(
            User.id == user_id
        ),
        "No such user.",
    )
    row["location_ids"] = await location_ids_of(user_id)
    return row


async def update_user(
    actor: CurrentUser, user_id: int, data: UserInput, *, address: str = ""
) -> None:
    before = await get_user(user_id)
    clean = await _validate(data, user_id=user_id, password_required=False)
    old = _public(before, before["location_ids"])
    new = _public({**clean.__dict__, "active": before["active"]}, clean.location_ids)
    if old == new and not clean.password:
        return
    async with db.transaction():
        await (
            User.update({User.email: clean.email, User.name: clean.name, User.role: clean.role})
            .where(User.id == user_id)
            .run()
        )
        if before["location_ids"] != clean.location_ids:
            await UserLocation.delete().where(UserLocation.user == user_id).run()
            if clean.location_ids:
                await UserLocation.insert(
                    *[UserLocation(user=user_id, location=loc) for loc in clean.location_ids]
                ).run()
        if clean.password:
            await _store_password(user_id, clean.password)
        if old["role"] != new["role"] or clean.password:
            # A changed role or password takes effect now, not at the next sign-in.
            await end_access_of(user_id)
        await audit.record(actor, "update", "user", user_id, before=old, after=new, address=address)


async def _store_password(user_id: int, password: str) -> None:
    await (
        User.update(
            {
                User.password_hash: passwords.hash_password(password),
                User.password_changed_at: utcnow(),
            }
        )
        .where(User.id == user_id)
        .run()
    )


async def find_by_email(email: str) -> dict[str, Any]:
    email = normalize_email(email)
    row = await records.first(
        User.select(User.id).where(User.email == email), f"No account with email {email}."
    )
    return await get_user(int(row["id"]))


async def set_password(actor: CurrentUser | None, user_id: int, password: str) -> None:
    user = await get_user(user_id)
    problem = passwords.password_problem(password, email=user["email"])
    if problem:
        raise Invalid({"password": problem})
    async with db.transaction():
        await _store_password(user_id, password)
        await end_access_of(user_id)
        await audit.record(actor, "set_password", "user", user_id, after={"password": "changed"})


async def set_active(
    actor: CurrentUser | None, user_id: int, active: bool, *, address: str = ""
) -> bool:
    await get_user(user_id)
    if actor is not None and actor.id == user_id and not active:
        raise Invalid({"active": "You cannot deactivate your own account."})

    async def end_sessions() -> None:
        if not active:
            await end_access_of(user_id)

    return await records.set_active(
        actor, User, "user", user_id, active, address=address, also=end_sessions
    )


async def list_users(
    *, search: str = "", role: str = "", after: str | None = None, limit: int = 50
) -> Page:
    query = User.select(User.id, User.email, User.name, User.role, User.active)
    if role in ROLES:
        query = query.where(User.role == role)
    if search:
        pattern = f"%{search}%"
        query = query.where(User.email.ilike(pattern) | User.name.ilike(pattern))
    return await keyset_page(query, User.email, User.id, after=after, limit=limit)
