"""Locations: the clinics of the chain. Rules and queries, no HTTP."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Unpack

from babel.numbers import list_currencies

from portal import access, records
from portal.errors import Forbidden, Invalid
from portal.fields import checked, optional_text, parse_int, require_text
from portal.identity import OWNER, CurrentUser
from portal.locations.tables import Location
from portal.pagination import Page
from portal.timeutil import is_valid_timezone

SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
PHONE_RE = re.compile(r"^[0-9+()\-.\s]*$")
EDITABLE_FIELDS = (
    "name",
    "slug",
    "address",
    "phone",
    "timezone",
    "currency",
    "tax_rate_bp",
    "prices_include_tax",
    "cancellation_window_hours",
    "refund_rule",
)
REFUND_RULES = {
    "list_price": "Paid minus sessions used, charged at the single-session list price",
    "pro_rata": "Pro rata: the paid share of each unused session",
}


@dataclass(frozen=True)
class LocationInput:
    name: str
    slug: str
    address: str
    phone: str
    timezone: str
    currency: str
    tax_rate_bp: int
    prices_include_tax: bool
    cancellation_window_hours: int
    refund_rule: str = "list_price"

    def as_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in EDITABLE_FIELDS}


# -- access ----------------------------------------------------------------


def visible_location_ids(user: CurrentUser) -> frozenset[int] | None:
    """Locations the user may see; None means every location (``portal.access``)."""
    return access.visible_locations(user)


def ensure_location_access(user: CurrentUser, location_id: int, *, write: bool = False) -> None:
    """The location-scope check every context uses: ``portal.access``'s one rule."""
    if write:
        access.ensure_write(user, location_id)
    else:
        access.ensure_read(user, location_id)


# -- validation --------------------------------------------------------------


def parse_location_form(values: dict[str, str]) -> LocationInput:
    errors: dict[str, str] = {}
    name = require_text(values, errors, "name", label="Name", max_length=120)
    slug = values.get("slug", "").strip().lower()
    if not slug:
        errors["slug"] = "Slug is required."
    elif len(slug) > 60 or not SLUG_RE.match(slug):
        errors["slug"] = "Use lowercase letters, digits and single hyphens (at most 60)."
    address = optional_text(values, errors, "address", label="Address", max_length=500)
    phone = optional_text(values, errors, "phone", label="Phone", max_length=40)
    if phone and not PHONE_RE.match(phone):
        errors["phone"] = "Use digits, spaces and + ( ) - only."
    timezone = values.get("timezone", "").strip()
    if not timezone:
        errors["timezone"] = "Time zone is required."
    elif not is_valid_timezone(timezone):
        errors["timezone"] = "Choose a time zone from the list (an IANA name such as Europe/Paris)."
    currency = values.get("currency", "").strip().upper()
    if not currency:
        errors["currency"] = "Currency is required."
    elif currency not in list_currencies():
        errors["currency"] = "Use a three-letter ISO 4217 code such as USD or EUR."
    tax = parse_int(values, errors, "tax_rate_bp", label="Tax rate", minimum=0, maximum=5000)
    window = parse_int(
        values,
        errors,
        "cancellation_window_hours",
        label="Cancellation window",
        minimum=0,
        maximum=168,
    )
    refund_rule = values.get("refund_rule", "").strip() or "list_price"
    if refund_rule not in REFUND_RULES:
        errors["refund_rule"] = "Choose one of the refund rules."
    if errors:
        raise Invalid(errors)
    assert tax is not None and window is not None
    return LocationInput(
        name=name,
        slug=slug,
        address=address,
        phone=phone,
        timezone=timezone,
        currency=currency,
        tax_rate_bp=tax,
        prices_include_tax=checked(values, "prices_include_tax"),
        cancellation_window_hours=window,
        refund_rule=refund_rule,
    )


# -- queries -----------------------------------------------------------------


async def get_location(location_id: int) -> dict[str, Any]:
    return await records.get(Location, location_id, "No such location.")


async def get_location_for(
    user: CurrentUser, location_id: int, *, write: bool = False
) -> dict[str, Any]:
    """The location, if ``user`` may see it (404 if it does not exist, 403 if not theirs)."""
    row = await get_location(location_id)
    access.ensure(user, location_id, write=write)
    return row


async def list_locations(user: CurrentUser, **filters: Unpack[records.ListQuery]) -> Page:
    """The locations the user may see (all of them, when the list is not filtered by one)."""
    return await records.list_page(
        Location.select(),
        Location,
        (Location.name, Location.slug),
        user=user,
        within=Location.id.is_in,
        **filters,
    )


async def active_by_slug(slug: str) -> dict[str, Any] | None:
    """The active location with this slug (a clinic's public address), or None."""
    row: dict[str, Any] | None = (
        await Location.select()
        .where((Location.slug == slug) & (Location.active == True))  # noqa: E712
        .first()
        .run()
    )
    return row


async def all_locations(
    active_only: bool = True, *, visible_to: CurrentUser | None = None
) -> list[dict[str, Any]]:
    """Locations by name; with ``visible_to``, only those the actor may see (``portal.access``)."""
    query = Location.select(
        Location.id,
        Location.name,
        Location.slug,
        Location.timezone,
        Location.currency,
        Location.active,
    )
    if active_only:
        query = query.where(Location.active == True)  # noqa: E712
    visible = access.visible_locations(visible_to) if visible_to is not None else None
    if visible is not None:
        query = query.where(Location.id.is_in(sorted(visible) or [-1]))
    return await query.order_by(Location.name).run()


async def locations_for(
    user: CurrentUser, *, write: bool = False, active_only: bool = False
) -> list[dict[str, Any]]:
    """The locations ``user`` may see (``write``: may change), by name: what a
    page offers to choose from."""
    allowed = access.can_write if write else access.can_read
    return [loc for loc in await all_locations(active_only) if allowed(user, int(loc["id"]))]


async def location_choices(user: CurrentUser) -> list[tuple[Any, str]]:
    """A list's location filter: the locations ``user`` may see, as (id, name)."""
    return [(loc["id"], loc["name"]) for loc in await locations_for(user)]


async def viewer_zone(user: CurrentUser | None) -> str:
    """The zone a person's own times (their tokens, the logs they read) are shown in:
    their first clinic's (by id), else the chain's first clinic's; UTC with none."""
    query = Location.select(Location.timezone).order_by(Location.id)
    mine = sorted(user.location_ids) if user is not None else []
    row = None
    if mine:
        row = await query.where(Location.id.is_in(mine)).first()
    if row is None:
        row = await Location.select(Location.timezone).order_by(Location.id).first()
    return str(row["timezone"]) if row else "UTC"


# -- changes -----------------------------------------------------------------


async def _slug_taken(slug: str, exclude_id: int | None = None) -> bool:
    query = Location.exists().where(Location.slug == slug)
    if exclude_id is not None:
        query = query.where(Location.id != exclude_id)
    return bool(await query.run())


SLUG_TAKEN = {"slug": "Another location already uses this slug."}
LOCATIONS = records.Kind(Location, "location", taken=SLUG_TAKEN)


async def create_location(actor: CurrentUser, data: LocationInput, *, address: str = "") -> int:
    if actor.role != OWNER:
        raise Forbidden("Only owners create locations.")
    if await _slug_taken(data.slug):
        raise Invalid(SLUG_TAKEN)
    values = data.as_dict()
    return await records.create(actor, LOCATIONS, values, shown=values, address=address)


async def update_location(
    actor: CurrentUser, location_id: int, data: LocationInput, *, address: str = ""
) -> None:
    before = await get_location_for(actor, location_id, write=True)
    if await _slug_taken(data.slug, exclude_id=location_id):
        raise Invalid(SLUG_TAKEN)
    old = {f: before[f] for f in EDITABLE_FIELDS}
    await records.update(actor, LOCATIONS, location_id, old, data.as_dict(), address=address)


async def set_active(
    actor: CurrentUser, location_id: int, active: bool, *, address: str = ""
) -> bool:
    """Deactivate (or reactivate) a location; locations are never deleted.

    Returns False when it already was in that state (nothing written).
    """
    if actor.role != OWNER:
        raise Forbidden("Only owners deactivate or reactivate locations.")
    await get_location(location_id)
    return await records.set_active(
        actor, Location, "location", location_id, active, address=address
    )
