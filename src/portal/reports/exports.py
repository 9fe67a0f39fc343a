"""CSV and XLSX downloads that stream with flat memory.

Both writers take an async iterator of rows and yield bytes as they go: the
CSV a chunk of lines at a time, the XLSX as a zip written to a sink that is
emptied after every chunk of rows (the zip uses data descriptors, so nothing
needs to seek back). The XLSX is the minimal SpreadsheetML package — content
types, relationships, workbook, styles, one sheet with inline strings — which
Excel, LibreOffice and openpyxl open.

Amounts are :class:`Amount` cells: minor units and a currency, written as
currency units with the currency's decimals ("1234.50") in the CSV and as a
number with a two-decimal format in the XLSX.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, NamedTuple
from xml.sax.saxutils import escape

from portal.money import minor_digits

_digits = lru_cache(maxsize=64)(minor_digits)

CHUNK_ROWS = 500


class Amount(NamedTuple):
    """Minor units and their currency: one money cell of a download."""

    cents: int
    currency: str

    def text(self) -> str:
        digits = _digits(self.currency)
        if digits == 0:
            return str(self.cents)
        if digits == 2:  # the common case, without Decimal
            sign = "-" if self.cents < 0 else ""
            whole, cents = divmod(abs(self.cents), 100)
            return f"{sign}{whole}.{cents:02d}"
        return f"{Decimal(self.cents).scaleb(-digits):.{digits}f}"


def units(cents: int, currency: str) -> str:
    """Minor units → "1234.50" (the currency's decimals, no separators, "-" when negative)."""
    return Amount(cents, currency).text()


def _csv_cell(value: Any) -> Any:
    if isinstance(value, str):
        # Spreadsheet formula injection: a cell that starts like a formula is
        # written as text.
        if value[:1] in _FORMULA_START and not _NUMBER.match(value):
            return "'" + value
        return value
    if isinstance(value, Amount):
        return value.text()
    if value is None:
        return ""
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value


_FORMULA_START = frozenset("=+-@\t\r")
_NUMBER = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")  # ASCII digits only, as copy_csv.cell()


async def csv_stream(
    header: Sequence[str], rows: AsyncIterator[Sequence[Any]]
) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    count = 0
    async for row in rows:
        writer.writerow([_csv_cell(v) for v in row])
        count += 1
        if count % CHUNK_ROWS == 0:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


# -- XLSX ---------------------------------------------------------------------------------

_SML = "application/vnd.openxmlformats-officedocument.spreadsheetml"
_RELS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" '
    'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    f'<Override PartName="/xl/workbook.xml" ContentType="{_SML}.sheet.main+xml"/>'
    f'<Override PartName="/xl/worksheets/sheet1.xml" ContentType="{_SML}.worksheet+xml"/>'
    f'<Override PartName="/xl/styles.xml" ContentType="{_SML}.styles+xml"/>'
    "</Types>"
)
_ROOT_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    f'<Relationship Id="rId1" Type="{_RELS}/officeDocument" Target="xl/workbook.xml"/>'
    "</Relationships>"
)
_WORKBOOK_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    f'<Relationship Id="rId1" Type="{_RELS}/worksheet" Target="worksheets/sheet1.xml"/>'
    f'<Relationship Id="rId2" Type="{_RELS}/styles" Target="styles.xml"/>'
    "</Relationships>"
)
# Cell formats: 0 general, 1 bold header, 2 amount (#,##0.00), 3 date, 4 integer.
_STYLES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
    '<numFmts count="2"><numFmt numFmtId="164" formatCode="#,##0.00"/>'
    '<numFmt numFmtId="165" formatCode="yyyy-mm-dd"/></numFmts>'
    '<fonts count="2"><font><sz val="11"/><name val="Calibri"/></font>'
    '<font><b/><sz val="11"/><name val="Calibri"/></font></fonts>'
    '<fills count="2"><fill><patternFill patternType="none"/></fill>'
    '<fill><patternFill patternType="gray125"/></fill></fills>'
    '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
    '<cellXfs count="5">'
    '<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
    '<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/>'
    '<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="165" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="1" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    "</cellXfs>"
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
    "</styleSheet>"
)
_EXCEL_EPOCH = date(1899, 12, 30)
# Characters XML 1.0 does not allow.
_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _workbook(sheet_name: str) -> str:
    name = escape(_ILLEGAL.sub("", sheet_name)[:31] or "Report", {'"': "&quot;"})
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
        'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
        f'<sheets><sheet name="{name}" sheetId="1" r:id="rId1"/></sheets></workbook>'
    )


def column_letter(index: int) -> str:
    """0 → A, 25 → Z, 26 → AA."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def _cell(ref: str, value: Any, header: bool = False) -> str:
    if value is None or value == "":
        return ""
    if header:
        return f'<c r="{ref}" t="inlineStr" s="1"><is><t>{escape(str(value))}</t></is></c>'
    if isinstance(value, Amount):
        return f'<c r="{ref}" s="2"><v>{value.text()}</v></c>'
    if isinstance(value, bool):
        return f'<c r="{ref}" t="b"><v>{int(value)}</v></c>'
    if isinstance(value, int):
        return f'<c r="{ref}" s="4"><v>{value}</v></c>'
    if isinstance(value, Decimal):  # a rate or ratio: a number in the general format
        return f'<c r="{ref}"><v>{value}</v></c>'
    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, date):
        return f'<c r="{ref}" s="3"><v>{(value - _EXCEL_EPOCH).days}</v></c>'
    text = escape(_ILLEGAL.sub("", str(value)))
    space = ' xml:space="preserve"' if text != text.strip() else ""
    return f'<c r="{ref}" t="inlineStr"><is><t{space}>{text}</t></is></c>'


def _row(number: int, values: Sequence[Any], header: bool = False) -> str:
    cells = "".join(_cell(f"{column_letter(i)}{number}", v, header) for i, v in enumerate(values))
    return f'<row r="{number}">{cells}</row>'


class _Sink:
    """A write-only file for zipfile that hands its bytes out as they come."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._position = 0

    def write(self, data: bytes) -> int:
        self._chunks.append(bytes(data))
        self._position += len(data)
        return len(data)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None

    def drain(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


def _widths(header: Sequence[str]) -> str:
    cols = "".join(
        f'<col min="{i + 1}" max="{i + 1}" width="{max(12, min(40, len(h) + 4))}" customWidth="1"/>'
        for i, h in enumerate(header)
    )
    return f"<cols>{cols}</cols>"


async def xlsx_stream(
    sheet_name: str, header: Sequence[str], rows: AsyncIterator[Sequence[Any]]
) -> AsyncIterator[bytes]:
    sink = _Sink()
    archive = zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_DEFLATED)
    for name, text in (
        ("[Content_Types].xml", _CONTENT_TYPES),
        ("_rels/.rels", _ROOT_RELS),
        ("xl/workbook.xml", _workbook(sheet_name)),
        ("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS),
        ("xl/styles.xml", _STYLES),
    ):
        archive.writestr(name, text)
    yield sink.drain()
    with archive.open("xl/worksheets/sheet1.xml", mode="w", force_zip64=True) as sheet:
        sheet.write(
            (
                '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
                '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
                '<sheetViews><sheetView workbookViewId="0">'
                '<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>'
                "</sheetView></sheetViews>"
                f"{_widths(header)}<sheetData>{_row(1, header, header=True)}"
            ).encode()
        )
        number = 1
        pending: list[str] = []
        async for values in rows:
            number += 1
            pending.append(_row(number, values))
            if len(pending) >= CHUNK_ROWS:
                sheet.write("".join(pending).encode())
                pending.clear()
                yield sink.drain()
        sheet.write(("".join(pending) + "</sheetData></worksheet>").encode())
    archive.close()
    yield sink.drain()


async def iterate(rows: Iterable[Sequence[Any]]) -> AsyncIterator[Sequence[Any]]:
    """An in-memory list of rows (an aggregate report) as the writers' async iterator."""
    for row in rows:
        yield row
