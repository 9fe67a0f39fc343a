"""Money arithmetic: integer minor units (cents) only, pure functions, no database.

Every amount is an ``int`` of the currency's minor unit (cents for USD/EUR, yen
for JPY) next to an ISO 4217 code. Floats never appear; division is integer
division with an explicit rounding rule.

Rounding rule (the only one the portal uses): **half-up to the minor unit**.
A fraction of exactly one half goes up, anything below goes down
(0.4999 → 0, 0.5 → 1, 1.5 → 2, 2.5 → 3). Amounts are never negative here, so
"up" means "away from zero".

Tax (``quote_tax``), for a price, a rate in basis points (1 bp = 0.01 %) and
whether the location's prices include tax:

* prices exclude tax: ``net = price``; ``tax = round_half_up(price × bp / 10000)``;
  ``total = net + tax``.
* prices include tax: ``total = price``;
  ``tax = round_half_up(price × bp / (10000 + bp))``; ``net = total − tax``.

The tax is the one rounded figure; net and total follow by exact addition or
subtraction, so ``net + tax == total`` always holds to the cent.

Splitting (``split_evenly``): a total of T over n parts gives ``T // n`` to
every part, and the ``T mod n`` leftover cents go one each to the *first*
parts (the earliest sessions of a package). The parts differ by at most one
cent and add up exactly to T.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache

from babel.numbers import format_currency, get_currency_precision, list_currencies

BASIS_POINTS = 10_000
# No price has more than this many digits before the decimal point.
MAX_AMOUNT_DIGITS = 15

# The portal speaks English; the locale picks the symbol and separators that
# fit the currency (en_IE writes euros as €1,234.50, en_CH francs as CHF 1'234.50).
_CURRENCY_LOCALES = {
    "USD": "en_US",
    "CAD": "en_CA",
    "EUR": "en_IE",
    "GBP": "en_GB",
    "AUD": "en_AU",
    "NZD": "en_NZ",
    "CHF": "en_CH",
}
_DEFAULT_LOCALE = "en"


def round_half_up(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded half-up to an integer (both non-negative)."""
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    if numerator < 0:
        raise ValueError("amounts are never negative here")
    return (2 * numerator + denominator) // (2 * denominator)


def split_evenly(total_cents: int, n: int) -> list[int]:
    """``n`` integer parts adding up exactly to ``total_cents``.

    The leftover cents (``total_cents mod n``) go one each to the first parts,
    so earlier sessions are worth at most one cent more than later ones.
    """
    if n <= 0:
        raise ValueError("n must be at least 1")
    if total_cents < 0:
        raise ValueError("total must not be negative")
    base, leftover = divmod(total_cents, n)
    return [base + 1] * leftover + [base] * (n - leftover)


@dataclass(frozen=True)
class TaxQuote:
    net_cents: int
    tax_cents: int
    total_cents: int


def quote_tax(price_cents: int, tax_rate_bp: int, prices_include_tax: bool) -> TaxQuote:
    """Net, tax and total for a list price; see the module docstring for the rule."""
    if price_cents < 0:
        raise ValueError("price must not be negative")
    if tax_rate_bp < 0:
        raise ValueError("tax rate must not be negative")
    if prices_include_tax:
        tax = round_half_up(price_cents * tax_rate_bp, BASIS_POINTS + tax_rate_bp)
        return TaxQuote(net_cents=price_cents - tax, tax_cents=tax, total_cents=price_cents)
    tax = round_half_up(price_cents * tax_rate_bp, BASIS_POINTS)
    return TaxQuote(net_cents=price_cents, tax_cents=tax, total_cents=price_cents + tax)


def per_session(price_cents: int, sessions: int) -> int:
    """The per-session price shown to people: the average, rounded half-up.

    Display only; the exact per-session values of a sale come from
    ``split_evenly``.
    """
    if sessions <= 0:
        raise ValueError("sessions must be at least 1")
    return round_half_up(price_cents, sessions)


@dataclass(frozen=True)
class Saving:
    """A package price against ``sessions`` single sessions at the list price."""

    full_price_cents: int  # sessions × single-session list price
    saving_cents: int  # full price − package price (negative: the package costs more)
    saving_bp: int  # saving as a share of the full price, basis points, half-up

    @property
    def is_saving(self) -> bool:
        return self.saving_cents > 0


def saving(unit_price_cents: int, sessions: int, package_price_cents: int) -> Saving | None:
    """How much a package saves against single sessions; None without a unit price."""
    if unit_price_cents <= 0 or sessions <= 0:
        return None
    full = unit_price_cents * sessions
    difference = full - package_price_cents
    share = round_half_up(abs(difference) * BASIS_POINTS, full)
    return Saving(
        full_price_cents=full,
        saving_cents=difference,
        saving_bp=share if difference >= 0 else -share,
    )


# -- currencies, parsing and display ----------------------------------------


def is_currency(code: str) -> bool:
    return code in list_currencies()


def minor_digits(currency: str) -> int:
    """Decimal places of the currency's minor unit (2 for USD, 0 for JPY)."""
    return int(get_currency_precision(currency))


def parse_amount(text: str, currency: str) -> int:
    """A typed amount ("120", "120.5", "1,234.50", "$95") → minor units.

    Raises ``ValueError`` with a message fit to show beside the field.
    """
    raw = text.strip().replace(",", "").replace(" ", "")
    for symbol in ("$", "€", "£", "¥"):
        raw = raw.replace(symbol, "")
    if raw.upper().startswith(currency.upper()):
        raw = raw[len(currency) :]
    if not raw:
        raise ValueError("Enter an amount.")
    try:
        value = Decimal(raw)
    except InvalidOperation as exc:
        raise ValueError("Enter an amount such as 120 or 120.50.") from exc
    if not value.is_finite():
        raise ValueError("Enter an amount such as 120 or 120.50.")
    if value.adjusted() > MAX_AMOUNT_DIGITS:
        # "1e999999999" is a finite Decimal, but scaling it overflows.
        raise ValueError("Enter a smaller amount.")
    digits = minor_digits(currency)
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    if -exponent > digits:
        places = "no decimals" if digits == 0 else f"at most {digits} decimals"
        raise ValueError(f"Use {places} for {currency}.")
    return int(value.scaleb(digits))


def amount_input(cents: int | None, currency: str) -> str:
    """Minor units → the plain text an amount field shows ("120.50")."""
    if cents is None:
        return ""
    digits = minor_digits(currency)
    if digits == 0:
        return str(cents)
    return f"{Decimal(cents).scaleb(-digits):.{digits}f}"


def locale_for_currency(currency: str) -> str:
    return _CURRENCY_LOCALES.get(currency.upper(), _DEFAULT_LOCALE)


def format_money(cents: int | None, currency: str, locale: str | None = None) -> str:
    """Minor units → a localized amount, exactly as Babel writes it. Display only.

    Pages show dozens of amounts; Babel parses the locale and the pattern on
    every call (about 0.2 ms). The shape of an amount for a (currency, locale)
    is learned from Babel once — prefix, suffix, group and decimal symbols, for
    positive and negative amounts — and filled in with integer arithmetic;
    anything that does not fit that shape (other grouping sizes, other
    digits) is left to Babel.
    """
    if cents is None:
        return ""
    loc = locale or locale_for_currency(currency)
    shape = _money_shape(currency, loc)
    if shape is None:
        value = Decimal(cents).scaleb(-minor_digits(currency))
        return str(format_currency(value, currency, locale=loc))
    digits, group, decimal, positive, negative = shape
    whole, fraction = divmod(abs(cents), 10**digits)
    number = f"{whole:,}"
    if group != ",":
        number = number.replace(",", group)
    if digits:
        number = f"{number}{decimal}{fraction:0{digits}d}"
    prefix, suffix = negative if cents < 0 else positive
    return f"{prefix}{number}{suffix}"


@lru_cache(maxsize=64)
def money_formatter(currency: str, locale: str | None = None) -> Callable[[int], str]:
    """``format_money`` of one currency and locale as a function, the shape looked up
    once (a report's table formats thousands of amounts)."""
    loc = locale or locale_for_currency(currency)
    shape = _money_shape(currency, loc)
    if shape is None:
        return lambda cents: format_money(cents, currency, loc)
    digits, group, decimal, (plus, plus_after), (minus, minus_after) = shape
    unit = 10**digits
    if group == "," and digits:  # most currencies: one f-string, no intermediate text
        spec = f"0{digits}d"

        def grouped(cents: int) -> str:
            whole, fraction = divmod(abs(cents), unit)
            if cents < 0:
                return f"{minus}{whole:,}{decimal}{fraction:{spec}}{minus_after}"
            return f"{plus}{whole:,}{decimal}{fraction:{spec}}{plus_after}"

        return grouped

    def formatted(cents: int) -> str:
        whole, fraction = divmod(abs(cents), unit)
        number = f"{whole:,}" if group == "," else f"{whole:,}".replace(",", group)
        if digits:
            number = f"{number}{decimal}{fraction:0{digits}d}"
        if cents < 0:
            return f"{minus}{number}{minus_after}"
        return f"{plus}{number}{plus_after}"

    return formatted


_SAMPLE_WHOLE = 1_234_567


@lru_cache(maxsize=256)
def _money_shape(
    currency: str, locale: str
) -> tuple[int, str, str, tuple[str, str], tuple[str, str]] | None:
    digits = minor_digits(currency)
    fraction = "".join(str((n % 9) + 1) for n in range(digits))  # "12", "123", ""
    sample = Decimal(f"{_SAMPLE_WHOLE}.{fraction}" if digits else str(_SAMPLE_WHOLE))
    shapes = []
    separators: set[tuple[str, str]] = set()
    for value in (sample, -sample):
        text = str(format_currency(value, currency, locale=locale))
        start, end = text.find("1"), text.rfind(fraction[-1] if digits else "7") + 1
        if start < 0 or end <= start:
            return None
        body = text[start:end]
        # Expect "1<g>234<g>567" then "<d><fraction>"; learn <g> and <d>.
        if len(body) < 9 or body[1] == "2":
            return None
        group = body[1]
        decimal = body[9] if digits else ""
        expected = f"1{group}234{group}567" + (f"{decimal}{fraction}" if digits else "")
        if body != expected:
            return None
        separators.add((group, decimal))
        shapes.append((text[:start], text[end:]))
    if len(separators) != 1:
        return None
    group, decimal = separators.pop()
    # Some locales group four-digit amounts differently (es: "1234,00"); learn
    # the shape only where 1234 is grouped like 1234567.
    four = Decimal(f"1234.{fraction}" if digits else "1234")
    expected_four = f"1{group}234" + (f"{decimal}{fraction}" if digits else "")
    if str(format_currency(four, currency, locale=locale)) != (
        f"{shapes[0][0]}{expected_four}{shapes[0][1]}"
    ):
        return None
    return digits, group, decimal, shapes[0], shapes[1]


def format_share(bp: int) -> str:
    """Basis points → "12.5 %" (display only)."""
    text = f"{Decimal(bp).scaleb(-2):.2f}".rstrip("0").rstrip(".")
    return f"{text} %"
