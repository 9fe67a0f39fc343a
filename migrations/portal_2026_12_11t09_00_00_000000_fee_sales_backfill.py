"""Freeze fees charged before fees were payments: each has its journal entry (kind
``membership_fee``, key ``membership_fee:desk:<membership>:<period start>`` for a fee paid
at the desk, ``membership_fee:<invoice>`` for one charged on the card) and no sale or
payment, so the payments report, a day's cash and revenue's cash collected miss it.

For each such entry with no sale of its key, this writes the fee's sale (channel
``membership``, no sessions, package 0, active, keyed by the entry's key as a fee's sale
is) and its succeeded payment, with the amounts of the entry's lines (the total debited
to ``cash_on_hand`` or ``stripe_clearing``, the net credited to ``service_revenue``, the
tax to ``tax_payable``, Stripe's fee to ``processing_fees``), at the entry's location, in
its currency, at its time. No journal line is written or changed (lines are
append-only: the entry stays as it was, not naming the sale; a refund of the sale reads
the tax it gave back from its refunds' lines), and an entry whose sale exists is left
alone, so running it again adds nothing.

The card payments' Stripe ids are not in the entries (only the invoice's, as their
reference), so they stay empty: payouts cannot match them, and such a fee is refunded in
Stripe's dashboard (recorded by the usual rule): the sale's page says so.

The daily and monthly totals are not touched here: they are rebuilt from the rows by
``portal reports rebuild --since <the earliest fee's day>``, which this migration prints
(on stderr) when it created any sale; ``portal reports verify`` lists the days until then.
"""

import json
import re
import sys
from datetime import date, timedelta

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder
from piccolo.querystring import QueryString

ID = "2026-12-11T09:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "fee sales backfill"

DESK_METHODS = {"cash": "cash", "cheque": "cheque", "card terminal": "terminal"}


def _method(key: str, memo: str) -> str:
    if not key.startswith("membership_fee:desk:"):
        return "card"
    found = re.search(r"paid at the desk \(([^)]*)\)", memo)
    return DESK_METHODS.get(found.group(1) if found else "", "cash")


def _membership_id(key: str, memo: str) -> int | None:
    found = re.match(r"membership_fee:desk:(\d+):", key) or re.search(r"membership (\d+)", memo)
    return int(found.group(1)) if found else None


async def _rows(engine, sql: str, *args):
    return await engine.run_querystring(QueryString(sql, *args))


async def backfill(engine) -> str | None:
    """Write the missing sales and payments; the earliest fee's day (None: none missing)."""
    entries = await _rows(
        engine,
        "SELECT e.id, e.event_key, e.memo, e.location, e.currency, e.occurred_at "
        "FROM journal_entry e WHERE e.kind = 'membership_fee' "
        "AND e.event_key LIKE 'membership_fee:%' "
        "AND NOT EXISTS (SELECT 1 FROM sale s WHERE s.request_key = e.event_key) "
        "ORDER BY e.occurred_at, e.id",
    )
    earliest = None
    for entry in entries:
        key, memo = str(entry["event_key"]), str(entry["memo"] or "")
        membership_id = _membership_id(key, memo)
        found = await _rows(
            engine, "SELECT id, client, terms FROM membership WHERE id = {}", membership_id or 0
        )
        if not found:
            print(f"fee entry {key}: no membership {membership_id}; left alone", file=sys.stderr)
            continue
        membership = found[0]
        lines = await _rows(
            engine,
            "SELECT account, debit_cents, credit_cents FROM journal_line WHERE entry = {} "
            "ORDER BY id",
            entry["id"],
        )
        method = _method(key, memo)
        paid_to = "stripe_clearing" if method == "card" else "cash_on_hand"
        total = next((int(r["debit_cents"]) for r in lines if r["account"] == paid_to), 0)
        net = sum(int(r["credit_cents"]) for r in lines if r["account"] == "service_revenue")
        tax = sum(int(r["credit_cents"]) for r in lines if r["account"] == "tax_payable")
        fee = sum(int(r["debit_cents"]) for r in lines if r["account"] == "processing_fees")
        t = json.loads(membership["terms"] or "{}")
        occurred = entry["occurred_at"]
        day = occurred.date().isoformat() if hasattr(occurred, "date") else str(occurred)[:10]
        name = (
            f"Freeze fee of membership {membership_id} ({t.get('name', '')}) "
            f"for the period from {day}"
        )[:160]
        terms = {
            "package_id": 0, "price_version_id": int(t.get("price_version_id") or 0),
            "price_is_override": False, "service_id": int(t.get("service_id") or 0),
            "service_name": str(t.get("service_name") or ""), "name": name,
            "location_id": int(entry["location"]), "sessions": 0, "validity_days": 0,
            "currency": str(entry["currency"]), "price_cents": net if not
            t.get("prices_include_tax") else total, "unit_list_price_cents": None,
            "unit_list_price_version_id": None, "net_cents": net, "tax_cents": tax,
            "total_cents": total, "tax_rate_bp": int(t.get("tax_rate_bp") or 0),
            "prices_include_tax": bool(t.get("prices_include_tax")), "session_values": [],
            "session_totals": [], "quoted_at": None,
        }  # fmt: skip
        at = "(SELECT occurred_at FROM journal_entry WHERE id = {})"
        created = await _rows(
            engine,
            "INSERT INTO sale (client, location, package_id, price_version_id, "
            "price_is_override, service_id, service_name, item_name, sessions_total, "
            "validity_days, currency, price_cents, unit_list_price_cents, net_cents, "
            "tax_cents, total_cents, tax_rate_bp, prices_include_tax, redeemable, terms, "
            "status, channel, payment_method, sold_by, frozen, created_at, activated_at, "
            "valid_until, closed_at, request_key, review_reason) VALUES ({}, {}, 0, {}, "
            "{}, {}, {}, {}, 0, 0, {}, {}, NULL, {}, {}, {}, {}, {}, 'all_clinics', {}, "
            f"'active', 'membership', {{}}, NULL, {{}}, {at}, {at}, {at}, NULL, {{}}, '') "
            "RETURNING id",
            membership["client"], entry["location"], terms["price_version_id"], False,
            terms["service_id"], terms["service_name"], name, terms["currency"],
            terms["price_cents"], net, tax, total, terms["tax_rate_bp"],
            terms["prices_include_tax"], json.dumps(terms), method, False, entry["id"],
            entry["id"], entry["id"], key,
        )  # fmt: skip
        sale_id = int(created[0]["id"])
        await _rows(
            engine,
            "INSERT INTO payment (sale, location, provider, method, status, amount_cents, "
            "currency, fee_cents, net_cents, checkout_url, failure_message, created_at, "
            "succeeded_at, recorded_by) VALUES ({}, {}, {}, {}, 'succeeded', {}, {}, "
            f"{{}}, {{}}, '', '', {at}, {at}, NULL)",
            sale_id, entry["location"], "stripe" if method == "card" else "in_clinic", method,
            total, terms["currency"], fee, total - fee, entry["id"], entry["id"],
        )  # fmt: skip
        earliest = day if earliest is None or day < earliest else earliest
    return earliest


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def fee_sales():
        earliest = await backfill(engine_finder())
        if earliest is not None:
            # A day earlier: the first fee's day where its clinic is may be the UTC day before.
            since = date.fromisoformat(earliest) - timedelta(days=1)
            print(
                "Freeze fees charged before fees were payments now have their sales and "
                "payments; rebuild the daily totals from the first of them: "
                f"`portal reports rebuild --since {since.isoformat()}`",
                file=sys.stderr,
            )

    manager.add_raw(fee_sales)
    return manager
