"""When a new price takes effect: local times in a zone, DST, and never the past."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from portal.catalog.service import local_to_utc, parse_price_form, resolve_effective
from portal.web.forms import ValidationFailed

NOW = datetime(2027, 6, 15, 14, 30, 42, 500000, tzinfo=UTC)


def test_local_time_is_read_in_the_zone() -> None:
    assert local_to_utc("2027-01-10T09:00", "America/New_York") == datetime(
        2027, 1, 10, 14, 0, tzinfo=UTC
    )
    assert local_to_utc("2027-07-10T09:00", "America/New_York") == datetime(
        2027, 7, 10, 13, 0, tzinfo=UTC
    )
    assert local_to_utc("2027-07-10 09:00", "Europe/London") == datetime(
        2027, 7, 10, 8, 0, tzinfo=UTC
    )


def test_a_skipped_local_time_is_refused_and_a_repeated_one_is_the_first() -> None:
    # 2027-03-14 02:30 does not exist in New York (clocks go 02:00 → 03:00).
    with pytest.raises(ValueError, match="does not exist"):
        local_to_utc("2027-03-14T02:30", "America/New_York")
    # 2027-11-07 01:30 happens twice; the first (EDT, UTC−4) is meant.
    assert local_to_utc("2027-11-07T01:30", "America/New_York") == datetime(
        2027, 11, 7, 5, 30, tzinfo=UTC
    )


@pytest.mark.parametrize("text", ["", "tomorrow", "2027-13-01T10:00", "10:00"])
def test_unreadable_local_times(text: str) -> None:
    with pytest.raises(ValueError):
        local_to_utc(text, "UTC")


def test_never_in_the_past_but_the_current_minute_counts_as_now() -> None:
    assert resolve_effective(None, NOW) == NOW
    start_of_minute = NOW.replace(second=0, microsecond=0)
    assert resolve_effective(start_of_minute, NOW) == NOW
    later = NOW + timedelta(days=3)
    assert resolve_effective(later, NOW) == later
    with pytest.raises(ValidationFailed) as refused:
        resolve_effective(start_of_minute - timedelta(microseconds=1), NOW)
    assert "in the past" in refused.value.errors["effective_local"]


def test_price_form_reports_every_problem_at_once() -> None:
    with pytest.raises(ValidationFailed) as refused:
        parse_price_form(
            {
                "price": "0",
                "currency": "usd",
                "effective_local": "2001-01-01T10:00",
                "effective_zone": "America/Chicago",
            }
        )
    assert set(refused.value.errors) == {"price", "effective_local"}
    with pytest.raises(ValidationFailed) as refused:
        parse_price_form({"price": "10", "currency": "USD", "effective_local": "2099-01-01T10:00"})
    assert "effective_zone" in refused.value.errors
    price = parse_price_form(
        {"price": "565", "currency": "usd", "effective_local": "2099-01-01T10:00"},
        zone="America/New_York",
    )
    assert (price.amount_cents, price.currency) == (56500, "USD")
    assert price.effective_from == datetime(2099, 1, 1, 15, 0, tzinfo=UTC)
