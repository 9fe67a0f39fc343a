"""How amounts, local times and rates are shown: Jinja filters, also used for emails."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from markupsafe import Markup, escape

from portal.money import format_money, money_formatter
from portal.timeutil import to_local

MONEY_LOCALE = "en_US"  # how the pages write amounts


def money(cents: int | None, currency: str = "USD", locale: str = MONEY_LOCALE) -> str:
    """Integer minor units → a localized amount in the currency's own decimals.

    Display only; never parse this back.
    """
    return format_money(cents, currency, locale)


def money_of(currency: str) -> Callable[[int], str]:
    """``money`` of one currency as a function (a table of thousands of amounts)."""
    return money_formatter(currency, MONEY_LOCALE)


def local_dt(value: datetime | None, tz: str = "UTC", fmt: str = "%Y-%m-%d %H:%M") -> str:
    if value is None:
        return ""
    return to_local(value, tz).strftime(fmt)


def zoned_dt(value: datetime | None, tz: str = "UTC", fmt: str = "%Y-%m-%d %H:%M") -> str:
    """``local_dt`` followed by the zone's abbreviation at that instant ("… 09:15 PST"),
    for pages whose rows may come from clinics in different zones."""
    return local_dt(value, tz, f"{fmt} %Z")


def basis_points(bp: int | None) -> str:
    if bp is None:
        return ""
    return f"{bp / 100:.2f}".rstrip("0").rstrip(".") + " %"


# Where a package's sessions may be booked (a package's rule, kept on each sale).
SELLING_CLINIC = "selling_clinic"
ALL_CLINICS = "all_clinics"
REDEEMABLE = {
    SELLING_CLINIC: "Only at the clinic where it was bought",
    ALL_CLINICS: "At every clinic",
}


def redeemable_text(rule: str, location_name: str) -> str:
    """The one wording of the rule, for the catalog, the receipt and the booking page."""
    if rule == SELLING_CLINIC:
        return f"Sessions can be booked only at {location_name}."
    return "Sessions can be booked at every clinic."


_BLANK_AMOUNT = Markup('<span class="muted">—</span>')


def money_cell(cents: int, currency: str, zero_blank: bool = False) -> Markup:
    """An amount in a report cell (``amount`` in reports/_macros.html): negative ones
    marked, zero a dash when ``zero_blank``. In Python: a year's report shows
    thousands, and a template macro call costs twice this."""
    if zero_blank and not cents:
        return _BLANK_AMOUNT
    shown = escape(money(cents, currency))
    return Markup(f'<span class="neg">{shown}</span>') if cents < 0 else shown  # noqa: S704
