"""Catalog: services, packages, versioned prices and per-location overrides. No HTTP.

Prices are versions, never edits. A service has versions of its
single-session list price; a package has versions of its base price and, per
location, versions of an override. Version rows are append-only (the database
refuses UPDATE and DELETE), so a price once quoted can always be found again.

The selection rule, in one place (``select_price``): at time T, among the
versions with ``effective_from`` ≤ T the latest wins (ties: the later row). For
location L, the latest override of L in effect at T wins if it is in L's
currency and does not end the override; otherwise the base version in effect
at T applies. A package is sold at L only if the chosen price is in L's
currency.

Effective times: a new version takes effect "now" (the field left empty) or
at a later local date and time. Base prices (packages and services, chain-wide)
take the local time in a zone the owner picks among the locations' zones;
overrides take it in the location's own zone. A time in the current minute
counts as now; anything earlier is refused. A local time that does not exist
(the hour skipped when clocks go forward) is refused; an ambiguous one (the
hour repeated when clocks go back) means its first occurrence.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from piccolo.query.functions.string import Lower

from portal import db, money, records
from portal.audit import service as audit
from portal.auth.service import OWNER, CurrentUser
from portal.catalog.tables import Package, PackagePrice, Service, ServicePrice
from portal.errors import Forbidden, Invalid, NotFound
from portal.fields import optional_text, parse_int, require_text
from portal.locations.service import ensure_location_access, get_location, visible_location_ids
from portal.locations.tables import Location
from portal.pagination import Page, keyset_page
from portal.timeutil import is_valid_timezone, utcnow

MAX_AMOUNT_CENTS = 99_999_999
MAX_SESSIONS = 100
MAX_VALIDITY_DAYS = 3650
MIN_DURATION = 5
MAX_DURATION = 480
MAX_BUFFER = 240
LOCAL_FORMATS = ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S")

SERVICE_FIELDS = (
    "name",
    "description",
    "treatment_type",
    "duration_minutes",
    "buffer_after_minutes",
    "required_equipment",
)
PACKAGE_FIELDS = ("name", "description", "validity_days", "sellable_online")


class NotAvailable(Exception):
    """The package cannot be sold at that location at that time (the message says why)."""


# -- inputs ------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceInput:
    name: str
    description: str
    treatment_type: str
    duration_minutes: int
    buffer_after_minutes: int
    required_equipment: str

    def as_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in SERVICE_FIELDS}


@dataclass(frozen=True)
class PriceInput:
    amount_cents: int
    currency: str
    effective_from: datetime | None = None  # None: immediately
    note: str = ""


@dataclass(frozen=True)
class PackageInput:
    name: str
    description: str
    validity_days: int
    sellable_online: bool
    # Fixed once the package exists; only read when creating.
    service_id: int = 0
    sessions: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in PACKAGE_FIELDS}


def _checked(values: dict[str, str], name: str) -> bool:
    return values.get(name, "") in {"on", "true", "1", "yes"}


def _equipment(text: str) -> str:
    tags: list[str] = []
    for part in text.split(","):
        tag = " ".join(part.split()).lower()
        if tag and tag not in tags:
            tags.append(tag)
    return ", ".join(tags)


def local_to_utc(text: str, zone: str) -> datetime:
    """A local date-time typed in ``zone`` → UTC. ``ValueError`` with a message if unusable."""
    naive: datetime | None = None
    for fmt in LOCAL_FORMATS:
        try:
            naive = datetime.strptime(text.strip(), fmt)
            break
        except ValueError:
            continue
    if naive is None:
        raise ValueError("Enter a date and time such as 2027-01-01 09:00.")
    tz = ZoneInfo(zone)
    moment = naive.replace(tzinfo=tz).astimezone(UTC)  # fold=0: the first of two
    if moment.astimezone(tz).replace(tzinfo=None) != naive:
        raise ValueError(
            f"{naive:%Y-%m-%d %H:%M} does not exist in {zone} (the clocks skip it); "
            "choose another time."
        )
    return moment


def _parse_price(
    values: dict[str, str],
    errors: dict[str, str],
    *,
    zone: str | None,
    with_effective: bool = True,
) -> PriceInput | None:
    """Price, currency, effective time and note fields → ``PriceInput`` (errors per field)."""
    currency = values.get("currency", "").strip().upper()
    if not currency:
        errors["currency"] = "Currency is required."
    elif not money.is_currency(currency):
        errors["currency"] = "Use a three-letter ISO 4217 code such as USD or EUR."
    amount: int | None = None
    try:
        amount = money.parse_amount(
            values.get("price", ""), currency if "currency" not in errors else "USD"
        )
    except ValueError as exc:
        errors["price"] = str(exc)
    if amount is not None:
        if amount <= 0:
            errors["price"] = "Price must be greater than zero."
        elif amount > MAX_AMOUNT_CENTS:
            errors["price"] = "Price is too large."
    effective: datetime | None = None
    if with_effective:
        raw = values.get("effective_local", "").strip()
        if raw and raw.lower() != "now":
            zone = zone or values.get("effective_zone", "").strip()
            if not zone or not is_valid_timezone(zone):
                errors["effective_zone"] = "Choose a time zone from the list."
            else:
                try:
                    effective = local_to_utc(raw, zone)
                except ValueError as exc:
                    errors["effective_local"] = str(exc)
                else:
                    _check_not_past(effective, errors)
    note = optional_text(values, errors, "note", label="Note", max_length=200)
    if amount is None or "price" in errors or "currency" in errors:
        return None
    return PriceInput(amount_cents=amount, currency=currency, effective_from=effective, note=note)


def parse_service_form(
    values: dict[str, str], *, creating: bool
) -> tuple[ServiceInput, PriceInput | None]:
    errors: dict[str, str] = {}
    name = require_text(values, errors, "name", label="Name", max_length=120)
    description = optional_text(values, errors, "description", label="Description", max_length=4000)
    treatment_type = optional_text(
        values, errors, "treatment_type", label="Treatment type", max_length=60
    )
    duration = parse_int(
        values,
        errors,
        "duration_minutes",
        label="Duration",
        minimum=MIN_DURATION,
        maximum=MAX_DURATION,
    )
    buffer = parse_int(
        values,
        errors,
        "buffer_after_minutes",
        label="Buffer after",
        minimum=0,
        maximum=MAX_BUFFER,
    )
    equipment = optional_text(
        values, errors, "required_equipment", label="Required equipment", max_length=500
    )
    price = _parse_price(values, errors, zone=None, with_effective=False) if creating else None
    if errors:
        raise Invalid(errors)
    assert duration is not None and buffer is not None
    data = ServiceInput(
        name=name,
        description=description,
        treatment_type=treatment_type,
        duration_minutes=duration,
        buffer_after_minutes=buffer,
        required_equipment=_equipment(equipment),
    )
    return data, price


def parse_package_form(
    values: dict[str, str], *, creating: bool
) -> tuple[PackageInput, PriceInput | None]:
    errors: dict[str, str] = {}
    name = require_text(values, errors, "name", label="Name", max_length=120)
    description = optional_text(values, errors, "description", label="Description", max_length=4000)
    validity = parse_int(
        values,
        errors,
        "validity_days",
        label="Validity",
        minimum=1,
        maximum=MAX_VALIDITY_DAYS,
    )
    service_id = 0
    sessions: int | None = 0
    price: PriceInput | None = None
    if creating:
        raw_service = values.get("service_id", "").strip()
        if not raw_service:
            errors["service_id"] = "Choose a service."
        else:
            try:
                service_id = int(raw_service)
            except ValueError:
                errors["service_id"] = "Choose a service from the list."
        sessions = parse_int(
            values, errors, "sessions", label="Sessions", minimum=1, maximum=MAX_SESSIONS
        )
        price = _parse_price(values, errors, zone=None, with_effective=False)
    if errors:
        raise Invalid(errors)
    assert validity is not None and sessions is not None
    data = PackageInput(
        name=name,
        description=description,
        validity_days=validity,
        sellable_online=_checked(values, "sellable_online"),
        service_id=service_id,
        sessions=sessions,
    )
    return data, price


def parse_price_form(values: dict[str, str], *, zone: str | None = None) -> PriceInput:
    """A new price version; ``zone`` fixes the zone (overrides), else the form's choice."""
    errors: dict[str, str] = {}
    price = _parse_price(values, errors, zone=zone)
    if errors or price is None:
        raise Invalid(errors)
    return price


def parse_end_override_form(values: dict[str, str], *, zone: str) -> tuple[datetime | None, str]:
    errors: dict[str, str] = {}
    effective: datetime | None = None
    raw = values.get("effective_local", "").strip()
    if raw and raw.lower() != "now":
        try:
            effective = local_to_utc(raw, zone)
        except ValueError as exc:
            errors["effective_local"] = str(exc)
        else:
            _check_not_past(effective, errors)
    note = optional_text(values, errors, "note", label="Note", max_length=200)
    if errors:
        raise Invalid(errors)
    return effective, note


PAST_MESSAGE = (
    "This date and time is in the past. Leave it empty to apply the price now, "
    "or choose a later time."
)


def _check_not_past(requested: datetime, errors: dict[str, str]) -> None:
    """Early form check, so every error shows at once; ``resolve_effective`` decides."""
    try:
        resolve_effective(requested, utcnow())
    except Invalid as exc:
        errors.update(exc.errors)


def resolve_effective(requested: datetime | None, now: datetime) -> datetime:
    """When a new version takes effect: now, or a later time (never the past).

    Times are typed to the minute, so a time within the current minute counts
    as now.
    """
    if requested is None:
        return now
    if requested < now.replace(second=0, microsecond=0):
        raise Invalid({"effective_local": PAST_MESSAGE})
    return max(requested, now)


# -- price versions and the selection rule ------------------------------------


@dataclass(frozen=True)
class PriceVersion:
    id: int
    owner_id: int  # the package or service
    location_id: int | None  # None: base price (always None for services)
    amount_cents: int
    currency: str
    effective_from: datetime
    clears_override: bool = False
    created_at: datetime | None = None
    created_by: int | None = None
    note: str = ""

    @property
    def is_override(self) -> bool:
        return self.location_id is not None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["effective_from"] = self.effective_from.isoformat()
        data["created_at"] = self.created_at.isoformat() if self.created_at else None
        return data


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def version_in_effect(versions: Iterable[PriceVersion], at: datetime) -> PriceVersion | None:
    """The version with the latest ``effective_from`` ≤ ``at``; ties go to the later row."""
    at = _aware(at)
    best: PriceVersion | None = None
    for version in versions:
        if version.effective_from <= at and (
            best is None or (version.effective_from, version.id) > (best.effective_from, best.id)
        ):
            best = version
    return best


def select_price(
    versions: Iterable[PriceVersion],
    at: datetime,
    location_id: int | None = None,
    location_currency: str | None = None,
) -> PriceVersion | None:
    """The price in effect at ``at``: for a location its override in effect, else the base.

    An override is passed over when it ends the override (``clears_override``)
    or is not in ``location_currency`` (the location changed currency since).
    """
    rows = list(versions)
    if location_id is not None:
        override = version_in_effect((v for v in rows if v.location_id == location_id), at)
        if (
            override is not None
            and not override.clears_override
            and (location_currency is None or override.currency == location_currency)
        ):
            return override
    return version_in_effect((v for v in rows if v.location_id is None), at)


def _service_version(row: dict[str, Any]) -> PriceVersion:
    return PriceVersion(
        id=row["id"],
        owner_id=row["service"],
        location_id=None,
        amount_cents=row["amount_cents"],
        currency=row["currency"],
        effective_from=_aware(row["effective_from"]),
        created_at=row["created_at"],
        created_by=row["created_by"],
        note=row["note"],
    )


def _package_version(row: dict[str, Any]) -> PriceVersion:
    return PriceVersion(
        id=row["id"],
        owner_id=row["package"],
        location_id=row["location"],
        amount_cents=row["amount_cents"],
        currency=row["currency"],
        effective_from=_aware(row["effective_from"]),
        clears_override=bool(row["clears_override"]),
        created_at=row["created_at"],
        created_by=row["created_by"],
        note=row["note"],
    )


async def service_versions(service_ids: Iterable[int]) -> dict[int, list[PriceVersion]]:
    ids = sorted(set(service_ids))
    out: dict[int, list[PriceVersion]] = {i: [] for i in ids}
    if not ids:
        return out
    rows = await ServicePrice.select().where(ServicePrice.service.is_in(ids)).run()
    for row in rows:
        out[row["service"]].append(_service_version(row))
    return out


async def package_versions(
    package_ids: Iterable[int], location_ids: Iterable[int] | None = None
) -> dict[int, list[PriceVersion]]:
    """Base versions of the packages, plus the overrides of ``location_ids`` (None: all)."""
    ids = sorted(set(package_ids))
    out: dict[int, list[PriceVersion]] = {i: [] for i in ids}
    if not ids:
        return out
    query = PackagePrice.select().where(PackagePrice.package.is_in(ids))
    if location_ids is not None:
        locs = sorted(set(location_ids))
        if locs:
            query = query.where(PackagePrice.location.is_null() | PackagePrice.location.is_in(locs))
        else:
            query = query.where(PackagePrice.location.is_null())
    for row in await query.run():
        out[row["package"]].append(_package_version(row))
    return out


async def price_in_effect(
    package_id: int, at: datetime, location_id: int | None = None
) -> PriceVersion | None:
    """The package price version in effect at ``at`` (for ``location_id``: override, else base)."""
    currency: str | None = None
    if location_id is not None:
        currency = (await get_location(location_id))["currency"]
    versions = await package_versions([package_id], [] if location_id is None else [location_id])
    return select_price(versions[package_id], at, location_id, currency)


async def service_price_in_effect(service_id: int, at: datetime) -> PriceVersion | None:
    return version_in_effect((await service_versions([service_id]))[service_id], at)


def version_history(
    versions: Sequence[PriceVersion], now: datetime, current: PriceVersion | None
) -> list[dict[str, Any]]:
    """Versions newest first, each with its state: scheduled, current or past."""
    rows = []
    for version in sorted(versions, key=lambda v: (v.effective_from, v.id), reverse=True):
        if version.effective_from > now:
            state = "scheduled"
        elif current is not None and version.id == current.id:
            state = "current"
        else:
            state = "past"
        rows.append({"version": version, "state": state})
    return rows


# -- offers: a package's terms at one location --------------------------------


@dataclass(frozen=True)
class Offer:
    """What a package costs at one location at one time, and whether it is sold there."""

    package: dict[str, Any]
    location: dict[str, Any]
    at: datetime
    price: PriceVersion | None
    unit_price: PriceVersion | None  # the service's list price, when in the same currency
    available: bool  # can be sold (front desk)
    reason: str  # why not, when not available

    @property
    def online(self) -> bool:
        return self.available and bool(self.package["sellable_online"])

    @property
    def currency(self) -> str:
        return str(self.location["currency"])

    @property
    def locale(self) -> str:
        return money.locale_for_currency(self.currency)

    @property
    def tax(self) -> money.TaxQuote | None:
        if self.price is None or not self.available:
            return None
        return money.quote_tax(
            self.price.amount_cents,
            int(self.location["tax_rate_bp"]),
            bool(self.location["prices_include_tax"]),
        )

    @property
    def per_session_cents(self) -> int | None:
        if self.price is None:
            return None
        return money.per_session(self.price.amount_cents, int(self.package["sessions"]))

    @property
    def saving(self) -> money.Saving | None:
        if self.price is None or self.unit_price is None:
            return None
        return money.saving(
            self.unit_price.amount_cents, int(self.package["sessions"]), self.price.amount_cents
        )

    def as_dict(self) -> dict[str, Any]:
        tax = self.tax
        saving = self.saving
        return {
            "package_id": self.package["id"],
            "location_id": self.location["id"],
            "at": self.at.isoformat(),
            "available": self.available,
            "sellable_online": self.online,
            "reason": self.reason,
            "currency": self.currency,
            "price_cents": self.price.amount_cents if self.price and self.available else None,
            "price_version_id": self.price.id if self.price and self.available else None,
            "price_is_override": bool(self.price and self.price.is_override),
            "per_session_cents": self.per_session_cents if self.available else None,
            "unit_list_price_cents": self.unit_price.amount_cents if self.unit_price else None,
            "saving_cents": saving.saving_cents if saving else None,
            "saving_bp": saving.saving_bp if saving else None,
            "net_cents": tax.net_cents if tax else None,
            "tax_cents": tax.tax_cents if tax else None,
            "total_cents": tax.total_cents if tax else None,
            "tax_rate_bp": self.location["tax_rate_bp"],
            "prices_include_tax": self.location["prices_include_tax"],
        }


def build_offer(
    package: dict[str, Any],
    location: dict[str, Any],
    versions: Sequence[PriceVersion],
    unit_versions: Sequence[PriceVersion],
    at: datetime,
) -> Offer:
    """The package's terms at ``location`` at ``at``, from already loaded versions."""
    at = _aware(at)
    currency = location["currency"]
    price = select_price(versions, at, location["id"], currency)
    unit = version_in_effect(unit_versions, at)
    if unit is not None and (price is None or unit.currency != price.currency):
        unit = None
    reason = ""
    if not package["active"]:
        reason = "The package is inactive."
    elif not package.get("service_active", True):
        reason = "Its service is inactive."
    elif not location["active"]:
        reason = "The location is inactive."
    elif price is None:
        reason = "No price is in effect yet."
    elif price.currency != currency:
        reason = (
            f"No price in {currency}, the location's currency (base price is {price.currency})."
        )
    return Offer(
        package=package,
        location=location,
        at=at,
        price=price,
        unit_price=unit,
        available=not reason,
        reason=reason,
    )


# -- the snapshot a sale keeps -------------------------------------------------


@dataclass(frozen=True)
class PackageTerms:
    """Every term of a package sold at a location at a time; a sale stores these.

    ``session_values`` split the net amount (what each session is worth as
    revenue; they add up to ``net_cents``, which is the price when prices
    exclude tax). ``session_totals`` split what the client pays (they add up to
    ``total_cents``). Leftover cents go to the first sessions.
    """

    package_id: int
    price_version_id: int
    price_is_override: bool
    service_id: int
    service_name: str
    name: str
    location_id: int
    sessions: int
    validity_days: int
    currency: str
    price_cents: int
    unit_list_price_cents: int | None
    unit_list_price_version_id: int | None
    net_cents: int
    tax_cents: int
    total_cents: int
    tax_rate_bp: int
    prices_include_tax: bool
    session_values: tuple[int, ...]
    session_totals: tuple[int, ...]
    quoted_at: datetime

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["session_values"] = list(self.session_values)
        data["session_totals"] = list(self.session_totals)
        data["quoted_at"] = self.quoted_at.isoformat()
        return data


def terms_from_offer(offer: Offer) -> PackageTerms:
    if not offer.available or offer.price is None:
        raise NotAvailable(offer.reason or "The package is not available here.")
    tax = offer.tax
    assert tax is not None
    sessions = int(offer.package["sessions"])
    return PackageTerms(
        package_id=int(offer.package["id"]),
        price_version_id=offer.price.id,
        price_is_override=offer.price.is_override,
        service_id=int(offer.package["service"]),
        service_name=str(offer.package.get("service_name", "")),
        name=str(offer.package["name"]),
        location_id=int(offer.location["id"]),
        sessions=sessions,
        validity_days=int(offer.package["validity_days"]),
        currency=offer.price.currency,
        price_cents=offer.price.amount_cents,
        unit_list_price_cents=offer.unit_price.amount_cents if offer.unit_price else None,
        unit_list_price_version_id=offer.unit_price.id if offer.unit_price else None,
        net_cents=tax.net_cents,
        tax_cents=tax.tax_cents,
        total_cents=tax.total_cents,
        tax_rate_bp=int(offer.location["tax_rate_bp"]),
        prices_include_tax=bool(offer.location["prices_include_tax"]),
        session_values=tuple(money.split_evenly(tax.net_cents, sessions)),
        session_totals=tuple(money.split_evenly(tax.total_cents, sessions)),
        quoted_at=offer.at,
    )


async def quote_package(
    package_id: int, location_id: int, at: datetime, *, online: bool = False
) -> PackageTerms:
    """The terms of ``package_id`` sold at ``location_id`` at ``at``: the sale's snapshot.

    Raises ``NotFound`` for an unknown package or location and
    ``NotAvailable`` when it cannot be sold there then (inactive, no price in
    the location's currency, or — with ``online`` — not sellable online).
    """
    package = await get_package(package_id)
    location = await get_location(location_id)
    versions = await package_versions([package_id], [location_id])
    units = await service_versions([package["service"]])
    offer = build_offer(package, location, versions[package_id], units[package["service"]], at)
    if online and offer.available and not offer.online:
        raise NotAvailable("The package is not sold online.")
    return terms_from_offer(offer)


# -- queries -------------------------------------------------------------------


def _package_columns() -> list[Any]:
    return [
        *Package.all_columns(),
        Package.service.name.as_alias("service_name"),
        Package.service.duration_minutes.as_alias("service_duration"),
        Package.service.active.as_alias("service_active"),
    ]


async def get_service(service_id: int) -> dict[str, Any]:
    row = await Service.select().where(Service.id == service_id).first().run()
    if row is None:
        raise NotFound("No such service.")
    return row


async def get_package(package_id: int) -> dict[str, Any]:
    row = await Package.select(*_package_columns()).where(Package.id == package_id).first().run()
    if row is None:
        raise NotFound("No such package.")
    return row


async def all_services(active_only: bool = False) -> list[dict[str, Any]]:
    query = Service.select(Service.id, Service.name, Service.active, Service.duration_minutes)
    if active_only:
        query = query.where(Service.active == True)  # noqa: E712
    return await query.order_by(Service.name).run()


async def list_services(
    *, search: str = "", status: str = "active", after: str | None = None, limit: int = 50
) -> Page:
    query = records.status_filter(Service.select(), Service.active, status)
    if search:
        pattern = f"%{search}%"
        query = query.where(Service.name.ilike(pattern) | Service.treatment_type.ilike(pattern))
    page = await keyset_page(query, Service.name, Service.id, after=after, limit=limit)
    now = utcnow()
    versions = await service_versions(r["id"] for r in page.rows)
    for row in page.rows:
        row["price"] = version_in_effect(versions[row["id"]], now)
    return page


async def list_packages(
    *,
    search: str = "",
    status: str = "active",
    online: str = "all",
    service_id: int | None = None,
    after: str | None = None,
    limit: int = 50,
) -> Page:
    query = records.status_filter(Package.select(*_package_columns()), Package.active, status)
    if online == "yes":
        query = query.where(Package.sellable_online == True)  # noqa: E712
    elif online == "no":
        query = query.where(Package.sellable_online == False)  # noqa: E712
    if service_id:
        query = query.where(Package.service == service_id)
    if search:
        pattern = f"%{search}%"
        query = query.where(Package.name.ilike(pattern) | Package.service.name.ilike(pattern))
    page = await keyset_page(query, Package.name, Package.id, after=after, limit=limit)
    now = utcnow()
    versions = await package_versions((r["id"] for r in page.rows), [])
    units = await service_versions(r["service"] for r in page.rows)
    for row in page.rows:
        price = version_in_effect(versions[row["id"]], now)
        unit = version_in_effect(units[row["service"]], now)
        row["price"] = price
        row["per_session_cents"] = (
            money.per_session(price.amount_cents, row["sessions"]) if price else None
        )
        row["saving"] = (
            money.saving(unit.amount_cents, row["sessions"], price.amount_cents)
            if price and unit and unit.currency == price.currency
            else None
        )
    return page


async def package_offers(
    user: CurrentUser, package_id: int, at: datetime
) -> tuple[dict[str, Any], list[Offer]]:
    """The package and its terms at every location the user may see."""
    package = await get_package(package_id)
    query = Location.select().order_by(Location.name)
    visible = visible_location_ids(user)
    if visible is not None:
        query = query.where(Location.id.is_in(list(visible) or [-1]))
    locations = await query.run()
    versions = await package_versions([package_id], [loc["id"] for loc in locations])
    units = await service_versions([package["service"]])
    offers = [
        build_offer(package, loc, versions[package_id], units[package["service"]], at)
        for loc in locations
    ]
    return package, offers


async def location_offers(
    location: dict[str, Any], at: datetime, *, online_only: bool = False
) -> list[Offer]:
    """Every active package's terms at one location (``online_only``: what is sold online)."""
    query = (
        Package.select(*_package_columns())
        .where(Package.active == True)  # noqa: E712
        .where(Package.service.active == True)  # noqa: E712
    )
    if online_only:
        query = query.where(Package.sellable_online == True)  # noqa: E712
    packages = await query.run()
    versions = await package_versions((p["id"] for p in packages), [location["id"]])
    units = await service_versions(p["service"] for p in packages)
    offers = [
        build_offer(p, location, versions[p["id"]], units[p["service"]], at) for p in packages
    ]
    offers.sort(
        key=lambda o: (
            o.package["service_name"],
            o.package["sessions"],
            o.package["name"],
        )
    )
    if online_only:
        offers = [o for o in offers if o.online]
    return offers


async def public_catalog(slug: str, at: datetime) -> tuple[dict[str, Any], list[Offer]] | None:
    """What a location sells online, or None for an unknown or inactive location."""
    location = (
        await Location.select()
        .where((Location.slug == slug) & (Location.active == True))  # noqa: E712
        .first()
        .run()
    )
    if location is None:
        return None
    return location, await location_offers(location, at, online_only=True)


async def base_price_zones() -> list[str]:
    """Zones offered for typing a base price's effective time: the locations' zones, then UTC.

    The first is the default: the zone of the first active location by name.
    """
    rows = (
        await Location.select(Location.timezone)
        .where(Location.active == True)  # noqa: E712
        .order_by(Location.name)
        .run()
    )
    zones: list[str] = []
    for row in rows:
        if row["timezone"] not in zones:
            zones.append(row["timezone"])
    if "UTC" not in zones:
        zones.append("UTC")
    return zones


# -- changes -------------------------------------------------------------------


def _require_owner(actor: CurrentUser) -> None:
    if actor.role != OWNER:
        raise Forbidden("Only owners change services, packages and base prices.")


async def _name_taken(
    table: type[Service] | type[Package], name: str, exclude_id: int | None
) -> bool:
    """Names are unique regardless of case (as the database's lower(name) index says)."""
    query = table.exists().where(Lower(table.name) == name.lower())
    if exclude_id is not None:
        query = query.where(table.id != exclude_id)
    return bool(await query.run())


def _version_record(
    kind: str, version_id: int, price: PriceInput, effective: datetime
) -> dict[str, Any]:
    """A price version as flat audit fields (``kind``: list_price, base_price, override)."""
    return {
        f"{kind}_cents": price.amount_cents,
        f"{kind}_currency": price.currency,
        f"{kind}_effective_from": effective.isoformat(),
        f"{kind}_version_id": version_id,
        f"{kind}_note": price.note,
    }


async def create_service(
    actor: CurrentUser, data: ServiceInput, price: PriceInput, *, address: str = ""
) -> int:
    _require_owner(actor)
    duplicate = {"name": "Another service already has this name."}
    if await _name_taken(Service, data.name, None):
        raise Invalid(duplicate)
    now = utcnow()
    try:
        async with db.transaction():
            rows = (
                await Service.insert(
                    Service(**data.as_dict(), active=True, created_at=now, updated_at=now)
                )
                .returning(Service.id)
                .run()
            )
            service_id = int(rows[0]["id"])
            version = await _insert_service_price(actor, service_id, price, now)
            await audit.record(
                actor,
                "create",
                "service",
                service_id,
                after={
                    "id": service_id,
                    **data.as_dict(),
                    "active": True,
                    **_version_record("list_price", version, price, now),
                },
                address=address,
            )
    except Exception as exc:
        if db.is_unique_violation(exc):
            raise Invalid(duplicate) from exc
        raise
    return service_id


async def update_service(
    actor: CurrentUser, service_id: int, data: ServiceInput, *, address: str = ""
) -> None:
    _require_owner(actor)
    before = await get_service(service_id)
    duplicate = {"name": "Another service already has this name."}
    if await _name_taken(Service, data.name, service_id):
        raise Invalid(duplicate)
    old = {f: before[f] for f in SERVICE_FIELDS}
    if old == data.as_dict():
        return
    try:
        async with db.transaction():
            await (
                Service.update({**data.as_dict(), "updated_at": utcnow()})  # type: ignore[dict-item]
                .where(Service.id == service_id)
                .run()
            )
            await audit.record(
                actor,
                "update",
                "service",
                service_id,
                before=old,
                after=data.as_dict(),
                address=address,
            )
    except Exception as exc:
        if db.is_unique_violation(exc):
            raise Invalid(duplicate) from exc
        raise


async def _insert_service_price(
    actor: CurrentUser, service_id: int, price: PriceInput, effective: datetime
) -> int:
    rows = (
        await ServicePrice.insert(
            ServicePrice(
                service=service_id,
                amount_cents=price.amount_cents,
                currency=price.currency,
                effective_from=effective,
                created_at=utcnow(),
                created_by=actor.id,
                note=price.note,
            )
        )
        .returning(ServicePrice.id)
        .run()
    )
    return int(rows[0]["id"])


async def add_service_price(
    actor: CurrentUser, service_id: int, price: PriceInput, *, address: str = ""
) -> int:
    """A new version of the service's single-session list price."""
    _require_owner(actor)
    await get_service(service_id)
    effective = resolve_effective(price.effective_from, utcnow())
    async with db.transaction():
        version = await _insert_service_price(actor, service_id, price, effective)
        await audit.record(
            actor,
            "price",
            "service",
            service_id,
            after=_version_record("list_price", version, price, effective),
            address=address,
        )
    return version


async def set_service_active(
    actor: CurrentUser, service_id: int, active: bool, *, address: str = ""
) -> bool:
    """Deactivate (or reactivate) a service; its packages stop (or resume) selling."""
    await get_service(service_id)
    _require_owner(actor)
    return await records.set_active(actor, Service, "service", service_id, active, address=address)


async def create_package(
    actor: CurrentUser, data: PackageInput, price: PriceInput, *, address: str = ""
) -> int:
    _require_owner(actor)
    errors: dict[str, str] = {}
    service = await Service.select().where(Service.id == data.service_id).first().run()
    if service is None:
        errors["service_id"] = "Choose a service from the list."
    elif not service["active"]:
        errors["service_id"] = "This service is inactive; choose an active one."
    if await _name_taken(Package, data.name, None):
        errors["name"] = "Another package already has this name."
    if errors:
        raise Invalid(errors)
    now = utcnow()
    try:
        async with db.transaction():
            rows = (
                await Package.insert(
                    Package(
                        **data.as_dict(),
                        service=data.service_id,
                        sessions=data.sessions,
                        active=True,
                        created_at=now,
                        updated_at=now,
                    )
                )
                .returning(Package.id)
                .run()
            )
            package_id = int(rows[0]["id"])
            version = await _insert_package_price(actor, package_id, None, price, now)
            await audit.record(
                actor,
                "create",
                "package",
                package_id,
                after={
                    "id": package_id,
                    **data.as_dict(),
                    "service_id": data.service_id,
                    "sessions": data.sessions,
                    "active": True,
                    **_version_record("base_price", version, price, now),
                },
                address=address,
            )
    except Exception as exc:
        if db.is_unique_violation(exc):
            raise Invalid({"name": "Another package already has this name."}) from exc
        raise
    return package_id


async def update_package(
    actor: CurrentUser, package_id: int, data: PackageInput, *, address: str = ""
) -> None:
    """Name, description, validity and online sale; sessions and service stay fixed."""
    _require_owner(actor)
    before = await get_package(package_id)
    if await _name_taken(Package, data.name, package_id):
        raise Invalid({"name": "Another package already has this name."})
    old = {f: before[f] for f in PACKAGE_FIELDS}
    if old == data.as_dict():
        return
    try:
        async with db.transaction():
            await (
                Package.update({**data.as_dict(), "updated_at": utcnow()})  # type: ignore[dict-item]
                .where(Package.id == package_id)
                .run()
            )
            await audit.record(
                actor,
                "update",
                "package",
                package_id,
                before=old,
                after=data.as_dict(),
                address=address,
            )
    except Exception as exc:
        if db.is_unique_violation(exc):
            raise Invalid({"name": "Another package already has this name."}) from exc
        raise


async def set_package_active(
    actor: CurrentUser, package_id: int, active: bool, *, address: str = ""
) -> bool:
    await get_package(package_id)
    _require_owner(actor)
    return await records.set_active(actor, Package, "package", package_id, active, address=address)


async def _insert_package_price(
    actor: CurrentUser,
    package_id: int,
    location_id: int | None,
    price: PriceInput,
    effective: datetime,
    *,
    clears: bool = False,
) -> int:
    rows = (
        await PackagePrice.insert(
            PackagePrice(
                package=package_id,
                location=location_id,
                amount_cents=price.amount_cents,
                currency=price.currency,
                effective_from=effective,
                clears_override=clears,
                created_at=utcnow(),
                created_by=actor.id,
                note=price.note,
            )
        )
        .returning(PackagePrice.id)
        .run()
    )
    return int(rows[0]["id"])


async def add_package_price(
    actor: CurrentUser, package_id: int, price: PriceInput, *, address: str = ""
) -> int:
    """A new version of the package's base price (owners)."""
    _require_owner(actor)
    await get_package(package_id)
    effective = resolve_effective(price.effective_from, utcnow())
    async with db.transaction():
        version = await _insert_package_price(actor, package_id, None, price, effective)
        await audit.record(
            actor,
            "price",
            "package",
            package_id,
            after=_version_record("base_price", version, price, effective),
            address=address,
        )
    return version


async def set_override(
    actor: CurrentUser,
    package_id: int,
    location_id: int,
    price: PriceInput,
    *,
    address: str = "",
) -> int:
    """A new override version for one location (owners; managers of that location)."""
    location = await get_location(location_id)
    ensure_location_access(actor, location_id, write=True)
    await get_package(package_id)
    if price.currency != location["currency"]:
        raise Invalid(
            {
                "currency": f"Prices at {location['name']} are in {location['currency']}; "
                f"enter the override in {location['currency']}."
            }
        )
    effective = resolve_effective(price.effective_from, utcnow())
    async with db.transaction():
        version = await _insert_package_price(actor, package_id, location_id, price, effective)
        await audit.record(
            actor,
            "override",
            "package",
            package_id,
            after={
                "location_id": location_id,
                "location": location["name"],
                **_version_record("override", version, price, effective),
            },
            address=address,
        )
    return version


async def end_override(
    actor: CurrentUser,
    package_id: int,
    location_id: int,
    effective_from: datetime | None,
    *,
    note: str = "",
    address: str = "",
) -> int:
    """From ``effective_from`` (None: now) the location uses the base price again."""
    location = await get_location(location_id)
    ensure_location_access(actor, location_id, write=True)
    await get_package(package_id)
    has_override = (
        await PackagePrice.exists()
        .where(
            (PackagePrice.package == package_id)
            & (PackagePrice.location == location_id)
            & (PackagePrice.clears_override == False)  # noqa: E712
        )
        .run()
    )
    if not has_override:
        raise Invalid({"form": "This location has no override to end."})
    effective = resolve_effective(effective_from, utcnow())
    marker = PriceInput(amount_cents=0, currency=location["currency"], note=note)
    async with db.transaction():
        version = await _insert_package_price(
            actor, package_id, location_id, marker, effective, clears=True
        )
        await audit.record(
            actor,
            "end_override",
            "package",
            package_id,
            after={
                "location_id": location_id,
                "location": location["name"],
                "override_ends_from": effective.isoformat(),
                "override_ends_version_id": version,
                "override_ends_note": note,
            },
            address=address,
        )
    return version


async def override_history(package_id: int, location_id: int) -> list[PriceVersion]:
    versions = await package_versions([package_id], [location_id])
    return [v for v in versions[package_id] if v.location_id == location_id]
