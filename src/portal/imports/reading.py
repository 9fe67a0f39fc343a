"""Reading the files other systems export: CSV or XLSX, row by row.

CSV: UTF-8 (with or without a byte-order mark) or a single-byte Windows encoding
(Windows-1252 mostly; ``charset-normalizer`` names it), ``,`` or ``;`` (or tab)
separators sniffed from the header line, quoted fields with line breaks. XLSX:
the first sheet, read-only and streamed (``openpyxl``); dates and numbers come
as the spreadsheet holds them and are written out as text the value parsers
(``portal.imports.values``) read.

A file that cannot be read raises :class:`FileProblem` with a sentence for the
owner; nothing is imported from it. Framework-free: no database, no HTTP.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

MAX_BYTES = 50 * 1024 * 1024  # stated on the upload page and in the CLI's help
MAX_BYTES_TEXT = "50 MB"
SAMPLE_BYTES = 256 * 1024
CHUNK = 1024 * 1024

ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0"  # old binary .xls / .doc
# A UTF-8 multi-byte sequence (lead byte then continuation bytes).
_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xf4][\x80-\xbf]+")


class FileProblem(ValueError):
    """The file cannot be read as a table; the message says why, for the owner."""


@dataclass
class Sheet:
    """A readable file: its header and a way to stream its rows (lists of text)."""

    path: Path
    format: str  # csv | xlsx
    headers: list[str]
    encoding: str = ""
    delimiter: str = ""
    _skip: int = field(default=1, repr=False)

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """(line number in the file, values) for every non-blank row after the header.

        The values line up with ``headers`` (missing ones are empty strings)."""
        width = len(self.headers)
        source = _csv_rows(self) if self.format == "csv" else _xlsx_rows(self.path)
        for number, values in source:
            if number <= self._skip or not any(v.strip() for v in values):
                continue
            padded = [*values[:width], *[""] * (width - len(values))]
            yield number, padded

    def records(self) -> Iterator[tuple[int, dict[str, str]]]:
        """(line number, header → value) for every row."""
        for number, values in self.rows():
            yield number, dict(zip(self.headers, values, strict=True))


def open_sheet(path: Path | str, *, filename: str = "") -> Sheet:
    """Check and open ``path`` (named ``filename`` by its owner, for messages)."""
    path = Path(path)
    name = filename or path.name
    size = path.stat().st_size
    if size == 0:
        raise FileProblem(f"{name} is empty.")
    if size > MAX_BYTES:
        raise FileProblem(
            f"{name} is {size / 1024 / 1024:.1f} MB; files up to {MAX_BYTES_TEXT} can be "
            "imported. Split it into smaller files."
        )
    with path.open("rb") as handle:
        head = handle.read(SAMPLE_BYTES)
    if head.startswith(ZIP_MAGIC):
        return _open_xlsx(path, name)
    if head.startswith(OLE_MAGIC):
        raise FileProblem(
            f"{name} is an old Excel (.xls) file. Save it as .xlsx or CSV and upload that."
        )
    if b"\x00" in head and not head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise FileProblem(f"{name} is not a CSV or XLSX file.")
    return _open_csv(path, name, head)


def detect_encoding(path: Path, name: str = "") -> str:
    """utf-8-sig, utf-8, utf-16 or a single-byte Windows encoding; refuses a mixture."""
    name = name or path.name
    with path.open("rb") as handle:
        head = handle.read(4)
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return "utf-16"
        handle.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8")()
        utf8_seen = False
        sample = b""
        try:
            while chunk := handle.read(CHUNK):
                if not sample:
                    sample = chunk[:SAMPLE_BYTES]
                utf8_seen = utf8_seen or bool(_UTF8_SEQUENCE.search(chunk))
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            if utf8_seen or _utf8_sequences_in(path):
                raise FileProblem(
                    f"{name} mixes text encodings (some lines are UTF-8, others are not). "
                    "Export it again as UTF-8 and upload that."
                ) from None
            return _single_byte(path)
    return "utf-8-sig" if head.startswith(codecs.BOM_UTF8) else "utf-8"


def _utf8_sequences_in(path: Path) -> bool:
    """Whether the file holds well-formed UTF-8 multi-byte characters anywhere."""
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            for match in _UTF8_SEQUENCE.finditer(chunk):
                try:
                    match.group().decode("utf-8")
                except UnicodeDecodeError:
                    continue
                return True
    return False


def _single_byte(path: Path) -> str:
    """The code page of a file that is not UTF-8: Windows-1252 (what the clinic systems'
    Western exports use) while every byte of the file is one it defines; otherwise
    what ``charset-normalizer`` finds (a short file reads as several code pages, so
    it is asked only then)."""
    try:
        with path.open(encoding="cp1252", errors="strict") as handle:
            while handle.read(CHUNK):
                pass
        return "cp1252"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_path

    best = from_path(path).best()
    if best is None or not best.encoding:
        raise FileProblem(f"{path.name} is not text in an encoding the portal can read.")
    return str(best.encoding)


def _open_csv(path: Path, name: str, head: bytes) -> Sheet:
    encoding = detect_encoding(path, name)
    text = head.decode(encoding, errors="replace")
    first_line = text.lstrip("\ufeff").splitlines()[0] if text.strip() else ""
    if not first_line.strip():
        raise FileProblem(f"{name} has no header line (the first line is blank).")
    delimiter = sniff_delimiter(first_line)
    sheet = Sheet(path=path, format="csv", headers=[], encoding=encoding, delimiter=delimiter)
    headers = next((values for _, values in _csv_rows(sheet)), [])
    return _checked(sheet, headers, name)


def sniff_delimiter(header_line: str) -> str:
    """The separator the header uses: the most frequent of ``;``, tab and ``,``
    outside quotes (``,`` when none appears: a one-column file)."""
    outside = re.sub(r'"[^"]*"', "", header_line)
    counts = {sep: outside.count(sep) for sep in (",", ";", "\t")}
    best = max(counts, key=lambda sep: counts[sep])
    return best if counts[best] else ","


def _checked(sheet: Sheet, headers: list[str], name: str) -> Sheet:
    headers = [h.strip().lstrip("\ufeff") for h in headers]
    while headers and not headers[-1]:
        headers.pop()
    named = [h for h in headers if h]
    if not named:
        raise FileProblem(f"{name} has no header line: its first row names no columns.")
    if _looks_like_data(named):
        raise FileProblem(
            f"{name} has no header line: its first row holds values (such as "
            f"{named[0]!r}) instead of column names. Add a first row naming the columns."
        )
    seen: set[str] = set()
    unique = []
    for i, header in enumerate(headers):
        header = header or f"column {i + 1}"
        while header in seen:
            header = f"{header} ({i + 1})"
        seen.add(header)
        unique.append(header)
    sheet.headers = unique
    return sheet


def _looks_like_data(headers: list[str]) -> bool:
    """A first row holding an email address, a date or a number is data, not a header."""
    return any("@" in h or re.fullmatch(r"[\d\s.,/:+()-]+", h) is not None for h in headers)


def _csv_rows(sheet: Sheet) -> Iterator[tuple[int, list[str]]]:
    with sheet.path.open(encoding=sheet.encoding, newline="", errors="strict") as handle:
        reader = csv.reader(handle, delimiter=sheet.delimiter)
        number = 0
        try:
            for values in reader:
                number += 1
                yield number, values
        except csv.Error as exc:
            raise FileProblem(f"Line {reader.line_num} cannot be read as CSV: {exc}.") from exc
        except UnicodeDecodeError as exc:
            raise FileProblem(
                f"Line {reader.line_num + 1} is not {sheet.encoding} text; "
                "export the file again as UTF-8."
            ) from exc


def _open_xlsx(path: Path, name: str) -> Sheet:
    sheet = Sheet(path=path, format="xlsx", headers=[])
    try:
        headers = next((values for _, values in _xlsx_rows(path)), [])
    except FileProblem:
        raise
    except Exception as exc:
        raise FileProblem(f"{name} is not a CSV or XLSX file ({type(exc).__name__}).") from exc
    if not headers:
        raise FileProblem(f"{name} is empty: its first sheet has no rows.")
    return _checked(sheet, headers, name)


def _xlsx_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    from openpyxl import load_workbook

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:
        raise FileProblem(f"{path.name} is not a CSV or XLSX file.") from exc
    try:
        worksheet = book.worksheets[0] if book.worksheets else None
        if worksheet is None:
            return
        for number, row in enumerate(worksheet.iter_rows(values_only=True), start=1):
            yield number, [cell_text(value) for value in row]
    finally:
        book.close()


def cell_text(value: Any) -> str:
    """A spreadsheet cell as the text a CSV export would hold (dates in ISO form)."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        if value.time() == time(0, 0):
            return value.date().isoformat()
        return value.isoformat(sep=" ", timespec="minutes")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value).strip()
