"""The values of imported rows: dates in the formats exports use, phone numbers to
E.164, money, yes/no. Each parser raises :class:`BadValue` with the reason a row
is rejected. Framework-free: no database, no HTTP.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import cache

import phonenumbers

DMY = "dmy"
MDY = "mdy"
DATE_ORDERS = {DMY: "day/month/year (31/12/2026)", MDY: "month/day/year (12/31/2026)"}

_NUMERIC = re.compile(r"(\d{1,4})[/.\-](\d{1,2})[/.\-](\d{1,4})")
_TIME = re.compile(r"(\d{1,2})[:.h](\d{2})(?::(\d{2}))?\s*([ap]\.?m\.?)?", re.IGNORECASE)
_MONTHS = {
    name: i
    for i, names in enumerate(
        (
            ("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"),
            ("may",), ("jun", "june"), ("jul", "july"), ("aug", "august"),
            ("sep", "sept", "september"), ("oct", "october"), ("nov", "november"),
            ("dec", "december"),
        ),
        start=1,
    )
    for name in names
}  # fmt: skip


class BadValue(ValueError):
    """One value of a row cannot be used; the message is the row's reason."""


class AmbiguousDates(ValueError):
    """Every date of a column reads both as day/month and as month/day: the owner chooses."""


def date_order(values: Iterable[str]) -> str | None:
    """The order numeric dates are written in: DMY or MDY when a value shows it
    (a first number above 12 is a day), None when no value says (ISO dates or
    none at all). Raises :class:`AmbiguousDates` when the column holds numeric
    dates that read both ways, and ``ValueError`` when it holds both orders."""
    seen_day_first = seen_month_first = ambiguous = False
    for raw in values:
        match = _NUMERIC.search(raw or "")
        if not match or len(match.group(1)) == 4:
            continue
        first, second = int(match.group(1)), int(match.group(2))
        if first > 12 >= second:
            seen_day_first = True
        elif second > 12 >= first:
            seen_month_first = True
        elif first != second:
            ambiguous = True
    if seen_day_first and seen_month_first:
        raise ValueError("The dates are written both day-first and month-first.")
    if seen_day_first:
        return DMY
    if seen_month_first:
        return MDY
    if ambiguous:
        raise AmbiguousDates(
            "The dates could be day/month or month/day (such as 03/04/2026); choose which."
        )
    return None


def _year(raw: str) -> int:
    year = int(raw)
    if len(raw) <= 2:
        year += 2000 if year < 70 else 1900
    return year


def parse_date(raw: str, order: str | None = DMY) -> date | None:
    """A date as exports write it: 2026-12-31, 31/12/2026, 12/31/2026 (by ``order``),
    31.12.26, 31 Dec 2026, Dec 31, 2026, 2026-12-31T10:00. Empty → None."""
    text = (raw or "").strip()
    if not text:
        return None
    try:
        match = _NUMERIC.search(text)
        if match:
            a, b, c = match.groups()
            if len(a) == 4:
                return date(int(a), int(b), int(c))
            day, month = (a, b) if (order or DMY) == DMY else (b, a)
            return date(_year(c), int(month), int(day))
        words = re.findall(r"[A-Za-z]+|\d+", text)
        months = [_MONTHS[w.lower()] for w in words if w.lower() in _MONTHS]
        numbers = [w for w in words if w.isdigit()]
        if len(months) == 1 and len(numbers) >= 2:
            day_raw, year_raw = (
                (numbers[1], numbers[0]) if len(numbers[0]) == 4 else (numbers[0], numbers[1])
            )
            return date(_year(year_raw), months[0], int(day_raw))
    except ValueError:
        raise BadValue(f"{text!r} is not a real date") from None
    raise BadValue(f"{text!r} is not a date")


def parse_datetime(raw: str, order: str | None = DMY) -> datetime | None:
    """A local date and time (naive): the date as :func:`parse_date`, then 14:30,
    2:30 PM, 14.30 or 14h30. A date without a time is refused (an appointment needs one)."""
    text = (raw or "").strip()
    if not text:
        return None
    day = parse_date(text, order)
    assert day is not None
    rest = _NUMERIC.sub(" ", text, count=1).replace("T", " ")
    match = _TIME.search(rest)
    if not match:
        raise BadValue(f"{text!r} has no time of day")
    hour, minute = int(match.group(1)), int(match.group(2))
    meridiem = (match.group(4) or "").lower().replace(".", "")
    if meridiem == "pm" and hour < 12:
        hour += 12
    elif meridiem == "am" and hour == 12:
        hour = 0
    try:
        return datetime(day.year, day.month, day.day, hour, minute)
    except ValueError:
        raise BadValue(f"{text!r} is not a real time") from None


def normalise_phone(raw: str, country: str) -> str:
    """The number in E.164 (+447700900123); a national number is read as ``country``'s."""
    text = (raw or "").strip()
    if not text:
        return ""
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, country or None)
    except phonenumbers.NumberParseException:
        raise BadValue(f"{raw.strip()!r} is not a phone number") from None
    if not phonenumbers.is_possible_number(number):
        raise BadValue(f"{raw.strip()!r} is not a phone number of {country or 'any country'}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def parse_cents(raw: str) -> int | None:
    """An amount as exports write it (12.50, 12,50, £1,234.50, 1.234,50 €) in cents."""
    text = re.sub(r"[^\d.,\-]", "", (raw or "").strip())
    if not text:
        return None
    if "," in text and "." in text:
        text = (
            text.replace(".", "").replace(",", ".")
            if text.rfind(",") > text.rfind(".")
            else text.replace(",", "")
        )
    elif "," in text:
        whole, _, tail = text.rpartition(",")
        text = f"{whole.replace(',', '')}.{tail}" if len(tail) != 3 else text.replace(",", "")
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise BadValue(f"{raw.strip()!r} is not an amount") from None
    if amount < 0:
        raise BadValue(f"{raw.strip()!r} is negative")
    return int((amount * 100).quantize(Decimal(1)))


def parse_count(raw: str, what: str) -> int:
    text = (raw or "").strip()
    if not re.fullmatch(r"\d+(\.0+)?", text):
        raise BadValue(f"{what} {text!r} is not a whole number")
    return int(float(text))


_YES = {"yes", "y", "true", "1", "x", "opted in", "opt in", "subscribed", "ja", "oui", "si"}
_NO = {"", "no", "n", "false", "0", "opted out", "unsubscribed", "nein", "non"}


def parse_yes_no(raw: str, what: str) -> bool:
    text = (raw or "").strip().lower()
    if text in _YES:
        return True
    if text in _NO:
        return False
    raise BadValue(f"{what} {raw.strip()!r} is neither yes nor no")


@cache
def _zone_countries() -> dict[str, str]:
    """Time zone → ISO country, from the zone table the tzdata package ships."""
    from importlib import resources

    table: dict[str, str] = {}
    try:
        text = (resources.files("tzdata.zoneinfo") / "zone.tab").read_text(encoding="utf-8")
    except (FileNotFoundError, ModuleNotFoundError):
        return table
    for line in text.splitlines():
        if line and not line.startswith("#"):
            parts = line.split("\t")
            if len(parts) >= 3:
                table[parts[2]] = parts[0]
    return table


def country_of_zone(zone: str, default: str = "") -> str:
    """The country a location's time zone belongs to (Europe/London → GB); ``default``
    for zones of no one country (UTC)."""
    return _zone_countries().get(zone, default)
