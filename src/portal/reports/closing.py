"""Closing months: the page owners and accountants close a period on, and the
"Closed" marks the liability, trial balance and revenue pages show.

The rule itself (nothing posted into a closed month) lives in ``ledger.post``;
see ``portal.ledger.periods``.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.response import Redirect, Template

from portal.auth.service import ACCOUNTANT, OWNER, CurrentUser
from portal.ledger import periods
from portal.locations.tables import Location
from portal.reports.filters import Filters
from portal.web.forms import ValidationFailed, read_form
from portal.web.guards import current_user, requires_role
from portal.web.responses import client_address, redirect

closers = requires_role(OWNER, ACCOUNTANT)
CLOSERS = (OWNER, ACCOUNTANT)
# The reports' tabs, in order; "Closed periods" (TAB) follows for those who close months.
REPORTS = [
    ("reports", "/reports", "Overview"),
    ("payments", "/reports/payments", "Payments"),
    ("liability", "/reports/liability", "Package liability"),
    ("revenue", "/reports/revenue", "Revenue"),
    ("memberships", "/reports/memberships", "Memberships"),
    ("fees", "/reports/fees", "Fees and payouts"),
    ("journal", "/reports/journal", "Journal"),
    ("trial-balance", "/reports/trial-balance", "Trial balance"),
]

TAB = ("periods", "/reports/periods", "Closed periods")
# The pages that mark the closed months of the period they show.
MARKED = ("liability", "trial-balance", "revenue")


def tabs(
    reports: list[tuple[str, str, str]], user: CurrentUser | None
) -> list[tuple[str, str, str]]:
    """The report tabs, with "Closed periods" for those who may close one."""
    if user is not None and user.role in CLOSERS:
        return [*reports, TAB]
    return reports


async def closed_context(f: Filters) -> dict[str, Any]:
    """``closed_notes``: one line per closed month of the period (which locations);
    ``closed_keys``: (location id, month) pairs, for marking rows."""
    months = await periods.closed_months(f.location_ids, f.period.start, f.period.end)
    names = {loc.id: loc.name for loc in f.locations}
    notes: list[str] = []
    keys: set[tuple[int, Any]] = set()
    for month in sorted(months):
        ids = months[month]
        label = periods.month_label(month)
        if None in ids:
            notes.append(f"{label}: every location")
            keys |= {(i, month) for i in names}
            continue
        mine = sorted(names[i] for i in ids if i is not None and i in names)
        if mine:
            notes.append(f"{label}: {', '.join(mine)}")
            keys |= {(i, month) for i in ids if i is not None and i in names}
    return {"closed_notes": notes, "closed_keys": keys}


async def _locations() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = (
        await Location.select(Location.id, Location.name, Location.timezone)
        .order_by(Location.name)
        .run()
    )
    return rows


async def _periods_page(
    request: Request[Any, Any, Any], form: dict[str, str], errors: dict[str, str]
) -> Template:
    locations = await _locations()
    return Template(
        "reports/periods.html",
        context={
            "reports": tabs(REPORTS, current_user(request)),
            "locations": locations,
            "grid": await periods.grid(locations),
            "form": form,
            "errors": errors,
        },
        status_code=422 if errors else 200,
    )


class PeriodController(Controller):
    path = "/reports/periods"
    guards = [closers]

    @get("/", name="report_periods")
    async def periods_page(self, request: Request[Any, Any, Any]) -> Template:
        return await _periods_page(request, {}, {})

    @post("/close", name="report_period_close", status_code=200)
    async def close(self, request: Request[Any, Any, Any]) -> Template | Redirect:
        """Without ``confirm=yes``: check the choice and ask to confirm; with it: close."""
        values, _ = await read_form(request)
        location_raw = values.get("location", "all") or "all"
        month_raw = values.get("month", "")
        user = current_user(request)
        confirmed = values.get("confirm") == "yes"
        try:
            location_id, month = await periods.close_month(
                user,
                location_raw,
                month_raw,
                address=client_address(request),
                dry_run=not confirmed,
            )
        except ValidationFailed as exc:
            return await _periods_page(request, values, exc.errors)
        label = periods.month_label(month)
        scope = "all locations"
        if location_id is not None:
            row = await Location.select(Location.name).where(Location.id == location_id).first()
            scope = str(row["name"]) if row else f"location {location_id}"
        if not confirmed:
            return Template(
                "reports/period_close.html",
                context={
                    "month_label": label,
                    "scope_label": scope,
                    "location_value": "all" if location_id is None else str(location_id),
                    "month_value": month.strftime("%Y-%m"),
                },
            )
        return redirect(request, "/reports/periods", f"{label} is closed for {scope}.")


ROUTES: list[Any] = [PeriodController]
