"""The accountant reports: SQL aggregates over payments, sales and the journal.

How each number is computed is written in docs/architecture.md ("Reports").
Every query is one aggregate (or one keyset page) in the database; no report
loads all rows into Python. Days are each location's local days: the period
is converted to UTC once per location, cut at DST changes into
constant-offset segments (``periods.offset_segments``), and rows are bucketed
by their epoch plus the segment's offset.

The reports live beside this module, one per concern, and every name callers
use is re-exported here. They build on each other one way: ``segments`` (the
zones' segments and bounds, the shared SQL fragments, ``LINE_LOCATION``) at
the bottom, then ``cash`` (money moved per day: the payments summary and
fees), ``listing`` (the payments report row by row), ``liability``,
``revenue`` (on ``cash``), ``journal`` (journal lines and trial balance) and
``series`` (the dashboard's, on ``revenue``).
"""

from __future__ import annotations

from portal.db import concurrently as concurrently  # for the controllers
from portal.reports.cash import (
    DISPUTE_FROM,
    DISPUTE_KINDS,
    DISPUTE_STATUSES,
    DISPUTE_TIME,
    KIND_ORDER,
    LINE_KINDS,
    PAYMENT_TAX,
    REFUND_TAX,
    REINSTATED,
    WITHDRAWN,
    BucketRow,
    PaymentSummary,
    Totals,
    _bucketed,
    _payment_days,
    _payment_extra,
    _status_clauses,
    _time_columns,
    fees,
    payment_summary,
)
from portal.reports.journal import (
    JournalRow,
    TrialBalance,
    TrialLine,
    _journal_scope,
    iter_journal_lines,
    journal_lines,
    journal_query,
    trial_balance,
    trial_total_closing,
)
from portal.reports.liability import (
    EXPIRED_KINDS,
    EXPIRED_STATES,
    LIABILITY_COLUMNS,
    REDEEMED_STATES,
    REFUNDED_KINDS,
    REFUNDED_STATES,
    SOLD_KINDS,
    TERMINAL_STATES,
    DrillPage,
    DrillRow,
    Liability,
    liability,
    liability_sales,
    liability_totals,
)
from portal.reports.listing import (
    LinePage,
    PaymentLine,
    dispute_line_columns,
    iter_payment_lines,
    payment_lines,
)
from portal.reports.revenue import (
    REVENUE_ACCOUNTS,
    Revenue,
    RevenueRow,
    TherapistLeaders,
    TherapistRevenue,
    leading_therapists,
    revenue,
)
from portal.reports.segments import (
    LINE_LOCATION,
    UNLOCATED,
    LocalDays,
    _line_zones,
    _segments,
)
from portal.reports.series import (
    Series,
    liability_trend,
    month_end,
    revenue_by_month,
)

__all__ = [
    "DISPUTE_FROM",
    "DISPUTE_KINDS",
    "DISPUTE_STATUSES",
    "DISPUTE_TIME",
    "EXPIRED_KINDS",
    "EXPIRED_STATES",
    "KIND_ORDER",
    "LIABILITY_COLUMNS",
    "LINE_KINDS",
    "LINE_LOCATION",
    "PAYMENT_TAX",
    "REDEEMED_STATES",
    "REFUNDED_KINDS",
    "REFUNDED_STATES",
    "REFUND_TAX",
    "REINSTATED",
    "REVENUE_ACCOUNTS",
    "SOLD_KINDS",
    "TERMINAL_STATES",
    "UNLOCATED",
    "WITHDRAWN",
    "BucketRow",
    "DrillPage",
    "DrillRow",
    "JournalRow",
    "Liability",
    "LinePage",
    "LocalDays",
    "PaymentLine",
    "PaymentSummary",
    "Revenue",
    "RevenueRow",
    "Series",
    "TherapistLeaders",
    "TherapistRevenue",
    "Totals",
    "TrialBalance",
    "TrialLine",
    "_bucketed",
    "_journal_scope",
    "_line_zones",
    "_payment_days",
    "_payment_extra",
    "_segments",
    "_status_clauses",
    "_time_columns",
    "concurrently",
    "dispute_line_columns",
    "fees",
    "iter_journal_lines",
    "iter_payment_lines",
    "journal_lines",
    "journal_query",
    "leading_therapists",
    "liability",
    "liability_sales",
    "liability_totals",
    "liability_trend",
    "month_end",
    "payment_lines",
    "payment_summary",
    "revenue",
    "revenue_by_month",
    "trial_balance",
    "trial_total_closing",
]
