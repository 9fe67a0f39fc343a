"""Stripe objects localstripe does not have: Checkout Sessions and Disputes.

They are localstripe ``StripeObject`` subclasses living in its store, so
expansion (``expand[]=payment_intent``), ``GET /v1/events`` and the rest of
localstripe's machinery treat them like its own objects. localstripe exports
every public attribute and property of an object, which is why all helpers
here start with an underscore.

A session's payment goes through localstripe's real objects: paying creates a
PaymentMethod with Stripe's test card, a PaymentIntent carrying
``payment_intent_data.metadata`` and a succeeding Charge with its balance
transaction (fee included, see ``patches``), so the payment can later be
retrieved, listed and refunded through the normal API, exactly as with
Stripe.
"""

from __future__ import annotations

import contextlib
import time
from decimal import Decimal
from typing import Any

from localstripe import resources as ls
from localstripe.errors import UserError

from stripe_standin import billing, webhooks
from stripe_standin.constants import API_VERSION

# Stripe's Checkout allows expiry between 30 minutes and 24 hours ahead.
MIN_EXPIRY_SECONDS = 30 * 60
MAX_EXPIRY_SECONDS = 24 * 60 * 60
DEFAULT_EXPIRY_SECONDS = MAX_EXPIRY_SECONDS

# Stripe's test cards: one that pays, one whose charge is declined.
PAYING_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000341"

# Currencies without minor units (Stripe's "zero-decimal" list).
ZERO_DECIMAL = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga"}
    | {"pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"}
)

CREATE_PARAMS = frozenset(
    {
        "mode",
        "line_items",
        "success_url",
        "cancel_url",
        "client_reference_id",
        "metadata",
        "payment_intent_data",
        "customer_email",
        "expires_at",
        "payment_method_types",
        "locale",
        "submit_type",
        "subscription_data",
    }
)


def _bad(message: str, param: str | None = None, code: str | None = None) -> UserError:
    contents: dict[str, Any] = {}
    if param is not None:
        contents["param"] = param
    if code is not None:
        contents["code"] = code
    return UserError(400, message, contents)


def money(amount: int, currency: str) -> str:
    """How Stripe writes an amount in error messages, e.g. ``$12.50``."""
    symbol = {"usd": "$", "eur": "€", "gbp": "£", "cad": "CA$", "aud": "A$"}.get(currency.lower())
    value = f"{Decimal(amount).scaleb(-2):.2f}"
    return f"{symbol}{value}" if symbol else f"{value} {currency.upper()}"


def _int(value: Any, param: str, *, minimum: int = 0) -> int:
    number = ls.try_convert_to_int(value)
    if not isinstance(number, int) or isinstance(number, bool):
        raise _bad(f"Invalid integer: {value}", param, "parameter_invalid_integer")
    if number < minimum:
        raise _bad(f"This value must be greater than or equal to {minimum}.", param)
    return number


def _text(value: Any, param: str, *, required: bool = False, max_length: int = 5000) -> str | None:
    if value is None or value == "":
        if required:
            raise _bad(f"Missing required param: {param}.", param, "parameter_missing")
        return None
    if not isinstance(value, str):
        raise _bad(f"Invalid string: {value!r}", param, "parameter_invalid_string")
    if len(value) > max_length:
        raise _bad(f"{param} must be at most {max_length} characters.", param)
    return value


def _url(value: Any, param: str, *, required: bool) -> str | None:
    url = _text(value, param, required=required, max_length=5000)
    if url is not None and not url.startswith(("http://", "https://")):
        raise _bad("Not a valid URL", param, "url_invalid")
    return url


def metadata(value: Any, param: str) -> dict[str, str]:
    """Stripe's metadata rules: up to 50 string keys (40 chars) and values (500 chars)."""
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise _bad("Invalid object", param, "parameter_invalid_object")
    if len(value) > 50:
        raise _bad("Metadata can have at most 50 keys.", param)
    result: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(item, str):
            raise _bad("Metadata values must be strings.", f"{param}[{key}]")
        if len(key) > 40:
            raise _bad("Metadata keys can be at most 40 characters.", f"{param}[{key}]")
        if len(item) > 500:
            raise _bad("Metadata values can be at most 500 characters.", f"{param}[{key}]")
        result[key] = item
    return result


def _line_item(raw: Any, index: int, *, recurring: bool = False) -> dict[str, Any]:
    param = f"line_items[{index}]"
    if not isinstance(raw, dict):
        raise _bad("Invalid object", param, "parameter_invalid_object")
    if "price" in raw:
        raise _bad(
            "The local Stripe stand-in has no Price API; send price_data instead of price.",
            f"{param}[price]",
        )
    unknown = set(raw) - {"price_data", "quantity"}
    if unknown:
        name = sorted(unknown)[0]
        raise _bad(f"Received unknown parameter: {param}[{name}]", f"{param}[{name}]")
    quantity = _int(raw.get("quantity"), f"{param}[quantity]", minimum=1)
    price_data = raw.get("price_data")
    if not isinstance(price_data, dict):
        raise _bad(
            f"Missing required param: {param}[price_data].",
            f"{param}[price_data]",
            "parameter_missing",
        )
    unknown = (
        set(price_data)
        - {"currency", "unit_amount", "product_data"}
        - ({"recurring"} if recurring else set())
    )
    if unknown:
        name = sorted(unknown)[0]
        raise _bad(
            f"Received unknown parameter: {param}[price_data][{name}]",
            f"{param}[price_data][{name}]",
        )
    currency = _text(price_data.get("currency"), f"{param}[price_data][currency]", required=True)
    assert currency is not None
    if len(currency) != 3 or not currency.isalpha():
        raise _bad(f"Invalid currency: {currency}", f"{param}[price_data][currency]")
    unit_amount = _int(price_data.get("unit_amount"), f"{param}[price_data][unit_amount]")
    product = price_data.get("product_data")
    if not isinstance(product, dict):
        raise _bad(
            f"Missing required param: {param}[price_data][product_data].",
            f"{param}[price_data][product_data]",
            "parameter_missing",
        )
    name = _text(product.get("name"), f"{param}[price_data][product_data][name]", required=True)
    description = _text(
        product.get("description"), f"{param}[price_data][product_data][description]"
    )
    item_recurring = None
    if recurring:
        item_recurring = billing.recurring_of(
            price_data.get("recurring"), f"{param}[price_data][recurring]"
        )
    return {
        "id": "li_" + ls.random_id(24),
        "object": "item",
        "amount_discount": 0,
        "amount_subtotal": unit_amount * quantity,
        "amount_tax": 0,
        "amount_total": unit_amount * quantity,
        "currency": currency.lower(),
        "description": name,
        "price": {
            "id": "price_" + ls.random_id(24),
            "object": "price",
            "active": False,
            "currency": currency.lower(),
            "product": {"name": name, "description": description},
            "type": "recurring" if recurring else "one_time",
            "recurring": item_recurring,
            "unit_amount": unit_amount,
        },
        "quantity": quantity,
    }


class CheckoutSession(ls.StripeObject):
    """A Checkout Session in ``mode=payment`` with ``price_data`` line items."""

    object = "checkout.session"
    _id_prefix = "cs_test_"

    def __init__(self, public_url: str = "", **data: Any) -> None:
        unknown = set(data) - CREATE_PARAMS
        if unknown:
            name = sorted(unknown)[0]
            raise _bad(f"Received unknown parameter: {name}", name)
        mode = _text(data.get("mode"), "mode", required=True)
        if mode not in ("payment", "subscription"):
            raise _bad(
                "The local Stripe stand-in supports Checkout Sessions with mode=payment "
                "or mode=subscription.",
                "mode",
            )
        subscribing = mode == "subscription"
        raw_items = data.get("line_items")
        if not isinstance(raw_items, list) or not raw_items:
            raise _bad("Missing required param: line_items.", "line_items", "parameter_missing")
        if subscribing and len(raw_items) != 1:
            raise _bad("The stand-in's subscriptions have exactly one line item.", "line_items")
        items = [_line_item(raw, i, recurring=subscribing) for i, raw in enumerate(raw_items)]
        subscription_data = data.get("subscription_data") or {}
        if subscription_data and not subscribing:
            raise _bad("subscription_data is only for mode=subscription.", "subscription_data")
        if not isinstance(subscription_data, dict) or set(subscription_data) - {
            "metadata",
            "description",
            "proration_behavior",
        }:
            raise _bad("Invalid subscription_data", "subscription_data")
        subscription_metadata = metadata(
            subscription_data.get("metadata"), "subscription_data[metadata]"
        )
        if subscribing and data.get("payment_intent_data"):
            raise _bad(
                "payment_intent_data is not allowed in mode=subscription.", "payment_intent_data"
            )
        currencies = {item["currency"] for item in items}
        if len(currencies) > 1:
            raise _bad("All line items must use the same currency.", "line_items")
        currency = currencies.pop()
        total = sum(item["amount_total"] for item in items)
        minimum = 1 if currency in ZERO_DECIMAL else 50
        if total < minimum:
            raise _bad(
                "The Checkout Session's total amount due must add up to at least "
                f"{minimum} {currency} (in minor units).",
                "line_items",
            )
        success_url = _url(data.get("success_url"), "success_url", required=True)
        cancel_url = _url(data.get("cancel_url"), "cancel_url", required=False)
        client_reference_id = _text(
            data.get("client_reference_id"), "client_reference_id", max_length=200
        )
        customer_email = _text(data.get("customer_email"), "customer_email", max_length=800)
        session_metadata = metadata(data.get("metadata"), "metadata")
        intent_data = data.get("payment_intent_data") or {}
        if not isinstance(intent_data, dict):
            raise _bad("Invalid object", "payment_intent_data", "parameter_invalid_object")
        unknown = set(intent_data) - {"metadata", "description"}
        if unknown:
            name = sorted(unknown)[0]
            raise _bad(
                f"Received unknown parameter: payment_intent_data[{name}]",
                f"payment_intent_data[{name}]",
            )
        intent_metadata = metadata(intent_data.get("metadata"), "payment_intent_data[metadata]")
        now = int(time.time())
        expires_at = now + DEFAULT_EXPIRY_SECONDS
        if data.get("expires_at") not in (None, ""):
            expires_at = _int(data["expires_at"], "expires_at")
            if expires_at < now + MIN_EXPIRY_SECONDS - 5:
                raise _bad(
                    "The `expires_at` timestamp must be at least 30 minutes after "
                    "Checkout Session creation.",
                    "expires_at",
                )
            if expires_at > now + MAX_EXPIRY_SECONDS + 5:
                raise _bad(
                    "The `expires_at` timestamp must be less than 24 hours from Checkout "
                    "Session creation.",
                    "expires_at",
                )
        methods = data.get("payment_method_types") or ["card"]
        if not isinstance(methods, list) or any(m != "card" for m in methods):
            raise _bad(
                "The local Stripe stand-in only supports payment_method_types=[card].",
                "payment_method_types",
            )

        # All exceptions must be raised before this point (the object is
        # stored by the base constructor).
        super().__init__(id=self._id_prefix + "a1" + ls.random_id(56))

        self.mode = mode
        self.amount_subtotal = total
        self.amount_total = total
        self.currency = currency
        self.success_url = success_url
        self.cancel_url = cancel_url
        self.client_reference_id = client_reference_id
        self.customer = None
        self.customer_email = customer_email
        self.customer_details: dict[str, Any] | None = None
        self.metadata = session_metadata
        self.expires_at = expires_at
        self.locale = data.get("locale")
        self.submit_type = data.get("submit_type")
        self.payment_intent = None
        self.payment_link = None
        self.payment_method_types = list(methods)
        self.payment_status = "unpaid"
        self.status = "open"
        self.setup_intent = None
        self.subscription = None
        self.invoice = None
        self.ui_mode = "hosted"
        self.total_details = {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0}
        self._public_url = public_url.rstrip("/")
        self._line_items = items
        self._intent_metadata = intent_metadata
        self._intent_description = intent_data.get("description")
        self._decline_message: str | None = None
        self._subscription_metadata = subscription_metadata

    # -- shape -------------------------------------------------------------

    @property
    def url(self) -> str | None:
        """Only an open session has a URL, like on Stripe."""
        if self.status != "open":
            return None
        return f"{self._public_url}/checkout/pay/{self.id}"

    def _hosted_url(self) -> str:
        return f"{self._public_url}/checkout/pay/{self.id}"

    def _success_redirect(self) -> str:
        assert self.success_url is not None
        return self.success_url.replace("{CHECKOUT_SESSION_ID}", self.id)

    def _line_items_list(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [dict(item) for item in self._line_items],
            "has_more": False,
            "url": f"/v1/checkout/sessions/{self.id}/line_items",
        }

    def _export(self, expand: Any = None) -> Any:
        paths = (
            [p for p in expand or [] if p != "line_items"] if isinstance(expand, list) else expand
        )
        obj = super()._export(expand=paths)
        if isinstance(expand, list) and "line_items" in expand:
            obj["line_items"] = self._line_items_list()
        return obj

    # -- state changes -------------------------------------------------------

    def _expire_if_due(self, now: float | None = None) -> bool:
        if self.status == "open" and (now or time.time()) >= self.expires_at:
            self._expire()
            return True
        return False

    def _expire(self) -> None:
        if self.status != "open":
            raise _bad(
                f"Only Checkout Sessions with a status in [open] can be expired. This "
                f"Checkout Session ({self.id}) has a status of {self.status}.",
                code="checkout_session_not_open",
            )
        self.status = "expired"
        webhooks.emit("checkout.session.expired", self)

    def _ensure_open(self) -> None:
        self._expire_if_due()
        if self.status != "open":
            raise _bad(
                f"This Checkout Session is no longer open (status {self.status}).",
                code="checkout_session_not_open",
            )

    def _intent(self, card_number: str, email: str | None) -> Any:
        """The session's PaymentIntent armed with a new card, ready to confirm.

        One session keeps one PaymentIntent across attempts, like Stripe: a
        declined attempt leaves it in ``requires_payment_method`` and the next
        attempt confirms it again with another card.
        """
        method = ls.PaymentMethod(
            type="card",
            card={"number": card_number, "exp_month": "12", "exp_year": "2034", "cvc": "123"},
            billing_details={"email": email, "name": None},
        )
        if self.payment_intent is None:
            intent = ls.PaymentIntent(
                amount=self.amount_total,
                currency=self.currency,
                payment_method=method.id,
                metadata=dict(self._intent_metadata),
            )
            intent.description = self._intent_description
            self.payment_intent = intent.id
            return intent
        intent = ls.PaymentIntent._api_retrieve(self.payment_intent)
        intent.payment_method = method.id
        intent.latest_charge = None
        intent._authentication_failed = False
        return intent

    def _pay(self, email: str | None = None) -> None:
        """What pressing "Pay" does: a succeeding charge, then the webhooks."""
        self._ensure_open()
        email = email or self.customer_email
        if self.mode == "subscription":
            self._subscribe(email)
            return
        intent = self._intent(PAYING_CARD, email)
        intent._confirm(on_failure_now=intent._report_failure)  # emits payment_intent.succeeded
        charge = intent.latest_charge
        webhooks.emit("charge.succeeded", charge)
        self.status = "complete"
        self.payment_status = "paid"
        self._decline_message = None
        self.customer_details = {
            "address": None,
            "email": email,
            "name": None,
            "phone": None,
            "tax_exempt": "none",
            "tax_ids": [],
        }
        webhooks.emit("checkout.session.completed", self)

    def _subscribe(self, email: str | None) -> None:
        """Subscription mode: the customer, the subscription and its first invoice, paid."""
        line = self._line_items[0]
        customer, subscription, invoice = billing.start_subscription(
            email=email,
            item={
                "currency": self.currency,
                "unit_amount": line["price"]["unit_amount"],
                "recurring": line["price"]["recurring"],
                "name": line["description"],
            },
            metadata=self._subscription_metadata,
        )
        self.customer = customer.id
        self.subscription = subscription.id
        self.invoice = invoice.id
        self.status = "complete"
        self.payment_status = "paid"
        self._decline_message = None
        self.customer_details = {"address": None, "email": email, "name": None, "phone": None}
        webhooks.emit("checkout.session.completed", self)

    def _decline(self, email: str | None = None) -> str:
        """What a declined card does: the session stays open, the intent fails."""
        self._ensure_open()
        if self.mode == "subscription":  # no subscription starts; the session stays open
            self._decline_message = "Your card was declined."
            return self._decline_message
        intent = self._intent(DECLINED_CARD, email or self.customer_email)
        # localstripe reports the decline by raising the API's 402 error.
        with contextlib.suppress(UserError):
            intent._confirm(on_failure_now=intent._report_failure)  # emits payment_failed
        charge = intent.latest_charge
        if charge is not None:
            webhooks.emit("charge.failed", charge)
        message = "Your card was declined."
        self._decline_message = message
        return message

    # -- lookups -------------------------------------------------------------

    @classmethod
    def _get(cls, session_id: str) -> CheckoutSession:
        session = ls.store.get(cls.object + ":" + session_id)
        if not isinstance(session, CheckoutSession):
            raise UserError(
                404,
                f"No such checkout.session: '{session_id}'",
                {"code": "resource_missing", "param": "session"},
            )
        session._expire_if_due()
        return session

    @classmethod
    def _all(cls) -> list[CheckoutSession]:
        prefix = cls.object + ":"
        return [v for k, v in ls.store.items() if k.startswith(prefix)]


# Stripe's dispute fee, withdrawn with the disputed amount (minor units of the
# charge's currency) and kept whatever the outcome.
DISPUTE_FEE = 1500

# Dispute statuses of a dispute still open (Stripe's list; the stand-in opens
# disputes in ``needs_response``).
OPEN_DISPUTE_STATUSES = frozenset(
    {"warning_needs_response", "warning_under_review", "needs_response", "under_review"}
)


def _disputes_of(charge_id: str) -> list[Dispute]:
    prefix = Dispute.object + ":"
    return [
        value
        for key, value in ls.store.items()
        if key.startswith(prefix) and isinstance(value, Dispute) and value.charge == charge_id
    ]


class DisputeTransaction(ls.BalanceTransaction):
    """The money a dispute moves: the withdrawal (amount and fee) or its reinstatement."""

    def __init__(self, dispute: Dispute, *, reinstatement: bool) -> None:
        ls.StripeObject.__init__(self)
        self.amount = dispute.amount if reinstatement else -dispute.amount
        self.available_on = self.created
        self.currency = dispute.currency
        self.description = (
            f"Chargeback reversal for {dispute.charge}"
            if reinstatement
            else f"Chargeback withdrawal for {dispute.charge}"
        )
        self.exchange_rate = None
        self.fee = 0 if reinstatement else DISPUTE_FEE
        self.fee_details: list[Any] = (
            []
            if reinstatement
            else [
                {
                    "amount": DISPUTE_FEE,
                    "application": None,
                    "currency": dispute.currency,
                    "description": "Dispute fee",
                    "type": "stripe_fee",
                }
            ]
        )
        self.reporting_category = "dispute_reversal" if reinstatement else "dispute"
        self.source = dispute.id
        self.status = "available"
        self.type = "adjustment"


class Dispute(ls.StripeObject):
    """A dispute opened on a charge, as the card network would (test hook only).

    Like Stripe, opening it withdraws the disputed amount and the dispute fee
    from the balance at once (an ``adjustment`` balance transaction, reporting
    category ``dispute``); winning it reinstates the amount (``dispute_reversal``,
    the fee is not returned); losing it moves no more money. Its
    ``balance_transactions`` are those transactions, expanded.
    """

    object = "dispute"
    _id_prefix = "dp_"

    def __init__(self, charge: Any, amount: int | None, reason: str) -> None:
        disputable = self._disputable(charge)
        if amount is None:
            amount = disputable
        elif amount <= 0:
            raise _bad(
                "This value must be greater than or equal to 1.",
                "amount",
                "parameter_invalid_integer",
            )
        elif amount > disputable:
            raise _bad(
                f"Dispute amount ({money(amount, charge.currency)}) is greater than "
                f"the undisputed, unrefunded amount on charge "
                f"({money(disputable, charge.currency)}).",
                "amount",
                "amount_too_large",
            )
        # All exceptions must be raised before this point (the object is
        # stored by the base constructor).
        super().__init__()
        self.amount = amount
        self.charge = charge.id
        self.currency = charge.currency
        self.evidence: dict[str, Any] = {}
        self.evidence_details = {
            "due_by": self.created + 7 * 24 * 3600,
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
        }
        self.is_charge_refundable = False
        self.metadata: dict[str, str] = {}
        self.payment_intent = charge.payment_intent
        self.reason = reason
        self.status = "needs_response"
        self.balance_transactions: list[Any] = [DisputeTransaction(self, reinstatement=False)]

    @staticmethod
    def _disputable(charge: Any) -> int:
        """What a new dispute may claim: the charge less refunds and open or lost disputes."""
        if charge.status != "succeeded":
            raise _bad(f"Charge {charge.id} did not succeed; it cannot be disputed.", "charge")
        earlier = _disputes_of(charge.id)
        for dispute in earlier:
            if dispute.status in OPEN_DISPUTE_STATUSES:
                raise _bad(
                    f"Charge {charge.id} already has an open dispute ({dispute.id}).",
                    "charge",
                    "charge_disputed",
                )
        remaining = charge.amount - charge.amount_refunded
        if remaining <= 0:
            raise _bad(
                f"Charge {charge.id} has already been refunded.",
                "charge",
                "charge_already_refunded",
            )
        remaining -= sum(d.amount for d in earlier if d.status == "lost")
        if remaining <= 0:
            raise _bad(
                f"Charge {charge.id} has already been charged back in full.",
                "charge",
                "charge_disputed",
            )
        return int(remaining)

    @classmethod
    def _open(cls, charge: Any, amount: int | None, reason: str) -> Dispute:
        """Open a dispute and send Stripe's events: created, then funds withdrawn."""
        dispute = cls(charge, amount, reason)
        charge.disputed = True
        webhooks.emit("charge.dispute.created", dispute)
        webhooks.emit("charge.dispute.funds_withdrawn", dispute)
        return dispute

    def _close(self, status: str) -> None:
        """Close as ``won`` (the amount comes back) or ``lost`` (no more money moves)."""
        if status not in ("won", "lost"):
            raise _bad("status must be won or lost", "status")
        if self.status not in OPEN_DISPUTE_STATUSES:
            raise _bad(f"Dispute {self.id} is already closed ({self.status}).")
        self.status = status
        if status == "won":
            self.balance_transactions.append(DisputeTransaction(self, reinstatement=True))
            webhooks.emit("charge.dispute.funds_reinstated", self)
        webhooks.emit("charge.dispute.closed", self)


class InjectedEvent(ls.Event):
    """An event a test fired as is (``POST /_standin/events``), stored like any other."""

    def __init__(self, body: dict[str, Any]) -> None:
        event_type = body.get("type")
        data = body.get("data")
        if not isinstance(event_type, str) or not event_type:
            raise _bad("An event needs a type.", "type")
        if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
            raise _bad("An event needs data.object (an object).", "data")
        event_id = body.get("id")
        if event_id is not None and not isinstance(event_id, str):
            raise _bad("An event id is a string.", "id")
        if event_id is not None:
            ls.store.pop("event:" + event_id, None)  # firing an id again replaces it
        ls.StripeObject.__init__(self, id=event_id)
        created = body.get("created")
        if isinstance(created, int):
            self.created = created
        self.type = event_type
        self._body = {
            "object": "event",
            "api_version": API_VERSION,
            "livemode": False,
            "pending_webhooks": len(webhooks.endpoint_ids()),
            "request": {"id": None, "idempotency_key": None},
            **body,
            "id": self.id,
            "created": self.created,
        }

    def _export(self, expand: Any = None) -> Any:
        return dict(self._body)


# -- payouts ---------------------------------------------------------------------

# What Stripe's payout failures say (a few of its ``failure_code`` values).
PAYOUT_FAILURES = {
    "account_closed": "The bank account has been closed.",
    "could_not_process": "The bank could not process this payout.",
    "no_account": "The bank account details on file are probably incorrect.",
}


def _payout_of(txn: Any) -> str | None:
    """The payout a balance transaction was paid out in (never exported)."""
    value = getattr(txn, "_payout", None)
    return value if isinstance(value, str) else None


class PayoutTransaction(ls.BalanceTransaction):
    """A balance transaction localstripe cannot make: a payout or a payout failure."""

    def __init__(self, payout: Any, *, failure: bool) -> None:
        ls.StripeObject.__init__(self)
        self.amount = payout.amount if failure else -payout.amount
        self.available_on = self.created
        self.currency = payout.currency
        self.description = "STRIPE PAYOUT FAILURE" if failure else "STRIPE PAYOUT"
        self.exchange_rate = None
        self.fee = 0
        self.fee_details: list[Any] = []
        self.reporting_category = "payout_reversal" if failure else "payout"
        self.source = payout.id
        self.status = "available"
        self.type = "payout_failure" if failure else "payout"
        self._payout: str | None = None if failure else payout.id


class AutomaticPayout(ls.Payout):
    """An automatic payout of the available balance of one currency, as Stripe makes daily.

    It sweeps every balance transaction of the currency not yet paid out
    (charges net of their fees, refunds, dispute withdrawals with their fee
    and reinstatements, earlier payout failures), so its
    amount is the sum of their ``net``, and it remembers them: ``GET
    /v1/balance_transactions?payout=po_…`` lists them, with the payout's own
    transaction, as on Stripe. Only the test hooks create one.
    """

    def __init__(
        self, currency: str, transactions: list[Any], arrival_date: int, status: str
    ) -> None:
        ls.StripeObject.__init__(self)
        self.amount = sum(int(t.net) for t in transactions)
        self.arrival_date = arrival_date
        self.automatic = True
        self.currency = currency
        self.description = "STRIPE PAYOUT"
        self.destination = "ba_" + ls.random_id(24)
        self.failure_balance_transaction: str | None = None
        self.failure_code: str | None = None
        self.failure_message: str | None = None
        self.metadata: dict[str, str] = {}
        self.method = "standard"
        self.original_payout = None
        self.reconciliation_status = "completed"
        self.reversed_by = None
        self.source_type = "card"
        self.statement_descriptor = None
        self.status = status
        self.type = "bank_account"
        for txn in transactions:
            txn._payout = self.id
        self.balance_transaction = PayoutTransaction(self, failure=False).id

    def _pay(self) -> None:
        if self.status not in ("pending", "in_transit"):
            raise _bad(f"Payout {self.id} is {self.status}; only a pending payout can be paid.")
        self.status = "paid"
        webhooks.emit("payout.updated", self)
        webhooks.emit("payout.paid", self)

    def _fail(self, code: str) -> None:
        """The bank returned the money: it goes back to the balance (a payout failure)."""
        if self.status not in ("pending", "in_transit", "paid"):
            raise _bad(f"Payout {self.id} is {self.status}; it cannot fail any more.")
        self.status = "failed"
        self.failure_code = code
        self.failure_message = PAYOUT_FAILURES.get(code, "The payout failed.")
        self.failure_balance_transaction = PayoutTransaction(self, failure=True).id
        webhooks.emit("payout.updated", self)
        webhooks.emit("payout.failed", self)


def unpaid_transactions(currency: str | None = None) -> dict[str, list[Any]]:
    """Balance transactions not yet paid out, oldest first, per currency.

    Every kind counts: charges, refunds, dispute adjustments (withdrawals and
    reinstatements) and payout failures, all stored as balance transactions.
    """
    out: dict[str, list[Any]] = {}
    prefix = ls.BalanceTransaction.object + ":"
    for key, txn in ls.store.items():
        if not key.startswith(prefix) or txn.type == "payout" or _payout_of(txn) is not None:
            continue
        if txn.status != "available" or (currency is not None and txn.currency != currency):
            continue
        out.setdefault(txn.currency, []).append(txn)
    return out


def run_payouts(
    currency: str | None = None, arrival_date: int | None = None, status: str = "paid"
) -> list[AutomaticPayout]:
    """Pay out the available balance, one payout per currency (the test hook)."""
    if status not in ("paid", "pending", "in_transit"):
        raise _bad("status must be paid, pending or in_transit", "status")
    if arrival_date is None:
        now = int(time.time())
        arrival_date = now - now % 86400  # today, midnight UTC, as Stripe dates arrivals
    payouts = []
    for code, transactions in sorted(unpaid_transactions(currency).items()):
        if sum(int(t.net) for t in transactions) <= 0:
            continue  # Stripe pays out positive balances only
        payout = AutomaticPayout(code, transactions, arrival_date, status)
        webhooks.emit("payout.created", payout)
        if status == "paid":
            webhooks.emit("payout.paid", payout)
        payouts.append(payout)
    return payouts


def payout_transactions_filter(payout_id: str) -> Any:
    """The test ``GET /v1/balance_transactions?payout=`` applies, after Stripe's checks."""
    payout = ls.store.get("payout:" + payout_id)
    if payout is None:
        raise UserError(
            404, f"No such payout: '{payout_id}'", {"code": "resource_missing", "param": "payout"}
        )
    if not getattr(payout, "automatic", False):
        raise _bad(
            "Balance transaction history can only be filtered on automatic transfers, not manual.",
            "payout",
        )
    return lambda t: _payout_of(t) == payout_id or (t.type == "payout" and t.source == payout_id)
