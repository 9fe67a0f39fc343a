"""Hypothesis on what turns user input into values: whatever a form or a URL
holds, the parsers answer with a value or a message for the person, never an
exception that becomes a server error.

(Money splitting and tax rounding are property-tested in tests/unit/test_money.py;
here: amount parsing, ids, whole numbers, the location and catalog forms, and
keyset cursors.)
"""

from __future__ import annotations

import base64
import json
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portal import money
from portal.catalog import service as catalog
from portal.locations.service import parse_location_form
from portal.web.forms import MAX_ID, ValidationFailed, parse_id, parse_int
from portal.web.pagination import decode_cursor, encode_cursor

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text a hostile or careless person may type: digits and number-ish symbols
# weighted up, plus anything Unicode has.
numberish = st.text(alphabet="0123456789.,-+eE_ $€£¥²١٣ \t\x00", max_size=30)
any_text = st.one_of(st.text(max_size=60), numberish)
currencies = st.sampled_from(["USD", "EUR", "GBP", "JPY", "KWD", "XXX", "usd", ""])


@SETTINGS
@given(text=st.one_of(numberish, st.text(max_size=40)), currency=currencies)
def test_parse_amount_gives_cents_or_a_message(text: str, currency: str) -> None:
    try:
        cents = money.parse_amount(text, currency.upper() or "USD")
    except ValueError as exc:
        assert str(exc)
        return
    assert isinstance(cents, int)
    # What the field shows again reads back to the same amount.
    assert (
        money.parse_amount(
            money.amount_input(cents, currency.upper() or "USD"), currency.upper() or "USD"
        )
        == cents
    )


@SETTINGS
@given(exponent=st.integers(min_value=-(10**12), max_value=10**12), mantissa=st.integers(0, 999))
def test_parse_amount_refuses_absurd_exponents_politely(exponent: int, mantissa: int) -> None:
    try:
        cents = money.parse_amount(f"{mantissa}e{exponent}", "USD")
    except ValueError:
        return
    assert 0 <= cents <= 10 ** (money.MAX_AMOUNT_DIGITS + 3)


@SETTINGS
@given(raw=any_text)
def test_parse_id_is_an_id_or_nothing(raw: str) -> None:
    value = parse_id(raw)
    assert value is None or 0 <= value <= MAX_ID
    if value is not None:
        assert raw.strip().isascii() and int(raw.strip()) == value


@SETTINGS
@given(number=st.integers(min_value=0, max_value=MAX_ID))
def test_parse_id_reads_every_id(number: int) -> None:
    assert parse_id(str(number)) == number
    assert parse_id(f" {number} ") == number


@SETTINGS
@given(
    raw=st.one_of(any_text, st.integers().map(str), st.just("9" * 5000)),
    minimum=st.none() | st.integers(-100, 100),
    maximum=st.none() | st.integers(100, 10_000),
    required=st.booleans(),
)
def test_parse_int_gives_a_number_or_a_message(
    raw: str, minimum: int | None, maximum: int | None, required: bool
) -> None:
    errors: dict[str, str] = {}
    value = parse_int(
        {"n": raw}, errors, "n", label="N", minimum=minimum, maximum=maximum, required=required
    )
    if "n" in errors:
        assert errors["n"].startswith("N ")
        return
    if value is None:
        assert not required and raw.strip() == ""
        return
    assert minimum is None or value >= minimum
    assert maximum is None or value <= maximum


# The fields of the location and catalog forms, each with hostile or plausible text.
LOCATION_FIELDS = [
    "name", "slug", "address", "phone", "timezone", "currency", "tax_rate_bp",
    "cancellation_window_hours", "refund_rule", "prices_include_tax",
]  # fmt: skip
CATALOG_FIELDS = [
    "name", "description", "treatment_type", "duration_minutes", "buffer_after_minutes",
    "required_equipment", "price", "currency", "effective_local", "effective_zone", "note",
    "validity_days", "service_id", "sessions", "sellable_online",
]  # fmt: skip
plausible = st.sampled_from(
    ["", "on", "60", "15", "0", "USD", "Europe/Paris", "America/New_York", "pro_rata",
     "list_price", "120.50", "2031-03-30 02:30", "2031-03-08 02:30", "now", "main-st",
     "+1 555 0100", "9" * 25, "²", "1e999999999", "Deep tissue"]
)  # fmt: skip
field_value = st.one_of(plausible, any_text)


def form(fields: list[str]) -> st.SearchStrategy[dict[str, str]]:
    return st.fixed_dictionaries({}, optional=dict.fromkeys(fields, field_value))


@SETTINGS
@given(values=form(LOCATION_FIELDS))
def test_location_form_parses_or_explains(values: dict[str, str]) -> None:
    try:
        data = parse_location_form(values)
    except ValidationFailed as exc:
        assert exc.errors and all(isinstance(m, str) and m for m in exc.errors.values())
        return
    assert 0 <= data.tax_rate_bp <= 5000 and 0 <= data.cancellation_window_hours <= 168
    assert data.name and data.slug and data.currency


@SETTINGS
@given(values=form(CATALOG_FIELDS), creating=st.booleans())
def test_catalog_forms_parse_or_explain(values: dict[str, str], creating: bool) -> None:
    parsers = [
        lambda: catalog.parse_service_form(values, creating=creating),
        lambda: catalog.parse_package_form(values, creating=creating),
        lambda: catalog.parse_price_form(values),
        lambda: catalog.parse_price_form(values, zone="America/New_York"),
        lambda: catalog.parse_end_override_form(values, zone="Europe/London"),
    ]
    for parse in parsers:
        try:
            parse()
        except ValidationFailed as exc:
            assert exc.errors and all(isinstance(m, str) and m for m in exc.errors.values())


@SETTINGS
@given(raw=st.one_of(st.text(alphabet=string.ascii_letters + string.digits + "-_=!", max_size=80),
                     st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                              lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=2),
                              max_leaves=6).map(lambda v: base64.urlsafe_b64encode(json.dumps(v).encode()).decode())))  # fmt: skip
def test_any_cursor_decodes_to_a_position_or_nothing(raw: str) -> None:
    position = decode_cursor(raw)
    if position is None:
        return
    value, row_id = position
    assert isinstance(row_id, int) and not isinstance(row_id, bool) and abs(row_id) <= MAX_ID
    parts = value if isinstance(value, list) else [value]
    assert all(p is None or isinstance(p, (str, int, float)) for p in parts)


@SETTINGS
@given(
    value=st.one_of(st.text(max_size=30), st.integers(-(2**40), 2**40)),
    row_id=st.integers(0, MAX_ID),
)
def test_cursors_round_trip(value: str | int, row_id: int) -> None:
    assert decode_cursor(encode_cursor(value, row_id)) == (value, row_id)
