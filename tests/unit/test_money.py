"""Money arithmetic: exact splits and half-up tax rounding, over many prices and counts."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import pytest
from babel.numbers import format_currency
from hypothesis import given, settings
from hypothesis import strategies as st

from portal import money
from portal.web import templating

prices = st.integers(min_value=0, max_value=99_999_999)
counts = st.integers(min_value=1, max_value=100)
rates = st.integers(min_value=0, max_value=5000)


# -- splitting -------------------------------------------------------------------


@given(total=prices, n=counts)
@settings(max_examples=1000)
def test_split_adds_up_exactly_and_parts_differ_by_at_most_one_cent(total: int, n: int) -> None:
    parts = money.split_evenly(total, n)
    assert len(parts) == n
    assert sum(parts) == total
    assert max(parts) - min(parts) <= 1
    # The leftover cents sit on the first parts: the list never increases.
    assert parts == sorted(parts, reverse=True)
    assert parts.count(total // n + 1) == (total % n if total % n else 0)


def test_split_examples() -> None:
    assert money.split_evenly(10000, 3) == [3334, 3333, 3333]
    assert money.split_evenly(54000, 5) == [10800] * 5
    assert money.split_evenly(100, 7) == [15, 15, 14, 14, 14, 14, 14]
    assert money.split_evenly(2, 5) == [1, 1, 0, 0, 0]
    assert money.split_evenly(0, 3) == [0, 0, 0]
    assert money.split_evenly(999, 1) == [999]


@pytest.mark.parametrize(("total", "n"), [(100, 0), (100, -1), (-1, 3)])
def test_split_refuses_nonsense(total: int, n: int) -> None:
    with pytest.raises(ValueError):
        money.split_evenly(total, n)


# -- half-up rounding -------------------------------------------------------------


@given(numerator=st.integers(min_value=0, max_value=10**12), denominator=st.integers(1, 10**6))
@settings(max_examples=1000)
def test_round_half_up_matches_decimal(numerator: int, denominator: int) -> None:
    expected = (Decimal(numerator) / Decimal(denominator)).quantize(
        Decimal(1), rounding=ROUND_HALF_UP
    )
    # Decimal's default context has 28 digits: enough for these magnitudes.
    assert money.round_half_up(numerator, denominator) == int(expected)


@pytest.mark.parametrize(
    ("numerator", "denominator", "expected"),
    [(0, 7, 0), (4999, 10000, 0), (5000, 10000, 1), (15, 10, 2), (25, 10, 3), (35, 10, 4)],
)
def test_round_half_up_examples(numerator: int, denominator: int, expected: int) -> None:
    assert money.round_half_up(numerator, denominator) == expected


# -- tax ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "bp", "included", "net", "tax", "total"),
    [
        (10000, 825, False, 10000, 825, 10825),  # Austin, 8.25 % on top
        (54000, 825, False, 54000, 4455, 58455),
        (200, 25, False, 200, 1, 201),  # 0.5 cent of tax rounds up
        (199, 25, False, 199, 0, 199),  # 0.4975 rounds down
        (10825, 825, True, 10000, 825, 10825),  # included: the same sale from the total
        (12000, 2000, True, 10000, 2000, 12000),  # 20 % VAT included
        (1, 10000, True, 0, 1, 1),  # 0.5 cent of tax in 1 cent: up, to the tax
        (54000, 0, False, 54000, 0, 54000),
        (54000, 0, True, 54000, 0, 54000),
    ],
)
def test_tax_examples(price: int, bp: int, included: bool, net: int, tax: int, total: int) -> None:
    assert money.quote_tax(price, bp, included) == money.TaxQuote(net, tax, total)


@given(price=prices, bp=rates, included=st.booleans())
@settings(max_examples=2000)
def test_tax_adds_up_and_is_rounded_half_up(price: int, bp: int, included: bool) -> None:
    quote = money.quote_tax(price, bp, included)
    assert quote.net_cents + quote.tax_cents == quote.total_cents
    assert min(quote.net_cents, quote.tax_cents) >= 0
    # The exact tax is numerator/denominator; the rounded tax is within half a
    # cent of it, and an exact half goes up.
    if included:
        assert quote.total_cents == price
        numerator, denominator = price * bp, 10000 + bp
    else:
        assert quote.net_cents == price
        numerator, denominator = price * bp, 10000
    error = 2 * (quote.tax_cents * denominator - numerator)
    assert -denominator < error <= denominator


@given(net=prices, bp=rates)
@settings(max_examples=1000)
def test_included_and_excluded_agree_when_the_total_is_exact(net: int, bp: int) -> None:
    """A net price with tax on top, quoted back from its total, gives the same split."""
    on_top = money.quote_tax(net, bp, False)
    back = money.quote_tax(on_top.total_cents, bp, True)
    assert abs(back.net_cents - net) <= 1
    assert back.total_cents == on_top.total_cents


# -- per session and saving ---------------------------------------------------------


@given(price=prices, n=counts)
def test_per_session_is_the_rounded_average(price: int, n: int) -> None:
    shown = money.per_session(price, n)
    parts = money.split_evenly(price, n)
    assert min(parts) <= shown <= max(parts)


def test_saving_examples() -> None:
    five = money.saving(12000, 5, 54000)
    assert five is not None and five.is_saving
    assert (five.full_price_cents, five.saving_cents, five.saving_bp) == (60000, 6000, 1000)
    dearer = money.saving(10000, 3, 31000)
    assert dearer is not None and not dearer.is_saving and dearer.saving_bp == -333
    assert money.saving(0, 5, 100) is None
    thirds = money.saving(10000, 3, 20000)
    assert thirds is not None and thirds.saving_bp == 3333  # 33.333 %


# -- amounts in and out -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "currency", "cents"),
    [
        ("120", "USD", 12000),
        ("120.5", "USD", 12050),
        ("120.50", "USD", 12050),
        ("1,234.56", "USD", 123456),
        ("$95", "USD", 9500),
        (" 0.01 ", "EUR", 1),
        ("5000", "JPY", 5000),
        ("-5", "USD", -500),
    ],
)
def test_parse_amount(text: str, currency: str, cents: int) -> None:
    assert money.parse_amount(text, currency) == cents


@pytest.mark.parametrize(
    ("text", "currency", "message"),
    [
        ("", "USD", "Enter an amount"),
        ("abc", "USD", "such as"),
        ("1.234", "USD", "at most 2 decimals"),
        ("10.5", "JPY", "no decimals"),
        ("NaN", "USD", "such as"),
    ],
)
def test_parse_amount_refuses(text: str, currency: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        money.parse_amount(text, currency)


@given(cents=prices)
def test_amount_input_round_trips(cents: int) -> None:
    assert money.parse_amount(money.amount_input(cents, "USD"), "USD") == cents


def test_display_uses_the_currency_locale() -> None:
    assert money.format_money(54000, "USD") == "$540.00"
    assert money.format_money(123456, "EUR") == "€1,234.56"
    assert money.format_money(5000, "JPY") == "¥5,000"
    assert money.format_money(9950, "GBP") == "£99.50"
    assert money.format_money(None, "USD") == ""
    assert money.locale_for_currency("usd") == "en_US"
    assert money.format_share(1000) == "10 %"
    assert money.format_share(583) == "5.83 %"


MONEY_LOCALES = [
    ("USD", "en_US"),
    ("EUR", "de_DE"),
    ("EUR", "fr_FR"),
    ("EUR", "nl_NL"),
    ("CAD", "fr_CA"),
    ("JPY", "ja_JP"),
    ("GBP", "en_GB"),
    ("KWD", "ar_KW"),
    ("INR", "en_IN"),  # lakh grouping: left to Babel
    ("CHF", "de_CH"),  # sign after the symbol: left to Babel
]


@pytest.mark.parametrize(("currency", "locale"), MONEY_LOCALES)
@given(cents=st.integers(min_value=-(10**13), max_value=10**13))
def test_fast_display_is_exactly_babels(currency: str, locale: str, cents: int) -> None:
    expected = format_currency(
        Decimal(cents).scaleb(-money.minor_digits(currency)), currency, locale=locale
    )
    assert money.format_money(cents, currency, locale) == expected


def test_template_filter_uses_the_currency_decimals() -> None:
    assert templating.money(123456) == "$1,234.56"
    assert templating.money(-5, "USD") == "-$0.05"
    assert templating.money(5000, "JPY", "ja_JP") == "￥5,000"  # no hundredths for yen
    assert templating.money(None) == ""
