"""Stripe's webhook events, dispatched to the module that handles each.

Payments, refunds and disputes are handled in :mod:`portal.payments.service`,
payouts in :mod:`portal.payments.payouts` (which builds on the service); this
module sits above both, so neither imports the other to reach it. Contexts
built on payments (memberships) declare theirs in ``<context>/stripe_events.py``,
found through :func:`portal.contexts.stripe_handlers`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from portal import contexts, db
from portal.payments import payouts
from portal.payments.gateway import StripeGateway
from portal.payments.service import HANDLERS as PAYMENT_HANDLERS
from portal.payments.service import Handler
from portal.payments.tables import StripeEvent
from portal.timeutil import utcnow

PAYOUT_EVENTS = (
    "payout.created",
    "payout.updated",
    "payout.paid",
    "payout.failed",
    "payout.canceled",
)

HANDLERS: dict[str, Handler] = {
    **PAYMENT_HANDLERS,
    **dict.fromkeys(PAYOUT_EVENTS, payouts.on_payout_event),
}


async def handle_event(gateway: StripeGateway, event: dict[str, Any]) -> str:
    """Process one verified webhook event; returns what happened.

    The event id is stored first under a unique constraint. A repeat of an
    event already processed is a no-op. An event stored but not processed
    (processing failed: Stripe unreachable, a database error) is processed
    again when Stripe retries it; every handler is idempotent, so a retry
    racing a slow first delivery still changes the state once.
    """
    event_id = str(event.get("id", ""))
    event_type = str(event.get("type", ""))
    if not event_id:
        return "ignored"
    created = event.get("created")
    inserted = (
        await StripeEvent.insert(
            StripeEvent(
                event_id=event_id,
                type=event_type,
                stripe_created=datetime.fromtimestamp(int(created), UTC) if created else None,
                received_at=utcnow(),
                processed_at=None,
                payload=json.dumps(event)[:100_000],
            )
        )
        .on_conflict(target=StripeEvent.event_id, action="DO NOTHING")
        .returning(StripeEvent.id)
        .run()
    )
    if not inserted:
        processed = await db.value_where(StripeEvent.processed_at, StripeEvent.event_id == event_id)
        if processed is not None:
            return "duplicate"
    handlers = [h for h in (HANDLERS.get(event_type), *contexts.stripe_handlers(event_type)) if h]
    obj = (event.get("data") or {}).get("object") or {}
    for handler in handlers:
        await handler(gateway, obj)
    await (
        StripeEvent.update({StripeEvent.processed_at: utcnow()})
        .where((StripeEvent.event_id == event_id) & StripeEvent.processed_at.is_null())
        .run()
    )
    return "processed" if handlers else "unhandled"
