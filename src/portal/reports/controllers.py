"""Report pages, their CSV and XLSX downloads, and the JSON API.

Owners and accountants read every location; managers read their own (403
for any other, whether chosen in the form or written into the URL);
therapists and clients never reach a report. Every download is written to
the audit log with the filters it was made with.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import date
from decimal import Decimal
from functools import partial
from typing import Annotated, Any, TypeVar

from litestar import Controller, Request, get
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import FromPath, QueryParameter
from litestar.response import Stream, Template

from portal import db
from portal.audit import service as audit
from portal.auth.service import ACCOUNTANT, MANAGER, OWNER
from portal.catalog.tables import Package
from portal.ledger import daily
from portal.ledger.service import ACCOUNTS
from portal.locations.service import ensure_location_access, visible_location_ids
from portal.locations.tables import Location
from portal.reports import charts, closing, copy_csv, html, service
from portal.reports import filters as report_filters
from portal.reports import memberships as membership_report
from portal.reports import payouts as payout_report
from portal.reports.exports import Amount, csv_stream, iterate, xlsx_stream
from portal.reports.filters import METHODS, PRODUCTS, STATUSES, Filters, query_dict
from portal.reports.periods import GROUPINGS, Period, last_twelve_months, period_name, presets
from portal.timeutil import utcnow
from portal.web.forms import ValidationFailed, parse_id
from portal.web.guards import current_user, requires_role
from portal.web.responses import client_address
from portal.web.templating import money

readers = requires_role(OWNER, MANAGER, ACCOUNTANT)
T = TypeVar("T")

PAYMENT_COLUMNS = (
    "date", "location", "client", "client_email", "item", "payment_method", "gross", "tax",
    "refunded", "disputed", "fee", "net", "currency", "stripe_payment_intent", "sale_id", "type",
    "kind",
)  # fmt: skip
# The payments page's summary by the chosen "Group by" (day, week or month).
PAYMENT_SUMMARY_COLUMNS = (
    "period", "start", "end", "location", "currency", "payments", "refunds", "gross", "tax",
    "refunded", "disputed", "fees", "net", "kind",
)  # fmt: skip
LIABILITY_CSV = (
    "location", "currency", "opening", "sold", "redeemed", "expired", "refunded", "closing",
    "opening_sessions", "sold_sessions", "redeemed_sessions", "expired_sessions",
    "refunded_sessions", "closing_sessions", "kind",
)  # fmt: skip
REVENUE_COLUMNS = (
    "period", "location", "currency", "service_revenue", "breakage_revenue",
    "revenue_reversals", "recognised_revenue", "cash_collected", "refunds", "disputed",
    "net_cash", "kind",
)  # fmt: skip
THERAPIST_COLUMNS = ("period", "location", "currency", "therapist", "service_revenue", "kind")
FEE_COLUMNS = (
    "period", "start", "end", "location", "currency", "payments", "gross", "processing_fees",
    "disputes", "dispute_fees", "fees", "net", "fee_rate_percent",
)  # fmt: skip
PAYOUT_COLUMNS = (
    "payout", "arrival_date", "status", "type", "location", "client", "client_email", "sale_id",
    "stripe_payment_intent", "gross", "fee", "net", "currency", "stripe_balance_transaction",
)  # fmt: skip
JOURNAL_COLUMNS = ("entry", "date", "account", "debit", "credit", "location", "memo", "reference")
TRIAL_COLUMNS = (
    "account", "name", "type", "currency", "opening_debit", "opening_credit", "debits",
    "credits", "closing_debit", "closing_credit",
)  # fmt: skip
LIABILITY_LABELS = {
    "opening": "Opening",
    "sold": "Sold",
    "redeemed": "Redeemed",
    "expired": "Expired",
    "refunded": "Refunded",
    "closing": "Closing",
}
# The revenue page at several locations names this many therapists of each.
LEADING_THERAPISTS = 3
# The report tabs, declared beside the closed-periods tab they end with.
REPORTS = closing.REPORTS


# -- shared -------------------------------------------------------------------------------


def _params(request: Request[Any, Any, Any]) -> dict[str, list[str]]:
    return query_dict(list(request.query_params.multi_items()))


async def _filters(
    request: Request[Any, Any, Any], **defaults: Any
) -> tuple[Filters | None, dict[str, str]]:
    try:
        return await report_filters.parse(current_user(request), _params(request), **defaults), {}
    except ValidationFailed as exc:
        return None, exc.errors


async def _filters_or_400(request: Request[Any, Any, Any], **defaults: Any) -> Filters:
    f, errors = await _filters(request, **defaults)
    if f is None:
        raise ValidationException(detail=" ".join(errors.values()))
    return f


async def _choices(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """What the filter bar offers: the user's locations, packages, methods, statuses."""
    user = current_user(request)
    query = Location.select(Location.id, Location.name, Location.currency, Location.active)
    visible = visible_location_ids(user)
    if visible is not None:
        query = query.where(Location.id.is_in(list(visible) or [-1]))
    packages = await Package.select(Package.id, Package.name).order_by(Package.name).run()
    today = utcnow().date()
    return {
        "all_locations": await query.order_by(Location.name).run(),
        "packages": packages,
        "methods": METHODS,
        "statuses": STATUSES,
        "groupings": GROUPINGS,
        "accounts": ACCOUNTS,
        "products": PRODUCTS,
        "presets": presets(today),
    }


async def _page(
    request: Request[Any, Any, Any],
    template: str,
    report: str,
    f: Filters | None,
    errors: dict[str, str],
    **context: Any,
) -> Template:
    params = _params(request)
    form = {k: (v[-1] if v else "") for k, v in params.items()}
    if f is not None:
        form.update(
            start=f.period.start.isoformat(),
            end=f.period.end.isoformat(),
            group=f.grouping,
            status=f.status,
            method=f.method,
            package=str(f.package_id or ""),
        )
    selected = [n for n in map(parse_id, params.get("location", [])) if n is not None]
    if f is not None and report in closing.MARKED:
        context = {**(await closing.closed_context(f)), **context}
    return Template(
        template,
        context={
            "report": report,
            "reports": closing.tabs(REPORTS, current_user(request)),
            "f": f,
            "errors": errors,
            "form": form,
            "selected_locations": selected,
            "selected_accounts": params.get("account", []),
            "liability_labels": LIABILITY_LABELS,
            "now_label": utcnow().strftime("%Y-%m-%d %H:%M UTC"),
            "payment_rows": html.payment_rows,
            "line_rows": html.line_rows,
            "fee_rows": html.fee_rows,
            "revenue_rows": html.revenue_rows,
            **(await _choices(request)),
            **context,
        },
        status_code=400 if errors else 200,
    )


async def _export(
    request: Request[Any, Any, Any],
    name: str,
    f: Filters,
    header: Sequence[str],
    rows: AsyncIterator[Sequence[Any]],
    *,
    extra: dict[str, Any] | None = None,
    csv: AsyncIterator[bytes] | None = None,
) -> Stream:
    """Audit the export, then stream it in the path's format (``csv``: a ready CSV
    body, PostgreSQL's COPY)."""
    fmt = _fmt(request)
    user = current_user(request)
    async with db.transaction():
        await audit.record(
            user,
            "export",
            "report",
            name,
            after={**f.audit(), "format": fmt, **(extra or {})},
            address=client_address(request),
        )
    filename = export_filename(name, f, fmt)
    disposition = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if fmt == "csv":
        return Stream(
            csv_stream(header, rows) if csv is None else csv,
            media_type="text/csv; charset=utf-8",
            headers=disposition,
        )
    return Stream(
        xlsx_stream(name.replace("_", " ").title(), header, rows),
        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers=disposition,
    )


def export_filename(name: str, f: Filters, fmt: str) -> str:
    """``payments_alpha-clinic_2026-03-01_2026-03-31.csv``: the report, the locations
    (their slugs, or "all-locations" for one who sees every clinic and chose none) and
    the period."""
    where = "all-locations" if f.include_unlocated else "+".join(loc.slug for loc in f.locations)
    if not where or len(where) > 80:
        where = f"{len(f.locations)}-locations"
    return f"{name}_{where}_{f.period.start.isoformat()}_{f.period.end.isoformat()}.{fmt}"


def _fmt(request: Request[Any, Any, Any]) -> str:
    """The download format, from the path's extension (.csv or .xlsx)."""
    fmt = request.url.path.rsplit(".", 1)[-1]
    if fmt not in ("csv", "xlsx"):
        raise NotFoundException()
    return fmt


# -- rows of each export -------------------------------------------------------------------

# The money columns of the revenue and trial-balance exports, in column order.
REVENUE_AMOUNTS = (
    "service", "breakage", "reversals", "recognised", "collected", "refunded", "disputed",
    "net_cash",
)  # fmt: skip
TRIAL_AMOUNTS = (
    "opening_balance_debit", "opening_balance_credit", "debits", "credits", "closing_debit",
    "closing_credit",
)  # fmt: skip


def _amounts(row: Any, currency: str, *figures: str) -> tuple[Amount, ...]:
    """The named figures of ``row`` (integer minor units) as export amounts."""
    return tuple(Amount(getattr(row, figure), currency) for figure in figures)


async def _payment_rows(f: Filters) -> AsyncIterator[Sequence[Any]]:
    async for line in service.iter_payment_lines(f):
        c = line.currency
        yield (
            line.date,
            line.location,
            line.client,
            line.client_email,
            line.item,
            METHODS.get(line.payment_method, line.payment_method),
            *_amounts(line, c, "gross", "tax", "refunded", "disputed", "fee", "net"),
            c,
            line.stripe_payment_intent,
            line.sale_id,
            line.kind,
            KIND_WORDS[line.product],
        )


def _bucket(r: service.BucketRow) -> tuple[Any, ...]:
    """The first cells of a row by period: period, start, end, location, currency, payments."""
    return (r.label, r.start, r.end, r.location.name, r.currency, r.totals.payments)


def _payment_summary_rows(rows: list[tuple[str, service.BucketRow]]) -> list[Sequence[Any]]:
    return [
        (
            *_bucket(r),
            r.totals.refunds,
            *_amounts(r.totals, r.currency, "gross", "tax", "refunded", "disputed", "fee", "net"),
            kind,
        )
        for kind, r in rows
    ]


# The downloads' ``kind`` column: what a row is about (``ledger.daily.product_of``).
KIND_WORDS = {daily.PACKAGES: "package", daily.MEMBERSHIPS: "membership"}


async def by_kind(f: Filters, read: Callable[[Filters], Awaitable[list[T]]]) -> list[tuple[str, T]]:
    """A report's rows of each kind the filters take (both when none is chosen), each with
    its kind's word, a location's or a period's package row before its membership row."""
    kinds = [f.product] if f.product else list(KIND_WORDS)
    rows = [(KIND_WORDS[k], row) for k in kinds for row in await read(replace(f, product=k))]
    return sorted(rows, key=lambda pair: (_row_order(pair[1]), pair[0] == "membership"))


def _row_order(row: Any) -> tuple[Any, ...]:
    """A row's place apart from its kind: period, location, currency and (revenue by
    therapist) the therapist, named ones by name before revenue not attributed."""
    start = getattr(row, "start", None)
    place = (start or date.min, row.location.name, row.location.id, row.currency)
    if isinstance(row, service.TherapistRevenue):
        return (*place, row.therapist_id is None, row.therapist, row.therapist_id or 0)
    return place


def _liability_rows(rows: list[tuple[str, service.Liability]]) -> list[Sequence[Any]]:
    return [
        (
            r.location.name,
            r.currency,
            *_amounts(r, r.currency, *service.LIABILITY_COLUMNS),
            *(getattr(r, f"{c}_sessions") for c in service.LIABILITY_COLUMNS),
            kind,
        )
        for kind, r in rows
    ]


def _revenue_rows(rows: list[tuple[str, Any]]) -> list[Sequence[Any]]:
    return [
        (
            r.label,
            r.location.name,
            r.currency,
            *_amounts(r, r.currency, *REVENUE_AMOUNTS),
            kind,
        )
        for kind, r in rows
    ]


def _therapist_rows(rows: list[tuple[str, service.TherapistRevenue]]) -> list[Sequence[Any]]:
    return [
        (t.label, t.location.name, t.currency, t.therapist, Amount(t.service, t.currency), kind)
        for kind, t in rows
    ]


async def _summary_rows(f: Filters) -> list[service.BucketRow]:
    return (await service.payment_summary(f)).rows


async def _therapist_revenue(f: Filters) -> list[service.TherapistRevenue]:
    return (await service.revenue(f)).therapists


def _fee_rows(summary: service.PaymentSummary) -> list[Sequence[Any]]:
    return [
        (
            *_bucket(r),
            Amount(r.totals.gross, r.currency),
            Amount(r.totals.processing_fee, r.currency),
            r.totals.disputes,
            Amount(r.totals.dispute_fee, r.currency),
            Amount(r.totals.fee, r.currency),
            Amount(r.totals.gross - r.totals.fee, r.currency),
            Decimal(rate)
            if (rate := html.fee_rate(r.totals.processing_fee, r.totals.gross))
            else None,
        )
        for r in summary.rows
    ]


async def _payout_rows(f: Filters) -> AsyncIterator[Sequence[Any]]:
    async for row in payout_report.iter_export_rows(f):
        c = row.payout.currency
        yield (
            row.payout.stripe_payout_id,
            row.payout.arrival_date,
            row.payout.status,
            row.type,
            row.location,
            row.client,
            row.client_email,
            row.sale_id,
            row.payment_intent_id,
            *_amounts(row, c, "gross", "fee", "net"),
            c,
            row.balance_transaction_id,
        )


async def _journal_rows(f: Filters) -> AsyncIterator[Sequence[Any]]:
    async for line in service.iter_journal_lines(f):
        yield (
            line.entry,
            line.date,
            line.account,
            Amount(line.debit, line.currency) if line.debit else "",
            Amount(line.credit, line.currency) if line.credit else "",
            line.location,
            line.memo,
            line.reference,
        )


def _trial_rows(tb: service.TrialBalance) -> list[Sequence[Any]]:
    return [
        (
            t.account,
            t.name,
            t.type,
            t.currency,
            *_amounts(t, t.currency, *TRIAL_AMOUNTS),
        )
        for t in tb.lines
    ]


# -- dashboard ----------------------------------------------------------------------------


def _symbol(currency: str) -> str:
    """The currency's one-character symbol for a chart's axis ("" when it has none)."""
    symbol = money(0, currency).replace("0.00", "").replace("0", "").strip()
    return symbol if len(symbol) == 1 else ""


# The money charts by kind: how each is drawn, its title and what it shows per location.
_MONEY_CHARTS = {
    "recurring": (
        charts.bar_chart,
        "Recurring membership revenue by month",
        "Paid membership invoices per location for each month",
    ),
    "revenue": (
        charts.bar_chart,
        "Recognised revenue by month",
        "Service and breakage revenue per location for each month",
    ),
    "liability": (
        charts.line_chart,
        "Package liability at month end",
        "Deferred revenue (sessions sold, not yet given) per location at the end of each month",
    ),
}


def _chart_svgs(kind: str, series_list: list[service.Series]) -> list[dict[str, Any]]:
    draw, title, shows = _MONEY_CHARTS[kind]
    out = []
    for i, s in enumerate(series_list):
        months = [m.strftime("%b %y") for m in s.months]
        named = [(loc.name, s.values[loc.id]) for loc in s.locations]

        def exact(cents: int, currency: str = s.currency) -> str:
            return money(cents, currency)

        def short(cents: int, currency: str = s.currency) -> str:
            return charts.short_amount(cents, _symbol(currency))

        svg = draw(
            f"{kind}-chart-{i}",
            f"{title}, {s.currency}",
            f"{shows}; the table beside the chart lists the same figures.",
            months,
            named,
            short,
            exact,
        )
        out.append({"series": s, "svg": svg, "months": months})
    return out


def _count_charts(series_list: list[service.Series]) -> list[dict[str, Any]]:
    """Members at each month end per location, as a line chart (counts, not money)."""
    out = []
    for s in series_list:
        months = [m.strftime("%b %y") for m in s.months]
        svg = charts.line_chart(
            "members-chart",
            "Active members at month end",
            "Members per location at the end of each month; the table below lists the same "
            "figures.",
            months,
            [(loc.name, s.values[loc.id]) for loc in s.locations],
            str,
            str,
        )
        out.append({"series": s, "svg": svg, "months": months})
    return out


def _channel_charts(report: membership_report.MembershipsReport) -> list[dict[str, Any]]:
    """Joins, then each currency's recurring revenue, per month at the desk and online
    (the locations together), as grouped bars beside the table of their numbers."""
    out = []
    every = [report.channel_joins] if report.channel_joins else []
    for i, s in enumerate([*every, *report.channel_recurring]):
        months = [m.strftime("%b %y") for m in s.months]
        named = [(label, s.values[c]) for c, label in membership_report.CHANNELS.items()]
        label: Callable[[int], str] = str
        exact: Callable[[int], str] = str
        title, what = "Joins by channel", "Joins"
        if s.unit != "members":
            exact = partial(money, currency=s.unit)
            label = partial(charts.short_amount, symbol=_symbol(s.unit))
            title = f"Recurring membership revenue by channel, {s.unit}"
            what = "Paid membership invoices"
        svg = charts.bar_chart(
            f"channel-chart-{i}", title,
            f"{what} at the desk and online for each month, all locations together; "
            "the table beside the chart lists the same figures.",
            months, named, label, exact,
        )  # fmt: skip
        out.append({"series": s, "svg": svg, "months": months, "title": title})
    return out


async def _dashboard(f: Filters, today: date, year: Period) -> dict[str, Any]:
    """This month's figures and the last twelve months' charts, for the chosen locations."""
    year_filters = Filters(
        period=Period(year.start, year.end), locations=f.locations, params=f.params
    )
    month_filters = Filters(
        period=Period(today.replace(day=1), today), locations=f.locations, params=f.params
    )
    # Five independent aggregates of the daily totals: side by side on the pool,
    # the page takes as long as the slowest one.
    revenue, liability, fees, by_month, trend = await service.concurrently(
        service.revenue(month_filters, by_therapist=False),
        service.liability(month_filters),
        service.fees(month_filters),
        service.revenue_by_month(year_filters),
        service.liability_trend(year_filters),
    )
    return {
        "month": month_filters.period,
        "year": year_filters.period,
        "year_name": period_name(year_filters.period, today),
        "month_revenue": revenue.totals,
        "month_liability": service.liability_totals(liability),
        "month_fees": fees.totals,
        "revenue_charts": _chart_svgs("revenue", by_month),
        "liability_charts": _chart_svgs("liability", trend),
    }


After = Annotated[str | None, QueryParameter(name="after")]
Build = Callable[[Filters], Awaitable[dict[str, Any]]]


async def _report(
    request: Request[Any, Any, Any],
    report: str,
    build: Build,
    *,
    template: str | None = None,
    context: dict[str, Any] | None = None,
    **defaults: Any,
) -> Template:
    """One report page: its filters, then ``build``'s figures (none when the filters
    are refused: the page shows why, with status 400)."""
    f, errors = await _filters(request, **defaults)
    figures = await build(f) if f is not None else {}
    name = f"reports/{template or report}.html"
    return await _page(request, name, report, f, errors, **(context or {}), **figures)


async def _location_in_scope(
    request: Request[Any, Any, Any], f: Filters, location_id: int
) -> report_filters.Loc:
    """The location of a drill-down, even when the filters left it out (it is the user's)."""
    location = f.location(location_id)
    if location is None:
        scoped = await report_filters.parse(
            current_user(request), {**_params(request), "location": [str(location_id)]}
        )
        location = scoped.location(location_id)
        if location is None:
            raise NotFoundException("No such location.")
    return location


# -- pages --------------------------------------------------------------------------------


class ReportController(Controller):
    path = "/reports"
    guards = [readers]

    @get("/", name="reports")
    async def dashboard(self, request: Request[Any, Any, Any]) -> Template:
        today = utcnow().date()
        year = last_twelve_months(today)
        return await _report(
            request, "reports", lambda f: _dashboard(f, today, year), template="dashboard",
            default_period=year,
        )  # fmt: skip

    @get("/payments", name="report_payments")
    async def payments(self, request: Request[Any, Any, Any], after: After = None) -> Template:
        async def build(f: Filters) -> dict[str, Any]:
            summary, lines = await service.concurrently(
                service.payment_summary(f), service.payment_lines(f, after=after)
            )
            return {"summary": summary, "lines": lines}

        return await _report(request, "payments", build, default_grouping="day")

    @get(["/payments.csv", "/payments.xlsx"], name="report_payments_export")
    async def payments_export(
        self,
        request: Request[Any, Any, Any],
        by: Annotated[str, QueryParameter(name="by")] = "line",
    ) -> Stream:
        f = await _filters_or_400(request, default_grouping="day")
        if by == "period":  # the summary, by the chosen "Group by"
            rows = iterate(_payment_summary_rows(await by_kind(f, _summary_rows)))
            name = f"payments_by_{f.grouping}"
            return await _export(request, name, f, PAYMENT_SUMMARY_COLUMNS, rows)
        csv = copy_csv.payments_csv(f, PAYMENT_COLUMNS)
        return await _export(request, "payments", f, PAYMENT_COLUMNS, _payment_rows(f), csv=csv)

    @get("/liability", name="report_liability")
    async def liability(self, request: Request[Any, Any, Any]) -> Template:
        async def build(f: Filters) -> dict[str, Any]:
            rows = await service.liability(f)
            return {"rows": rows, "totals": service.liability_totals(rows)}

        return await _report(request, "liability", build)

    @get(["/liability.csv", "/liability.xlsx"], name="report_liability_export")
    async def liability_export(self, request: Request[Any, Any, Any]) -> Stream:
        f = await _filters_or_400(request)
        rows = _liability_rows(await by_kind(f, service.liability))
        return await _export(request, "liability", f, LIABILITY_CSV, iterate(rows))

    @get("/liability/{location_id:int}/sales", name="report_liability_sales")
    async def liability_sales(
        self,
        request: Request[Any, Any, Any],
        location_id: FromPath[int],
        column: Annotated[str, QueryParameter(name="column")] = "closing",
        after: After = None,
        batch: Annotated[int | None, QueryParameter(name="batch")] = None,
    ) -> Template:
        """The sales behind one figure; ``column=imported``: the sales the period's imports
        opened (``batch``: one import's), each with the import it came from."""
        user = current_user(request)
        ensure_location_access(user, location_id)

        async def build(f: Filters) -> dict[str, Any]:
            location = await _location_in_scope(request, f, location_id)
            rows = await service.liability(
                Filters(period=f.period, locations=(location,), params=f.params)
            )
            page = await service.liability_sales(f, location, column, after=after, batch=batch)
            return {"location": location, "page": page, "figure": rows[0] if rows else None}

        return await _report(
            request, "liability", build, template="liability_sales",
            context={"column": column, "location_id": location_id, "batch": batch},
        )  # fmt: skip

    @get("/revenue", name="report_revenue")
    async def revenue(self, request: Request[Any, Any, Any]) -> Template:
        async def build(f: Filters) -> dict[str, Any]:
            # Several locations: each one's leading therapists over the period, the
            # rows by period a click away (a year by month at every clinic of a chain
            # is thousands of rows; the download has them all).
            several = len(f.locations) > 1
            result = await service.revenue(f, leaders_only=several)
            leaders = service.leading_therapists(result, LEADING_THERAPISTS) if several else None
            return {
                "revenue": result,
                "therapist_leaders": leaders,
                "leading_therapists": LEADING_THERAPISTS,
            }

        return await _report(request, "revenue", build)

    @get(["/revenue.csv", "/revenue.xlsx"], name="report_revenue_export")
    async def revenue_export(
        self,
        request: Request[Any, Any, Any],
        by: Annotated[str, QueryParameter(name="by")] = "location",
    ) -> Stream:
        f = await _filters_or_400(request)
        if by == "therapist":
            rows = iterate(_therapist_rows(await by_kind(f, _therapist_revenue)))
            return await _export(request, "revenue_by_therapist", f, THERAPIST_COLUMNS, rows)

        async def revenue_rows(kind: Filters) -> list[Any]:
            return (await service.revenue(kind, by_therapist=False)).rows

        rows = iterate(_revenue_rows(await by_kind(f, revenue_rows)))
        return await _export(request, "revenue", f, REVENUE_COLUMNS, rows)

    @get("/memberships", name="report_memberships")
    async def memberships(self, request: Request[Any, Any, Any]) -> Template:
        async def build(f: Filters) -> dict[str, Any]:
            report = await membership_report.memberships(f)
            return {
                "members": report,
                "active_charts": _count_charts(report.active_series),
                "recurring_charts": _chart_svgs("recurring", report.recurring_series),
                "channel_charts": _channel_charts(report),
                "channels": membership_report.CHANNELS,
            }

        return await _report(request, "memberships", build)

    @get("/fees", name="report_fees")
    async def fees(self, request: Request[Any, Any, Any], after: After = None) -> Template:
        async def build(f: Filters) -> dict[str, Any]:
            summary, payouts = await service.concurrently(
                service.fees(f), payout_report.payout_page(f, after=after)
            )
            return {"summary": summary, "fee_rate": html.fee_rate, "payouts": payouts}

        return await _report(request, "fees", build)

    @get(["/payouts.csv", "/payouts.xlsx"], name="report_payouts_export")
    async def payouts_export(self, request: Request[Any, Any, Any]) -> Stream:
        f = await _filters_or_400(request)
        return await _export(request, "payouts", f, PAYOUT_COLUMNS, _payout_rows(f))

    @get("/payouts/{payout_id:int}", name="report_payout")
    async def payout(self, request: Request[Any, Any, Any], payout_id: FromPath[int]) -> Template:
        async def build(f: Filters) -> dict[str, Any]:
            return {
                "detail": await payout_report.payout_detail(current_user(request), f, payout_id)
            }

        return await _report(
            request, "fees", build, template="payout",
            context={"payout_id": payout_id, "type_label": payout_report.type_label},
        )  # fmt: skip

    @get(["/fees.csv", "/fees.xlsx"], name="report_fees_export")
    async def fees_export(self, request: Request[Any, Any, Any]) -> Stream:
        f = await _filters_or_400(request)
        rows = _fee_rows(await service.fees(f))
        return await _export(request, "fees", f, FEE_COLUMNS, iterate(rows))

    @get("/journal", name="report_journal")
    async def journal(self, request: Request[Any, Any, Any], after: After = None) -> Template:
        async def build(f: Filters) -> dict[str, Any]:
            rows, cursor = await service.journal_lines(f, after=after)
            return {"rows": rows, "next_cursor": cursor}

        return await _report(request, "journal", build)

    @get(["/journal.csv", "/journal.xlsx"], name="report_journal_export")
    async def journal_export(self, request: Request[Any, Any, Any]) -> Stream:
        f = await _filters_or_400(request)
        csv = copy_csv.journal_csv(f, JOURNAL_COLUMNS)
        return await _export(request, "journal", f, JOURNAL_COLUMNS, _journal_rows(f), csv=csv)

    @get("/trial-balance", name="report_trial_balance")
    async def trial_balance(self, request: Request[Any, Any, Any]) -> Template:
        async def build(f: Filters) -> dict[str, Any]:
            tb = await service.trial_balance(f)
            closing = {c: service.trial_total_closing(tb, c) for c in tb.totals}
            return {"tb": tb, "closing": closing}

        return await _report(request, "trial-balance", build, template="trial_balance")

    @get(["/trial-balance.csv", "/trial-balance.xlsx"], name="report_trial_balance_export")
    async def trial_balance_export(self, request: Request[Any, Any, Any]) -> Stream:
        f = await _filters_or_400(request)
        rows = _trial_rows(await service.trial_balance(f))
        return await _export(request, "trial_balance", f, TRIAL_COLUMNS, iterate(rows))


# -- JSON API -----------------------------------------------------------------------------


def _api_params(location: list[int] | None = None, **single: str | None) -> dict[str, list[str]]:
    """The API's typed query parameters as the report form's query dict."""
    params = {key: [value] for key, value in single.items() if value}
    if location:
        params["location"] = [str(i) for i in location]
    return params


async def _api_filters(
    request: Request[Any, Any, Any], params: dict[str, list[str]], **defaults: Any
) -> Filters:
    try:
        return await report_filters.parse(current_user(request), params, **defaults)
    except ValidationFailed as exc:
        raise ValidationException(
            detail="; ".join(f"{k}: {v}" for k, v in exc.errors.items())
        ) from exc


def _period(f: Filters) -> dict[str, Any]:
    return {
        "start": f.period.start.isoformat(),
        "end": f.period.end.isoformat(),
        "locations": [
            {"id": loc.id, "name": loc.name, "timezone": loc.timezone, "currency": loc.currency}
            for loc in f.locations
        ],
    }


Start = Annotated[
    str | None, QueryParameter(name="start", description="First local day, YYYY-MM-DD")
]
End = Annotated[
    str | None, QueryParameter(name="end", description="Last local day (inclusive), YYYY-MM-DD")
]
Locations = Annotated[
    list[int] | None,
    QueryParameter(name="location", description="Location ids; none means all you may see"),
]
Group = Annotated[str | None, QueryParameter(name="group", description="day, week or month")]
Single = Annotated[str | None, QueryParameter()]
Product = Annotated[
    str | None,
    QueryParameter(
        name="product", description="The kind filter: packages, memberships or all (the default)"
    ),
]


# The API's filters arrive as typed query parameters, declared once on these
# providers rather than on every handler: a handler names the filter it reads
# (``report_filter``, ``grouped_filter`` or ``payment_filter``) and gets it
# parsed and scoped, or the request is refused with 400 before it runs.
def provide_filter_params(
    start: Start = None, end: End = None, location: Locations = None
) -> dict[str, list[str]]:
    return _api_params(location, start=start, end=end)


async def provide_report_filter(
    request: Request[Any, Any, Any],
    filter_params: NamedDependency[dict[str, list[str]]],
    product: Product = None,
) -> Filters:
    return await _api_filters(request, {**filter_params, **_api_params(product=product)})


async def provide_grouped_filter(
    request: Request[Any, Any, Any],
    filter_params: NamedDependency[dict[str, list[str]]],
    group: Group = None,
    product: Product = None,
) -> Filters:
    single = _api_params(group=group, product=product)
    return await _api_filters(request, {**filter_params, **single})


async def provide_payment_filter(
    request: Request[Any, Any, Any],
    filter_params: NamedDependency[dict[str, list[str]]],
    group: Group = None,
    package: Single = None,
    method: Single = None,
    status: Single = None,
    product: Product = None,
) -> Filters:
    single = _api_params(
        group=group, package=package, method=method, status=status, product=product
    )
    return await _api_filters(request, {**filter_params, **single}, default_grouping="day")


ReportFilter = NamedDependency[Filters]


class ReportApiController(Controller):
    """The reports as JSON. Amounts are integer minor units with their currency."""

    path = "/api/v1/reports"
    guards = [readers]
    tags = ["reports"]
    dependencies = {
        "filter_params": Provide(provide_filter_params, sync_to_thread=False),
        "report_filter": Provide(provide_report_filter),
        "grouped_filter": Provide(provide_grouped_filter),
        "payment_filter": Provide(provide_payment_filter),
    }

    @get("/payments", name="api_report_payments")
    async def payments(self, payment_filter: ReportFilter) -> dict[str, Any]:
        """Payment, refund and dispute totals per period bucket and location, and per currency;
        of packages, memberships or both (``product``).

        ``disputed_cents``: amounts Stripe withdrew for disputes less those it put
        back for disputes won; ``fee_cents``: every Stripe fee, dispute fees
        included (``dispute_fee_cents`` is their part); ``net_cents`` = gross −
        refunded − disputed − fee, as Stripe nets its balance transactions.
        """
        f = payment_filter
        summary = await service.payment_summary(f)
        return {
            **_period(f),
            "group": f.grouping,
            "status": f.status,
            "product": f.product or report_filters.ALL,
            "rows": [_payment_row_json(r) for r in summary.rows],
            "totals": {c: _totals_json(t) for c, t in summary.totals.items()},
        }

    @get("/liability", name="api_report_liability")
    async def liability(self, report_filter: ReportFilter) -> dict[str, Any]:
        """Liability (deferred revenue) per location: opening, movements, closing; of
        packages, memberships or both (``product``)."""
        rows = await service.liability(report_filter)
        return {
            **_period(report_filter),
            "product": report_filter.product or report_filters.ALL,
            "rows": [_liability_json(r) for r in rows],
            "totals": {c: _liability_json(t) for c, t in service.liability_totals(rows).items()},
        }

    @get("/revenue", name="api_report_revenue")
    async def revenue(self, grouped_filter: ReportFilter) -> dict[str, Any]:
        """Recognised revenue beside cash collected, and service revenue per therapist; of
        packages, memberships or both (``product``)."""
        f = grouped_filter
        result = await service.revenue(f)
        return {
            **_period(f),
            "group": f.grouping,
            "product": f.product or report_filters.ALL,
            "rows": [_cents_keys(r.as_dict()) for r in result.rows],
            "therapists": [
                {
                    "period": t.label,
                    "location_id": t.location.id,
                    "currency": t.currency,
                    "therapist_id": t.therapist_id,
                    "therapist": t.therapist,
                    "service_revenue_cents": t.service,
                }
                for t in result.therapists
            ],
        }

    @get("/fees", name="api_report_fees")
    async def fees(self, grouped_filter: ReportFilter) -> dict[str, Any]:
        """Stripe fees per period bucket and location, and the payouts arriving in the period.

        A row's ``fee_cents`` is every Stripe fee: ``processing_fee_cents`` of
        its card payments plus ``dispute_fee_cents`` of its ``disputes``.

        A payout's ``amount_cents`` is Stripe's amount, or with ``partial``
        (the payout also holds other locations' money) the share of the
        locations in scope; ``lines_net_cents`` is the sum of its contents in
        scope.
        """
        f = grouped_filter
        summary = await service.fees(f)
        payouts = [_payout_json(p) async for p in payout_report.iter_payouts(f)]
        payout_totals = await payout_report.payout_totals(f)
        return {
            **_period(f),
            "group": f.grouping,
            "rows": [_fee_row_json(r) for r in summary.rows],
            "payouts": {
                "imported": True,
                "rows": payouts,
                "totals": {c: _payout_totals_json(t) for c, t in payout_totals.items()},
            },
        }

    @get("/payouts/{payout_id:int}", name="api_report_payout")
    async def payout(
        self,
        request: Request[Any, Any, Any],
        payout_id: FromPath[int],
        location: Locations = None,
    ) -> dict[str, Any]:
        """One payout and what it contained (the lines of the locations in scope)."""
        f = await _api_filters(request, _api_params(location))
        detail = await payout_report.payout_detail(current_user(request), f, payout_id)
        return {
            **_payout_json(detail.payout),
            "lines": [_payout_line_json(line) for line in detail.lines],
        }

    @get("/trial-balance", name="api_report_trial_balance")
    async def trial_balance(self, report_filter: ReportFilter) -> dict[str, Any]:
        """Opening balances, period debits and credits and closing balances per account."""
        tb = await service.trial_balance(report_filter)
        return {
            **_period(report_filter),
            "balanced": tb.balanced,
            "lines": [_cents_keys(t.as_dict()) for t in tb.lines],
        }


# Counts among the payments totals; every other figure is an amount (``*_cents``).
_COUNTS = ("payments", "refunds", "disputes", "reinstatements")

_TEXT_KEYS = {
    "account", "name", "type", "currency", "period", "start", "end", "location_id", "location",
}  # fmt: skip


def _cents_keys(row: dict[str, Any]) -> dict[str, Any]:
    return {k if k in _TEXT_KEYS else f"{k}_cents": v for k, v in row.items()}


def _totals_json(totals: service.Totals) -> dict[str, int]:
    """Money moved as JSON: counts as they are, amounts as ``*_cents``."""
    return {k if k in _COUNTS else f"{k}_cents": v for k, v in totals.as_dict().items()}


def _payment_row_json(row: service.BucketRow) -> dict[str, Any]:
    return {
        "period": row.label,
        "start": row.start.isoformat(),
        "end": row.end.isoformat(),
        "location_id": row.location.id,
        "location": row.location.name,
        "currency": row.currency,
        **_totals_json(row.totals),
    }


def _as_json(obj: Any, keys: Sequence[str], read: dict[str, str] | None = None) -> dict[str, Any]:
    """``obj``'s figures under the JSON ``keys``, in their order. A key reads the
    attribute ``read`` names for it, else its own name less ``_cents``; dates go
    out as ISO text."""
    read = read or {}
    out: dict[str, Any] = {}
    for key in keys:
        value = getattr(obj, read.get(key, key.removesuffix("_cents")))
        out[key] = value.isoformat() if isinstance(value, date) else value
    return out


_FEE_KEYS = ("payments", "gross_cents", "processing_fee_cents", "disputes", "dispute_fee_cents",
             "fee_cents")  # fmt: skip
_PAYOUT_TOTAL_KEYS = ("payouts", "paid", "paid_cents", "gross_cents", "fee_cents", "net_cents")
_PAYOUT_LINE_KEYS = (
    "type", "stripe_balance_transaction", "stripe_source", "stripe_payment_intent", "location_id",
    "location", "client", "client_email", "sale_id", "payment_id", "refund_id", "gross_cents",
    "fee_cents", "net_cents", "currency",
)  # fmt: skip
_PAYOUT_LINE_READ = {
    "stripe_balance_transaction": "balance_transaction_id",
    "stripe_source": "source_id",
    "stripe_payment_intent": "payment_intent_id",
}
_PAYOUT_KEYS = (
    "id", "stripe_payout_id", "arrival_date", "status", "currency", "amount_cents", "itemized",
    "partial", "lines", "lines_gross_cents", "lines_fee_cents", "lines_net_cents",
)  # fmt: skip
_PAYOUT_READ = {
    "amount_cents": "shown_amount",
    "lines_gross_cents": "gross",
    "lines_fee_cents": "fee",
    "lines_net_cents": "net",
}


def _fee_row_json(row: service.BucketRow) -> dict[str, Any]:
    return {
        "period": row.label,
        "location_id": row.location.id,
        "currency": row.currency,
        **_as_json(row.totals, _FEE_KEYS),
    }


def _payout_totals_json(t: payout_report.PayoutTotals) -> dict[str, int]:
    return _as_json(t, _PAYOUT_TOTAL_KEYS, {"paid_cents": "paid_amount"})


def _payout_line_json(line: payout_report.PayoutLineRow) -> dict[str, Any]:
    return _as_json(line, _PAYOUT_LINE_KEYS, _PAYOUT_LINE_READ)


def _payout_json(row: payout_report.PayoutRow) -> dict[str, Any]:
    return _as_json(row, _PAYOUT_KEYS, _PAYOUT_READ)


def _liability_json(row: service.Liability) -> dict[str, Any]:
    out: dict[str, Any] = {
        "location_id": row.location.id or None,
        "location": row.location.name,
        "currency": row.currency,
    }
    for column in service.LIABILITY_COLUMNS:
        out[f"{column}_cents"] = getattr(row, column)
    for column in service.LIABILITY_COLUMNS:
        out[f"{column}_sessions"] = getattr(row, f"{column}_sessions")
    out["balanced"] = row.balanced
    return out


ROUTES: list[Any] = [ReportController, ReportApiController, *closing.ROUTES]
