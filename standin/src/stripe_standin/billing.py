"""Stripe Billing as the portal uses it: subscriptions started by Checkout, their invoices.

localstripe has subscriptions and invoices, but in Stripe's shape of 2017:
periods computed from the clock, no renewals unless time passes, the
subscription on the invoice's top level. These objects have the shape of the
pinned API version instead (the period on the subscription *item*, the
subscription under ``invoice.parent.subscription_details``, the payment under
``invoice.payments``) and move only when told to:

* paying a Checkout Session in ``mode=subscription`` creates the Customer, the
  Subscription (its ``subscription_data.metadata``) and its first Invoice, paid
  at once by a real localstripe PaymentIntent and Charge (fee included, so it
  can be refunded through the normal API);
* the test hook "advance" ends the current period: the subscription ends if it
  was set to cancel, a paused one (``pause_collection``) moves on without
  charging, and otherwise the next period's invoice is charged to the
  customer's card — paid, or failed when the card was set to decline, which
  makes the subscription ``past_due``;
* paying an open invoice again (``POST /v1/invoices/{id}/pay``) uses the card
  as it is now (the test hook "card" swaps it, as a hosted card update does).

Events, as Stripe sends them: ``customer.subscription.created`` /
``.updated`` / ``.deleted``, ``invoice.created``, ``invoice.finalized``,
``invoice.paid``, ``invoice.payment_succeeded``, ``invoice.payment_failed``.
"""

from __future__ import annotations

import calendar
import contextlib
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from localstripe import resources as ls
from localstripe.errors import UserError

from stripe_standin import webhooks

PAYING_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000341"
INTERVALS = frozenset({"day", "week", "month", "year"})


def _stored(cls: Any, object_id: str, name: str) -> Any:
    """The stored object of ``cls`` with this id (404 as Stripe words it otherwise)."""
    found = ls.store.get(cls.object + ":" + object_id)
    if not isinstance(found, cls):
        raise UserError(404, f"No such {name}: '{object_id}'")
    return found


def _bad(message: str, param: str | None = None) -> UserError:
    return UserError(400, message, {"param": param} if param else None)


def add_interval(start: int, interval: str, count: int) -> int:
    """The end of a period: calendar months and years (the day clamped), else exact days."""
    moment = datetime.fromtimestamp(start, UTC)
    if interval in ("month", "year"):
        months = count * (12 if interval == "year" else 1)
        index = moment.month - 1 + months
        year, month = moment.year + index // 12, index % 12 + 1
        day = min(moment.day, calendar.monthrange(year, month)[1])
        return int(moment.replace(year=year, month=month, day=day).timestamp())
    days = count * (7 if interval == "week" else 1)
    return int((moment + timedelta(days=days)).timestamp())


def recurring_of(raw: Any, param: str) -> dict[str, Any]:
    """``price_data[recurring]``: ``interval`` and ``interval_count`` (default 1)."""
    if not isinstance(raw, dict):
        raise _bad(f"Missing required param: {param}.", param)
    interval = raw.get("interval")
    if interval not in INTERVALS:
        raise _bad(f"Invalid {param}[interval]: must be one of day, week, month or year", param)
    count = ls.try_convert_to_int(raw.get("interval_count", 1))
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 52:
        raise _bad(f"Invalid {param}[interval_count]", param)
    return {"interval": interval, "interval_count": count}


def new_customer(email: str | None) -> Any:
    """localstripe's Customer, plus whether its card declines (the "card" test hook)."""
    customer = ls.Customer(email=email)
    customer._card_declines = False
    return customer


class Subscription(ls.StripeObject):
    object = "subscription"
    _id_prefix = "sub_"

    def __init__(
        self, *, customer: str, item: dict[str, Any], metadata: dict[str, str], now: int
    ) -> None:
        super().__init__()
        self.customer = customer
        self.status = "active"
        self.metadata = dict(metadata)
        self.currency = item["currency"]
        self.collection_method = "charge_automatically"
        self.cancel_at_period_end = False
        self.cancel_at: int | None = None
        self.canceled_at: int | None = None
        self.ended_at: int | None = None
        self.pause_collection: dict[str, Any] | None = None
        self.latest_invoice: str | None = None
        self.start_date = now
        # Invoice items added to the subscription and not yet invoiced.
        self._pending: list[dict[str, Any]] = []
        recurring = item["recurring"]
        self._item = {
            "id": "si_" + ls.random_id(14),
            "object": "subscription_item",
            "quantity": 1,
            "price": {
                "id": "price_" + ls.random_id(24),
                "object": "price",
                "currency": item["currency"],
                "unit_amount": item["unit_amount"],
                "recurring": recurring,
                "product": {"id": "prod_" + ls.random_id(14), "name": item["name"]},
                "type": "recurring",
            },
            "current_period_start": now,
            "current_period_end": add_interval(
                now, recurring["interval"], recurring["interval_count"]
            ),
        }

    @property
    def items(self) -> dict[str, Any]:
        return {"object": "list", "data": [dict(self._item)], "has_more": False}

    @property
    def _period(self) -> tuple[int, int]:
        return int(self._item["current_period_start"]), int(self._item["current_period_end"])

    def _amount(self) -> int:
        return int(self._item["price"]["unit_amount"])

    def _name(self) -> str:
        return str(self._item["price"]["product"]["name"])

    # -- changes the API allows --------------------------------------------------

    def _update(self, **data: Any) -> None:
        allowed = {"cancel_at_period_end", "cancel_at", "pause_collection", "metadata"}
        allowed |= {"proration_behavior", "expand", "items"}
        unknown = set(data) - allowed
        if unknown:
            name = sorted(unknown)[0]
            raise _bad(f"Received unknown parameter: {name}", name)
        if self.status == "canceled":
            raise _bad("A canceled subscription can't be updated.")
        if "cancel_at_period_end" in data:
            value = ls.try_convert_to_bool(data["cancel_at_period_end"])
            if not isinstance(value, bool):
                raise _bad("Invalid boolean", "cancel_at_period_end")
            self.cancel_at_period_end = value
            self.cancel_at = self._period[1] if value else None
        if "cancel_at" in data:
            raw = data["cancel_at"]
            value = None if raw in ("", None) else ls.try_convert_to_int(raw)
            if value is not None and not isinstance(value, int):
                raise _bad("Invalid integer", "cancel_at")
            self.cancel_at = value
            self.cancel_at_period_end = False
        if "pause_collection" in data:
            raw = data["pause_collection"]
            if raw in ("", None):
                self.pause_collection = None
            elif isinstance(raw, dict) and raw.get("behavior") in (
                "void",
                "keep_as_draft",
                "mark_uncollectible",
            ):
                self.pause_collection = {"behavior": raw["behavior"], "resumes_at": None}
            else:
                raise _bad("Invalid pause_collection[behavior]", "pause_collection")
        if "items" in data:
            self._reprice(data["items"], data.get("proration_behavior"))
        if isinstance(data.get("metadata"), dict):
            self.metadata.update({str(k): str(v) for k, v in data["metadata"].items()})
        webhooks.emit("customer.subscription.updated", self)

    def _reprice(self, items: Any, proration: Any) -> None:
        """A new price for the one item from the next period on (``price_data`` naming the
        item's product, as Stripe requires); the stand-in bills no proration, so it asks
        for ``proration_behavior=none`` rather than pretend to prorate."""
        if proration != "none":
            raise _bad("The stand-in changes prices only with proration_behavior=none.")
        if not isinstance(items, list) or len(items) != 1 or not isinstance(items[0], dict):
            raise _bad("The stand-in changes the one item of a subscription.", "items")
        item, price = items[0], items[0].get("price_data")
        if item.get("id") != self._item["id"]:
            raise _bad(f"No such subscription item: '{item.get('id')}'", "items[0][id]")
        if not isinstance(price, dict):
            raise _bad("Missing required param: items[0][price_data].", "items[0][price_data]")
        current = self._item["price"]
        if price.get("product") != current["product"]["id"]:
            raise _bad("No such product: " + str(price.get("product")), "items[0][price_data]")
        if str(price.get("currency", "")).lower() != current["currency"]:
            raise _bad("The currency of a subscription cannot change.", "items[0][price_data]")
        amount = ls.try_convert_to_int(price.get("unit_amount"))
        if not isinstance(amount, int) or amount <= 0:
            raise _bad("Invalid integer", "items[0][price_data][unit_amount]")
        recurring = recurring_of(price.get("recurring"), "items[0][price_data][recurring]")
        if recurring != current["recurring"]:
            raise _bad("The stand-in keeps a subscription's interval.", "recurring")
        self._item["price"] = {**current, "id": "price_" + ls.random_id(24), "unit_amount": amount}

    def _cancel(self, at: int | None = None) -> None:
        if self.status == "canceled":
            raise _bad("This subscription is already canceled.")
        now = at or int(time.time())
        self.status = "canceled"
        self.canceled_at = self.canceled_at or now
        self.ended_at = now
        webhooks.emit("customer.subscription.deleted", self)

    # -- time passing (the test hook) -------------------------------------------

    def _advance(self) -> Invoice | None:
        """End the current period: cancel, skip (paused) or charge the next one."""
        if self.status == "canceled":
            raise _bad("This subscription is canceled.")
        end = self._period[1]
        if self.cancel_at is not None and self.cancel_at <= end:
            self._cancel(self.cancel_at)
            return None
        recurring = self._item["price"]["recurring"]
        self._item["current_period_start"] = end
        self._item["current_period_end"] = add_interval(
            end, recurring["interval"], recurring["interval_count"]
        )
        if self.pause_collection is not None:
            webhooks.emit("customer.subscription.updated", self)
            return None
        invoice = Invoice(self, billing_reason="subscription_cycle")
        invoice._attempt()
        if invoice.status == "paid" and self.status == "past_due":
            self.status = "active"
        webhooks.emit("customer.subscription.updated", self)
        return invoice

    @classmethod
    def _get(cls, subscription_id: str) -> Subscription:
        found: Subscription = _stored(cls, subscription_id, "subscription")
        return found


class Invoice(ls.StripeObject):
    object = "invoice"
    _id_prefix = "in_"

    def __init__(
        self,
        subscription: Subscription,
        *,
        billing_reason: str,
        items: list[dict[str, Any]] | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        """A period's invoice, or (``items``) one of the subscription's pending invoice items
        made at once (``billing_reason`` manual)."""
        super().__init__()
        start, end = subscription._period
        if items is not None:
            start = end = int(time.time())
        lines: list[dict[str, Any]] = items if items is not None else [
            {"amount": subscription._amount(), "description": subscription._name()}
        ]  # fmt: skip
        customer = ls.Customer._api_retrieve(subscription.customer)
        self.customer = subscription.customer
        self.customer_email = customer.email
        self.billing_reason = billing_reason
        self.collection_method = "charge_automatically"
        self.currency = subscription.currency
        self.amount_due = sum(int(line["amount"]) for line in lines)
        self.amount_paid = 0
        self.metadata = dict(metadata or {})
        self.attempt_count = 0
        self.attempted = False
        self.status = "open"
        self.status_transitions = {
            "finalized_at": int(time.time()),
            "paid_at": None,
            "voided_at": None,
        }
        self.parent: dict[str, Any] = {
            "type": "subscription_details",
            "subscription_details": {
                "subscription": subscription.id,
                "metadata": dict(subscription.metadata),
            },
        }
        self.lines = {
            "object": "list",
            "has_more": False,
            "data": [
                {
                    "id": "il_" + ls.random_id(14),
                    "object": "line_item",
                    "amount": int(line["amount"]),
                    "currency": subscription.currency,
                    "description": line["description"],
                    "period": {"start": start, "end": end},
                    "quantity": 1,
                }
                for line in lines
            ],
        }
        self._payment_intent: str | None = None
        subscription.latest_invoice = self.id
        webhooks.emit("invoice.created", self)
        webhooks.emit("invoice.finalized", self)

    @property
    def amount_remaining(self) -> int:
        return int(self.amount_due) - int(self.amount_paid)

    @property
    def payments(self) -> dict[str, Any]:
        data = []
        if self._payment_intent is not None:
            data.append(
                {
                    "object": "invoice_payment",
                    "payment": {"type": "payment_intent", "payment_intent": self._payment_intent},
                    "status": "paid" if self.status == "paid" else "open",
                }
            )
        return {"object": "list", "data": data, "has_more": False}

    @property
    def _subscription(self) -> Subscription:
        return Subscription._get(self.parent["subscription_details"]["subscription"])

    def _attempt(self) -> None:
        """Charge the customer's card as it is now; paid, or failed (past due)."""
        if self.status != "open":
            raise _bad(f"Invoice is already {self.status}.")
        customer = ls.Customer._api_retrieve(self.customer)
        declines = bool(getattr(customer, "_card_declines", False))
        method = ls.PaymentMethod(
            type="card",
            card={
                "number": DECLINED_CARD if declines else PAYING_CARD,
                "exp_month": "12",
                "exp_year": "2034",
                "cvc": "123",
            },
            billing_details={"email": customer.email, "name": None},
        )
        subscription = self._subscription
        intent = ls.PaymentIntent(
            amount=self.amount_due,
            currency=self.currency,
            payment_method=method.id,
            metadata={"invoice": self.id, **subscription.metadata},
        )
        self.attempt_count += 1
        self.attempted = True
        with contextlib.suppress(UserError):  # a decline is the 402 localstripe raises
            intent._confirm(on_failure_now=intent._report_failure)
        charge = intent.latest_charge
        if intent.status == "succeeded":
            self._payment_intent = intent.id
            if charge is not None:
                webhooks.emit("charge.succeeded", charge)
            self.status = "paid"
            self.amount_paid = self.amount_due
            self.status_transitions["paid_at"] = int(time.time())
            webhooks.emit("invoice.paid", self)
            webhooks.emit("invoice.payment_succeeded", self)
            return
        if charge is not None:
            webhooks.emit("charge.failed", charge)
        if subscription.status == "active":
            subscription.status = "past_due"
        webhooks.emit("invoice.payment_failed", self)

    def _pay(self) -> None:
        """``POST /v1/invoices/{id}/pay``: try again; paid, the subscription is active again."""
        self._attempt()
        subscription = self._subscription
        if self.status == "paid" and subscription.status == "past_due":
            subscription.status = "active"
            webhooks.emit("customer.subscription.updated", subscription)
        if self.status != "paid":
            raise UserError(
                402, "Your card was declined.", {"code": "card_declined", "type": "card_error"}
            )

    @classmethod
    def _get(cls, invoice_id: str) -> Invoice:
        found: Invoice = _stored(cls, invoice_id, "invoice")
        return found

    @classmethod
    def _of(cls, subscription_id: str) -> list[Invoice]:
        prefix = cls.object + ":"
        return [
            v
            for k, v in ls.store.items()
            if k.startswith(prefix)
            and isinstance(v, Invoice)
            and v.parent["subscription_details"]["subscription"] == subscription_id
        ]


def add_invoice_item(data: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/invoiceitems`` with ``subscription``: a pending item of that subscription,
    invoiced by the next invoice made for it (``create_invoice``)."""
    subscription = Subscription._get(str(data.get("subscription", "")))
    amount = ls.try_convert_to_int(data.get("amount"))
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise _bad("Invalid positive integer", "amount")
    if str(data.get("currency", "")).lower() != subscription.currency:
        raise _bad("The currency differs from the subscription's.", "currency")
    if data.get("customer") not in (None, subscription.customer):
        raise _bad("The customer differs from the subscription's.", "customer")
    item = {
        "id": "ii_" + ls.random_id(14),
        "object": "invoiceitem",
        "amount": amount,
        "currency": subscription.currency,
        "customer": subscription.customer,
        "subscription": subscription.id,
        "description": str(data.get("description") or "Invoice item"),
    }
    subscription._pending.append(item)
    return item


def create_invoice(data: dict[str, Any]) -> Invoice:
    """``POST /v1/invoices`` for a subscription: its pending items, finalized at once."""
    subscription = Subscription._get(str(data.get("subscription", "")))
    if not subscription._pending:
        raise _bad("Nothing to invoice: the subscription has no pending invoice items.")
    items, subscription._pending = subscription._pending, []
    raw = data.get("metadata")
    metadata = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
    return Invoice(subscription, billing_reason="manual", items=items, metadata=metadata)


def start_subscription(
    *, email: str | None, item: dict[str, Any], metadata: dict[str, str]
) -> tuple[Any, Subscription, Invoice]:
    """What paying a subscription-mode Checkout Session does before its own event."""
    customer = new_customer(email)
    subscription = Subscription(
        customer=customer.id, item=item, metadata=metadata, now=int(time.time())
    )
    webhooks.emit("customer.subscription.created", subscription)
    invoice = Invoice(subscription, billing_reason="subscription_create")
    invoice._attempt()
    return customer, subscription, invoice


class PortalSession(ls.StripeObject):
    """``billing_portal.session``: a hosted page where the customer replaces the card.

    Saving a card that pays also retries the customer's open invoices at once, as
    Stripe's own retry would soon after; then the page returns to ``return_url``."""

    object = "billing_portal.session"
    _id_prefix = "bps_"

    def __init__(self, *, customer: str, return_url: str, public_url: str) -> None:
        if not customer or not isinstance(customer, str):
            raise _bad("Missing required param: customer.", "customer")
        if not return_url or not isinstance(return_url, str):
            raise _bad("Missing required param: return_url.", "return_url")
        ls.Customer._api_retrieve(customer)  # 404 for an unknown customer
        super().__init__()
        self.customer = customer
        self.return_url = return_url
        self.url = f"{public_url}/billing_portal/{self.id}"
        self.livemode = False

    def _save_card(self, declines: bool) -> None:
        customer = ls.Customer._api_retrieve(self.customer)
        customer._card_declines = declines
        if declines:
            return
        for key, value in list(ls.store.items()):
            if (
                key.startswith(Invoice.object + ":")
                and isinstance(value, Invoice)
                and value.customer == self.customer
                and value.status == "open"
            ):
                with contextlib.suppress(UserError):
                    value._pay()

    @classmethod
    def _get(cls, session_id: str) -> PortalSession:
        found: PortalSession = _stored(cls, session_id, "billing portal session")
        return found
