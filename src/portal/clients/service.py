"""Clients: profiles, the versioned intake, and the staff's client list. No HTTP here.

A client is an ``app_user`` with role ``client``; ``client_profile`` holds
their contact details and preferences, ``client_intake`` the versions of their
intake questionnaire (never updated; an edit appends a version).

Who may read a client: owners, every client; managers, the clients of their
locations — with a paid purchase there, an appointment there that the client
booked or attended, or one of them as the preferred location the client chose
(:func:`ensure_can_read_client`, :func:`client_scope`; one rule, :func:`_ties`).
Selling to a client of another location is allowed and ties nothing until paid.
Accountants and therapists never see clients' intake.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

from piccolo.query import WhereRaw

from portal import access, db, records
from portal.audit import service as audit
from portal.auth.service import CLIENT, MANAGER, OWNER, CurrentUser
from portal.auth.tables import User
from portal.clients import intake as intake_form
from portal.clients import regions
from portal.clients.phones import PHONE_RE, phone_digits
from portal.clients.tables import ClientIntake, ClientProfile
from portal.errors import Forbidden, Invalid
from portal.fields import checked, optional_text, parse_iso_date, require_text
from portal.locations.tables import Location
from portal.pagination import Page, keyset_page
from portal.timeutil import utcnow

STAFF_READERS = (OWNER, MANAGER)

PROFILE_FIELDS = (
    "name",
    "phone",
    "date_of_birth",
    "address",
    "emergency_contact_name",
    "emergency_contact_phone",
    "email_reminders",
    "marketing_consent",
    "preferred_location_id",
)
PROFILE_LABELS = {
    "name": "Name",
    "phone": "Phone",
    "date_of_birth": "Date of birth",
    "address": "Address",
    "emergency_contact_name": "Emergency contact",
    "emergency_contact_phone": "Emergency contact's phone",
    "email_reminders": "Email reminders",
    "marketing_consent": "Marketing email",
    "preferred_location_id": "Preferred location",
}
_LIST_FIELDS = ("concerns", "regions", "health_flags")
PREFERENCE_IS_THE_CLIENTS = "Only the client chooses their preferred location, in their account."


@dataclass(frozen=True)
class ProfileInput:
    name: str
    phone: str
    date_of_birth: date | None
    address: str
    emergency_contact_name: str
    emergency_contact_phone: str
    email_reminders: bool
    marketing_consent: bool
    preferred_location_id: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- access ----------------------------------------------------------------------


async def ensure_can_read_client(actor: CurrentUser, client_id: int) -> None:
    """Staff who may see a client's contact details and intake, or the client.

    Owners: every client. Managers: the clients of their locations — with a
    paid purchase there, an appointment there they booked or attended, or who
    chose one of them as preferred location. Accountants and therapists: no.
    """
    if actor.role == CLIENT and actor.id == client_id:
        return
    scope = client_scope(actor, refusal="You do not have access to this client.")
    if scope is None:
        return
    # Three index probes by client id, however many clients the locations have.
    if not await User.exists().where((User.id == client_id) & _tied_to(scope)).run():
        raise Forbidden("This is not a client of your locations.")


def client_scope(
    actor: CurrentUser, *, refusal: str = "You do not have access to the client list."
) -> frozenset[int] | None:
    """Locations whose clients ``actor`` may see; None means every client.

    Owners and managers deal with clients, each over the locations
    :func:`portal.access.visible_locations` gives them; other staff get ``refusal``.
    """
    if actor.role not in (OWNER, MANAGER):
        raise Forbidden(refusal)
    return access.visible_locations(actor)


# A manager's clients are ``app_user`` rows with a preference, a paid purchase or an
# appointment they booked or attended at one of their locations. Bookings and sales
# build on clients: their tables are read here, not their rules. The list walks
# clients by name, so a page costs the rows walked until 50 match. Two forms of
# the same condition, giving the same rows:
#
# * per client, ``_tied_to``: one EXISTS over three index probes by (location,
#   client), so a page costs the same however many purchases, appointments and
#   clients the locations have. One EXISTS over UNION ALL rather than three
#   OR'ed ones: PostgreSQL turns OR'ed EXISTS back into hashing every row of the
#   locations on each page, as if the walk had no LIMIT.
# * the locations' client set, ``_among``: read whole and sorted. Used when the
#   locations have fewer than SCOPE_SET_ROWS rows, where walking by name would
#   pass most clients (a new location's empty list walks every client) and
#   reading the set costs a few milliseconds.
SCOPE_SET_ROWS = 10_000


# What ties a client to a location is something the client did there, never a staff
# action alone: a sale that was paid (active, or refunded since), an appointment
# the client booked themselves or attended, or their own choice of preferred
# location (staff cannot change it: ``save_profile``; a client whose account the
# desk created starts with that clinic, which they may change). A pending front-desk sale or
# checkout link, or an appointment staff booked that has not happened, ties nothing.
PAID_SALE_STATUSES = ("active", "refunded")
ATTENDED = "completed"


def _ties(location_ids: frozenset[int], client: str | None) -> tuple[str, list[Any]]:
    """SQL for the client ids tied to the locations; ``client`` correlates each part."""
    ids: list[Any] = sorted(location_ids) or [-1]
    marks = ", ".join("{}" for _ in ids)
    paid = ", ".join("{}" for _ in PAID_SALE_STATUSES)
    parts: list[tuple[str, str, str, list[Any]]] = [
        ('"user"', "client_profile", f"preferred_location IN ({marks})", ids),
        ("client", "sale", f"location IN ({marks}) AND status IN ({paid})",
         [*ids, *PAID_SALE_STATUSES]),
        ("client", "appointment",
         f"location IN ({marks}) AND (booked_by = client OR status = {{}})", [*ids, ATTENDED]),
    ]  # fmt: skip
    sql: list[str] = []
    args: list[Any] = []
    for column, table, condition, values in parts:
        if client is None:
            sql.append(f"SELECT {column} FROM {table} WHERE {condition}")
        else:
            sql.append(f"SELECT 1 FROM {table} WHERE {column} = {client} AND {condition}")
        args.extend(values)
    return " UNION ALL ".join(sql), args


def _tied_to(location_ids: frozenset[int]) -> WhereRaw:
    """``User`` rows that are clients of any of ``location_ids``, probed per client."""
    sql, args = _ties(location_ids, '"app_user"."id"')
    return WhereRaw(f"EXISTS ({sql})", *args)


def _among(location_ids: frozenset[int]) -> WhereRaw:
    """The same rows as :func:`_tied_to`, as the locations' set of client ids."""
    sql, args = _ties(location_ids, None)
    return WhereRaw(f'"app_user"."id" IN ({sql})', *args)


async def _of_locations(location_ids: frozenset[int]) -> WhereRaw:
    """The WHERE clause of the clients of ``location_ids`` for a list page."""
    sql, args = _ties(location_ids, None)
    rows = await User.raw(
        f"SELECT count(*) AS n FROM ({sql} LIMIT {SCOPE_SET_ROWS}) AS ties", *args
    ).run()
    if rows[0]["n"] < SCOPE_SET_ROWS:
        return _among(location_ids)
    return _tied_to(location_ids)


# -- profile ----------------------------------------------------------------------


def _parse_date(raw: str, errors: dict[str, str], name: str) -> date | None:
    value = parse_iso_date(raw.strip(), errors, name, example="1985-04-23")
    if value is None:
        return None
    if value > date.today():
        errors[name] = "The date of birth cannot be in the future."
    elif value.year < 1900:
        errors[name] = "Enter a date after 1900."
    return value


def _phone(values: dict[str, str], errors: dict[str, str], name: str, *, required: bool) -> str:
    phone = values.get(name, "").strip()
    if not phone:
        if required:
            errors[name] = "A phone number is needed, so the clinic can reach you."
        return ""
    if not PHONE_RE.match(phone) or sum(c.isdigit() for c in phone) < 6:
        errors[name] = "Use digits, spaces and + ( ) - only, e.g. +1 503 555 0142."
    return phone


async def parse_profile_form(values: dict[str, str]) -> ProfileInput:
    errors: dict[str, str] = {}
    name = require_text(values, errors, "name", label="Name", max_length=120)
    phone = _phone(values, errors, "phone", required=True)
    date_of_birth = _parse_date(values.get("date_of_birth", ""), errors, "date_of_birth")
    address = optional_text(values, errors, "address", label="Address", max_length=500)
    contact_name = optional_text(
        values, errors, "emergency_contact_name", label="Emergency contact", max_length=120
    )
    contact_phone = _phone(values, errors, "emergency_contact_phone", required=False)
    if contact_name and not contact_phone and "emergency_contact_phone" not in errors:
        errors["emergency_contact_phone"] = "Add a phone number for your emergency contact."
    if contact_phone and not contact_name:
        errors["emergency_contact_name"] = "Whose number is it? Add their name."
    location_id: int | None = None
    raw_location = values.get("preferred_location_id", "").strip()
    if raw_location:
        try:
            location_id = int(raw_location)
        except ValueError:
            location_id = -1
        exists = (
            await Location.exists()
            .where(
                (Location.id == location_id) & (Location.active == True)  # noqa: E712
            )
            .run()
        )
        if not exists:
            errors["preferred_location_id"] = "Choose a location from the list."
    if errors:
        raise Invalid(errors)
    return ProfileInput(
        name=name,
        phone=phone,
        date_of_birth=date_of_birth,
        address=address,
        emergency_contact_name=contact_name,
        emergency_contact_phone=contact_phone,
        email_reminders=checked(values, "email_reminders"),
        marketing_consent=checked(values, "marketing_consent"),
        preferred_location_id=location_id,
    )


# The profile's own fields, each a ClientProfile column and a ProfileInput attribute of
# the same name, with its value before the client saved a profile. Reading, showing and
# saving a profile all go through this one list.
_PROFILE_DEFAULTS: dict[str, Any] = {
    "phone": "",
    "date_of_birth": None,
    "address": "",
    "emergency_contact_name": "",
    "emergency_contact_phone": "",
    "email_reminders": True,
    "marketing_consent": False,
}


def _profile_columns() -> list[Any]:
    return [ClientProfile._meta.get_column_by_name(name) for name in _PROFILE_DEFAULTS]


def _empty_profile() -> dict[str, Any]:
    return {
        **_PROFILE_DEFAULTS,
        "preferred_location_id": None,
        "staff_notes": "",
        "terms_accepted_at": None,
        "created_at": None,
        "updated_at": None,
    }


async def client_account(client_id: int) -> dict[str, Any]:
    """The client's account alone (id, email, name, active, created_at); ``NotFound``
    when ``client_id`` is no client's."""
    return await records.first(
        User.select(User.id, User.email, User.name, User.active, User.created_at).where(
            (User.id == client_id) & (User.role == CLIENT)
        ),
        "No such client.",
    )


async def get_client(client_id: int) -> dict[str, Any]:
    """The client's account and profile (empty values when no profile was saved yet)."""
    user = await client_account(client_id)
    profile = (
        await ClientProfile.select(
            *_profile_columns(),
            ClientProfile.preferred_location.as_alias("preferred_location_id"),
            ClientProfile.staff_notes,
            ClientProfile.terms_accepted_at,
            ClientProfile.created_at,
            ClientProfile.updated_at,
        )
        .where(ClientProfile.user == client_id)
        .first()
        .run()
    )
    client: dict[str, Any] = {**user, **_empty_profile(), **(profile or {})}
    client["has_profile"] = profile is not None
    client["preferred_location"] = None
    if client["preferred_location_id"] is not None:
        client["preferred_location"] = (
            await Location.select(Location.id, Location.name, Location.timezone)
            .where(Location.id == client["preferred_location_id"])
            .first()
            .run()
        )
    client["timezone"] = (
        client["preferred_location"]["timezone"] if client["preferred_location"] else "UTC"
    )
    return client


async def get_client_for(actor: CurrentUser, client_id: int) -> dict[str, Any]:
    """The client, if ``actor`` may see them (404 if there is none, 403 if not theirs)."""
    client = await get_client(client_id)
    await ensure_can_read_client(actor, client_id)
    return client


async def find_client_for(actor: CurrentUser, email: str) -> dict[str, Any] | None:
    """The client with this email, if ``actor`` may see them (:func:`ensure_can_read_client`);
    None otherwise, the same as for an email nobody has, so a manager learns nothing
    of other locations' clients."""
    email = email.strip().lower()
    if not email:
        return None
    row: dict[str, Any] | None = (
        await User.select(User.id, User.role, User.name, User.email)
        .where(User.email == email)
        .first()
        .run()
    )
    if row is None or row["role"] != CLIENT:
        return None
    try:
        await ensure_can_read_client(actor, int(row["id"]))
    except Forbidden:
        return None
    return row


def profile_snapshot(client: dict[str, Any]) -> dict[str, Any]:
    return {f: client[f] for f in PROFILE_FIELDS}


def profile_form(client: dict[str, Any]) -> dict[str, Any]:
    """The stored profile as the form's values."""
    form = profile_snapshot(client)
    form["date_of_birth"] = client["date_of_birth"].isoformat() if client["date_of_birth"] else ""
    form["preferred_location_id"] = (
        str(client["preferred_location_id"]) if client["preferred_location_id"] else ""
    )
    form["email_reminders"] = "on" if client["email_reminders"] else ""
    form["marketing_consent"] = "on" if client["marketing_consent"] else ""
    return form


async def create_profile(user_id: int, *, terms_accepted: bool) -> None:
    """The empty profile of a new client (inside the sign-up transaction)."""
    now = utcnow()
    await ClientProfile.insert(
        ClientProfile(
            user=user_id,
            email_reminders=True,
            terms_accepted_at=now if terms_accepted else None,
            created_at=now,
            updated_at=now,
        )
    ).run()


async def _ensure_profile_row(client_id: int) -> None:
    if await ClientProfile.exists().where(ClientProfile.user == client_id).run():
        return
    try:
        async with db.transaction():
            await create_profile(client_id, terms_accepted=False)
    except Exception as exc:
        if not db.is_unique_violation(exc):  # saved at the same moment elsewhere
            raise


async def save_profile(
    actor: CurrentUser, client_id: int, data: ProfileInput, *, address: str = ""
) -> bool:
    """Store the profile; False when nothing changed. Audited, whoever edits."""
    client = await get_client(client_id)
    if actor.role == CLIENT:
        if actor.id != client_id:
            raise Forbidden("You can only edit your own profile.")
    elif actor.role not in STAFF_READERS:
        raise Forbidden("You do not have access to this client.")
    elif data.preferred_location_id != client["preferred_location_id"]:
        # The preference gives that location's managers access to the client
        # (``_ties``): it is the client's own choice, never staff's.
        raise Invalid({"preferred_location_id": PREFERENCE_IS_THE_CLIENTS})
    before = profile_snapshot(client)
    after = data.as_dict()
    if before == after and client["has_profile"]:
        return False
    await _ensure_profile_row(client_id)
    async with db.transaction():
        if data.name != client["name"]:
            await User.update({User.name: data.name}).where(User.id == client_id).run()
        await (
            ClientProfile.update(
                {
                    **{c: getattr(data, c._meta.name) for c in _profile_columns()},
                    ClientProfile.phone_national: phone_digits(data.phone),
                    ClientProfile.preferred_location: data.preferred_location_id,
                    ClientProfile.updated_at: utcnow(),
                }
            )
            .where(ClientProfile.user == client_id)
            .run()
        )
        await audit.record(
            actor, "update", "client", client_id, before=before, after=after, address=address
        )
    return True


async def wants_email_reminders(client_id: int) -> bool:
    """Whether the reminder job may email this client (yes unless they switched it off)."""
    row = (
        await ClientProfile.select(ClientProfile.email_reminders)
        .where(ClientProfile.user == client_id)
        .first()
        .run()
    )
    return True if row is None else bool(row["email_reminders"])


# -- intake -----------------------------------------------------------------------


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    for name in _LIST_FIELDS:
        try:
            value = json.loads(row.get(name) or "[]")
        except ValueError:
            value = []
        row[name] = [str(v) for v in value] if isinstance(value, list) else []
    return row


async def current_intake(client_id: int) -> dict[str, Any] | None:
    row = (
        await ClientIntake.select()
        .where(ClientIntake.client == client_id)
        .order_by(ClientIntake.version, ascending=False)
        .first()
        .run()
    )
    return _decode(row) if row else None


async def intake_version(client_id: int, version: int) -> dict[str, Any]:
    row = await records.first(
        ClientIntake.select().where(
            (ClientIntake.client == client_id) & (ClientIntake.version == version)
        ),
        "No such version of the intake.",
    )
    return _decode(row)


async def intake_versions(client_id: int) -> list[dict[str, Any]]:
    """Every version's number and date, newest first."""
    rows: list[dict[str, Any]] = (
        await ClientIntake.select(
            ClientIntake.version, ClientIntake.created_at, ClientIntake.pain_level
        )
        .where(ClientIntake.client == client_id)
        .order_by(ClientIntake.version, ascending=False)
        .run()
    )
    return rows


async def save_intake(
    actor: CurrentUser, client_id: int, data: intake_form.IntakeInput, *, address: str = ""
) -> int:
    """Append the next version of the client's intake; returns its number.

    Only the client fills in their intake. Consent to treatment is given with
    every version (its time is stored). Two saves at once get consecutive
    versions: the unique (client, version) index refuses the second number
    and the save is retried.
    """
    if actor.role != CLIENT or actor.id != client_id:
        raise Forbidden("Clients fill in their own intake.")
    await get_client(client_id)
    for _attempt in range(5):
        try:
            async with db.transaction():
                latest = (
                    await ClientIntake.select(ClientIntake.version)
                    .where(ClientIntake.client == client_id)
                    .order_by(ClientIntake.version, ascending=False)
                    .first()
                    .run()
                )
                version = (latest["version"] if latest else 0) + 1
                now = utcnow()
                values = data.as_dict()
                for name in _LIST_FIELDS:
                    values[name] = json.dumps(values[name])
                await ClientIntake.insert(
                    ClientIntake(
                        client=client_id,
                        version=version,
                        created_at=now,
                        consent_at=now,
                        **values,
                    )
                ).run()
                # The answers are health information: the audit trail records
                # that a version was saved, not what it says.
                await audit.record(
                    actor,
                    "intake",
                    "client",
                    client_id,
                    after={"intake_version": version},
                    address=address,
                )
            return version
        except Exception as exc:
            if not db.is_unique_violation(exc):
                raise
    raise RuntimeError("Could not store the intake; please try again.")


async def health_flags_of(client_ids: Iterable[int]) -> dict[int, list[str]]:
    """The health flags of each client's latest intake, as labels (the schedule's warnings)."""
    ids = sorted({int(i) for i in client_ids})
    if not ids:
        return {}
    rows = (
        await ClientIntake.select(
            ClientIntake.client, ClientIntake.version, ClientIntake.health_flags
        )
        .where(ClientIntake.client.is_in(ids))
        .order_by(ClientIntake.version)
        .run()
    )
    latest = {int(r["client"]): r for r in rows}  # the last version wins
    return {
        client: labels
        for client, row in latest.items()
        if (labels := [intake_form.HEALTH_FLAGS.get(f, f) for f in _decode(row)["health_flags"]])
    }


async def with_health_flags(rows: list[dict[str, Any]], key: str = "client") -> None:
    """Set ``health_flags`` (labels, maybe none) on appointment rows, from each client's intake."""
    flags = await health_flags_of(int(r[key]) for r in rows if r.get(key) is not None)
    for row in rows:
        row["health_flags"] = flags.get(int(row[key]), []) if row.get(key) is not None else []


def present_intake(row: dict[str, Any]) -> dict[str, Any]:
    """A stored version with labels for every coded answer (for pages)."""
    return {
        **row,
        "concern_labels": [intake_form.CONCERNS.get(c, c) for c in row["concerns"]],
        "region_labels": [regions.label(r) for r in row["regions"]],
        "duration_label": intake_form.PAIN_DURATIONS.get(row["pain_duration"], ""),
        "posture_label": intake_form.WORK_POSTURES.get(row["work_posture"], ""),
        "flag_labels": [intake_form.HEALTH_FLAGS.get(f, f) for f in row["health_flags"]],
        "pressure_label": intake_form.PRESSURES.get(row["pressure"], row["pressure"]),
    }


# -- staff list -------------------------------------------------------------------


# A search by phone naming at most this many clients lists them by id.
PHONE_SEARCH_IDS_MAX = 200
# A number typed with fewer national digits is the end of one (a local number).
WHOLE_NUMBER_DIGITS = 10


async def _matching(search: str) -> Any:
    """Clients whose name or email holds ``search``, or whose phone is that number.

    By phone: the profiles whose national digits (``phone_national``, written with the
    phone) equal those of what was typed, from their index (:mod:`portal.clients.phones`;
    a stored phone that is no number is not found by phone). Such a search names few
    clients: they are looked up first (the phone's index; the name and email trigram
    indexes on PostgreSQL, planned for the pattern typed) and listed by id, read by
    primary key and sorted. Asked in one query, as ``name OR email OR phone``,
    PostgreSQL walked every client by name testing each (it cannot tell how few a
    number names). When the number or the pattern matches many, the list walks by
    name as for any search.
    """
    pattern = f"%{search}%"
    by_text = User.email.ilike(pattern) | User.name.ilike(pattern)
    digits = phone_digits(search)
    if not digits:
        return by_text
    limit = PHONE_SEARCH_IDS_MAX + 1
    phone = _phone_is(digits)
    async with db.planned_with_values():  # the pattern's trigram indexes, not every client
        phoned = await ClientProfile.select(ClientProfile.user).where(phone).limit(limit).run()
        named = await User.select(User.id).where((User.role == CLIENT) & by_text).limit(limit).run()
    by_phone = [int(r["user"]) for r in phoned]
    if len(by_phone) < limit and len(named) < limit:
        return User.id.is_in(sorted({*by_phone, *(int(r["id"]) for r in named)}) or [-1])
    return by_text | User.id.is_in(ClientProfile.select(ClientProfile.user).where(phone))


def _phone_is(digits: str) -> Any:
    """Profiles whose phone is the number ``digits`` (national digits): a whole number by
    equality, from the index; fewer digits than a whole number (the front desk's
    "555-0142" for "(503) 555-0142") as the end of the stored number, which reads
    every profile's digits."""
    if len(digits) >= WHOLE_NUMBER_DIGITS:
        return ClientProfile.phone_national == digits
    return ClientProfile.phone_national.like(f"%{digits}")


async def list_clients(
    actor: CurrentUser,
    *,
    search: str = "",
    status: str = "active",
    location_id: int | None = None,
    intake: str = "",
    after: str | None = None,
    limit: int = 50,
) -> Page:
    """Clients by name (keyset), with their phone, preferred location and intake date."""
    scope = client_scope(actor)
    query = User.select(User.id, User.email, User.name, User.active, User.created_at).where(
        User.role == CLIENT
    )
    prefers: WhereRaw | None = None
    if location_id is not None:
        # Clients by their preferred location: planned from client_profile's statistics
        # (walk by name and probe, or read the location's clients and sort).
        prefers = WhereRaw(
            'EXISTS (SELECT 1 FROM client_profile WHERE "user" = "app_user"."id"'
            " AND preferred_location = {})",
            location_id,
        )
    if scope is not None and location_id is None:
        query = query.where(await _of_locations(scope))
    elif scope is not None and location_id not in scope:
        # Another location's clients who are also the manager's: read the clients
        # preferring it first and probe each (GROUP BY keeps PostgreSQL from walking
        # every client by name instead: it cannot know how few of them are the
        # manager's). Preferring one of the manager's own locations already makes a
        # client theirs, so that filter needs no scope check.
        query = query.where(_tied_to(scope))
        prefers = WhereRaw(
            '"app_user"."id" IN (SELECT "user" FROM client_profile'
            ' WHERE preferred_location = {} GROUP BY "user")',
            location_id,
        )
    if prefers is not None:
        query = query.where(prefers)
    if status == "active":
        query = query.where(User.active == True)  # noqa: E712
    elif status == "inactive":
        query = query.where(User.active == False)  # noqa: E712
    if search:
        query = query.where(await _matching(search))
    if intake == "done":
        query = query.where(User.id.is_in(ClientIntake.select(ClientIntake.client)))
    elif intake == "missing":
        query = query.where(User.id.not_in(ClientIntake.select(ClientIntake.client)))
    page = await keyset_page(query, User.name, User.id, after=after, limit=limit)
    ids = [row["id"] for row in page.rows]
    if not ids:
        return page
    profile_rows, intake_rows = await db.concurrently(
        ClientProfile.select(
            ClientProfile.user,
            ClientProfile.phone,
            ClientProfile.preferred_location.name.as_alias("location_name"),
            ClientProfile.preferred_location.timezone.as_alias("location_timezone"),
        )
        .where(ClientProfile.user.is_in(ids))
        .run(),
        ClientIntake.select(ClientIntake.client, ClientIntake.version, ClientIntake.created_at)
        .where(ClientIntake.client.is_in(ids))
        .order_by(ClientIntake.version)
        .run(),
    )
    profiles = {row["user"]: row for row in profile_rows}
    # A client has a handful of versions; the newest per client wins.
    intakes: dict[int, dict[str, Any]] = {row["client"]: row for row in intake_rows}
    for row in page.rows:
        profile = profiles.get(row["id"], {})
        row["phone"] = profile.get("phone", "")
        row["location_name"] = profile.get("location_name") or ""
        row["timezone"] = profile.get("location_timezone") or ""
        row["intake"] = intakes.get(row["id"])
    return page


STAFF_NOTES_MAX = 4000


async def set_staff_notes(
    actor: CurrentUser, client_id: int, notes: str, *, seen: str, address: str = ""
) -> None:
    """Replace what staff should know about the client (not clinical notes), audited.

    ``seen`` is the text the editor started from: when another member of staff saved
    different notes meanwhile, nothing is overwritten and ``Invalid`` says so (the
    editor sees the current notes and theirs).
    """
    if actor.role not in (OWNER, MANAGER):
        raise Forbidden("Only owners and managers keep notes for staff.")
    await get_client_for(actor, client_id)
    notes = notes.strip().replace("\r\n", "\n")
    if len(notes) > STAFF_NOTES_MAX:
        raise Invalid({"staff_notes": f"Use at most {STAFF_NOTES_MAX} characters."})
    seen = seen.strip().replace("\r\n", "\n")
    if notes == seen:
        return
    now = utcnow()
    async with db.transaction():
        # A client who never saved a profile has none yet: start an empty one.
        await (
            ClientProfile.insert(
                ClientProfile(user=client_id, staff_notes="", created_at=now, updated_at=now)
            )
            .on_conflict(action="DO NOTHING")
            .run()
        )
        changed = (
            await ClientProfile.update(
                {ClientProfile.staff_notes: notes, ClientProfile.updated_at: now}
            )
            .where((ClientProfile.user == client_id) & (ClientProfile.staff_notes == seen))
            .returning(ClientProfile.id)
            .run()
        )
        if not changed:
            raise Invalid(
                {
                    "staff_notes": "Someone else changed these notes since you opened them. "
                    "The notes now saved are shown above; add your change to them."
                }
            )
        await audit.record(
            actor,
            "edit_staff_notes",
            "client",
            client_id,
            before={"staff_notes": seen},
            after={"staff_notes": notes},
            address=address,
        )
