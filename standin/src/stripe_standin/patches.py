"""Fixes applied to localstripe so it behaves like Stripe where the portal cares.

localstripe (a stateful fake of the Stripe API) covers PaymentIntents,
Charges, Refunds, BalanceTransactions and Events, which is most of what the
portal needs, but it differs from Stripe in ways that would let the portal's
code pass locally and fail in production, or the other way round. Each
function below closes one such gap; :func:`apply` installs them all, once,
before the stand-in serves anything:

* no persistence: localstripe pickles its whole store to
  ``/tmp/localstripe.pickle`` after every write, which is slow, leaks state
  between runs and races when several stand-ins run at once;
* fees: balance transactions of charges get Stripe's standard card fee
  (2.9 % + 30 cents, rounded half-up to the cent) instead of zero, so fee and
  net are realistic;
* refunds: a refund above what remains refundable is refused with Stripe's
  error (HTTP 400, ``charge_already_refunded`` or ``amount_too_large``); a
  refund without an amount after a partial one refunds only the remainder;
  ``reason`` is accepted; ``refund.created`` and ``charge.refunded`` events
  are sent;
* lists: charges, payment intents, refunds, events, balance transactions and
  payouts can be listed by creation time (``created[gte|gt|lte|lt]``), newest
  first like Stripe, so a reconcile command can page through a window;
  payouts also by ``arrival_date`` and ``status``, balance transactions by
  ``payout``, ``type``, ``source`` and ``currency``;
* shapes: ``PaymentIntent.latest_charge`` is an id unless expanded (Stripe's
  shape; localstripe always embeds the charge), with ``amount_received``;
  charges have ``disputed``;
* events: every event carries the pinned API version and goes through the
  stand-in's dispatcher (signed, retried), not localstripe's one-shot sender.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from localstripe import resources as ls
from localstripe import webhooks as ls_webhooks
from localstripe.errors import UserError

from stripe_standin import resources, webhooks
from stripe_standin.resources import money

_applied = False

FEE_PERCENT = Decimal("0.029")
FEE_FIXED_CENTS = 30
REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")


def stripe_fee(amount: int) -> int:
    """Stripe's standard card fee for a charge of ``amount`` minor units."""
    if amount <= 0:
        return 0
    percent = (Decimal(amount) * FEE_PERCENT).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return int(percent) + FEE_FIXED_CENTS


def apply() -> None:
    """Install every fix; safe to call more than once."""
    global _applied
    if _applied:
        return
    _no_persistence()
    _events_through_dispatcher()
    _fees_on_charges()
    _refunds_like_stripe()
    _lists_by_creation_time()
    _payment_intent_shape()
    _charge_shape()
    _applied = True


# -- persistence -----------------------------------------------------------


def _no_persistence() -> None:
    def nothing(self: Any) -> None:
        return None

    ls.Store.dump_to_disk = nothing
    ls.Store.try_load_from_disk = nothing


# -- events ----------------------------------------------------------------


def _events_through_dispatcher() -> None:
    ls.schedule_webhook = webhooks.schedule
    ls_webhooks.schedule_webhook = webhooks.schedule


# -- fees ------------------------------------------------------------------


def _fees_on_charges() -> None:
    original = ls.BalanceTransaction.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if self.type == "charge":
            self.fee = stripe_fee(self.amount)
            self.fee_details = [
                {
                    "amount": self.fee,
                    "application": None,
                    "currency": self.currency,
                    "description": "Stripe processing fees",
                    "type": "stripe_fee",
                }
            ]

    ls.BalanceTransaction.__init__ = init


# -- refunds ---------------------------------------------------------------


def _charge_to_refund(data: dict[str, Any]) -> Any | None:
    """The charge a refund request targets, or None to let localstripe reject it."""
    charge = data.get("charge")
    payment_intent = data.get("payment_intent")
    if isinstance(charge, str) and charge.startswith("ch_") and payment_intent is None:
        return ls.Charge._api_retrieve(charge)
    if isinstance(payment_intent, str) and payment_intent.startswith("pi_") and charge is None:
        intent = ls.PaymentIntent._api_retrieve(payment_intent)
        if intent.latest_charge is None:
            raise UserError(
                400,
                f"This PaymentIntent ({payment_intent}) does not have a successful charge "
                "to refund.",
                {"param": "payment_intent"},
            )
        return intent.latest_charge
    return None


def _refunds_like_stripe() -> None:
    original = ls.Refund._api_create.__func__

    def api_create(cls: Any, /, **data: Any) -> Any:
        reason = data.pop("reason", None)
        if reason is not None and reason not in REFUND_REASONS:
            raise UserError(
                400,
                f"Invalid reason: must be one of {', '.join(REFUND_REASONS)}",
                {"param": "reason", "code": "parameter_invalid_string"},
            )
        charge = _charge_to_refund(data)
        if charge is not None and charge.status == "succeeded":
            remaining = charge.amount - charge.amount_refunded
            if remaining <= 0:
                raise UserError(
                    400,
                    f"Charge {charge.id} has already been refunded.",
                    {"code": "charge_already_refunded"},
                )
            amount = ls.try_convert_to_int(data.get("amount"))
            if amount is None:
                data["amount"] = remaining
            elif isinstance(amount, int) and amount > remaining:
                raise UserError(
                    400,
                    f"Refund amount ({money(amount, charge.currency)}) is greater than "
                    f"unrefunded amount on charge ({money(remaining, charge.currency)})",
                    {"code": "amount_too_large", "param": "amount"},
                )
        refund = original(cls, **data)
        refund.reason = reason
        refund_charge = ls.Charge._api_retrieve(refund.charge)
        if refund.payment_intent is None:
            refund.payment_intent = refund_charge.payment_intent
        webhooks.emit("refund.created", refund)
        webhooks.emit("charge.refunded", refund_charge)
        return refund

    ls.Refund._api_create = classmethod(api_create)


# -- lists -----------------------------------------------------------------


def _created_filter(created: Any) -> Callable[[Any], bool]:
    """Stripe's ``created`` list filter: an exact time or a dict of bounds."""
    if created is None:
        return lambda obj: True
    if isinstance(created, dict):
        bounds: list[tuple[str, int]] = []
        for op, raw in created.items():
            value = ls.try_convert_to_int(raw)
            if op not in ("gt", "gte", "lt", "lte") or not isinstance(value, int):
                raise UserError(400, f"Invalid created[{op}]", {"param": f"created[{op}]"})
            bounds.append((op, value))

        def within(obj: Any) -> bool:
            t = obj.created
            return all(
                (op == "gt" and t > v)
                or (op == "gte" and t >= v)
                or (op == "lt" and t < v)
                or (op == "lte" and t <= v)
                for op, v in bounds
            )

        return within
    exact = ls.try_convert_to_int(created)
    if not isinstance(exact, int):
        raise UserError(400, "Invalid created: must be an integer", {"param": "created"})
    return lambda obj: obj.created == exact


def windowed_list(
    object_name: str,
    url: str,
    *,
    limit: Any = None,
    starting_after: Any = None,
    created: Any = None,
    extra: dict[str, Any] | None = None,
    where: Iterable[Callable[[Any], bool]] = (),
) -> Any:
    """A localstripe ``List`` of stored ``object_name`` objects, newest first.

    ``extra`` holds the query parameters the caller did not understand: Stripe
    refuses unknown parameters, and so does the stand-in.
    """
    if extra:
        name = next(iter(extra))
        raise UserError(400, f"Received unknown parameter: {name}", {"param": name})
    in_window = _created_filter(created)
    tests = [in_window, *where]
    result = ls.List(url, limit=limit, starting_after=starting_after)
    prefix = object_name + ":"
    stored = [value for key, value in ls.store.items() if key.startswith(prefix)]
    # The store keeps insertion order, so reversing it is newest first even
    # for objects created within the same second.
    result._list = [obj for obj in reversed(stored) if all(test(obj) for test in tests)]
    return result


def _lists_by_creation_time() -> None:
    def charges(
        cls: Any,
        /,
        url: str,
        customer: Any = None,
        payment_intent: Any = None,
        created: Any = None,
        limit: Any = None,
        starting_after: Any = None,
        **extra: Any,
    ) -> Any:
        return windowed_list(
            "charge",
            url,
            limit=limit,
            starting_after=starting_after,
            created=created,
            extra=extra,
            where=[
                lambda c: customer is None or c.customer == customer,
                lambda c: payment_intent is None or c.payment_intent == payment_intent,
            ],
        )

    def payment_intents(
        cls: Any,
        /,
        url: str,
        customer: Any = None,
        created: Any = None,
        limit: Any = None,
        starting_after: Any = None,
        **extra: Any,
    ) -> Any:
        return windowed_list(
            "payment_intent",
            url,
            limit=limit,
            starting_after=starting_after,
            created=created,
            extra=extra,
            where=[lambda p: customer is None or p.customer == customer],
        )

    def refunds(
        cls: Any,
        /,
        url: str,
        charge: Any = None,
        payment_intent: Any = None,
        created: Any = None,
        limit: Any = None,
        starting_after: Any = None,
        **extra: Any,
    ) -> Any:
        charge_id = charge
        if payment_intent is not None and charge is None:
            intent = ls.PaymentIntent._api_retrieve(payment_intent)
            charge_id = intent.latest_charge.id if intent.latest_charge is not None else ""
        return windowed_list(
            "refund",
            url,
            limit=limit,
            starting_after=starting_after,
            created=created,
            extra=extra,
            where=[lambda r: charge_id is None or r.charge == charge_id],
        )

    def events(
        cls: Any,
        /,
        url: str,
        type: Any = None,
        created: Any = None,
        limit: Any = None,
        starting_after: Any = None,
        **extra: Any,
    ) -> Any:
        return windowed_list(
            "event",
            url,
            limit=limit,
            starting_after=starting_after,
            created=created,
            extra=extra,
            where=[lambda e: type is None or e.type == type],
        )

    def balance_transactions(
        cls: Any,
        /,
        url: str,
        payout: Any = None,
        type: Any = None,
        source: Any = None,
        currency: Any = None,
        created: Any = None,
        limit: Any = None,
        starting_after: Any = None,
        **extra: Any,
    ) -> Any:
        in_payout = resources.payout_transactions_filter(payout) if payout is not None else None
        return windowed_list(
            "balance_transaction",
            url,
            limit=limit,
            starting_after=starting_after,
            created=created,
            extra=extra,
            where=[
                lambda t: in_payout is None or in_payout(t),
                lambda t: type is None or t.type == type,
                lambda t: source is None or t.source == source,
                lambda t: currency is None or t.currency == currency,
            ],
        )

    def payouts(
        cls: Any,
        /,
        url: str,
        status: Any = None,
        arrival_date: Any = None,
        created: Any = None,
        limit: Any = None,
        starting_after: Any = None,
        **extra: Any,
    ) -> Any:
        arrival = _created_filter(arrival_date)
        return windowed_list(
            "payout",
            url,
            limit=limit,
            starting_after=starting_after,
            created=created,
            extra=extra,
            where=[
                lambda p: status is None or p.status == status,
                # Stripe's arrival_date filter has the created filter's shape.
                lambda p: arrival(_ArrivalAsCreated(p)),
            ],
        )

    ls.BalanceTransaction._api_list_all = classmethod(balance_transactions)
    ls.Charge._api_list_all = classmethod(charges)
    ls.Event._api_list_all = classmethod(events)
    ls.Payout._api_list_all = classmethod(payouts)
    ls.PaymentIntent._api_list_all = classmethod(payment_intents)
    ls.Refund._api_list_all = classmethod(refunds)


class _ArrivalAsCreated:
    """A payout seen through its arrival date, for the ``created``-shaped filter."""

    def __init__(self, payout: Any) -> None:
        self.created = payout.arrival_date


# -- shapes ----------------------------------------------------------------


def _expands(expand: Any, field: str) -> bool:
    if not isinstance(expand, list):
        return False
    return any(path == field or str(path).startswith(field + ".") for path in expand)


def _payment_intent_shape() -> None:
    original = ls.PaymentIntent._export

    def export(self: Any, expand: Any = None) -> Any:
        obj = original(self, expand=expand)
        charge = obj.get("latest_charge")
        if isinstance(charge, dict) and not _expands(expand, "latest_charge"):
            obj["latest_charge"] = charge["id"]
        obj.pop("charges", None)  # removed from the API in 2022-11-15
        obj["amount_received"] = self.amount if obj.get("status") == "succeeded" else 0
        return obj

    ls.PaymentIntent._export = export


def _charge_shape() -> None:
    original = ls.Charge._export

    def export(self: Any, expand: Any = None) -> Any:
        obj = original(self, expand=expand)
        obj.setdefault("disputed", False)
        obj["amount_captured"] = self.amount if self.captured and self.status == "succeeded" else 0
        return obj

    ls.Charge._export = export
