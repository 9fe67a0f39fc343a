"""A time held while the client pays for it: booked when the payment arrives.

A client without a session of a service books and pays in one flow
(``payments.booked``): the time is *held* first (an appointment ``held``,
busy for the database's no-double-booking rules until ``hold_until``), the
pending sale is linked to it, and Stripe's payment of that sale books it with
the sale's new credit, inside the sale's lock and the same transaction as the
activation (:func:`confirm_hold`), so a payment recorded twice books once. An
abandoned order lets the time go (:func:`release_hold`); a hold past its end
is let go by the next booking of that time (``states.release_lapsed``). A
payment that finds its hold gone leaves the credit in the client's account,
and the purchase page asks them to choose another time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from portal.audit import service as audit
from portal.bookings.credits import attach_credit, hold_credit
from portal.bookings.states import BOOKED, CANCELLED, HELD, leave_held
from portal.bookings.tables import Appointment
from portal.errors import Conflict
from portal.sales import service as sales
from portal.sales.tables import SaleSession
from portal.timeutil import utcnow

ORDER_CLOSED = "The order was not paid; the time was let go."
PAID_TOO_LATE = "The payment arrived after the time had passed."


async def link_hold(appointment_id: int, sale_id: int) -> None:
    """Name the pending sale a fresh hold waits for (inside the sale's transaction)."""
    linked = (
        await Appointment.update({Appointment.hold_sale: sale_id})
        .where(
            (Appointment.id == appointment_id)
            & (Appointment.status == HELD)
            & Appointment.hold_sale.is_null()
        )
        .returning(Appointment.id)
        .run()
    )
    if not linked:
        raise Conflict("The time is no longer held; choose it again.")


async def discard_hold(appointment_id: int) -> None:
    """Remove a hold no sale was linked to (its order was refused or already made)."""
    await (
        Appointment.delete()
        .where(
            (Appointment.id == appointment_id)
            & (Appointment.status == HELD)
            & Appointment.hold_sale.is_null()
        )
        .run()
    )


async def release_hold(sale_id: int, reason: str = ORDER_CLOSED) -> list[int]:
    """Let go of the time held for ``sale_id`` (its order closed unpaid)."""
    now = utcnow()
    return await leave_held(
        Appointment.hold_sale == sale_id, CANCELLED, cancelled_at=now, cancel_reason=reason
    )


async def confirm_hold(sale_id: int, *, now: datetime | None = None) -> int | None:
    """Book the time held for a sale just activated, with its first credit.

    Called inside the sale's lock, in the activation's transaction: the hold
    moves held → booked by compare-and-set, so it is booked once. None when
    there is no hold (any more): the credit stays free to book.
    """
    now = now or utcnow()
    hold = (
        await Appointment.select()
        .where((Appointment.hold_sale == sale_id) & (Appointment.status == HELD))
        .first()
        .run()
    )
    if hold is None:
        return None
    if hold["start_at"] <= now:
        await release_hold(sale_id, PAID_TOO_LATE)
        return None
    credit = (
        await SaleSession.select(SaleSession.id)
        .where((SaleSession.sale == sale_id) & (SaleSession.state == sales.AVAILABLE))
        .order_by(SaleSession.position)
        .first()
        .run()
    )
    if credit is None:
        return None
    credit_id, appointment_id = int(credit["id"]), int(hold["id"])
    if not await leave_held(Appointment.id == appointment_id, BOOKED, sale_session=credit_id):
        return None
    await hold_credit(credit_id)
    await attach_credit(credit_id, appointment_id)
    await audit.record(
        None,
        "book",
        "appointment",
        appointment_id,
        after={"client_id": hold["client"], "therapist_id": hold["therapist"],
               "room_id": hold["room"], "location_id": hold["location"],
               "service_id": hold["service"], "start_at": hold["start_at"],
               "credit_id": credit_id, "sale_id": sale_id},
    )  # fmt: skip
    return appointment_id


async def hold_of_sale(sale_id: int) -> dict[str, Any] | None:
    """The time chosen with a purchase (held, booked or let go), with its therapist's
    name and the clinic's zone; None for a purchase made without one."""
    return (
        await Appointment.select(
            *Appointment.all_columns(),
            Appointment.therapist.name.as_alias("therapist_name"),
            Appointment.location.timezone.as_alias("timezone"),
            Appointment.service.name.as_alias("service_name"),
        )
        .where(Appointment.hold_sale == sale_id)
        .order_by(Appointment.id)
        .first()
        .run()
    )


async def lapsed_hold_sales(now: datetime) -> list[int]:
    """Pending sales whose held time has lapsed (their order may close now)."""
    rows = (
        await Appointment.select(Appointment.hold_sale)
        .where(
            (Appointment.status == HELD)
            & Appointment.hold_sale.is_not_null()
            & (Appointment.hold_until <= now)
        )
        .run()
    )
    return sorted({int(row["hold_sale"]) for row in rows})
