"""Session credits as bookings use them: the one place a booking takes, holds,
gives back, forfeits or redeems a credit, and recognises its revenue.

A booking holds one unused session of the client's active packages for its
service, earliest expiry first (:func:`credits_for`, :func:`hold_credit`).
Cancelling in time gives it back; a late cancel or a no-show forfeits it; a
completed session redeems it (:func:`release_credit`), and a forfeit or a
redemption moves its value from deferred revenue to service revenue
(:func:`recognise`). The credit rows belong to ``portal.sales``, which alone
writes them (``sales.move_credit``); a new kind of credit (membership
sessions, say) joins here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from portal import db
from portal.audit import service as audit
from portal.bookings import notify
from portal.bookings.states import BOOKED, CANCELLED, COMPLETED, set_status
from portal.bookings.tables import Appointment
from portal.catalog.inputs import ALL_CLINICS, SELLING_CLINIC, redeemable_text
from portal.ledger import service as ledger
from portal.sales import service as sales
from portal.sales.tables import Sale, SaleSession
from portal.timeutil import utcnow


class NoCredit(Exception):
    """The client has no unused session of an active package for the service.

    ``message`` says which service, and which services the client's packages
    are for when they hold sessions of others (a package of another service).
    """

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message or "No active package has an unused session of this service."


async def hold_credit(credit_id: int) -> None:
    """Available → held for a booking being written (inside its transaction);
    :class:`CreditGone` when a parallel booking of the same client took it first."""
    if not await sales.move_credit(credit_id, sales.AVAILABLE, sales.HELD):
        raise CreditGone()


async def attach_credit(credit_id: int, appointment_id: int) -> None:
    """Name the appointment a held credit is for (once the appointment has its id)."""
    await sales.link_appointment(credit_id, appointment_id)


def _sold_at() -> Any:
    """The name of the location that sold the credit's package (typed loosely for mypy)."""
    location: Any = SaleSession.sale.location
    return location.name


def _unused(client_id: int, at: datetime) -> Any:
    """The client's credits still free to book at ``at``: active, unfrozen, unexpired."""
    return (
        (SaleSession.state == sales.AVAILABLE)
        & (SaleSession.sale.client == client_id)
        & (SaleSession.sale.status == sales.ACTIVE)
        & (SaleSession.sale.frozen == False)  # noqa: E712
        & (SaleSession.sale.valid_until > at)
    )


def _usable_at(location_id: int) -> Any:
    """Credits of packages redeemable everywhere, or sold at this location."""
    return (SaleSession.sale.redeemable == ALL_CLINICS) | (SaleSession.sale.location == location_id)


async def credits_for(
    client_id: int, service_id: int, at: datetime, location_id: int
) -> list[dict[str, Any]]:
    """Unused session credits usable for ``service_id`` at ``at`` at the location (the
    package's rule: every clinic, or only the selling one), earliest expiry first."""
    return (
        await SaleSession.select(
            SaleSession.id,
            SaleSession.sale,
            SaleSession.position,
            SaleSession.value_cents,
            SaleSession.sale.valid_until.as_alias("valid_until"),
            SaleSession.sale.item_name.as_alias("item_name"),
            SaleSession.sale.redeemable.as_alias("redeemable"),
            _sold_at().as_alias("location_name"),
        )
        .where(
            _unused(client_id, at)
            & (SaleSession.sale.service_id == service_id)
            & _usable_at(location_id)
        )
        .order_by(SaleSession.sale.valid_until)
        .order_by(SaleSession.sale.id)
        .order_by(SaleSession.position)
        .run()
    )


async def no_credit_message(
    client_id: int, service_name: str, at: datetime, location_id: int, service_id: int
) -> str:
    """Which service lacks a credit, and what the client's remaining sessions are for
    (or where: a package redeemable only at the clinic that sold it)."""
    elsewhere = (
        await SaleSession.select(
            SaleSession.sale.item_name.as_alias("item_name"),
            _sold_at().as_alias("location_name"),
        )
        .where(
            _unused(client_id, at)
            & (SaleSession.sale.service_id == service_id)
            & (SaleSession.sale.redeemable == SELLING_CLINIC)
            & (SaleSession.sale.location != location_id)
        )
        .first()
        .run()
    )
    if elsewhere is not None:
        return f"Your package “{elsewhere['item_name']}” cannot be used here. " + redeemable_text(
            SELLING_CLINIC, str(elsewhere["location_name"])
        )
    others = (
        await SaleSession.select(SaleSession.sale.service_name.as_alias("service_name"))
        .where(_unused(client_id, at))
        .run()
    )
    message = f"No active package has an unused session of {service_name}"
    names = sorted({str(r["service_name"]) for r in others if r["service_name"]})
    if names:
        message += f" (the sessions left are for {', '.join(names)})"
    return message + "."


class CreditGone(Exception):
    """The credit chosen was held by a parallel booking a moment ago."""


async def release_credit(credit_id: int | None, new_state: str) -> dict[str, Any] | None:
    """Held → ``new_state`` (available: returned; forfeited; redeemed). Returns the credit."""
    if credit_id is None:
        return None
    if new_state == sales.AVAILABLE:
        return await sales.move_credit(credit_id, sales.HELD, new_state, appointment_id=None)
    return await sales.move_credit(credit_id, sales.HELD, new_state)


def under_dispute(sale: dict[str, Any] | None) -> bool:
    """The package's payment is disputed: no revenue is recognised on it, its sessions are
    not given, and a forfeited one goes back (the frozen package cannot be booked)."""
    return sale is not None and bool(sale["frozen"])


async def forfeit_or_return(
    appointment: dict[str, Any], forfeit: bool, memo: str, *, at: datetime | None = None
) -> None:
    """A session not given (cancelled, a no-show): its credit back, or forfeited and its
    value recognised as revenue (``memo`` names why on the journal entry)."""
    credit = await release_credit(
        appointment["sale_session"], sales.FORFEITED if forfeit else sales.AVAILABLE
    )
    if forfeit and credit is not None:
        await recognise(appointment, credit, "session_forfeited", memo, at=at)


async def redeem(appointment: dict[str, Any]) -> None:
    """The session was given: its credit is redeemed and its value recognised."""
    credit = await release_credit(appointment["sale_session"], sales.REDEEMED)
    if credit is not None:
        await recognise(appointment, credit, "session_completed", "Session given")


async def recognise(
    appointment: dict[str, Any],
    credit: dict[str, Any],
    kind: str,
    memo: str,
    *,
    at: datetime | None = None,
) -> None:
    """Deferred revenue at the selling clinic → service revenue where the session was due.

    Dated when the session was given, whenever that is recorded: the start of
    the appointment for a completion or a no-show; a late cancel passes the
    cancellation's time as ``at``. The credit's ``changed_at`` takes the entry's date,
    so the liability report's sessions move with its money.
    """
    sale = (
        await Sale.select(Sale.location, Sale.currency, Sale.channel)
        .where(Sale.id == credit["sale"])
        .first()
        .run()
    )
    assert sale is not None
    at = at or appointment["start_at"]
    value = int(credit["value_cents"])
    entry_id = await ledger.post(
        event_key=f"appointment:{appointment['id']}:{kind}",
        kind=kind,
        currency=sale["currency"],
        location_id=int(appointment["location"]),
        occurred_at=at,
        reference=f"appointment:{appointment['id']}",
        memo=memo,
        sale_id=int(credit["sale"]),
        channel=str(sale["channel"]),
        therapist_id=int(appointment["therapist"]),
        lines=ledger.recognition_lines(
            value, sold_at=int(sale["location"]), given_at=int(appointment["location"])
        ),
    )
    posted = await ledger.posted_at(entry_id) if entry_id is not None else None
    if posted is not None and "id" in credit:
        await sales.date_credit(int(credit["id"]), posted)


@dataclass(frozen=True)
class Released:
    appointment_ids: list[int]
    credits: list[dict[str, Any]]


async def release_held_credits(sale_id: int, reason: str) -> Released:
    """A sale's money was reversed (a lost chargeback): its booked sessions go.

    Inside the caller's locked transaction on the sale: every appointment
    still booked with one of its credits is cancelled with ``reason`` and the
    credit revoked, so it can never be completed. The caller tells the
    clients (:func:`notify_released`) once the transaction has committed.
    """
    now = utcnow()
    held = (
        await SaleSession.select(SaleSession.id, SaleSession.appointment_id)
        .where((SaleSession.sale == sale_id) & (SaleSession.state == sales.HELD))
        .run()
    )
    ids: list[int] = []
    credits: list[dict[str, Any]] = []
    for row in held:
        appointment_id = row["appointment_id"]
        if appointment_id is not None and await set_status(
            int(appointment_id), CANCELLED, cancelled_at=now, cancel_reason=reason[:1000]
        ):
            ids.append(int(appointment_id))
            await audit.record(
                None, "release_chargeback", "appointment", int(appointment_id),
                before={"status": BOOKED},
                after={"status": CANCELLED, "reason": "payment reversed", "credit": "revoked"},
            )  # fmt: skip
        credit = await sales.move_credit(int(row["id"]), sales.HELD, sales.REVOKED)
        if credit is not None:
            credits.append(credit)
    return Released(appointment_ids=ids, credits=credits)


async def notify_released(appointment_ids: list[int], reason: str) -> None:
    for appointment_id in appointment_ids:
        await notify.booking_cancelled(
            appointment_id, credit_returned=False, late=False, reason=reason
        )


@asynccontextmanager
async def sale_of_credit_locked(credit_id: int | None) -> AsyncIterator[dict[str, Any] | None]:
    """A write transaction holding the lock of the sale whose credit the appointment uses."""
    sale_id = await sales.credit_sale_id(credit_id)
    if sale_id is None:
        async with db.transaction():
            yield None
        return
    async with sales.locked(sale_id) as sale:
        yield sale


# The sessions of a package that count when numbering them: given, or still to come.
NUMBERED = (COMPLETED, BOOKED)


async def positions_given(appointment_ids: list[int]) -> dict[int, int]:
    """Which session of its package each appointment is, in the order given.

    Credits are taken in booking order, so a credit's own position says when
    the session was booked, not when it was given: a client who booked the
    third week first would read "Session 1" on the third treatment. The
    number is the appointment's place by start among its package's given and
    upcoming sessions (a cancelled or missed one takes the place it would have).
    """
    if not appointment_ids:
        return {}
    sale = Appointment.sale_session.sale
    wanted = (
        await Appointment.select(sale.as_alias("sale"))
        .where(Appointment.id.is_in(sorted(set(appointment_ids))))
        .where(Appointment.sale_session.is_not_null())
        .run()
    )
    sale_ids = sorted({int(r["sale"]) for r in wanted if r["sale"] is not None})
    if not sale_ids:
        return {}
    rows = (
        await Appointment.select(Appointment.id, Appointment.status, sale.as_alias("sale"))
        .where(sale.is_in(sale_ids))
        .order_by(Appointment.start_at)
        .order_by(Appointment.id)
        .run()
    )
    given: dict[int, int] = {}
    positions: dict[int, int] = {}
    for row in rows:
        count = given.get(row["sale"], 0)
        if row["status"] in NUMBERED:
            count = given[row["sale"]] = count + 1
            positions[row["id"]] = count
        else:
            positions[row["id"]] = count + 1
    return positions


async def credit_label(credit_id: int | None, appointment_id: int) -> str | None:
    """Which session of which package a booking is ("Session 3 of 10 · Back care 10")."""
    if not credit_id:
        return None
    row = (
        await SaleSession.select(
            SaleSession.sale.sessions_total.as_alias("total"),
            SaleSession.sale.item_name.as_alias("name"),
        )
        .where(SaleSession.id == credit_id)
        .first()
        .run()
    )
    if row is None:
        return None
    position = (await positions_given([appointment_id])).get(appointment_id)
    return f"Session {position} of {row['total']} · {row['name']}"


async def credit_valid_until(credit_id: int | None) -> datetime | None:
    if credit_id is None:
        return None
    row = (
        await SaleSession.select(SaleSession.sale.valid_until.as_alias("valid_until"))
        .where(SaleSession.id == credit_id)
        .first()
        .run()
    )
    return row["valid_until"] if row else None
