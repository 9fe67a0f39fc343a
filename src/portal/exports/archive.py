"""The chain's data as CSV files in one ZIP, written a batch of rows at a time.

Every file is a keyset walk over its table (``BATCH`` rows per query), each
row written straight into the ZIP entry: memory holds one batch, whatever the
size of the chain. The files whose layout the import reads
(``portal.imports.layouts``: clients, balances, upcoming appointments,
therapists) carry exactly those headers in that order; the others (sales,
payments, refunds, every appointment, intakes, treatment notes) are the
record of what happened, for the owner and their accountant.

Formats (the same in every file, and what the import reads):

* UTF-8 with a byte-order mark (spreadsheets then read accents right; the
  import accepts it with or without), ``,`` separators, CRLF line ends,
  quotes where the csv module needs them;
* money as decimal currency units with the currency's decimals ("1234.50"),
  beside a ``currency`` column;
* dates as ISO dates (``2026-03-08``), local to the location;
* instants as ISO 8601 in the location's own zone with its UTC offset
  (``2026-03-08T09:30:00-07:00``), with a ``timezone`` column naming the zone
  where the layout has room for one (not in the import's appointment layout:
  the offset makes each time exact there, and the location names the zone);
* a text cell that starts like a spreadsheet formula (``=``, ``+``, ``-``,
  ``@``, a tab or CR) gets a leading apostrophe, unless it is a number or a
  phone number (``+44 20 7946 0000``); so does one that already starts with
  apostrophes and then one of ``= + - @``. The import takes that one apostrophe
  off again (``layouts.unescaped``), so names and addresses come back as
  they were.

A scope limits the walk to one client (their own data, from their account
page) and says whether treatment notes are included.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import IO, Any
from zoneinfo import ZoneInfo

from piccolo.query.functions.aggregate import Count, Sum

from portal import progress
from portal.auth.service import CLIENT
from portal.auth.tables import User
from portal.bookings.tables import Appointment
from portal.catalog.tables import Service
from portal.clients.tables import ClientIntake, ClientProfile
from portal.imports import layouts
from portal.locations.tables import Location
from portal.notes import service as notes
from portal.notes.tables import TreatmentNote
from portal.payments.tables import Payment, Refund
from portal.reports.exports import units
from portal.rooms.tables import Room
from portal.sales.tables import Sale, SaleSession
from portal.staff.tables import Therapist, TherapistLocation
from portal.timeutil import utcnow

BATCH = 1000
OPEN_CREDITS = ("available", "held")
CREDIT_STATES = ("available", "held", "redeemed", "forfeited", "expired", "revoked")
SIGNED = "signed"
BEING_WRITTEN = "being written"

Row = Sequence[Any]


@dataclass(frozen=True)
class Scope:
    """What an archive holds: the whole chain, or one client's own data; notes or not."""

    client_id: int | None = None
    notes: bool = False
    # A client's own archive shows their signed notes only ("being written" for a draft).
    own: bool = False


@dataclass
class Lookups:
    """The small chain-wide tables every file names things from, read once."""

    locations: dict[int, dict[str, Any]] = field(default_factory=dict)
    therapists: dict[int, dict[str, Any]] = field(default_factory=dict)
    rooms: dict[int, str] = field(default_factory=dict)
    services: dict[int, str] = field(default_factory=dict)

    @classmethod
    async def read(cls) -> Lookups:
        locations = await Location.select(
            Location.id, Location.slug, Location.timezone, Location.currency
        ).run()
        therapists = await Therapist.select(Therapist.id, Therapist.name, Therapist.email).run()
        rooms = await Room.select(Room.id, Room.name).run()
        services = await Service.select(Service.id, Service.name).run()
        return cls(
            locations={int(r["id"]): r for r in locations},
            therapists={int(r["id"]): r for r in therapists},
            rooms={int(r["id"]): str(r["name"]) for r in rooms},
            services={int(r["id"]): str(r["name"]) for r in services},
        )

    def slug(self, location_id: Any) -> str:
        row = self.locations.get(int(location_id)) if location_id is not None else None
        return str(row["slug"]) if row else ""

    def zone(self, location_id: Any) -> str:
        row = self.locations.get(int(location_id)) if location_id is not None else None
        return str(row["timezone"]) if row else "UTC"


# -- cells -------------------------------------------------------------------------------

_FORMULA_START = frozenset(layouts.FORMULA_START + "\t\r")
_NUMBER_OR_PHONE = re.compile(r"^[+-]?[0-9][0-9 ().-]*$")


def cell(value: Any) -> Any:
    """One CSV cell in the archive's formats (see the module's docstring)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        if value[:1] in _FORMULA_START and not _NUMBER_OR_PHONE.match(value):
            return "'" + value
        if layouts.unescaped(value) != value:  # its own apostrophe, kept for the way back
            return "'" + value
        return value
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value


def local(value: datetime | None, zone: str) -> str:
    """An instant in the location's zone with its offset: ``2026-03-08T09:30:00-07:00``."""
    if value is None:
        return ""
    return value.astimezone(ZoneInfo(zone)).replace(microsecond=0).isoformat()


def local_date(value: datetime | None, zone: str) -> str:
    if value is None:
        return ""
    return value.astimezone(ZoneInfo(zone)).date().isoformat()


def money(cents: Any, currency: str) -> str:
    return "" if cents is None else units(int(cents), currency)


def split_name(name: str) -> tuple[str, str]:
    """``"Ada Maria Lovelace"`` → ``("Ada Maria", "Lovelace")``; one word is a first name."""
    parts = (name or "").strip().rsplit(None, 1)
    if len(parts) == 2:
        return parts[0], parts[1]
    return (parts[0] if parts else ""), ""


def codes(raw: str | None) -> str:
    """A JSON list of codes as ``a|b|c``."""
    try:
        values = json.loads(raw or "[]")
    except ValueError:
        return ""
    return "|".join(str(v) for v in values) if isinstance(values, list) else ""


# -- walking a table in batches ------------------------------------------------------------

Query = Callable[[int], Any]


async def walk(query: Query) -> AsyncIterator[list[dict[str, Any]]]:
    """Batches of rows by ascending id: ``query(after_id)`` is a select ordered by id."""
    last = 0
    while True:
        rows: list[dict[str, Any]] = await query(last).limit(BATCH).run()
        if rows:
            yield rows
        if len(rows) < BATCH:
            return
        last = int(rows[-1]["id"])


def _client_filter(column: Any, scope: Scope) -> Any:
    return column == scope.client_id if scope.client_id is not None else column.is_not_null()


# -- the files ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportFile:
    name: str
    header: Sequence[str]
    # How many rows it will have (for progress), and its rows batch by batch.
    count: Callable[[Scope], Awaitable[int]]
    batches: Callable[[Scope, Lookups], AsyncIterator[list[Row]]]
    notes_only: bool = False


# clients.csv -----------------------------------------------------------------------------


def _clients_where(scope: Scope) -> Any:
    where: Any = User.role == CLIENT
    if scope.client_id is not None:
        where &= User.id == scope.client_id
    return where


async def _count_clients(scope: Scope) -> int:
    return int(await User.count().where(_clients_where(scope)).run())


async def _client_batches(scope: Scope, lookups: Lookups) -> AsyncIterator[list[Row]]:
    def query(after: int) -> Any:
        return (
            User.select(User.id, User.email, User.name)
            .where(_clients_where(scope) & (User.id > after))
            .order_by(User.id)
        )

    async for users in walk(query):
        profiles = {
            int(p["user"]): p
            for p in await ClientProfile.select()
            .where(ClientProfile.user.is_in([int(u["id"]) for u in users]))
            .run()
        }
        rows: list[Row] = []
        for user in users:
            profile = profiles.get(int(user["id"]), {})
            first, last = split_name(str(user["name"]))
            rows.append(
                [
                    user["email"],
                    first,
                    last,
                    profile.get("phone", ""),
                    profile.get("date_of_birth"),
                    profile.get("address", ""),
                    profile.get("emergency_contact_name", ""),
                    profile.get("emergency_contact_phone", ""),
                    "yes" if profile.get("marketing_consent") else "no",
                    # Notes for staff: in the owner's archive when notes are chosen.
                    profile.get("staff_notes", "") if scope.notes and not scope.own else "",
                    str(user["id"]),
                ]
            )
        yield rows


# balances.csv ----------------------------------------------------------------------------

_SALE_CLIENT = (
    Sale.client.email.as_alias("client_email"),
    Sale.client.name.as_alias("client_name"),
)


# What the files name of a sale (not its terms: a JSON snapshot per row, which no file holds).
_SALE_COLUMNS = (
    Sale.id, Sale.client, Sale.location, Sale.item_name, Sale.service_name, Sale.status,
    Sale.channel, Sale.payment_method, Sale.sessions_total, Sale.currency, Sale.price_cents,
    Sale.net_cents, Sale.tax_cents, Sale.total_cents, Sale.created_at, Sale.activated_at,
    Sale.valid_until,
)  # fmt: skip


def _sales_where(scope: Scope, *, open_only: bool) -> Any:
    where = _client_filter(Sale.client, scope)
    if open_only:
        where &= Sale.status == "active"
    return where


def _sales_query(scope: Scope, *, open_only: bool) -> Query:
    def query(after: int) -> Any:
        return (
            Sale.select(*_SALE_COLUMNS, *_SALE_CLIENT)
            .where(_sales_where(scope, open_only=open_only) & (Sale.id > after))
            .order_by(Sale.id)
        )

    return query


async def _open_credits(sale_ids: list[int]) -> dict[int, tuple[int, int]]:
    """Sale → (sessions left, their net value) for the credits not used yet."""
    if not sale_ids:
        return {}
    rows = (
        await SaleSession.select(
            SaleSession.sale,
            Count(alias="sessions"),
            Sum(SaleSession.value_cents).as_alias("value"),
        )
        .where(SaleSession.sale.is_in(sale_ids) & SaleSession.state.is_in(list(OPEN_CREDITS)))
        .group_by(SaleSession.sale)
        .run()
    )
    return {int(r["sale"]): (int(r["sessions"]), int(r["value"] or 0)) for r in rows}


async def _count_balances(scope: Scope) -> int:
    # Active sales: at most one balance row each (progress only needs a bound).
    return int(await Sale.count().where(_sales_where(scope, open_only=True)).run())


async def _balance_batches(scope: Scope, lookups: Lookups) -> AsyncIterator[list[Row]]:
    async for sales in walk(_sales_query(scope, open_only=True)):
        credits = await _open_credits([int(s["id"]) for s in sales])
        rows: list[Row] = []
        for sale in sales:
            left = credits.get(int(sale["id"]))
            if left is None:
                continue
            zone = lookups.zone(sale["location"])
            first, last = split_name(str(sale["client_name"]))
            currency = str(sale["currency"])
            rows.append(
                [
                    sale["client_email"],
                    str(sale["client"]),
                    first,
                    last,
                    sale["item_name"],
                    left[0],
                    money(left[1], currency),
                    money(sale["total_cents"], currency),
                    sale["sessions_total"],
                    currency,
                    local_date(sale["created_at"], zone),  # the day it was sold
                    local_date(sale["valid_until"], zone),
                    lookups.slug(sale["location"]),
                    str(sale["id"]),
                ]
            )
        yield rows


# sales.csv -------------------------------------------------------------------------------

SALES_HEADER = (
    "sale_id", "client_email", "client_external_id", "location", "package", "service",
    "status", "channel", "payment_method", "sessions_total",
    *(f"sessions_{state}" for state in CREDIT_STATES),
    "currency", "price", "net", "tax", "total", "value_left",
    "created_at", "activated_at", "valid_until", "timezone",
)  # fmt: skip


async def _credit_states(sale_ids: list[int]) -> dict[int, dict[str, int]]:
    out: dict[int, dict[str, int]] = {i: {} for i in sale_ids}
    if not sale_ids:
        return out
    rows = (
        await SaleSession.select(SaleSession.sale, SaleSession.state, Count(alias="n"))
        .where(SaleSession.sale.is_in(sale_ids))
        .group_by(SaleSession.sale, SaleSession.state)
        .run()
    )
    for row in rows:
        out[int(row["sale"])][str(row["state"])] = int(row["n"])
    return out


async def _count_sales(scope: Scope) -> int:
    return int(await Sale.count().where(_sales_where(scope, open_only=False)).run())


async def _sale_batches(scope: Scope, lookups: Lookups) -> AsyncIterator[list[Row]]:
    async for sales in walk(_sales_query(scope, open_only=False)):
        ids = [int(s["id"]) for s in sales]
        states = await _credit_states(ids)
        left = await _open_credits(ids)
        rows: list[Row] = []
        for sale in sales:
            zone = lookups.zone(sale["location"])
            currency = str(sale["currency"])
            counts = states[int(sale["id"])]
            rows.append(
                [
                    str(sale["id"]), sale["client_email"], str(sale["client"]),
                    lookups.slug(sale["location"]), sale["item_name"], sale["service_name"],
                    sale["status"], sale["channel"], sale["payment_method"],
                    sale["sessions_total"], *(counts.get(s, 0) for s in CREDIT_STATES),
                    currency, money(sale["price_cents"], currency),
                    money(sale["net_cents"], currency), money(sale["tax_cents"], currency),
                    money(sale["total_cents"], currency),
                    money(left.get(int(sale["id"]), (0, 0))[1], currency),
                    local(sale["created_at"], zone), local(sale["activated_at"], zone),
                    local(sale["valid_until"], zone), zone,
                ]
            )  # fmt: skip
        yield rows


# payments.csv and refunds.csv -------------------------------------------------------------

PAYMENTS_HEADER = (
    "payment_id", "sale_id", "client_email", "location", "provider", "method", "status",
    "currency", "amount", "fee", "net", "stripe_payment_intent", "created_at", "succeeded_at",
    "timezone",
)  # fmt: skip
REFUNDS_HEADER = (
    "refund_id", "payment_id", "sale_id", "client_email", "location", "status", "external",
    "currency", "amount", "tax", "sessions_revoked", "rule", "reason", "stripe_refund",
    "created_at", "completed_at", "timezone",
)  # fmt: skip


MoneyRow = Callable[[dict[str, Any], str, str, str], Row]


def _sale_money_file(table: Any, row_of: MoneyRow) -> tuple[Any, Any]:
    """The count and batches of a table of money moved for a sale (payments, refunds):
    each row with its sale's location (slug, zone) and client's email."""

    def where(scope: Scope) -> Any:
        return _client_filter(table.sale.client, scope)

    async def count(scope: Scope) -> int:
        return int(await table.count().where(where(scope)).run())

    async def batches(scope: Scope, lookups: Lookups) -> AsyncIterator[list[Row]]:
        def query(after: int) -> Any:
            return (
                table.select(
                    *table.all_columns(),
                    table.sale.location.as_alias("location"),
                    table.sale.client.email.as_alias("client_email"),
                )
                .where(where(scope) & (table.id > after))
                .order_by(table.id)
            )

        async for found in walk(query):
            yield [
                row_of(r, lookups.slug(r["location"]), lookups.zone(r["location"]), r["currency"])
                for r in found
            ]

    return count, batches


def _payment_row(p: dict[str, Any], slug: str, zone: str, currency: str) -> Row:
    return [
        str(p["id"]), str(p["sale"]), p["client_email"], slug, p["provider"], p["method"],
        p["status"], currency, money(p["amount_cents"], currency),
        money(p["fee_cents"], currency), money(p["net_cents"], currency),
        p["payment_intent_id"] or "", local(p["created_at"], zone),
        local(p["succeeded_at"], zone), zone,
    ]  # fmt: skip


def _refund_row(r: dict[str, Any], slug: str, zone: str, currency: str) -> Row:
    return [
        str(r["id"]), str(r["payment"]), str(r["sale"]), r["client_email"], slug, r["status"],
        bool(r["external"]), currency, money(r["amount_cents"], currency),
        money(r["tax_cents"], currency), r["sessions_revoked"], r["rule"], r["reason"],
        r["stripe_refund_id"] or "", local(r["created_at"], zone),
        local(r["completed_at"], zone), zone,
    ]  # fmt: skip


_count_payments, _payment_batches = _sale_money_file(Payment, _payment_row)
_count_refunds, _refund_batches = _sale_money_file(Refund, _refund_row)


# appointments: every one, and the upcoming ones in the import's layout ----------------------

APPOINTMENTS_HEADER = (
    "appointment_id", "client_email", "client_external_id", "therapist", "therapist_email",
    "location", "service", "room", "status", "starts_at", "ends_at", "timezone", "sale_id",
    "session_position", "booked_at", "cancelled_at", "cancel_reason", "completed_at",
)  # fmt: skip


def _appointments_where(scope: Scope, *, upcoming: bool) -> Any:
    where = _client_filter(Appointment.client, scope)
    if upcoming:
        where &= (Appointment.status == "booked") & (Appointment.start_at >= utcnow())
    return where


def _appointment_query(scope: Scope, *, upcoming: bool) -> Query:
    def query(after: int) -> Any:
        return (
            Appointment.select(
                *Appointment.all_columns(),
                Appointment.client.email.as_alias("client_email"),
                Appointment.client.name.as_alias("client_name"),
                Appointment.sale_session.sale.as_alias("sale_id"),
                Appointment.sale_session.position.as_alias("session_position"),
            )
            .where(_appointments_where(scope, upcoming=upcoming) & (Appointment.id > after))
            .order_by(Appointment.id)
        )

    return query


def _appointment_counter(upcoming: bool) -> Callable[[Scope], Awaitable[int]]:
    async def count(scope: Scope) -> int:
        where = _appointments_where(scope, upcoming=upcoming)
        return int(await Appointment.count().where(where).run())

    return count


async def _appointment_batches(scope: Scope, lookups: Lookups) -> AsyncIterator[list[Row]]:
    async for appointments in walk(_appointment_query(scope, upcoming=False)):
        rows: list[Row] = []
        for a in appointments:
            zone = lookups.zone(a["location"])
            therapist = lookups.therapists.get(int(a["therapist"]), {})
            rows.append(
                [
                    str(a["id"]), a["client_email"], str(a["client"]), therapist.get("name", ""),
                    therapist.get("email", ""), lookups.slug(a["location"]),
                    lookups.services.get(int(a["service"]), ""),
                    lookups.rooms.get(int(a["room"]), ""),
                    a["status"], local(a["start_at"], zone), local(a["end_at"], zone), zone,
                    "" if a["sale_id"] is None else str(a["sale_id"]), a["session_position"],
                    local(a["created_at"], zone), local(a["cancelled_at"], zone),
                    a["cancel_reason"], local(a["completed_at"], zone),
                ]
            )  # fmt: skip
        yield rows


async def _upcoming_batches(scope: Scope, lookups: Lookups) -> AsyncIterator[list[Row]]:
    async for appointments in walk(_appointment_query(scope, upcoming=True)):
        rows: list[Row] = []
        for a in appointments:
            first, last = split_name(str(a["client_name"]))
            therapist = lookups.therapists.get(int(a["therapist"]), {})
            rows.append(
                [
                    a["client_email"], str(a["client"]), first, last, therapist.get("email", ""),
                    lookups.slug(a["location"]), local(a["start_at"], lookups.zone(a["location"])),
                    lookups.services.get(int(a["service"]), ""),
                    lookups.rooms.get(int(a["room"]), ""), str(a["id"]),
                ]
            )  # fmt: skip
        yield rows


# therapists.csv --------------------------------------------------------------------------


async def _count_therapists(scope: Scope) -> int:
    return 0 if scope.client_id is not None else int(await Therapist.count().run())


async def _therapist_batches(scope: Scope, lookups: Lookups) -> AsyncIterator[list[Row]]:
    if scope.client_id is not None:
        return

    def query(after: int) -> Any:
        return (
            Therapist.select(Therapist.id, Therapist.name, Therapist.email)
            .where(Therapist.id > after)
            .order_by(Therapist.id)
        )

    async for therapists in walk(query):
        places: dict[int, list[str]] = {int(t["id"]): [] for t in therapists}
        for link in (
            await TherapistLocation.select(TherapistLocation.therapist, TherapistLocation.location)
            .where(TherapistLocation.therapist.is_in(list(places)))
            .order_by(TherapistLocation.location)
            .run()
        ):
            places[int(link["therapist"])].append(lookups.slug(link["location"]))
        yield [[t["email"], t["name"], "|".join(places[int(t["id"])])] for t in therapists]


# intakes.csv -----------------------------------------------------------------------------

INTAKE_FIELDS = (
    "concerns", "concerns_other", "pain_where", "pain_duration", "pain_worse", "pain_better",
    "pain_level", "regions", "work_posture", "daily_activities", "sports", "goals",
    "health_flags", "health_details", "pressure",
)  # fmt: skip
INTAKES_HEADER = ("client_email", "client_external_id", "version", "saved_at", *INTAKE_FIELDS,
                  "consent_at")  # fmt: skip
_LISTS = {"concerns", "regions", "health_flags"}


async def _count_intakes(scope: Scope) -> int:
    return int(await ClientIntake.count().where(_client_filter(ClientIntake.client, scope)).run())


async def _intake_batches(scope: Scope, lookups: Lookups) -> AsyncIterator[list[Row]]:
    def query(after: int) -> Any:
        return (
            ClientIntake.select(
                *ClientIntake.all_columns(), ClientIntake.client.email.as_alias("client_email")
            )
            .where(_client_filter(ClientIntake.client, scope) & (ClientIntake.id > after))
            .order_by(ClientIntake.id)
        )

    async for intakes in walk(query):
        yield [
            [
                i["client_email"], str(i["client"]), i["version"], local(i["created_at"], "UTC"),
                *(codes(i[f]) if f in _LISTS else i[f] for f in INTAKE_FIELDS),
                local(i["consent_at"], "UTC"),
            ]
            for i in intakes
        ]  # fmt: skip


# notes.csv (only when chosen) --------------------------------------------------------------

NOTE_FIELDS = (
    "subjective", "symptom", "symptom_per_week", "pain_before", "pain_after", "regions",
    "techniques", "technique_notes", "pressure", "rom", "assessment", "plan",
)  # fmt: skip
NOTES_HEADER = (
    "note_id", "appointment_id", "client_email", "client_external_id", "therapist", "location",
    "session_at", "timezone", "status", *NOTE_FIELDS, "trigger_points", "amendments",
    "signed_at",
)  # fmt: skip


def _notes_where(scope: Scope) -> Any:
    return _client_filter(TreatmentNote.client, scope)


async def _count_notes(scope: Scope) -> int:
    return int(await TreatmentNote.count().where(_notes_where(scope)).run())


def _points_text(points: list[dict[str, Any]]) -> str:
    """``upper_trapezius left 2 reproduced → temple; …``"""
    return "; ".join(
        f"{p['region']} {p['side']} {p['severity']}"
        + (" reproduced" if p["reproduced"] else "")
        + (f" → {p['referral']}" if p["referral"] else "")
        for p in points
    )


def _amendments_text(amendments: list[dict[str, Any]], zone: str) -> str:
    return "; ".join(
        f"{local(a['at'], zone)} {a['field']}: "
        + (str(a["value"]) if a["value"] is not None else str(a["text"]))
        + f" (reason: {a['reason']})"
        for a in amendments
    )


async def _note_batches(scope: Scope, lookups: Lookups) -> AsyncIterator[list[Row]]:
    def query(after: int) -> Any:
        return (
            TreatmentNote.select(
                *TreatmentNote.all_columns(),
                TreatmentNote.client.email.as_alias("client_email"),
                TreatmentNote.appointment.start_at.as_alias("session_at"),
            )
            .where(_notes_where(scope) & (TreatmentNote.id > after))
            .order_by(TreatmentNote.id)
        )

    async for found in walk(query):
        rows: list[Row] = []
        # With their trigger points and amendments; regions and techniques as lists.
        for n in await notes.present_notes(found):
            zone = lookups.zone(n["location"])
            therapist = lookups.therapists.get(int(n["therapist"]), {})
            hidden = scope.own and n["status"] != SIGNED  # a draft: that it is being written
            contents = (
                ["" for _ in NOTE_FIELDS] + ["", ""]
                if hidden
                else [
                    *(
                        "|".join(n[f]) if f in ("regions", "techniques") else n[f]
                        for f in NOTE_FIELDS
                    ),
                    _points_text(n["trigger_points"]),
                    _amendments_text(n["amendments"], zone),
                ]
            )
            rows.append(
                [
                    str(n["id"]), str(n["appointment"]), n["client_email"], str(n["client"]),
                    therapist.get("name", ""), lookups.slug(n["location"]),
                    local(n["session_at"], zone), zone,
                    BEING_WRITTEN if hidden else n["status"], *contents,
                    local(n["signed_at"], zone),
                ]
            )  # fmt: skip
        yield rows


FILES: tuple[ExportFile, ...] = (
    ExportFile("clients.csv", layouts.CLIENTS.headers, _count_clients, _client_batches),
    ExportFile("balances.csv", layouts.BALANCES.headers, _count_balances, _balance_batches),
    ExportFile(
        "appointments_upcoming.csv",
        layouts.APPOINTMENTS.headers,
        _appointment_counter(upcoming=True),
        _upcoming_batches,
    ),
    ExportFile("therapists.csv", layouts.THERAPISTS.headers, _count_therapists, _therapist_batches),
    ExportFile("sales.csv", SALES_HEADER, _count_sales, _sale_batches),
    ExportFile("payments.csv", PAYMENTS_HEADER, _count_payments, _payment_batches),
    ExportFile("refunds.csv", REFUNDS_HEADER, _count_refunds, _refund_batches),
    ExportFile(
        "appointments.csv",
        APPOINTMENTS_HEADER,
        _appointment_counter(upcoming=False),
        _appointment_batches,
    ),
    ExportFile("intakes.csv", INTAKES_HEADER, _count_intakes, _intake_batches),
    ExportFile("notes.csv", NOTES_HEADER, _count_notes, _note_batches, notes_only=True),
)


def files_of(scope: Scope) -> tuple[ExportFile, ...]:
    return tuple(f for f in FILES if scope.notes or not f.notes_only)


README = """\
Clinic Portal data export

Every file is CSV: UTF-8 with a byte-order mark, comma-separated, one header
row. clients.csv, balances.csv, appointments_upcoming.csv and therapists.csv
use the column layout the portal's import reads, so this archive imports
into a new portal as it is.

Money: decimal amounts in the currency's units (1234.50) beside a currency
column. value_left is the net value of the sessions not used yet (the
package liability); price_paid is what the client paid, tax included.
clients.csv: marketing_consent is yes or no; staff_notes (what staff noted
about the client) is filled only in an archive that includes notes.
Dates: ISO (YYYY-MM-DD), the location's local date.
Times: ISO 8601 in the location's own time zone with its UTC offset
(2026-03-08T09:30:00-07:00); the timezone column names the zone.
A text cell starting with = + - @ begins with an apostrophe (so that a
spreadsheet does not run it as a formula), unless it is a number or phone;
the portal's import removes that apostrophe again.
"""


@dataclass(frozen=True)
class Written:
    """What an archive holds: rows per file."""

    rows: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.rows.values())


async def write(target: IO[bytes], scope: Scope, *, progress_step: str = "") -> Written:
    """Write the archive of ``scope`` into ``target`` (a binary file), reporting progress."""
    lookups = await Lookups.read()
    files = files_of(scope)
    counts = {f.name: await f.count(scope) for f in files}
    total = sum(counts.values())
    done = 0
    written: dict[str, int] = {}
    await progress.report(0, total, progress_step or "Counting")
    with zipfile.ZipFile(target, mode="w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("README.txt", README)
        for spec in files:
            step = f"Writing {spec.name}"
            await progress.report(done, total, step)
            with archive.open(spec.name, mode="w", force_zip64=True) as raw:
                text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
                writer = csv.writer(text, lineterminator="\r\n")
                writer.writerow(spec.header)
                count = 0
                async for rows in spec.batches(scope, lookups):
                    writer.writerows([cell(v) for v in row] for row in rows)
                    text.flush()
                    count += len(rows)
                    done += len(rows)
                    await progress.report(done, max(total, done), step)
                text.flush()
                text.detach()
            written[spec.name] = count
    await progress.report(done, max(total, done), "Done")
    return Written(rows=written)
