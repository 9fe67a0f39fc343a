"""Membership plans: what each location sells as a recurring membership. No HTTP.

A plan belongs to one location (its manager runs it, in its currency) and
grants ``sessions_per_period`` sessions of one service every period. Its price
per period is versioned exactly like a package's (``catalog.service``'s
``PriceVersion`` and selection rule, append-only rows): a new price takes
effect from a date and never rewrites a price already quoted. Joining quotes
``PlanTerms``, the snapshot a membership keeps for as long as it runs, so a
later change of the plan or its price is not a change of what was sold.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Unpack

from piccolo.query.functions.string import Lower

from portal import db, money, records
from portal.audit import service as audit
from portal.auth.service import CurrentUser
from portal.catalog import prices
from portal.catalog import service as catalog
from portal.catalog.service import PackageTerms, PriceInput, PriceVersion, QuotedTerms
from portal.catalog.tables import Service
from portal.errors import Invalid
from portal.fields import (
    checked,
    optional_text,
    parse_id,
    parse_int,
    parse_optional,
    require_text,
)
from portal.locations.service import ensure_location_access, get_location
from portal.memberships.tables import MembershipPlan, MembershipPlanPrice
from portal.pagination import Page
from portal.timeutil import utcnow

MONTHLY = "month"
FOUR_WEEKS = "4weeks"
INTERVALS = {MONTHLY: "Every month", FOUR_WEEKS: "Every 4 weeks"}
MAX_SESSIONS_PER_PERIOD = 31
MAX_PERIODS = 60
MAX_NOTICE_DAYS = 365
MAX_DISCOUNT_BP = 10_000

PLAN_FIELDS = (
    "name",
    "description",
    "interval",
    "sessions_per_period",
    "rollover_cap",
    "min_term_periods",
    "notice_days",
    "freeze_allowed",
    "freeze_fee_cents",
    "member_discount_bp",
    "ends_at",
    "sellable_online",
)


class NotAvailable(Exception):
    """The plan cannot be joined at this time (inactive, ended, no price); the message says why."""


@dataclass(frozen=True)
class PlanRules:
    """How a plan renews and what its members may do: what the plan's form sets and
    what every membership keeps in its terms."""

    interval: str
    sessions_per_period: int
    rollover_cap: int
    min_term_periods: int
    notice_days: int
    freeze_allowed: bool
    freeze_fee_cents: int
    member_discount_bp: int

    @classmethod
    def of(cls, plan: dict[str, Any]) -> PlanRules:
        """A plan row's rules (SQLite gives its booleans back as integers)."""
        return cls(
            interval=str(plan["interval"]),
            sessions_per_period=int(plan["sessions_per_period"]),
            rollover_cap=int(plan["rollover_cap"]),
            min_term_periods=int(plan["min_term_periods"]),
            notice_days=int(plan["notice_days"]),
            freeze_allowed=bool(plan["freeze_allowed"]),
            freeze_fee_cents=int(plan["freeze_fee_cents"]),
            member_discount_bp=int(plan["member_discount_bp"]),
        )


@dataclass(frozen=True)
class PlanInput(PlanRules):
    name: str
    description: str
    ends_at: datetime | None
    sellable_online: bool
    # Fixed once the plan exists (a plan for another place or service is another plan).
    location_id: int = 0
    service_id: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in PLAN_FIELDS}


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def parse_plan_form(
    values: dict[str, str], *, creating: bool, zone: str, currency: str
) -> tuple[PlanInput, PriceInput | None]:
    """The plan form → its terms (and, when creating, its first price), errors per field.

    ``zone`` and ``currency`` are the plan's location's: the end date is typed
    in its local time, the freeze fee and the price are in its currency.
    """
    errors: dict[str, str] = {}
    name = require_text(values, errors, "name", label="Name", max_length=120)
    description = optional_text(values, errors, "description", label="Description", max_length=4000)
    interval = values.get("interval", "").strip()
    if interval not in INTERVALS:
        errors["interval"] = "Choose how often the membership renews."
    sessions = parse_int(
        values, errors, "sessions_per_period", label="Sessions per period",
        minimum=1, maximum=MAX_SESSIONS_PER_PERIOD,
    )  # fmt: skip
    rollover = parse_int(
        values, errors, "rollover_cap", label="Rollover cap", minimum=0,
        maximum=MAX_SESSIONS_PER_PERIOD, required=False,
    )  # fmt: skip
    if sessions is not None and rollover is not None and rollover > sessions:
        errors["rollover_cap"] = "At most the sessions of one period can roll over."
    term = parse_int(
        values, errors, "min_term_periods", label="Minimum term", minimum=0,
        maximum=MAX_PERIODS, required=False,
    )  # fmt: skip
    notice = parse_int(
        values, errors, "notice_days", label="Cancellation notice", minimum=0,
        maximum=MAX_NOTICE_DAYS, required=False,
    )  # fmt: skip
    discount = parse_int(
        values, errors, "member_discount_bp", label="Member discount", minimum=0,
        maximum=MAX_DISCOUNT_BP, required=False,
    )  # fmt: skip
    freeze_allowed = checked(values, "freeze_allowed")
    fee = parse_optional(
        values, errors, "freeze_fee", lambda raw: money.parse_amount(raw, currency)
    )
    if fee is not None:
        if fee < 0 or fee > catalog.MAX_AMOUNT_CENTS:
            errors["freeze_fee"] = "Enter a fee between zero and the largest price."
        elif fee and not freeze_allowed:
            errors["freeze_fee"] = "A freeze fee needs freezing to be allowed."
    ends_at = parse_optional(
        values, errors, "ends_local", lambda raw: catalog.local_to_utc(raw, zone)
    )
    if ends_at is not None and ends_at <= utcnow():
        errors["ends_local"] = "The end must be in the future (leave it empty: no end)."
    location_id = service_id = 0
    price: PriceInput | None = None
    if creating:
        location_id = parse_id(values.get("location_id", "")) or 0
        if not location_id:
            errors["location_id"] = "Choose a location."
        service_id = parse_id(values.get("service_id", "")) or 0
        if not service_id:
            errors["service_id"] = "Choose a service."
        try:
            price = catalog.parse_price_form({**values, "currency": currency}, zone=zone)
        except Invalid as exc:
            errors.update(exc.errors)
    if errors:
        raise Invalid(errors)
    assert sessions is not None
    data = PlanInput(
        name=name,
        description=description,
        interval=interval,
        sessions_per_period=sessions,
        rollover_cap=rollover or 0,
        min_term_periods=term or 0,
        notice_days=notice or 0,
        freeze_allowed=freeze_allowed,
        freeze_fee_cents=fee or 0,
        member_discount_bp=discount or 0,
        ends_at=ends_at,
        sellable_online=checked(values, "sellable_online"),
        location_id=location_id,
        service_id=service_id,
    )
    return data, price


# -- price versions --------------------------------------------------------------


async def plan_versions(plan_ids: Iterable[int]) -> dict[int, list[PriceVersion]]:
    return await catalog.versions_of(MembershipPlanPrice, "plan", plan_ids)


async def price_in_effect(plan_id: int, at: datetime) -> PriceVersion | None:
    return catalog.version_in_effect((await plan_versions([plan_id]))[plan_id], at)


# -- the snapshot a membership keeps ---------------------------------------------


@dataclass(frozen=True)
class PlanTerms(PlanRules, QuotedTerms):
    """Every term of a plan joined at its location at one time; a membership stores these.
    Amounts are per period, split per session as a package's are."""

    plan_id: int
    price_version_id: int
    name: str
    location_id: int
    service_id: int
    service_name: str
    currency: str
    price_cents: int


def sale_terms(t: dict[str, Any], *, name: str, sessions: int) -> PackageTerms:
    """The terms of a sale a membership makes, from the membership's frozen terms ``t``
    (``PlanTerms.as_dict``): a paid period's amounts, tax and splits; no package (the
    ``name`` says which plan), no list price, no validity of its own (a period's end is
    set once paid, ``sales.set_valid_until``). A freeze fee replaces the amounts."""
    return PackageTerms(
        package_id=0,
        price_version_id=int(t["price_version_id"]),
        price_is_override=False,
        service_id=int(t["service_id"]),
        service_name=str(t["service_name"]),
        name=name,
        location_id=int(t["location_id"]),
        sessions=sessions,
        validity_days=0,
        currency=str(t["currency"]),
        price_cents=int(t["price_cents"]),
        unit_list_price_cents=None,
        unit_list_price_version_id=None,
        net_cents=int(t["net_cents"]),
        tax_cents=int(t["tax_cents"]),
        total_cents=int(t["total_cents"]),
        tax_rate_bp=int(t["tax_rate_bp"]),
        prices_include_tax=bool(t["prices_include_tax"]),
        session_values=tuple(int(v) for v in t["session_values"]),
        session_totals=tuple(int(v) for v in t["session_totals"]),
        quoted_at=datetime.fromisoformat(t["quoted_at"]),
    )


def unavailable_reason(
    plan: dict[str, Any], location: dict[str, Any], price: PriceVersion | None, at: datetime
) -> str:
    """Why the plan cannot be joined at ``at`` ("" when it can)."""
    if not plan["active"]:
        return "The plan is inactive."
    if not plan.get("service_active", True):
        return "Its service is inactive."
    if not location["active"]:
        return "The location is inactive."
    if plan["ends_at"] is not None and _aware(plan["ends_at"]) <= at:
        return "The plan has ended."
    if price is None:
        return "No price is in effect yet."
    if price.currency != location["currency"]:
        return f"No price in {location['currency']}, the location's currency."
    return ""


def terms_at(
    plan: dict[str, Any], location: dict[str, Any], price: PriceVersion | None, at: datetime
) -> PlanTerms:
    reason = unavailable_reason(plan, location, price, at)
    if reason or price is None:
        raise NotAvailable(reason or "The plan is not available.")
    tax = money.quote_tax(
        price.amount_cents, int(location["tax_rate_bp"]), bool(location["prices_include_tax"])
    )
    rules = PlanRules.of(plan)
    sessions = rules.sessions_per_period
    return PlanTerms(
        **asdict(rules),
        plan_id=int(plan["id"]),
        price_version_id=price.id,
        name=str(plan["name"]),
        location_id=int(location["id"]),
        service_id=int(plan["service"]),
        service_name=str(plan.get("service_name", "")),
        currency=price.currency,
        price_cents=price.amount_cents,
        net_cents=tax.net_cents,
        tax_cents=tax.tax_cents,
        total_cents=tax.total_cents,
        tax_rate_bp=int(location["tax_rate_bp"]),
        prices_include_tax=bool(location["prices_include_tax"]),
        session_values=tuple(money.split_evenly(tax.net_cents, sessions)),
        session_totals=tuple(money.split_evenly(tax.total_cents, sessions)),
        quoted_at=at,
    )


async def quote_plan(plan_id: int, at: datetime, *, online: bool = False) -> PlanTerms:
    """The terms of joining ``plan_id`` at ``at`` (``online``: it must be sold online too)."""
    plan = await get_plan(plan_id)
    location = await get_location(int(plan["location"]))
    terms = terms_at(plan, location, await price_in_effect(plan_id, at), at)
    if online and not plan["sellable_online"]:
        raise NotAvailable("The plan is not sold online.")
    return terms


# -- queries ---------------------------------------------------------------------


def _columns() -> list[Any]:
    return [
        *MembershipPlan.all_columns(),
        MembershipPlan.service.name.as_alias("service_name"),
        MembershipPlan.service.active.as_alias("service_active"),
        MembershipPlan.location.name.as_alias("location_name"),
        MembershipPlan.location.timezone.as_alias("location_timezone"),
        MembershipPlan.location.currency.as_alias("location_currency"),
    ]


async def get_plan(plan_id: int) -> dict[str, Any]:
    return await records.first(
        MembershipPlan.select(*_columns()).where(MembershipPlan.id == plan_id),
        "No such membership plan.",
    )


async def get_plan_for(user: CurrentUser, plan_id: int, *, write: bool = False) -> dict[str, Any]:
    """The plan, if ``user`` may see it (write: change it) — its location's scope."""
    plan = await get_plan(plan_id)
    ensure_location_access(user, int(plan["location"]), write=write)
    return plan


async def list_plans(user: CurrentUser, **filters: Unpack[records.ListQuery]) -> Page:
    page = await records.list_page(
        MembershipPlan.select(*_columns()),
        MembershipPlan,
        (MembershipPlan.name, MembershipPlan.service.name),
        user=user,
        within=MembershipPlan.location.is_in,
        **filters,
    )
    now = utcnow()
    versions = await plan_versions(r["id"] for r in page.rows)
    for row in page.rows:
        row["price"] = catalog.version_in_effect(versions[row["id"]], now)
    return page


async def location_plans(
    location: dict[str, Any], at: datetime, *, online_only: bool = False
) -> list[tuple[dict[str, Any], PlanTerms]]:
    """The plans a location can sell at ``at`` with their terms (``online_only``: online)."""
    query = MembershipPlan.select(*_columns()).where(
        (MembershipPlan.location == location["id"]) & (MembershipPlan.active == True)  # noqa: E712
    )
    if online_only:
        query = query.where(MembershipPlan.sellable_online == True)  # noqa: E712
    plans = await query.order_by(MembershipPlan.name).run()
    versions = await plan_versions(p["id"] for p in plans)
    out = []
    for plan in plans:
        price = catalog.version_in_effect(versions[plan["id"]], at)
        if not unavailable_reason(plan, location, price, at):
            out.append((plan, terms_at(plan, location, price, at)))
    return out


async def service_choices() -> list[tuple[int, str]]:
    rows = await catalog.all_services(active_only=True)
    return [(int(s["id"]), str(s["name"])) for s in rows]


# -- changes ---------------------------------------------------------------------


async def _name_taken(location_id: int, name: str, exclude_id: int | None) -> bool:
    query = (
        MembershipPlan.exists()
        .where(MembershipPlan.location == location_id)
        .where(Lower(MembershipPlan.name) == name.lower())
    )
    if exclude_id is not None:
        query = query.where(MembershipPlan.id != exclude_id)
    return bool(await query.run())


DUPLICATE = {"name": "This location already has a plan with this name."}
PLANS = records.Kind(MembershipPlan, "membership_plan", DUPLICATE)


def _record(data: PlanInput) -> dict[str, Any]:
    record = data.as_dict()
    record["ends_at"] = data.ends_at.isoformat() if data.ends_at else None
    return record


async def create_plan(
    actor: CurrentUser, data: PlanInput, price: PriceInput, *, address: str = ""
) -> int:
    """A new plan with its first price, in effect now (owners; managers of its location)."""
    location = await get_location(data.location_id)
    ensure_location_access(actor, data.location_id, write=True)
    errors: dict[str, str] = {}
    service = await Service.select().where(Service.id == data.service_id).first().run()
    if service is None or not service["active"]:
        errors["service_id"] = "Choose an active service from the list."
    if price.currency != location["currency"]:
        errors["price"] = f"Prices at {location['name']} are in {location['currency']}."
    if await _name_taken(data.location_id, data.name, None):
        errors.update(DUPLICATE)
    if errors:
        raise Invalid(errors)

    async def first_price(plan_id: int, now: datetime) -> dict[str, Any]:
        version = await prices.insert_version(MembershipPlanPrice, actor, price, now, plan=plan_id)
        return prices.version_record("price", version, price, now)

    owner = {"location": data.location_id, "service": data.service_id}
    shown = {**_record(data), "location_id": data.location_id, "service_id": data.service_id}
    return await records.create(
        actor, PLANS, {**data.as_dict(), **owner}, shown=shown, address=address, then=first_price
    )


async def update_plan(
    actor: CurrentUser, plan_id: int, data: PlanInput, *, address: str = ""
) -> None:
    """New terms for those who join from now on; memberships keep the terms they joined with."""
    before = await get_plan_for(actor, plan_id, write=True)
    if await _name_taken(int(before["location"]), data.name, plan_id):
        raise Invalid(DUPLICATE)
    old = {f: before[f] for f in PLAN_FIELDS}
    old["ends_at"] = before["ends_at"].isoformat() if before["ends_at"] else None
    new = _record(data)
    if old == new:
        return
    try:
        async with db.transaction():
            await (
                MembershipPlan.update({**data.as_dict(), "updated_at": utcnow()})  # type: ignore[dict-item]
                .where(MembershipPlan.id == plan_id)
                .run()
            )
            await audit.record(
                actor,
                "update",
                "membership_plan",
                plan_id,
                before={k: v for k, v in old.items() if new[k] != v},
                after={k: v for k, v in new.items() if old[k] != v},
                address=address,
            )
    except Exception as exc:
        if db.is_unique_violation(exc):
            raise Invalid(DUPLICATE) from exc
        raise


async def add_plan_price(
    actor: CurrentUser, plan_id: int, price: PriceInput, *, address: str = ""
) -> int:
    """A new version of the price per period, from now or a later date (never the past)."""
    plan = await get_plan_for(actor, plan_id, write=True)
    if price.currency != plan["location_currency"]:
        raise Invalid(
            {"price": f"Prices at {plan['location_name']} are in {plan['location_currency']}."}
        )
    effective = catalog.resolve_effective(price.effective_from, utcnow())
    return await prices.add_version(
        actor,
        "membership_plan",
        plan_id,
        "price",
        lambda: prices.insert_version(MembershipPlanPrice, actor, price, effective, plan=plan_id),
        lambda version: prices.version_record("price", version, price, effective),
        address,
    )


async def set_plan_active(
    actor: CurrentUser, plan_id: int, active: bool, *, address: str = ""
) -> bool:
    """Stop (or resume) selling a plan; its members keep their memberships and terms."""
    await get_plan_for(actor, plan_id, write=True)
    return await records.set_active(
        actor, MembershipPlan, "membership_plan", plan_id, active, address=address
    )


def next_period_end(end: datetime, interval: str) -> datetime:
    """The end of the period after the one ending at ``end`` (Stripe's anchor rule: the same
    day of the next month, clamped; or 28 days later)."""
    if interval != MONTHLY:
        return end + timedelta(days=28)
    index = end.month  # the next month, zero-based
    year, month = end.year + index // 12, index % 12 + 1
    day = min(end.day, calendar.monthrange(year, month)[1])
    return end.replace(year=year, month=month, day=day)
