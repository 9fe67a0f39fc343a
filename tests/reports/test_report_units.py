"""Pure pieces of the reports: periods and DST segments, the writers, the charts."""

from __future__ import annotations

import asyncio
import io
import re
import zipfile
from datetime import UTC, date, datetime

import openpyxl
import pytest

from portal.formatting import money, money_of
from portal.ledger.daily import number_of
from portal.reports import charts, exports, periods, rollup
from portal.reports.filters import Filters, Loc
from portal.reports.html import fee_rate

pytestmark = pytest.mark.nodb


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_offset_segments_split_at_each_dst_change():
    lo, hi = periods.bounds(
        "America/Los_Angeles", periods.Period(date(2026, 1, 1), date(2026, 12, 31))
    )
    assert (lo, hi) == (utc(2026, 1, 1, 8), utc(2027, 1, 1, 8))
    assert periods.offset_segments("America/Los_Angeles", lo, hi) == [
        (utc(2026, 1, 1, 8), utc(2026, 3, 8, 10), -8 * 3600),
        (utc(2026, 3, 8, 10), utc(2026, 11, 1, 9), -7 * 3600),
        (utc(2026, 11, 1, 9), utc(2027, 1, 1, 8), -8 * 3600),
    ]
    london = periods.bounds("Europe/London", periods.Period(date(2026, 3, 1), date(2026, 3, 31)))
    assert periods.offset_segments("Europe/London", *london) == [
        (utc(2026, 3, 1), utc(2026, 3, 29, 1), 0),
        (utc(2026, 3, 29, 1), utc(2026, 3, 31, 23), 3600),
    ]
    # A zone without DST is one segment; a zone with a half-hour offset keeps it.
    tokyo = periods.bounds("Asia/Tokyo", periods.Period(date(2026, 1, 1), date(2026, 12, 31)))
    assert len(periods.offset_segments("Asia/Tokyo", *tokyo)) == 1
    adelaide = periods.bounds(
        "Australia/Adelaide", periods.Period(date(2026, 4, 1), date(2026, 4, 30))
    )
    assert [s[2] for s in periods.offset_segments("Australia/Adelaide", *adelaide)] == [
        37800,
        34200,
    ]


def test_local_midnight_when_midnight_does_not_exist():
    # Havana springs forward at midnight: 2026-03-08 begins at 01:00 CDT = 05:00 UTC.
    assert periods.local_midnight("America/Havana", date(2026, 3, 8)) == utc(2026, 3, 8, 5)


def test_buckets():
    day = date(2026, 3, 11)  # a Wednesday
    assert periods.bucket_start(day, "week") == date(2026, 3, 9)
    assert periods.bucket_label(date(2026, 3, 9), "week") == "2026-W11"
    assert periods.bucket_start(day, "month") == date(2026, 3, 1)
    assert periods.bucket_end(date(2026, 2, 1), "month") == date(2026, 2, 28)
    assert periods.day_from_number(20520) == date(2026, 3, 8)
    labels = [label for label, _ in periods.presets(date(2026, 3, 18))]
    assert labels[:2] == ["This month", "Last month"]
    twelve = dict(periods.presets(date(2026, 3, 18)))["Last 12 months"]
    assert (twelve.start, twelve.end) == (date(2025, 4, 1), date(2026, 3, 18))


@pytest.mark.parametrize("month", range(1, 13))
def test_last_twelve_months_is_twelve_months_in_every_month(month):
    today = date(2026, month, 4)
    twelve = dict(periods.presets(today))["Last 12 months"]
    assert twelve.end == today
    assert len(periods.month_starts(twelve.start, twelve.end)) == 12
    assert twelve.start.day == 1


def test_the_overview_names_its_range():
    # In December the twelve months are the year to date, and are called that.
    december = date(2026, 12, 4)
    assert periods.period_name(periods.last_twelve_months(december), december) == "Year to date"
    june = date(2026, 6, 4)
    assert periods.period_name(periods.last_twelve_months(june), june) == "Last 12 months"
    odd = periods.Period(date(2026, 2, 3), date(2026, 2, 9))
    assert periods.period_name(odd, june) == "2026-02-03 – 2026-02-09"


def test_amounts_and_fee_rate():
    assert exports.units(123450, "USD") == "1234.50"
    assert exports.units(-1000, "GBP") == "-10.00"
    assert exports.units(5, "EUR") == "0.05"
    assert exports.units(1500, "JPY") == "1500"
    assert fee_rate(987, 33000) == "2.99"
    assert fee_rate(0, 0) == ""


async def _collect(stream) -> bytes:
    return b"".join([chunk async for chunk in stream])


@pytest.mark.parametrize("currency", ["USD", "EUR", "GBP", "JPY", "AUD", "KWD", "CHF"])
def test_money_of_writes_what_money_writes(currency):
    write = money_of(currency)
    for cents in (0, 1, -1, 99, -100, 123_456, -98_765_432, 10**12 + 7):
        assert write(cents) == money(cents, currency)


def test_a_drill_down_link_is_the_query_with_the_rows_start_end_and_location():
    loc = Loc(7, "A", "a", "UTC", "USD")
    f = Filters(
        period=periods.Period(date(2025, 1, 1), date(2025, 12, 31)),
        locations=(loc,),
        package_id=3,
        method="card",
        accounts=("service_revenue",),
        params={"location": ["7", "9"], "group": ["month"], "status": ["all"], "zz": ["a b"]},
    )
    for fixed in ({}, {"group": "day"}, {"method": "card", "group": "day"},
                  {"account": ["service_revenue", "breakage_revenue"]}):  # fmt: skip
        link = f.drill(**fixed)
        start, end = date(2025, 3, 1), date(2025, 3, 31)
        assert link(start, end, 9) == f.query(
            start=start.isoformat(), end=end.isoformat(), location=9, **fixed
        )


def test_whole_months_are_read_from_the_monthly_totals_and_the_days_around_them():
    def pieces(first, last, cuts=()):
        return [
            (whole, lo and str(date.fromordinal(date(1970, 1, 1).toordinal() + lo)),
             str(date.fromordinal(date(1970, 1, 1).toordinal() + hi)))
            for whole, lo, hi in rollup._pieces(
                first and number_of(first), number_of(last), [number_of(c) for c in cuts]
            )
        ]  # fmt: skip

    assert pieces(date(2025, 1, 1), date(2025, 12, 31)) == [(True, "2025-01-01", "2026-01-01")]
    assert pieces(date(2025, 1, 15), date(2025, 3, 10)) == [
        (False, "2025-01-15", "2025-02-01"),
        (True, "2025-02-01", "2025-03-01"),
        (False, "2025-03-01", "2025-03-11"),
    ]
    # From the beginning up to the period's end, the period's start a cut: a month
    # holding the cut is read by days.
    assert pieces(None, date(2025, 12, 30), [date(2025, 6, 15)]) == [
        (True, None, "2025-06-01"),
        (False, "2025-06-01", "2025-07-01"),
        (True, "2025-07-01", "2025-12-01"),
        (False, "2025-12-01", "2025-12-31"),
    ]
    assert pieces(None, date(2025, 12, 31), [date(2025, 1, 1)]) == [(True, None, "2026-01-01")]
    assert pieces(date(2025, 12, 3), date(2025, 12, 4)) == [(False, "2025-12-03", "2025-12-05")]
    assert rollup.source(
        "cash_day", number_of(date(2025, 12, 3)), number_of(date(2025, 12, 4))
    ) == ("cash_day")


def test_csv_stream_quotes_and_neutralises_formulas():
    rows = [
        (date(2026, 3, 7), "Alpha, Inc.", "=HYPERLINK(1)", exports.Amount(-1000, "USD"), 7),
        (date(2026, 3, 8), 'say "hi"', "-not a number", exports.Amount(0, "USD"), None),
    ]
    body = asyncio.run(
        _collect(exports.csv_stream(["a", "b", "c", "d", "e"], exports.iterate(rows)))
    )
    assert body.decode().split("\r\n") == [
        "a,b,c,d,e",
        '2026-03-07,"Alpha, Inc.",\'=HYPERLINK(1),-10.00,7',
        '2026-03-08,"say ""hi""",\'-not a number,0.00,',
        "",
    ]


def test_xlsx_stream_is_a_valid_workbook():
    rows = [
        (date(2026, 3, 7), "Alpha <Clinic> & Co", exports.Amount(123456, "USD"), 3, " padded "),
        *[(date(2026, 3, 8), f"row {i}", exports.Amount(i, "USD"), i, "") for i in range(1200)],
    ]
    chunks = asyncio.run(
        _collect(exports.xlsx_stream("Payments", ["date", "name", "amount", "n", "note"],
                                     exports.iterate(rows)))
    )  # fmt: skip
    archive = zipfile.ZipFile(io.BytesIO(chunks))
    assert archive.testzip() is None
    assert "xl/worksheets/sheet1.xml" in archive.namelist()
    book = openpyxl.load_workbook(io.BytesIO(chunks))
    sheet = book.active
    assert sheet.title == "Payments"
    values = list(sheet.iter_rows(values_only=True))
    assert values[0] == ("date", "name", "amount", "n", "note")
    assert values[1][0].date() == date(2026, 3, 7)
    assert values[1][1:] == ("Alpha <Clinic> & Co", 1234.56, 3, " padded ")
    assert len(values) == 1202 and values[-1][2] == 11.99
    assert exports.column_letter(0) == "A" and exports.column_letter(27) == "AB"


def test_charts_are_plain_svg_without_inline_style():
    svg = charts.bar_chart(
        "c1", "Revenue <by month>", "desc", ["Jan", "Feb"], [("Alpha", [1000, 250000]),
        ("Beta & Co", [0, 5])], lambda v: charts.short_amount(v, "$"), lambda v: f"{v / 100:.2f}",
    )  # fmt: skip
    assert svg.startswith("<svg") and 'role="img"' in svg
    assert "style=" not in svg and "<script" not in svg
    assert "Revenue &lt;by month&gt;" in svg and "Beta &amp; Co" in svg
    assert "<title>Alpha, Feb: 2500.00</title>" in svg
    line = charts.line_chart("c2", "Liability", "desc", ["Jan"], [("Alpha", [100])], str, str)
    assert "<polyline" in line and "style=" not in line
    assert re.search(r'viewBox="0 0 \d+ \d+"', line)
    assert charts.short_amount(1234500, "$") == "$12.3k"
    assert charts.nice_ceiling(1234) == 2000 and charts.nice_ceiling(0) == 1
