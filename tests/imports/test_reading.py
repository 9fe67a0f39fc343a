"""Reading the files other systems export (no database): encodings, separators, quoted
line breaks, XLSX, and the files that cannot be read."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest
from openpyxl import Workbook

from portal.imports import reading, values
from portal.imports.layouts import CLIENTS, guess_mapping

pytestmark = pytest.mark.nodb

FILES = Path(__file__).parent / "files"


def test_windows_1252_with_semicolons_and_quoted_line_breaks():
    sheet = reading.open_sheet(FILES / "clients_cp1252_semicolon.csv")
    assert sheet.encoding == "cp1252"
    assert sheet.delimiter == ";"
    assert sheet.headers[:4] == ["Client ID", "First Name", "Last Name", "E-mail"]
    rows = list(sheet.records())
    first_line, first = rows[0]
    assert first_line == 2
    assert first["First Name"] == "Zoë" and first["Last Name"] == "Müller"
    assert first["Address"] == "12 High St\r\nFlat 2"
    assert first["Notes"] == "Prefers firm pressure;\r\nleft shoulder"
    # The quoted line breaks do not split rows: six clients, numbered by record.
    assert [line for line, _ in rows] == [2, 3, 4, 5, 6, 7]
    mapping = guess_mapping(CLIENTS, sheet.headers)
    assert mapping["email"] == "E-mail" and mapping["phone"] == "Mobile"
    assert mapping["date_of_birth"] == "Birthdate" and mapping["external_id"] == "Client ID"


def test_utf8_with_byte_order_mark():
    sheet = reading.open_sheet(FILES / "clients_utf8_bom.csv")
    assert sheet.encoding == "utf-8-sig"
    assert sheet.headers[0] == "email"
    assert [r["last_name"] for _, r in sheet.records()] == ["Łukasz", "O'Neil"]


def test_xlsx_streams_its_first_sheet(tmp_path):
    book = Workbook()
    ws = book.active
    ws.append(["First name", "Surname", "Email", "DOB", "Visits"])
    ws.append(["Ann", "Lee", "ann@example.test", datetime(1970, 12, 12), 3.0])
    ws.append([None, None, None, None, None])
    ws.append(["Bo", "Ng", "bo@example.test", date(1981, 1, 2), 1])
    path = tmp_path / "clients.xlsx"
    book.save(path)
    sheet = reading.open_sheet(path)
    assert sheet.format == "xlsx"
    rows = list(sheet.records())
    assert [line for line, _ in rows] == [2, 4]
    assert rows[0][1]["DOB"] == "1970-12-12" and rows[0][1]["Visits"] == "3"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("empty.csv", "is empty"),
        ("no_header.csv", "has no header line"),
        ("mixed_encodings.csv", "mixes text encodings"),
        ("not_a_table.pdf", "is not a CSV or XLSX file"),
    ],
)
def test_files_that_cannot_be_read_say_why(name, message):
    with pytest.raises(reading.FileProblem, match=message):
        reading.open_sheet(FILES / name)


def test_old_excel_and_oversized_files_are_refused(tmp_path, monkeypatch):
    xls = tmp_path / "old.xls"
    xls.write_bytes(reading.OLE_MAGIC + b"\x00" * 100)
    with pytest.raises(reading.FileProblem, match=r"old Excel \(.xls\)"):
        reading.open_sheet(xls)
    big = tmp_path / "big.csv"
    big.write_bytes(b"email\n" + b"a@example.test\n" * 100)
    monkeypatch.setattr(reading, "MAX_BYTES", 1000)
    with pytest.raises(reading.FileProblem, match="files up to"):
        reading.open_sheet(big)


def test_a_broken_zip_is_not_a_spreadsheet(tmp_path):
    fake = tmp_path / "fake.xlsx"
    fake.write_bytes(reading.ZIP_MAGIC + b"not really a zip")
    with pytest.raises(reading.FileProblem, match="not a CSV or XLSX"):
        reading.open_sheet(fake)


def test_separator_sniffed_from_the_header_outside_quotes():
    assert reading.sniff_delimiter('"Name, full";Email;Phone') == ";"
    assert reading.sniff_delimiter("a,b,c") == ","
    assert reading.sniff_delimiter("a\tb\tc") == "\t"
    assert reading.sniff_delimiter("email") == ","


def test_date_order_is_read_from_the_column_or_left_to_the_owner():
    assert values.date_order(["31/01/1985", "05/03/1990"]) == values.DMY
    assert values.date_order(["01/31/1985", "05/03/1990"]) == values.MDY
    assert values.date_order(["1985-01-31", ""]) is None
    with pytest.raises(values.AmbiguousDates):
        values.date_order(["03/04/1980", "05/06/1981"])
    with pytest.raises(ValueError, match="both"):
        values.date_order(["31/01/1985", "01/31/1985"])


@pytest.mark.parametrize(
    ("raw", "order", "expected"),
    [
        ("31/01/1985", "dmy", date(1985, 1, 31)),
        ("01/31/1985", "mdy", date(1985, 1, 31)),
        ("03/04/80", "dmy", date(1980, 4, 3)),
        ("31.12.26", "dmy", date(2026, 12, 31)),
        ("1985-01-31", "mdy", date(1985, 1, 31)),
        ("2026-12-31T10:00:00", "dmy", date(2026, 12, 31)),
        ("31 Dec 2026", "mdy", date(2026, 12, 31)),
        ("December 31, 2026", "dmy", date(2026, 12, 31)),
        ("", "dmy", None),
    ],
)
def test_dates_in_export_formats(raw, order, expected):
    assert values.parse_date(raw, order) == expected


@pytest.mark.parametrize("raw", ["30/02/1980", "soon", "13/13/2020"])
def test_bad_dates_are_a_reason(raw):
    with pytest.raises(values.BadValue):
        values.parse_date(raw, "dmy")


def test_date_and_time_of_appointments():
    assert values.parse_datetime("10/12/2026 2:30 PM", "mdy") == datetime(2026, 10, 12, 14, 30)
    assert values.parse_datetime("2026-12-10T09:15", "dmy") == datetime(2026, 12, 10, 9, 15)
    assert values.parse_datetime("10.12.2026 14h30", "dmy") == datetime(2026, 12, 10, 14, 30)
    with pytest.raises(values.BadValue, match="no time"):
        values.parse_datetime("2026-12-10", "dmy")


def test_phones_to_e164_with_the_locations_country():
    assert values.country_of_zone("Europe/London") == "GB"
    assert values.country_of_zone("America/New_York") == "US"
    assert values.country_of_zone("UTC", "GB") == "GB"
    assert values.normalise_phone("07700 900123", "GB") == "+447700900123"
    assert values.normalise_phone("(212) 555-0100", "US") == "+12125550100"
    assert values.normalise_phone("0044 7700 900123", "US") == "+447700900123"
    assert values.normalise_phone("", "GB") == ""
    with pytest.raises(values.BadValue):
        values.normalise_phone("not a phone", "GB")


@pytest.mark.parametrize(
    ("raw", "cents"),
    [("150.00", 15000), ("12,50", 1250), ("£1,234.50", 123450), ("1.234,50 €", 123450), ("", None)],
)
def test_amounts(raw, cents):
    assert values.parse_cents(raw) == cents
