"""Payments, refunds and disputes into the daily totals (``ledger.daily``, ``cash_day``).

A payment, refund or dispute adds to the totals what the payments report would
count for it under its status filter: a succeeded payment on its
``succeeded_at`` day (gross, the tax it contains, its fee), a succeeded refund
on its ``completed_at`` day (amount, the tax it gave back), a dispute's
withdrawal (amount, dispute fee) and its reinstatement each on their own day;
a pending or failed (cancelled) payment or refund under that status on the day
it was created (a refund with its share of the sale's tax); days in the sale
location's zone. Every write that can change one of those figures runs inside
:func:`tracked`, which reads the row's share before and after and adds the
difference in the same transaction, so whichever column moved (status, time,
fee, tax) the totals follow. New rows go through :func:`added`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from portal import db
from portal.ledger import daily
from portal.payments.tables import Payment

SUMS = {name: i for i, name in enumerate(daily.CASH_SUMS)}
Share = dict[daily.CashKey, list[int]]

_PAYMENT = (
    "SELECT p.status AS status, p.succeeded_at AS at, p.created_at AS created_at, "
    "p.amount_cents AS amount, "
    "p.fee_cents AS fee, p.currency AS currency, p.method AS method, p.provider AS provider, "
    "s.location AS location, s.package_id AS package, s.total_cents AS sale_total, "
    "s.tax_cents AS sale_tax, l.timezone AS tz FROM payment p JOIN sale s ON s.id = p.sale "
    "JOIN location l ON l.id = s.location WHERE p.id = {}"
)
_REFUND = (
    "SELECT r.status AS status, r.completed_at AS at, r.created_at AS created_at, "
    "r.amount_cents AS amount, r.tax_cents AS tax, r.currency AS currency, "
    "p.method AS method, p.provider AS provider, s.location AS location, "
    "s.package_id AS package, s.total_cents AS sale_total, s.tax_cents AS sale_tax, "
    "l.timezone AS tz FROM refund r "
    "JOIN payment p ON p.id = r.payment JOIN sale s ON s.id = r.sale "
    "JOIN location l ON l.id = s.location WHERE r.id = {}"
)
_DISPUTE = (
    "SELECT d.withdrawn_at AS withdrawn_at, d.reinstated_at AS reinstated_at, "
    "d.amount_cents AS amount, d.fee_cents AS fee, d.currency AS currency, p.method AS method, "
    "p.provider AS provider, s.location AS location, s.package_id AS package, l.timezone AS tz "
    "FROM dispute d JOIN payment p ON p.id = d.payment JOIN sale s ON s.id = d.sale "
    "JOIN location l ON l.id = s.location WHERE d.id = {}"
)


def payment_tax(amount: int, sale_total: int, sale_tax: int) -> int:
    """The tax a payment contains (the payments report's rule): the sale's tax when
    it pays the whole sale, otherwise its share rounded half-up."""
    if sale_total == 0:
        return 0
    if amount == sale_total:
        return sale_tax
    return (2 * amount * sale_tax + sale_total) // (2 * sale_total)


def _at(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# Where a row that has not (or not yet) moved money is filed: by its status.
_UNSETTLED = {
    "pending": daily.CASH_PENDING,
    "failed": daily.CASH_FAILED,
    "cancelled": daily.CASH_FAILED,
}


def _add(
    share: Share,
    row: dict[str, Any],
    at: datetime,
    status: str = daily.CASH_SUCCEEDED,
    **sums: int,
) -> None:
    key = (
        int(row["location"]),
        daily.day_number(str(row["tz"]), at),
        str(row["currency"]),
        str(row["method"]),
        str(row["provider"]),
        int(row["package"]),
        status,
    )
    kept = share.setdefault(key, [0] * len(SUMS))
    for name, value in sums.items():
        kept[SUMS[name]] += value


async def _rows(query: str, row_id: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = await Payment.raw(query, row_id).run()
    return rows


def _dating(row: dict[str, Any]) -> tuple[datetime, str] | None:
    """The moment and status a payment or refund row is filed under, if any."""
    if row["status"] == "succeeded":
        at = _at(row["at"])
        return None if at is None else (at, daily.CASH_SUCCEEDED)
    status = _UNSETTLED.get(str(row["status"]))
    created = _at(row["created_at"])
    return None if status is None or created is None else (created, status)


async def share(
    *, payment: int | None = None, refund: int | None = None, dispute: int | None = None
) -> Share:
    """What these rows add to the totals as they are now."""
    out: Share = {}
    if payment is not None:
        for row in await _rows(_PAYMENT, payment):
            dated = _dating(row)
            if dated is not None:
                amount = int(row["amount"])
                tax = payment_tax(amount, int(row["sale_total"]), int(row["sale_tax"]))
                _add(out, row, *dated, payments=1, gross=amount, tax=tax,
                     fee=int(row["fee"] or 0))  # fmt: skip
    if refund is not None:
        for row in await _rows(_REFUND, refund):
            dated = _dating(row)
            if dated is not None:
                amount = int(row["amount"])
                if dated[1] == daily.CASH_SUCCEEDED:
                    tax = int(row["tax"] or 0)
                else:  # not given back yet: its share of the sale's tax
                    tax = payment_tax(amount, int(row["sale_total"]), int(row["sale_tax"]))
                _add(out, row, *dated, refunds=1, refunded=amount, refund_tax=tax)
    if dispute is not None:
        for row in await _rows(_DISPUTE, dispute):
            withdrawn, reinstated = _at(row["withdrawn_at"]), _at(row["reinstated_at"])
            if withdrawn is not None:
                _add(out, row, withdrawn, disputes=1, disputed=int(row["amount"]),
                     dispute_fee=int(row["fee"] or 0))  # fmt: skip
            if reinstated is not None:
                _add(out, row, reinstated, reinstatements=1, reinstated=int(row["amount"]))
    return out


@asynccontextmanager
async def tracked(
    *, payment: int | None = None, refund: int | None = None, dispute: int | None = None
) -> AsyncIterator[None]:
    """Around a write to these rows: the totals move by what their share changed."""
    async with db.transaction():
        before = await share(payment=payment, refund=refund, dispute=dispute)
        yield
        after = await share(payment=payment, refund=refund, dispute=dispute)
        changes: Share = defaultdict(lambda: [0] * len(SUMS))
        for key, sums in after.items():
            changes[key] = list(sums)
        for key, sums in before.items():
            kept = changes[key]
            for i, value in enumerate(sums):
                kept[i] -= value
        await daily.cash({k: v for k, v in changes.items() if any(v)})


async def added(
    *, payment: int | None = None, refund: int | None = None, dispute: int | None = None
) -> None:
    """New rows (a pending checkout payment, a front-desk payment recorded as
    succeeded, a refund asked for)."""
    await daily.cash(await share(payment=payment, refund=refund, dispute=dispute))
