"""The rows of the reports' period tables, written in Python.

A year by month at every clinic of a chain is 600 rows of ten cells with two
links each; as template loops with a call per cell they were most of the
payments, fees and revenue pages' time. The templates keep the tables' heads,
totals and everything else; these write the ``<tr>`` rows of the bodies, each
cell as the template wrote it (``money_cell`` for amounts, ``Filters.query`` for
the drill-down links).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from markupsafe import Markup, escape

from portal.reports.cash import BucketRow
from portal.reports.filters import Filters
from portal.reports.listing import PaymentLine
from portal.reports.revenue import REVENUE_ACCOUNTS, RevenueRow
from portal.web.templating import money_cell

__all__ = ["fee_rate", "fee_rows", "line_rows", "payment_rows", "revenue_rows"]


def fee_rate(fee: int, gross: int) -> str:
    """Fees as a percentage of gross, two decimals ("2.93")."""
    if gross <= 0:
        return ""
    hundredths = (fee * 10_000 * 2 + gross) // (2 * gross)  # half-up
    return f"{hundredths // 100}.{hundredths % 100:02d}"


def _link(f: Filters, row: BucketRow | RevenueRow, **extra: object) -> str:
    """The query of a row's drill-down: the filters for its bucket and location."""
    return escape(
        f.query(
            start=row.start.isoformat(), end=row.end.isoformat(), location=row.location.id, **extra
        )
    )


def payment_rows(rows: Sequence[BucketRow], f: Filters) -> Markup:
    """The payments report's rows by period and location."""
    out = []
    for row in rows:
        t, c = row.totals, row.currency
        label, place = escape(row.label), escape(row.location.name)
        out.append(
            f'<tr><td><a href="/reports/payments?{_link(f, row, group="day")}#lines" '
            f'title="Show the payments and refunds of {label} at {place}">{label}</a></td>'
            f'<td>{place}</td><td class="num">{t.payments}</td><td class="num">{t.refunds}</td>'
            f'<td class="num">{money_cell(t.gross, c)}</td>'
            f'<td class="num">{money_cell(t.tax, c)}</td>'
            f'<td class="num">{money_cell(t.refunded, c, True)}</td>'
            f'<td class="num">{money_cell(t.disputed, c, True)}</td>'
            f'<td class="num">{money_cell(t.fee, c, True)}</td>'
            f'<td class="num"><strong>{money_cell(t.net, c)}</strong></td></tr>'
        )
    return Markup("\n".join(out))  # noqa: S704 (every value above is escaped)


_KIND_BADGES = {
    "refund": ' <span class="badge badge-refund">Refund</span>',
    "dispute_withdrawn": ' <span class="badge badge-refund">Dispute withdrawn</span>',
    "dispute_reinstated": ' <span class="badge">Dispute reinstated</span>',
}


def line_rows(lines: Sequence[PaymentLine], methods: Mapping[str, str]) -> Markup:
    """The payments report's payment, refund and dispute lines."""
    out = []
    for line in lines:
        c = line.currency
        item = escape(line.item)
        if line.product == "memberships":
            item += ' <span class="badge">Membership</span>'
        item += _KIND_BADGES.get(line.kind, "")
        if line.status != "succeeded" and line.kind in ("payment", "refund"):
            item += f' <span class="badge badge-muted">{escape(line.status)}</span>'
        intent = (
            f'<br><small class="muted mono">{escape(line.stripe_payment_intent)}</small>'
            if line.stripe_payment_intent
            else ""
        )
        method = methods.get(line.payment_method, line.payment_method)
        out.append(
            f'<tr class="{"row-refund" if line.kind != "payment" else ""}">'
            f'<td class="nowrap">{line.date.isoformat()}</td><td>{escape(line.location)}</td>'
            f"<td>{escape(line.client)}<br>"
            f'<small class="muted">{escape(line.client_email)}</small></td>'
            f"<td>{item}</td><td>{escape(method)}</td>"
            f'<td class="num">{money_cell(line.gross, c, True)}</td>'
            f'<td class="num">{money_cell(line.tax, c, True)}</td>'
            f'<td class="num">{money_cell(line.refunded, c, True)}</td>'
            f'<td class="num">{money_cell(line.disputed, c, True)}</td>'
            f'<td class="num">{money_cell(line.fee, c, True)}</td>'
            f'<td class="num">{money_cell(line.net, c)}</td>'
            f'<td><a href="/sales/{line.sale_id}">{line.sale_id:06d}</a>{intent}</td></tr>'
        )
    return Markup("\n".join(out))  # noqa: S704 (every value above is escaped)


def fee_rows(rows: Sequence[BucketRow], f: Filters) -> Markup:
    """The fees report's rows by period and location."""
    out = []
    for row in rows:
        t, c = row.totals, row.currency
        out.append(
            f'<tr><td><a href="/reports/payments?{_link(f, row, method="card", group="day")}'
            f'#lines" title="The card payments behind these fees">{escape(row.label)}</a></td>'
            f'<td>{escape(row.location.name)}</td><td class="num">{t.payments}</td>'
            f'<td class="num">{money_cell(t.gross, c)}</td>'
            f'<td class="num">{money_cell(t.processing_fee, c)}</td>'
            f'<td class="num">{t.disputes}</td>'
            f'<td class="num">{money_cell(t.dispute_fee, c)}</td>'
            f'<td class="num"><strong>{money_cell(t.fee, c)}</strong></td>'
            f'<td class="num">{money_cell(t.gross - t.fee, c)}</td>'
            f'<td class="num">{fee_rate(t.processing_fee, t.gross)} %</td></tr>'
        )
    return Markup("\n".join(out))  # noqa: S704 (every value above is escaped)


_CLOSED = (
    ' <span class="badge badge-ok" title="This month is closed for this location">Closed</span>'
)


def revenue_rows(
    rows: Sequence[RevenueRow], f: Filters, closed_keys: Collection[object] = ()
) -> Markup:
    """The revenue report's rows by period and location; a closed month is marked."""
    out = []
    accounts = list(REVENUE_ACCOUNTS)
    for r in rows:
        c = r.currency
        closed = (
            _CLOSED
            if closed_keys and (r.location.id, r.start.replace(day=1)) in closed_keys
            else ""
        )
        out.append(
            f'<tr><td><a href="/reports/journal?{_link(f, r, account=accounts)}" '
            f'title="Journal lines behind this revenue">{escape(r.label)}</a></td>'
            f"<td>{escape(r.location.name)}{closed}</td>"
            f'<td class="num">{money_cell(r.service, c, True)}</td>'
            f'<td class="num">{money_cell(r.breakage, c, True)}</td>'
            f'<td class="num">{money_cell(r.reversals, c, True)}</td>'
            f'<td class="num"><strong>{money_cell(r.recognised, c)}</strong></td>'
            f'<td class="num group-cash"><a href="/reports/payments?{_link(f, r, group="day")}" '
            f'title="Payments behind this cash">{money_cell(r.collected, c)}</a></td>'
            f'<td class="num">{money_cell(r.refunded, c, True)}</td>'
            f'<td class="num">{money_cell(r.disputed, c, True)}</td>'
            f'<td class="num">{money_cell(r.net_cash, c)}</td></tr>'
        )
    return Markup("\n".join(out))  # noqa: S704 (every value above is escaped)
