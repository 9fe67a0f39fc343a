"""The column layouts of the files the portal imports and exports.

One definition serves both directions: an export writes exactly these headers in
this order, and the import's column mapping is guessed from them (and from the
other names the common clinic systems use for the same field), so an exported
archive imports into a fresh portal unchanged.

Framework-free data: no database, no HTTP.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    """One field of a layout: its header, whether a row needs it, and other names."""

    name: str
    required: bool = False
    aliases: tuple[str, ...] = ()
    help: str = ""


@dataclass(frozen=True)
class Layout:
    """What one kind of file holds, column by column."""

    kind: str
    title: str
    columns: tuple[Column, ...]

    @property
    def headers(self) -> list[str]:
        return [column.name for column in self.columns]

    @property
    def required(self) -> list[str]:
        return [column.name for column in self.columns if column.required]


def normalised(header: str) -> str:
    """A header reduced for comparison: lower case, letters and digits only."""
    return re.sub(r"[^a-z0-9]", "", header.strip().lstrip("\ufeff").lower())


# What a spreadsheet reads as the start of a formula. The export puts an apostrophe
# before a text cell that starts with one of them, or with apostrophes and then one of
# them (so that a value's own apostrophe survives the way back); the import takes that
# one apostrophe away again.
FORMULA_START = "=+-@"
_GUARDED = re.compile(f"'+[{re.escape(FORMULA_START)}]")


def unescaped(value: str) -> str:
    """A cell as the export had it before guarding it from spreadsheets: ``'=A1`` → ``=A1``,
    ``''-x`` → ``'-x``; any other apostrophe (``'Tis``) is the value's own."""
    return value[1:] if _GUARDED.match(value) else value


def guess_mapping(layout: Layout, headers: list[str]) -> dict[str, str]:
    """Layout column → file header, for every column a header names (exact or alias)."""
    by_key = {normalised(header): header for header in headers if header.strip()}
    mapping: dict[str, str] = {}
    for column in layout.columns:
        for candidate in (column.name, *column.aliases):
            header = by_key.get(normalised(candidate))
            if header is not None and header not in mapping.values():
                mapping[column.name] = header
                break
    return mapping


CLIENTS = Layout(
    kind="clients",
    title="Clients",
    columns=(
        Column(
            "email",
            aliases=("e-mail", "email address", "client email"),
            help="Matches existing clients",
        ),
        Column(
            "first_name", required=True, aliases=("first", "given name", "firstname", "forename")
        ),
        Column("last_name", required=True, aliases=("last", "surname", "family name", "lastname")),
        Column(
            "phone",
            aliases=("mobile", "mobile phone", "cell", "phone number", "telephone", "home phone"),
        ),
        Column(
            "date_of_birth", aliases=("dob", "birth date", "birthdate", "birthday", "date of birth")
        ),
        Column("address", aliases=("street", "street address", "address line 1", "address1")),
        Column("emergency_contact_name", aliases=("emergency contact", "emergency name")),
        Column("emergency_contact_phone", aliases=("emergency phone", "emergency contact phone")),
        Column(
            "marketing_consent",
            aliases=("email marketing", "marketing", "opt in", "accepts marketing", "newsletter"),
            help="yes/no",
        ),
        Column("staff_notes", aliases=("notes", "client notes", "alert notes", "comments")),
        Column("external_id", aliases=("client id", "id", "client number", "patient id")),
    ),
)

# How a balance or appointment row names its client (email, the other system's id, or name).
CLIENT_COLUMNS = (
    Column("client_email", aliases=("email", "client e-mail", "e-mail")),
    Column("client_external_id", aliases=("client id", "patient id", "client number")),
    Column("client_first_name", aliases=("first name", "first")),
    Column("client_last_name", aliases=("last name", "surname", "last")),
)

BALANCES = Layout(
    kind="balances",
    title="Remaining package balances",
    columns=(
        *CLIENT_COLUMNS,
        Column(
            "package",
            required=True,
            aliases=("package name", "item", "service package", "description", "pass"),
        ),
        Column(
            "sessions_left",
            required=True,
            aliases=("remaining", "remaining sessions", "visits remaining", "sessions remaining"),
        ),
        Column(
            "value_left", aliases=("remaining value", "value remaining", "balance", "liability")
        ),
        Column("price_paid", aliases=("price", "amount paid", "paid", "sale price")),
        Column("sessions_total", aliases=("total sessions", "visits", "count")),
        Column("currency", aliases=("currency code",)),
        Column("purchased_on", aliases=("purchase date", "sale date", "bought", "date purchased")),
        Column(
            "expires_on",
            aliases=("expiry", "expiry date", "expiration", "expiration date", "expires"),
        ),
        Column("location", aliases=("location slug", "clinic", "site", "business location")),
        Column("external_id", aliases=("balance id", "pass id", "sale id")),
    ),
)

APPOINTMENTS = Layout(
    kind="appointments",
    title="Upcoming appointments",
    columns=(
        *CLIENT_COLUMNS,
        Column(
            "therapist_email",
            required=True,
            aliases=("staff email", "practitioner email", "provider email"),
        ),
        Column("location", aliases=("location slug", "clinic", "site")),
        Column(
            "starts_at",
            required=True,
            aliases=("start", "start time", "date time", "appointment date", "date"),
        ),
        Column("service", required=True, aliases=("service name", "treatment", "appointment type")),
        Column("room", aliases=("room name", "resource", "treatment room")),
        Column("external_id", aliases=("appointment id", "booking id")),
    ),
)

THERAPISTS = Layout(
    kind="therapists",
    title="Therapists",
    columns=(
        Column("email", required=True, aliases=("e-mail", "staff email", "work email")),
        Column("name", required=True, aliases=("full name", "staff name", "display name")),
        Column(
            "locations",
            aliases=("location", "clinics", "sites", "location slugs"),
            help="slugs separated by |",
        ),
    ),
)

LAYOUTS: dict[str, Layout] = {
    layout.kind: layout for layout in (CLIENTS, BALANCES, APPOINTMENTS, THERAPISTS)
}
