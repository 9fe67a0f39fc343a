"""The catalog's forms: services, packages and prices as typed, checked, and
the effective time of a new price version read in a zone (never in the past)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from portal import money
from portal.errors import Invalid
from portal.fields import checked, optional_text, parse_int, require_text

# The redemption rule's values and wording live in the core (templates word it too).
from portal.formatting import ALL_CLINICS as ALL_CLINICS
from portal.formatting import REDEEMABLE as REDEEMABLE
from portal.formatting import SELLING_CLINIC as SELLING_CLINIC
from portal.formatting import redeemable_text as redeemable_text
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
PACKAGE_FIELDS = (
    "name",
    "description",
    "validity_days",
    "sellable_online",
    "redeemable",
    "introductory",
)


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
    redeemable: str = ALL_CLINICS
    introductory: bool = False
    # Fixed once the package exists; only read when creating.
    service_id: int = 0
    sessions: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in PACKAGE_FIELDS}


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
    effective = _parse_effective(values, errors, zone) if with_effective else None
    note = optional_text(values, errors, "note", label="Note", max_length=200)
    if amount is None or "price" in errors or "currency" in errors:
        return None
    return PriceInput(amount_cents=amount, currency=currency, effective_from=effective, note=note)


def _name_and_description(values: dict[str, str], errors: dict[str, str]) -> tuple[str, str]:
    """What services and packages alike are called and say of themselves."""
    name = require_text(values, errors, "name", label="Name", max_length=120)
    description = optional_text(values, errors, "description", label="Description", max_length=4000)
    return name, description


def parse_service_form(
    values: dict[str, str], *, creating: bool
) -> tuple[ServiceInput, PriceInput | None]:
    errors: dict[str, str] = {}
    name, description = _name_and_description(values, errors)
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


INTRO_IS_ONE_SESSION = "An introductory offer is a single session: set Sessions to 1."


def parse_package_form(
    values: dict[str, str], *, creating: bool
) -> tuple[PackageInput, PriceInput | None]:
    errors: dict[str, str] = {}
    name, description = _name_and_description(values, errors)
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
    redeemable = values.get("redeemable", "").strip() or ALL_CLINICS
    if redeemable not in REDEEMABLE:
        errors["redeemable"] = "Choose where the sessions can be booked."
    introductory = checked(values, "introductory")
    if introductory and creating and sessions not in (None, 1):
        errors["introductory"] = INTRO_IS_ONE_SESSION
    if errors:
        raise Invalid(errors)
    assert validity is not None and sessions is not None
    data = PackageInput(
        redeemable=redeemable,
        name=name,
        description=description,
        validity_days=validity,
        sellable_online=checked(values, "sellable_online"),
        introductory=introductory,
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
    effective = _parse_effective(values, errors, zone)
    note = optional_text(values, errors, "note", label="Note", max_length=200)
    if errors:
        raise Invalid(errors)
    return effective, note


def _parse_effective(
    values: dict[str, str], errors: dict[str, str], zone: str | None
) -> datetime | None:
    """When a new version takes effect: None (empty, or "now") or a later local
    time read in ``zone`` (else in the zone chosen on the form)."""
    raw = values.get("effective_local", "").strip()
    if not raw or raw.lower() == "now":
        return None
    zone = zone or values.get("effective_zone", "").strip()
    if not zone or not is_valid_timezone(zone):
        errors["effective_zone"] = "Choose a time zone from the list."
        return None
    try:
        effective = local_to_utc(raw, zone)
    except ValueError as exc:
        errors["effective_local"] = str(exc)
        return None
    _check_not_past(effective, errors)
    return effective


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
