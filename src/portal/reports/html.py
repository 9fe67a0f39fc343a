"""The rows of the reports' period tables, written in Python.

A year by month at every clinic of a chain is 600 rows of ten cells with two
links each; as template loops with a call per cell they were most of the
payments, fees and revenue pages' time. The templates keep the tables' heads,
totals and everything else; these write the ``<tr>`` rows of the bodies, each
cell as the template wrote it (``money_cell``'s amounts, ``Filters.query``'s links
through ``Filters.drill``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from functools import lru_cache

from markupsafe import Markup, escape

from portal.formatting import money_cell, money_of
from portal.htmlrows import text
from portal.reports.cash import BucketRow
from portal.reports.filters import Filters
from portal.reports.listing import PaymentLine
from portal.reports.revenue import REVENUE_ACCOUNTS, RevenueRow

__all__ = ["fee_rate", "fee_rows", "line_rows", "payment_rows", "revenue_rows"]


def fee_rate(fee: int, gross: int) -> str:
    """Fees as a percentage of gross, two decimals ("2.93")."""
    if gross <= 0:
        return ""
    hundredths = (fee * 10_000 * 2 + gross) // (2 * gross)  # half-up
    return f"{hundredths // 100}.{hundredths % 100:02d}"


@lru_cache(maxsize=64)
def _money(currency: str) -> Callable[..., str]:
    """``money_cell`` of one currency as text, as a function of the amount (and of
    ``zero_blank``); a row is one Markup, not ten, and a year's table has thousands."""
    formatted = money_of(currency)
    plain = _plain(currency)

    def cell(cents: int, zero_blank: bool = False) -> str:
        if zero_blank and not cents:
            return _BLANK
        amount = formatted(cents) if plain else str(escape(formatted(cents)))
        return f'<span class="neg">{amount}</span>' if cents < 0 else amount

    return cell


@lru_cache(maxsize=64)
def _plain(currency: str) -> bool:
    """Whether the currency's amounts need no HTML escaping: only their symbols and
    separators could (the digits never do)."""
    sample = money_of(currency)(-123_456_789) + money_of(currency)(123_456_789)
    return str(escape(sample)) == sample


_BLANK = str(money_cell(0, "USD", True))


def payment_rows(rows: Sequence[BucketRow], f: Filters) -> Markup:
    """The payments report's rows by period and location."""
    out = []
    link = f.drill(group="day")
    for row in rows:
        t, m = row.totals, _money(row.currency)
        label, place = text(row.label), text(row.location.name)
        query = escape(link(row.start, row.end, row.location.id))
        out.append(
            f'<tr><td><a href="/reports/payments?{query}#lines" '
            f'title="Show the payments and refunds of {label} at {place}">{label}</a></td>'
            f'<td>{place}</td><td class="num">{t.payments}</td><td class="num">{t.refunds}</td>'
            f'<td class="num">{m(t.gross)}</td>'
            f'<td class="num">{m(t.tax)}</td>'
            f'<td class="num">{m(t.refunded, True)}</td>'
            f'<td class="num">{m(t.disputed, True)}</td>'
            f'<td class="num">{m(t.fee, True)}</td>'
            f'<td class="num"><strong>{m(t.net)}</strong></td></tr>'
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
        m = _money(line.currency)
        item = str(escape(line.item))  # text: a Markup would escape the badges added to it
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
            f'<td class="nowrap">{line.date.isoformat()}</td><td>{text(line.location)}</td>'
            f"<td>{escape(line.client)}<br>"
            f'<small class="muted">{escape(line.client_email)}</small></td>'
            f"<td>{item}</td><td>{text(method)}</td>"
            f'<td class="num">{m(line.gross, True)}</td>'
            f'<td class="num">{m(line.tax, True)}</td>'
            f'<td class="num">{m(line.refunded, True)}</td>'
            f'<td class="num">{m(line.disputed, True)}</td>'
            f'<td class="num">{m(line.fee, True)}</td>'
            f'<td class="num">{m(line.net)}</td>'
            f'<td><a href="/sales/{line.sale_id}">{line.sale_id:06d}</a>{intent}</td></tr>'
        )
    return Markup("\n".join(out))  # noqa: S704 (every value above is escaped)


def fee_rows(rows: Sequence[BucketRow], f: Filters) -> Markup:
    """The fees report's rows by period and location."""
    out = []
    link = f.drill(method="card", group="day")
    for row in rows:
        t, m = row.totals, _money(row.currency)
        query = escape(link(row.start, row.end, row.location.id))
        # The figures' cells are right-aligned by the table's class (numbers-from-3):
        # 600 rows a year at 50 locations, a class on each cell was a fifth of the page.
        out.append(
            f'<tr><td><a href="/reports/payments?{query}#lines">{text(row.label)}</a></td>'
            f"<td>{text(row.location.name)}</td><td>{t.payments}</td>"
            f"<td>{m(t.gross)}</td><td>{m(t.processing_fee)}</td><td>{t.disputes}</td>"
            f"<td>{m(t.dispute_fee)}</td><td><strong>{m(t.fee)}</strong></td>"
            f"<td>{m(t.gross - t.fee)}</td><td>{fee_rate(t.processing_fee, t.gross)} %</td></tr>"
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
    journal = f.drill(account=list(REVENUE_ACCOUNTS))
    payments = f.drill(group="day")
    for r in rows:
        m = _money(r.currency)
        closed = (
            _CLOSED
            if closed_keys and (r.location.id, r.start.replace(day=1)) in closed_keys
            else ""
        )
        out.append(
            f'<tr><td><a href="/reports/journal?{escape(journal(r.start, r.end, r.location.id))}" '
            f'title="Journal lines behind this revenue">{text(r.label)}</a></td>'
            f"<td>{text(r.location.name)}{closed}</td>"
            f'<td class="num">{m(r.service, True)}</td>'
            f'<td class="num">{m(r.breakage, True)}</td>'
            f'<td class="num">{m(r.reversals, True)}</td>'
            f'<td class="num"><strong>{m(r.recognised)}</strong></td>'
            f'<td class="num group-cash"><a href="/reports/payments?'
            f'{escape(payments(r.start, r.end, r.location.id))}" '
            f'title="Payments behind this cash">{m(r.collected)}</a></td>'
            f'<td class="num">{m(r.refunded, True)}</td>'
            f'<td class="num">{m(r.disputed, True)}</td>'
            f'<td class="num">{m(r.net_cash)}</td></tr>'
        )
    return Markup("\n".join(out))  # noqa: S704 (every value above is escaped)
