"""Price versions and the one selection rule; a package's offer at a location
and the terms a sale snapshots from it. No HTTP.

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
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from portal import money
from portal.catalog.tables import PackagePrice, ServicePrice
from portal.locations.service import get_location


class NotAvailable(Exception):
    """The package cannot be sold at that location at that time (the message says why)."""


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


def price_version(row: dict[str, Any], owner: str) -> PriceVersion:
    """A row of a price table as a version (``owner``: the column of what it prices,
    "service", "package" or "plan"); only packages' rows have a location and may clear
    an override."""
    return PriceVersion(
        id=row["id"],
        owner_id=row[owner],
        location_id=row.get("location"),
        amount_cents=row["amount_cents"],
        currency=row["currency"],
        effective_from=_aware(row["effective_from"]),
        clears_override=bool(row.get("clears_override", False)),
        created_at=row["created_at"],
        created_by=row["created_by"],
        note=row["note"],
    )


async def versions_of(
    table: Any, owner: str, owner_ids: Iterable[int], where: Any = None
) -> dict[int, list[PriceVersion]]:
    """The price versions in ``table`` of each of ``owner_ids`` (its ``owner`` column:
    "service", "package", "plan"), every one of them or those ``where`` admits."""
    ids = sorted(set(owner_ids))
    out: dict[int, list[PriceVersion]] = {i: [] for i in ids}
    if not ids:
        return out
    query = table.select().where(getattr(table, owner).is_in(ids))
    if where is not None:
        query = query.where(where)
    for row in await query.run():
        out[row[owner]].append(price_version(row, owner))
    return out


async def service_versions(service_ids: Iterable[int]) -> dict[int, list[PriceVersion]]:
    return await versions_of(ServicePrice, "service", service_ids)


async def package_versions(
    package_ids: Iterable[int], location_ids: Iterable[int] | None = None
) -> dict[int, list[PriceVersion]]:
    """Base versions of the packages, plus the overrides of ``location_ids`` (None: all)."""
    where: Any = None
    if location_ids is not None:
        locs = sorted(set(location_ids))
        where = PackagePrice.location.is_null()
        if locs:
            where = where | PackagePrice.location.is_in(locs)
    return await versions_of(PackagePrice, "package", package_ids, where)


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
class QuotedTerms:
    """What a price came to when quoted (a package's, a membership plan's per period):
    net, tax and total in minor units, the location's tax rule, the split per session
    and the instant.

    ``session_values`` split the net amount (what each session is worth as
    revenue; they add up to ``net_cents``, which is the price when prices
    exclude tax). ``session_totals`` split what the client pays (they add up to
    ``total_cents``). Leftover cents go to the first sessions.
    """

    net_cents: int
    tax_cents: int
    total_cents: int
    tax_rate_bp: int
    prices_include_tax: bool
    session_values: tuple[int, ...]
    session_totals: tuple[int, ...]
    quoted_at: datetime

    def as_dict(self) -> dict[str, Any]:
        """Every term as JSON-ready values: the per-session splits as lists, the
        quote's instant as ISO text."""
        data = asdict(self)
        data["session_values"] = list(self.session_values)
        data["session_totals"] = list(self.session_totals)
        data["quoted_at"] = self.quoted_at.isoformat()
        return data


@dataclass(frozen=True)
class PackageTerms(QuotedTerms):
    """Every term of a package sold at a location at a time; a sale stores these."""

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
    redeemable: str = "all_clinics"  # where the sessions may be booked (inputs.REDEEMABLE)
    introductory: bool = False  # sold once per client (sales.claim_introductory)


def member_terms(terms: PackageTerms, discount_bp: int) -> PackageTerms:
    """``terms`` at a member's price: ``discount_bp`` off the price (rounded half-up to
    the cent), tax quoted again on what is left, the sessions split again."""
    if discount_bp <= 0:
        return terms
    off = money.round_half_up(terms.price_cents * min(discount_bp, money.BASIS_POINTS),
                              money.BASIS_POINTS)  # fmt: skip
    tax = money.quote_tax(terms.price_cents - off, terms.tax_rate_bp, terms.prices_include_tax)
    return replace(
        terms,
        name=f"{terms.name} (member price)"[:160],
        price_cents=terms.price_cents - off,
        net_cents=tax.net_cents,
        tax_cents=tax.tax_cents,
        total_cents=tax.total_cents,
        session_values=tuple(money.split_evenly(tax.net_cents, terms.sessions)),
        session_totals=tuple(money.split_evenly(tax.total_cents, terms.sessions)),
    )


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
        redeemable=str(offer.package.get("redeemable") or "all_clinics"),
        introductory=bool(offer.package.get("introductory")),
    )
