"""Report filters: parsed from the query string, scoped to what the user may see.

Every report takes the same filter bar: a period of local days, locations,
and (for payments) package, payment method and status, plus a grouping. A
manager who names a location that is not theirs gets 403, whether through
the form or a hand-written URL; naming none means "all my locations".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property, lru_cache
from typing import Any
from urllib.parse import quote_plus

from portal.auth.service import CurrentUser
from portal.errors import Invalid, NotFound
from portal.fields import parse_id
from portal.ledger.service import ACCOUNTS
from portal.locations.service import ensure_location_access, visible_location_ids
from portal.locations.tables import Location
from portal.reports.periods import DAY, GROUPINGS, MAX_DAYS, MONTH, Period, parse_date
from portal.sales import service as sales
from portal.timeutil import utcnow

SUCCEEDED = "succeeded"
PENDING = "pending"
FAILED = "failed"
ALL = "all"
STATUSES = {
    SUCCEEDED: "Succeeded",
    PENDING: "Pending",
    FAILED: "Failed or cancelled",
    ALL: "Any status",
}
METHODS = sales.PAYMENT_METHODS

# Query parameters every report understands; anything else is ignored.
FILTER_KEYS = (
    "start", "end", "location", "group", "product", "package", "method", "status", "account",
)  # fmt: skip
# The kind filter of the liability and revenue reports: memberships apart from packages
# (``ledger.daily.product_of``); "" is both.
PRODUCTS = {"": "All", "packages": "Packages", "memberships": "Memberships"}


@dataclass(frozen=True)
class Loc:
    id: int
    name: str
    slug: str
    timezone: str
    currency: str


@dataclass(frozen=True)
class Filters:
    period: Period
    locations: tuple[Loc, ...]
    grouping: str = MONTH
    package_id: int | None = None
    method: str = ""
    status: str = SUCCEEDED
    accounts: tuple[str, ...] = ()
    product: str = ""  # "", packages or memberships (PRODUCTS)
    # Journal lines without a location (none today) appear only to those who
    # see every location, and only when no location is chosen.
    include_unlocated: bool = False
    params: dict[str, list[str]] = field(default_factory=dict)

    @property
    def location_ids(self) -> list[int]:
        return [loc.id for loc in self.locations]

    def location(self, location_id: int) -> Loc | None:
        for loc in self.locations:
            if loc.id == location_id:
                return loc
        return None

    def audit(self) -> dict[str, Any]:
        """The filters as written to the audit log with each export."""
        return {
            "start": self.period.start.isoformat(),
            "end": self.period.end.isoformat(),
            "locations": self.location_ids,
            "group": self.grouping,
            "package": self.package_id,
            "method": self.method,
            "status": self.status,
            "accounts": list(self.accounts),
            "product": self.product,
        }

    @cached_property
    def _encoded(self) -> dict[str, str]:
        """Each parameter of these filters, URL-encoded once (``key=value&key=value``)."""
        params: dict[str, list[str]] = {k: list(v) for k, v in self.params.items()}
        params["start"] = [self.period.start.isoformat()]
        params["end"] = [self.period.end.isoformat()]
        return {key: _encode(key, tuple(values)) for key, values in params.items()}

    def query(self, **overrides: Any) -> str:
        """The query string of these filters, with some values replaced (None drops one).

        A report page links every row to its drill-down (a year at every location:
        over a thousand links), so the filters' own parameters are encoded once and
        only the replaced ones per link.
        """
        encoded = self._encoded
        if overrides:
            encoded = dict(encoded)
            for key, value in overrides.items():
                if value is None or value == "" or value == []:
                    encoded.pop(key, None)
                elif isinstance(value, (list, tuple)):
                    encoded[key] = _encode(key, tuple(str(v) for v in value))
                else:
                    encoded[key] = _encode(key, (str(value),))
        parts = [encoded[k] for k in FILTER_KEYS if k in encoded]
        if len(parts) < len(encoded):  # parameters other than filters, by name
            parts += [encoded[k] for k in sorted(encoded) if k not in FILTER_KEYS]
        return "&".join([p for p in parts if p])

    def drill(self, **fixed: Any) -> Callable[[date, date, int], str]:
        """``query`` for a row's drill-down with its own start, end and location (and
        the ``fixed`` replacements), as a function: the rest of the query is encoded
        once, not once per row of a year's report (start, end and location lead the
        query, and dates and ids need no quoting)."""
        rest = self.query(start=None, end=None, location=None, **fixed)
        tail = f"&{rest}" if rest else ""

        def link(start: date, end: date, location_id: int) -> str:
            return f"start={start}&end={end}&location={int(location_id)}{tail}"

        return link


@lru_cache(maxsize=4096)
def _encode(key: str, values: tuple[str, ...]) -> str:
    """``key=value&key=value`` as ``urlencode`` writes it; filter keys drop empty values.
    Cached: a report's links repeat the same few dates, ids and accounts."""
    name = quote_plus(key)
    keep_empty = key not in FILTER_KEYS
    return "&".join([f"{name}={quote_plus(v)}" for v in values if keep_empty or v != ""])


def query_dict(items: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in items:
        out.setdefault(key, []).append(value)
    return out


def _first(params: Mapping[str, list[str]], key: str) -> str:
    values = params.get(key) or [""]
    return values[-1].strip()


async def _locations(user: CurrentUser, requested: list[int]) -> tuple[Loc, ...]:
    query = Location.select(
        Location.id, Location.name, Location.slug, Location.timezone, Location.currency
    )
    if requested:
        for location_id in requested:
            ensure_location_access(user, location_id)
        query = query.where(Location.id.is_in(requested))
    else:
        visible = visible_location_ids(user)
        if visible is not None:
            query = query.where(Location.id.is_in(list(visible) or [-1]))
    rows = await query.order_by(Location.name).run()
    if requested and len(rows) != len(set(requested)):
        raise NotFound("No such location.")
    return tuple(
        Loc(
            id=int(r["id"]),
            name=str(r["name"]),
            slug=str(r["slug"]),
            timezone=str(r["timezone"]),
            currency=str(r["currency"]),
        )
        for r in rows
    )


async def parse(
    user: CurrentUser,
    params: Mapping[str, list[str]],
    *,
    default_grouping: str = MONTH,
    default_period: Period | None = None,
    today: date | None = None,
) -> Filters:
    """Filters from query parameters; Invalid with a message per bad field.

    Location scope is checked first, so a manager naming another clinic's id
    gets 403 even when other parameters are wrong too.
    """
    errors: dict[str, str] = {}
    requested: list[int] = []
    for raw in params.get("location", []):
        raw = raw.strip()
        if not raw:
            continue
        location_id = parse_id(raw)
        if location_id is None:
            errors["location"] = "Choose locations from the list."
            continue
        requested.append(location_id)
    locations = await _locations(user, sorted(set(requested)))

    today = today or utcnow().date()
    fallback = default_period or Period(today.replace(day=1), today)
    start_text, end_text = _first(params, "start"), _first(params, "end")
    start = parse_date(start_text) if start_text else fallback.start
    end = parse_date(end_text) if end_text else fallback.end
    if start is None:
        errors["start"] = "Enter a date such as 2026-03-01."
    if end is None:
        errors["end"] = "Enter a date such as 2026-03-31."
    if start is not None and end is not None:
        if end < start:
            errors["end"] = "The end date must not be before the start date."
        elif (end - start).days + 1 > MAX_DAYS:
            errors["end"] = "Choose a period of at most five years."

    grouping = _first(params, "group") or default_grouping
    if grouping not in GROUPINGS:
        errors["group"] = "Group by day, week or month."
        grouping = DAY

    package_text = _first(params, "package")
    package_id = None
    if package_text:
        package_id = parse_id(package_text)
        if package_id is None:
            errors["package"] = "Choose a package from the list."

    method = _first(params, "method")
    if method and method not in METHODS:
        errors["method"] = "Choose a payment method from the list."
    status = _first(params, "status") or SUCCEEDED
    if status not in STATUSES:
        errors["status"] = "Choose a status from the list."

    product = _first(params, "product")
    if product == ALL:  # the API's word for both
        product = ""
    if product not in PRODUCTS:
        errors["product"] = "Choose All, Packages or Memberships."

    accounts = tuple(a for a in params.get("account", []) if a.strip())
    if any(a not in ACCOUNTS for a in accounts):
        errors["account"] = "Choose accounts from the list."

    if errors:
        raise Invalid(errors)
    assert start is not None and end is not None
    return Filters(
        period=Period(start, end),
        locations=locations,
        grouping=grouping,
        package_id=package_id,
        method=method,
        status=status,
        accounts=accounts,
        product=product,
        include_unlocated=user.sees_all_locations and not requested,
        params={k: list(v) for k, v in params.items() if k in FILTER_KEYS},
    )
