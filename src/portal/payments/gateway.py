"""The portal's one door to Stripe (and the only module importing ``stripe``).

Why one small module:

* the SDK's objects, error classes and API version stay here; the rest of the
  portal gets frozen dataclasses holding exactly the fields it uses, and the
  exceptions below, so a SDK upgrade or an API version bump is one file's
  change;
* the same code path serves real Stripe and the local stand-in (the
  separate development package ``stripe_standin``, never imported here):
  only the base URL and key differ;
* every call is ``async`` (the SDK's ``*_async`` methods over httpx) so a slow
  Stripe never blocks the web server's event loop.

Errors: callers catch :class:`GatewayError`, whose ``message`` can be shown to
staff or clients as is. :class:`GatewayUnavailable` (a subclass) means Stripe
could not be reached or did not answer in time: the operation *may* have
happened, so callers keep their record pending and retry with the same
idempotency key, which makes the retry safe. Any other :class:`GatewayError`
is a definite refusal.

One gateway per event loop: its HTTP connection pool belongs to the loop that
first used it. Close it with :meth:`StripeGateway.aclose`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import stripe

from portal.settings import ConfigurationError, Settings

if TYPE_CHECKING:
    from stripe.params import (
        BalanceTransactionListParams,
        PaymentIntentListParams,
        PayoutListParams,
        RefundCreateParams,
        RefundListParams,
    )
    from stripe.params.checkout import (
        SessionCreateParams,
        SessionCreateParamsLineItemPriceDataProductData,
    )

log = logging.getLogger("portal.payments.gateway")

# Pinned explicitly (it is the SDK 16.1.0 default) so that an SDK upgrade does
# not silently change the shape of what Stripe returns and sends to webhooks.
API_VERSION = "2026-10-28.endive"

# The placeholder key sent to a stand-in (``STRIPE_API_BASE`` set, no
# ``STRIPE_SECRET_KEY``); it accepts any ``sk_`` key. The stand-in's own
# ``stripe_standin.constants.STANDIN_API_KEY`` is the same (a test checks).
STANDIN_API_KEY = "sk_test_local_standin"

DEFAULT_TIMEOUT_SECONDS = 20.0
DEFAULT_NETWORK_RETRIES = 2
# Stripe rejects signatures older than this; it also bounds replay attacks.
WEBHOOK_TOLERANCE_SECONDS = 300

T = TypeVar("T")
RefundReason = Literal["duplicate", "fraudulent", "requested_by_customer"]


# -- errors --------------------------------------------------------------------


class GatewayError(Exception):
    """Stripe refused or failed an operation.

    ``message`` is safe and useful to show to the person who asked for the
    operation; ``code`` is Stripe's error code when there is one (e.g.
    ``charge_already_refunded``, ``card_declined``, ``resource_missing``);
    ``detail`` is for logs (Stripe's own message and request id).
    """

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        http_status: int | None = None,
        request_id: str | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param
        self.http_status = http_status
        self.request_id = request_id
        self.detail = detail or message


class GatewayUnavailable(GatewayError):
    """Stripe could not be reached, timed out, or failed on its side.

    The outcome of the operation is unknown: retry later with the same
    idempotency key.
    """

    retryable = True


class GatewayMisconfigured(GatewayError):
    """Stripe refused our credentials: a setup problem, not the user's."""


class WebhookSignatureError(GatewayError):
    """A webhook's body does not match its ``Stripe-Signature`` (answer 400)."""


# -- what the portal gets back -------------------------------------------------------


@dataclass(frozen=True)
class StripeCheckoutSession:
    id: str
    url: str | None
    status: str  # open | complete | expired
    payment_status: str  # unpaid | paid | no_payment_required
    payment_intent_id: str | None
    amount_total: int | None
    currency: str | None
    client_reference_id: str | None
    metadata: dict[str, str]
    customer_email: str | None
    created: datetime
    expires_at: datetime | None
    mode: str = "payment"  # payment | subscription
    subscription_id: str | None = None
    customer_id: str | None = None


@dataclass(frozen=True)
class StripeSubscription:
    """A Billing subscription: its state and current period (on its item, as Stripe has it)."""

    id: str
    status: str  # active | past_due | canceled | incomplete | unpaid | …
    customer_id: str | None
    metadata: dict[str, str]
    current_period_start: datetime | None
    current_period_end: datetime | None
    cancel_at_period_end: bool
    cancel_at: datetime | None
    paused: bool
    latest_invoice_id: str | None
    # Its one item and price: what a change of price names (the product stays).
    item_id: str | None = None
    product_id: str | None = None
    unit_amount: int | None = None
    interval: str | None = None
    interval_count: int | None = None
    currency: str | None = None  # lower case, as Stripe has it


@dataclass(frozen=True)
class StripeInvoice:
    """A subscription's invoice: one period, its amount and whether it is paid."""

    id: str
    status: str  # draft | open | paid | void | uncollectible
    subscription_id: str | None
    subscription_metadata: dict[str, str]
    billing_reason: str | None
    currency: str
    amount_due: int
    amount_paid: int
    period_start: datetime | None
    period_end: datetime | None
    payment_intent_id: str | None
    paid_at: datetime | None
    attempt_count: int
    hosted_invoice_url: str | None
    created: datetime


@dataclass(frozen=True)
class StripeBalanceTransaction:
    """The money movement behind a charge, refund or dispute: ``net = amount - fee``.

    ``reporting_category`` is Stripe's (``charge``, ``refund``, ``dispute``,
    ``dispute_reversal``, ``payout``, …); empty when the answer did not say.
    """

    id: str
    amount: int
    fee: int
    net: int
    currency: str
    status: str
    available_on: datetime | None
    created: datetime | None = None
    reporting_category: str = ""


@dataclass(frozen=True)
class StripeCharge:
    id: str
    amount: int
    amount_refunded: int
    currency: str
    status: str  # succeeded | pending | failed
    paid: bool
    refunded: bool
    disputed: bool
    payment_intent_id: str | None
    balance_transaction_id: str | None
    balance_transaction: StripeBalanceTransaction | None
    created: datetime
    metadata: dict[str, str]

    @property
    def refundable(self) -> int:
        """What Stripe would still refund on this charge."""
        return max(self.amount - self.amount_refunded, 0) if self.paid else 0


@dataclass(frozen=True)
class StripePaymentIntent:
    id: str
    amount: int
    currency: str
    status: str  # succeeded | processing | requires_payment_method | canceled | ...
    metadata: dict[str, str]
    created: datetime
    latest_charge_id: str | None
    latest_charge: StripeCharge | None
    last_payment_error: str | None = None

    @property
    def balance_transaction(self) -> StripeBalanceTransaction | None:
        return self.latest_charge.balance_transaction if self.latest_charge else None


@dataclass(frozen=True)
class StripeRefund:
    id: str
    status: str  # pending | requires_action | succeeded | failed | canceled
    amount: int
    currency: str
    charge_id: str | None
    payment_intent_id: str | None
    reason: str | None
    created: datetime
    metadata: dict[str, str] = field(default_factory=dict)
    failure_reason: str | None = None


@dataclass(frozen=True)
class StripePayout:
    """Money Stripe sent from the balance to the bank account.

    ``automatic`` payouts (Stripe's schedule) have itemised contents;
    Stripe does not list what a manual payout contained.
    """

    id: str
    amount: int
    currency: str
    status: str  # pending | in_transit | paid | failed | canceled
    arrival_date: date  # the bank day (Stripe gives midnight UTC of it)
    created: datetime
    automatic: bool
    balance_transaction_id: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None


@dataclass(frozen=True)
class StripeDispute:
    """A dispute (chargeback) on a charge and the money it moved.

    ``balance_transactions``: the withdrawal of the disputed amount with the
    dispute fee (``amount`` negative, ``reporting_category`` ``dispute``)
    first, then, once won, the reinstatement of the amount (positive,
    ``dispute_reversal``; the fee is not returned). A lost dispute keeps the
    withdrawal only.
    """

    id: str
    amount: int
    currency: str  # as Stripe writes it (lower case), like the other dataclasses here
    status: str  # warning_needs_response | needs_response | under_review | won | lost | ...
    reason: str
    charge_id: str | None
    payment_intent_id: str | None
    created: datetime
    balance_transactions: tuple[StripeBalanceTransaction, ...]

    @property
    def is_closed(self) -> bool:
        return self.status in ("won", "lost", "warning_closed", "prevented")


@dataclass(frozen=True)
class StripePayoutItem:
    """One balance transaction a payout contained: a charge, a refund, an adjustment, …

    ``net = amount - fee``. ``charge`` or ``refund`` is the transaction's
    source when it is one (read from the expanded source); ``source_id`` is
    the id of any other source (a dispute, an earlier payout that failed).
    """

    id: str
    type: str
    amount: int
    fee: int
    net: int
    currency: str
    created: datetime
    description: str
    source_id: str | None
    charge: StripeCharge | None = None
    refund: StripeRefund | None = None

    @property
    def payment_intent_id(self) -> str | None:
        if self.charge is not None:
            return self.charge.payment_intent_id
        if self.refund is not None:
            return self.refund.payment_intent_id
        return None

    @property
    def balance_transaction(self) -> StripeBalanceTransaction:
        return StripeBalanceTransaction(
            id=self.id,
            amount=self.amount,
            fee=self.fee,
            net=self.net,
            currency=self.currency,
            status="available",
            available_on=None,
            created=self.created,
        )


# -- reading Stripe's answers ---------------------------------------------------------


def _plain(obj: Any) -> dict[str, Any]:
    """An SDK object (or a dict) as plain nested dicts: SDK 16 objects are not dicts."""
    if isinstance(obj, stripe.StripeObject):
        return obj.to_dict()
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(f"unexpected Stripe value {type(obj).__name__}")


def _str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise GatewayError(
            "The payment provider sent an answer the portal does not understand.",
            detail=f"expected string {key!r} in {data.get('object')} {data.get('id')}",
        )
    return value


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


def _int(data: Mapping[str, Any], key: str, default: int | None = None) -> int:
    value = data.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if default is not None and value is None:
        return default
    raise GatewayError(
        "The payment provider sent an answer the portal does not understand.",
        detail=f"expected integer {key!r} in {data.get('object')} {data.get('id')}",
    )


def _opt_int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _time(value: Any) -> datetime | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz=UTC)
    return None


def _created(data: Mapping[str, Any]) -> datetime:
    moment = _time(data.get("created"))
    return moment if moment is not None else datetime.now(tz=UTC)


def _metadata(data: Mapping[str, Any]) -> dict[str, str]:
    value = data.get("metadata") or {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else {}


def _id_of(value: Any) -> str | None:
    """An id from a field that is either an id or an expanded object."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("id"), str):
        return str(value["id"])
    return None


def _session(data: Mapping[str, Any]) -> StripeCheckoutSession:
    return StripeCheckoutSession(
        id=_str(data, "id"),
        url=_opt_str(data, "url"),
        status=_str(data, "status"),
        payment_status=_str(data, "payment_status"),
        payment_intent_id=_id_of(data.get("payment_intent")),
        amount_total=_opt_int(data, "amount_total"),
        currency=_opt_str(data, "currency"),
        client_reference_id=_opt_str(data, "client_reference_id"),
        metadata=_metadata(data),
        customer_email=_opt_str(data, "customer_email")
        or _opt_str(data.get("customer_details") or {}, "email"),
        created=_created(data),
        expires_at=_time(data.get("expires_at")),
        mode=_opt_str(data, "mode") or "payment",
        subscription_id=_id_of(data.get("subscription")),
        customer_id=_id_of(data.get("customer")),
    )


def subscription_from_dict(data: Mapping[str, Any]) -> StripeSubscription:
    """A subscription from the API or a webhook's ``data.object``."""
    items = (data.get("items") or {}).get("data") or [{}]
    item = items[0] if isinstance(items[0], Mapping) else {}
    price = item.get("price") or {}
    recurring = price.get("recurring") or {}
    return StripeSubscription(
        id=_str(data, "id"),
        status=_str(data, "status"),
        customer_id=_id_of(data.get("customer")),
        metadata=_metadata(data),
        current_period_start=_time(item.get("current_period_start")),
        current_period_end=_time(item.get("current_period_end")),
        cancel_at_period_end=bool(data.get("cancel_at_period_end")),
        cancel_at=_time(data.get("cancel_at")),
        paused=bool(data.get("pause_collection")),
        latest_invoice_id=_id_of(data.get("latest_invoice")),
        item_id=_opt_str(item, "id"),
        product_id=_id_of(price.get("product")),
        unit_amount=_opt_int(price, "unit_amount"),
        interval=_opt_str(recurring, "interval"),
        interval_count=_opt_int(recurring, "interval_count"),
        currency=_opt_str(price, "currency"),
    )


def invoice_from_dict(data: Mapping[str, Any]) -> StripeInvoice:
    """An invoice from the API or a webhook: the subscription under ``parent``, the
    period on its line, the payment under ``payments`` (the pinned API version's shape)."""
    parent = data.get("parent") or {}
    details = parent.get("subscription_details") or {} if isinstance(parent, Mapping) else {}
    lines = (data.get("lines") or {}).get("data") or [{}]
    period = (lines[0] or {}).get("period") or {} if isinstance(lines[0], Mapping) else {}
    payments = (data.get("payments") or {}).get("data") or []
    intent = None
    for payment in payments:
        inner = payment.get("payment") or {} if isinstance(payment, Mapping) else {}
        intent = _id_of(inner.get("payment_intent")) or intent
    transitions = data.get("status_transitions") or {}
    return StripeInvoice(
        id=_str(data, "id"),
        status=_str(data, "status"),
        subscription_id=_id_of(details.get("subscription")),
        subscription_metadata=_metadata(details),
        billing_reason=_opt_str(data, "billing_reason"),
        currency=_str(data, "currency").upper(),
        amount_due=_int(data, "amount_due"),
        amount_paid=_int(data, "amount_paid", 0),
        period_start=_time(period.get("start")),
        period_end=_time(period.get("end")),
        payment_intent_id=intent,
        paid_at=_time(transitions.get("paid_at")) if isinstance(transitions, Mapping) else None,
        attempt_count=_int(data, "attempt_count", 0),
        hosted_invoice_url=_opt_str(data, "hosted_invoice_url"),
        created=_created(data),
    )


def _balance_transaction(data: Mapping[str, Any]) -> StripeBalanceTransaction:
    amount = _int(data, "amount")
    fee = _int(data, "fee", 0)
    return StripeBalanceTransaction(
        id=_str(data, "id"),
        amount=amount,
        fee=fee,
        net=_int(data, "net", amount - fee),
        currency=_str(data, "currency"),
        status=_opt_str(data, "status") or "available",
        available_on=_time(data.get("available_on")),
        created=_time(data.get("created")),
        reporting_category=_opt_str(data, "reporting_category") or "",
    )


def _charge(data: Mapping[str, Any]) -> StripeCharge:
    txn = data.get("balance_transaction")
    return StripeCharge(
        id=_str(data, "id"),
        amount=_int(data, "amount"),
        amount_refunded=_int(data, "amount_refunded", 0),
        currency=_str(data, "currency"),
        status=_str(data, "status"),
        paid=bool(data.get("paid")),
        refunded=bool(data.get("refunded")),
        disputed=bool(data.get("disputed")),
        payment_intent_id=_id_of(data.get("payment_intent")),
        balance_transaction_id=_id_of(txn),
        balance_transaction=_balance_transaction(txn) if isinstance(txn, Mapping) else None,
        created=_created(data),
        metadata=_metadata(data),
    )


def _payment_intent(data: Mapping[str, Any]) -> StripePaymentIntent:
    # Real Stripe sends latest_charge as an id unless expanded; localstripe
    # used to embed the object. Both are read here.
    charge = data.get("latest_charge")
    error = data.get("last_payment_error")
    return StripePaymentIntent(
        id=_str(data, "id"),
        amount=_int(data, "amount"),
        currency=_str(data, "currency"),
        status=_str(data, "status"),
        metadata=_metadata(data),
        created=_created(data),
        latest_charge_id=_id_of(charge),
        latest_charge=_charge(charge) if isinstance(charge, Mapping) else None,
        last_payment_error=_opt_str(error, "message") if isinstance(error, Mapping) else None,
    )


def _refund(data: Mapping[str, Any]) -> StripeRefund:
    return StripeRefund(
        id=_str(data, "id"),
        status=_opt_str(data, "status") or "pending",
        amount=_int(data, "amount"),
        currency=_str(data, "currency"),
        charge_id=_id_of(data.get("charge")),
        payment_intent_id=_id_of(data.get("payment_intent")),
        reason=_opt_str(data, "reason"),
        created=_created(data),
        metadata=_metadata(data),
        failure_reason=_opt_str(data, "failure_reason"),
    )


def dispute_from_dict(data: Mapping[str, Any]) -> StripeDispute:
    """A dispute from Stripe's JSON: an API answer or a ``charge.dispute.*`` event's object.

    Stripe always sends ``balance_transactions`` expanded; they come back
    oldest first (the withdrawal, then the reinstatement of a won dispute).
    """
    raw = data.get("balance_transactions") or []
    if not isinstance(raw, list) or not all(isinstance(t, Mapping) for t in raw):
        raise GatewayError(
            "The payment provider sent an answer the portal does not understand.",
            detail=f"expected expanded balance_transactions in dispute {data.get('id')}",
        )
    epoch = datetime.min.replace(tzinfo=UTC)
    transactions = sorted(
        (_balance_transaction(t) for t in raw),
        key=lambda t: (t.created or epoch, t.amount >= 0),
    )
    return StripeDispute(
        id=_str(data, "id"),
        amount=_int(data, "amount"),
        currency=_str(data, "currency"),
        status=_str(data, "status"),
        reason=_opt_str(data, "reason") or "",
        charge_id=_id_of(data.get("charge")),
        payment_intent_id=_id_of(data.get("payment_intent")),
        created=_created(data),
        balance_transactions=tuple(transactions),
    )


def _payout(data: Mapping[str, Any]) -> StripePayout:
    arrival = _time(data.get("arrival_date"))
    return StripePayout(
        id=_str(data, "id"),
        amount=_int(data, "amount"),
        currency=_str(data, "currency"),
        status=_str(data, "status"),
        arrival_date=(arrival or _created(data)).date(),
        created=_created(data),
        automatic=bool(data.get("automatic")),
        balance_transaction_id=_id_of(data.get("balance_transaction")),
        failure_code=_opt_str(data, "failure_code"),
        failure_message=_opt_str(data, "failure_message"),
    )


def _payout_item(data: Mapping[str, Any]) -> StripePayoutItem:
    amount = _int(data, "amount")
    fee = _int(data, "fee", 0)
    source = data.get("source")
    kind = _opt_str(source, "object") if isinstance(source, Mapping) else None
    return StripePayoutItem(
        id=_str(data, "id"),
        type=_str(data, "type"),
        amount=amount,
        fee=fee,
        net=_int(data, "net", amount - fee),
        currency=_str(data, "currency"),
        created=_created(data),
        description=_opt_str(data, "description") or "",
        source_id=_id_of(source),
        charge=_charge(source) if isinstance(source, Mapping) and kind == "charge" else None,
        refund=_refund(source) if isinstance(source, Mapping) and kind == "refund" else None,
    )


# -- translating Stripe's errors --------------------------------------------------


def _translate(exc: stripe.StripeError, operation: str) -> GatewayError:
    stripe_message = exc.user_message or str(exc) or type(exc).__name__
    common: dict[str, Any] = {
        "code": exc.code,
        "http_status": exc.http_status,
        "request_id": exc.request_id,
        "detail": f"{operation}: {type(exc).__name__}: {stripe_message}",
    }
    if isinstance(exc, stripe.APIConnectionError):
        return GatewayUnavailable(
            "The payment provider could not be reached or did not answer in time. "
            "Please try again in a minute.",
            **common,
        )
    if isinstance(exc, stripe.RateLimitError):
        return GatewayUnavailable(
            "The payment provider is busy right now. Please try again in a minute.", **common
        )
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return GatewayMisconfigured(
            "Payments are not set up correctly (the payment provider refused the portal's "
            "credentials). Please tell the owner.",
            **common,
        )
    if isinstance(exc, stripe.APIError):
        return GatewayUnavailable(
            "The payment provider had a temporary problem. Please try again in a minute.",
            **common,
        )
    if isinstance(exc, stripe.CardError):
        return GatewayError(exc.user_message or "The card was declined.", **common)
    if isinstance(exc, stripe.IdempotencyError):
        return GatewayError(
            "This operation was already sent to the payment provider with different details.",
            **{**common, "code": exc.code or "idempotency_error"},
        )
    if isinstance(exc, stripe.InvalidRequestError):
        param = getattr(exc, "param", None)
        if exc.http_status == 404 or exc.code == "resource_missing":
            return GatewayError(
                "The payment provider does not know this payment object.",
                param=param,
                **{**common, "code": exc.code or "resource_missing"},
            )
        return GatewayError(
            exc.user_message or "The payment provider refused the request.", param=param, **common
        )
    return GatewayError(exc.user_message or "The payment provider refused the request.", **common)


# -- the gateway ---------------------------------------------------------------------


class StripeGateway:
    """Typed access to the few Stripe operations the portal performs."""

    def __init__(
        self,
        *,
        api_key: str,
        webhook_secret: str = "",
        api_base: str | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        max_network_retries: int = DEFAULT_NETWORK_RETRIES,
    ) -> None:
        if not api_key:
            raise ConfigurationError("StripeGateway needs an API key.")
        if api_base is not None and not api_base.startswith(("http://", "https://")):
            raise ConfigurationError(f"STRIPE_API_BASE must be an http(s) URL, got {api_base!r}")
        self.api_base = api_base.rstrip("/") if api_base else None
        self._webhook_secret = webhook_secret
        self._http = stripe.HTTPXClient(timeout=timeout_seconds)
        self._client = stripe.StripeClient(
            api_key,
            stripe_version=API_VERSION,
            base_addresses={"api": self.api_base} if self.api_base else None,
            max_network_retries=max_network_retries,
            http_client=self._http,
        )

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> StripeGateway:
        """Real Stripe with ``STRIPE_SECRET_KEY``; the stand-in at ``STRIPE_API_BASE`` otherwise."""
        key = settings.stripe_secret_key
        base = settings.stripe_api_base or None
        if not key:
            if base is None:
                raise ConfigurationError(
                    "Neither STRIPE_SECRET_KEY (real Stripe) nor STRIPE_API_BASE (the local "
                    "Stripe stand-in) is set."
                )
            key = STANDIN_API_KEY
        return cls(
            api_key=key,
            webhook_secret=settings.stripe_webhook_secret,
            api_base=base,
            **options,
        )

    @property
    def uses_standin(self) -> bool:
        return self.api_base is not None

    async def aclose(self) -> None:
        await self._http.close_async()

    async def _each(self, operation: str, first: Awaitable[Any]) -> AsyncIterator[dict[str, Any]]:
        """Every object of a Stripe list as a plain dict, fetched a page at a time (each
        page through :meth:`_call`), so memory stays flat over any window."""
        page = await self._call(operation, first)
        while True:
            for item in page.data:
                yield _plain(item)
            if not page.has_more or not page.data:
                return
            page = await self._call(operation, page.next_page_async())

    async def _call(self, operation: str, awaitable: Awaitable[T]) -> T:
        try:
            return await awaitable
        except stripe.StripeError as exc:
            error = _translate(exc, operation)
            log.warning("stripe %s failed: %s", operation, error.detail)
            raise error from exc

    async def _read(
        self, operation: str, awaitable: Awaitable[Any], read: Callable[[dict[str, Any]], T]
    ) -> T:
        """Stripe's answer to ``operation`` as one of our types (``read`` of its plain dict)."""
        return read(_plain(await self._call(operation, awaitable)))

    # -- Checkout --------------------------------------------------------------

    async def create_checkout_session(
        self,
        *,
        amount_cents: int,
        currency: str,
        product_name: str,
        success_url: str,
        cancel_url: str,
        client_reference_id: str,
        metadata: Mapping[str, str],
        payment_intent_metadata: Mapping[str, str],
        idempotency_key: str,
        quantity: int = 1,
        product_description: str | None = None,
        customer_email: str | None = None,
        expires_at: datetime | None = None,
        expires_after_seconds: int | None = None,
    ) -> StripeCheckoutSession:
        """A hosted Checkout page for one line: ``quantity`` × ``amount_cents`` (unit price).

        ``success_url`` may contain ``{CHECKOUT_SESSION_ID}``, which Stripe
        replaces when it redirects. The idempotency key should derive from our
        own id (``checkout:{sale_id}``) so a retried request cannot open a
        second session.

        Expiry must fall between 30 minutes and 24 hours ahead (Stripe's
        bounds; 24 hours when omitted). Prefer ``expires_at`` derived from the
        sale's creation time: Stripe refuses an idempotency key reused with
        different parameters, and ``expires_after_seconds`` yields a different
        timestamp on a retry made a second later.
        """
        if amount_cents <= 0:
            raise ValueError("amount_cents must be positive")
        if quantity <= 0:
            raise ValueError("quantity must be positive")
        if len(currency) != 3:
            raise ValueError("currency must be an ISO 4217 code")
        product_data: SessionCreateParamsLineItemPriceDataProductData = {"name": product_name}
        if product_description:
            product_data["description"] = product_description
        params: SessionCreateParams = {
            "mode": "payment",
            "line_items": [
                {
                    "quantity": quantity,
                    "price_data": {
                        "currency": currency.lower(),
                        "unit_amount": amount_cents,
                        "product_data": product_data,
                    },
                }
            ],
            "success_url": success_url,
            "cancel_url": cancel_url,
            "client_reference_id": client_reference_id,
            "metadata": dict(metadata),
            "payment_intent_data": {"metadata": dict(payment_intent_metadata)},
        }
        if customer_email:
            params["customer_email"] = customer_email
        if expires_at is not None and expires_after_seconds is not None:
            raise ValueError("give expires_at or expires_after_seconds, not both")
        if expires_at is not None:
            if expires_at.tzinfo is None:
                raise ValueError("expires_at must be timezone-aware")
            params["expires_at"] = int(expires_at.timestamp())
        elif expires_after_seconds is not None:
            now = int(datetime.now(tz=UTC).timestamp())
            params["expires_at"] = now + expires_after_seconds
        return await self._read(
            "create checkout session",
            self._client.v1.checkout.sessions.create_async(
                params, {"idempotency_key": idempotency_key}
            ),
            _session,
        )

    async def create_subscription_checkout(
        self,
        *,
        amount_cents: int,
        currency: str,
        interval: Literal["month", "week"],
        interval_count: int,
        product_name: str,
        success_url: str,
        cancel_url: str,
        client_reference_id: str,
        metadata: Mapping[str, str],
        idempotency_key: str,
        customer_email: str | None = None,
        expires_at: datetime | None = None,
    ) -> StripeCheckoutSession:
        """A hosted Checkout page that starts a subscription of ``amount_cents`` per interval.

        The card is saved on the customer for the renewals. ``metadata`` goes
        on the session and, as ``subscription_data.metadata``, on the
        subscription and every invoice of it, so each renewal names our
        membership. Stripe's proration stays off: the portal changes plans
        only at period ends.
        """
        if amount_cents <= 0:
            raise ValueError("amount_cents must be positive")
        params: SessionCreateParams = {
            "mode": "subscription",
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": currency.lower(),
                        "unit_amount": amount_cents,
                        "product_data": {"name": product_name},
                        "recurring": {"interval": interval, "interval_count": interval_count},
                    },
                }
            ],
            "success_url": success_url,
            "cancel_url": cancel_url,
            "client_reference_id": client_reference_id,
            "metadata": dict(metadata),
            "subscription_data": {"metadata": dict(metadata)},
        }
        if customer_email:
            params["customer_email"] = customer_email
        if expires_at is not None:
            params["expires_at"] = int(expires_at.timestamp())
        return await self._read(
            "create subscription checkout",
            self._client.v1.checkout.sessions.create_async(
                params, {"idempotency_key": idempotency_key}
            ),
            _session,
        )

    async def create_card_update_session(self, customer_id: str, return_url: str) -> str:
        """Stripe's hosted page where the customer replaces the card (the billing portal);
        its URL. No card data passes through the portal."""
        session = await self._call(
            "create card update session",
            self._client.v1.billing_portal.sessions.create_async(
                {"customer": customer_id, "return_url": return_url}
            ),
        )
        return str(_plain(session)["url"])

    async def retrieve_subscription(self, subscription_id: str) -> StripeSubscription:
        return await self._read(
            "retrieve subscription",
            self._client.v1.subscriptions.retrieve_async(subscription_id),
            subscription_from_dict,
        )

    async def update_subscription(
        self,
        subscription_id: str,
        *,
        idempotency_key: str,
        cancel_at: datetime | None = None,
        pause: bool | None = None,
    ) -> StripeSubscription:
        """End the subscription at ``cancel_at`` (a period end), or pause / resume collection."""
        params: dict[str, Any] = {"proration_behavior": "none"}
        if cancel_at is not None:
            params["cancel_at"] = int(cancel_at.timestamp())
        if pause is not None:
            params["pause_collection"] = {"behavior": "void"} if pause else ""
        return await self._read(
            "update subscription",
            self._client.v1.subscriptions.update_async(
                subscription_id,
                params,  # type: ignore[arg-type]
                {"idempotency_key": idempotency_key},
            ),
            subscription_from_dict,
        )

    async def reprice_subscription(
        self, subscription_id: str, *, amount_cents: int, idempotency_key: str
    ) -> StripeSubscription:
        """Charge ``amount_cents`` per period from the next period on: the item's price
        replaced (same product, currency and interval), ``proration_behavior=none``, so the
        period already paid is neither credited nor charged again."""
        if amount_cents <= 0:
            raise ValueError("amount_cents must be positive")
        current = await self.retrieve_subscription(subscription_id)
        if None in (current.item_id, current.product_id, current.interval, current.currency):
            raise GatewayError("The subscription has no price to change.")
        params: dict[str, Any] = {
            "proration_behavior": "none",
            "items": [
                {
                    "id": current.item_id,
                    "price_data": {
                        "currency": current.currency,
                        "product": current.product_id,
                        "unit_amount": amount_cents,
                        "recurring": {
                            "interval": current.interval,
                            "interval_count": current.interval_count or 1,
                        },
                    },
                }
            ],
        }
        subscription = await self._call(
            "change subscription price",
            self._client.v1.subscriptions.update_async(
                subscription_id,
                params,  # type: ignore[arg-type]
                {"idempotency_key": idempotency_key},
            ),
        )
        return subscription_from_dict(_plain(subscription))

    async def charge_subscription_item(
        self,
        subscription_id: str,
        *,
        amount_cents: int,
        currency: str,
        description: str,
        idempotency_key: str,
    ) -> StripeInvoice:
        """Charge a one-off amount on the subscription's card now: an invoice item on the
        subscription, an invoice of it (``billing_reason`` manual), paid. The invoice as
        Stripe has it after the attempt (open when the card declined)."""
        await self._call(
            "create invoice item",
            self._client.v1.invoice_items.create_async(
                {
                    "subscription": subscription_id,
                    "amount": amount_cents,
                    "currency": currency.lower(),
                    "description": description,
                },
                {"idempotency_key": f"{idempotency_key}:item"},
            ),
        )
        invoice = await self._call(
            "create invoice",
            self._client.v1.invoices.create_async(
                {
                    "subscription": subscription_id,
                    "pending_invoice_items_behavior": "include",
                    "auto_advance": False,
                },
                {"idempotency_key": f"{idempotency_key}:invoice"},
            ),
        )
        invoice_id = str(_plain(invoice)["id"])
        try:
            invoice = await self._call(
                "pay invoice",
                self._client.v1.invoices.pay_async(
                    invoice_id, {}, {"idempotency_key": f"{idempotency_key}:pay"}
                ),
            )
        except GatewayError:
            return await self.retrieve_invoice(invoice_id)
        return invoice_from_dict(_plain(invoice))

    async def retrieve_invoice(self, invoice_id: str) -> StripeInvoice:
        return await self._read(
            "retrieve invoice",
            self._client.v1.invoices.retrieve_async(invoice_id),
            invoice_from_dict,
        )

    async def retrieve_checkout_session(self, session_id: str) -> StripeCheckoutSession:
        return await self._read(
            "retrieve checkout session",
            self._client.v1.checkout.sessions.retrieve_async(session_id),
            _session,
        )

    async def expire_checkout_session(self, session_id: str) -> StripeCheckoutSession:
        """Close an open session so it can no longer be paid (Stripe refuses other states)."""
        return await self._read(
            "expire checkout session",
            self._client.v1.checkout.sessions.expire_async(session_id),
            _session,
        )

    async def find_checkout_session(self, payment_intent_id: str) -> StripeCheckoutSession | None:
        """The Checkout Session that created a PaymentIntent, if any."""
        page = await self._call(
            "list checkout sessions",
            self._client.v1.checkout.sessions.list_async(
                {"payment_intent": payment_intent_id, "limit": 1}
            ),
        )
        sessions = [_session(_plain(s)) for s in page.data]
        return sessions[0] if sessions else None

    # -- payments ----------------------------------------------------------------

    async def retrieve_payment_intent(self, payment_intent_id: str) -> StripePaymentIntent:
        """The PaymentIntent with its latest charge and that charge's balance transaction."""
        return await self._read(
            "retrieve payment intent",
            self._client.v1.payment_intents.retrieve_async(
                payment_intent_id, {"expand": ["latest_charge.balance_transaction"]}
            ),
            _payment_intent,
        )

    async def cancel_payment_intent(self, payment_intent_id: str) -> StripePaymentIntent:
        """Cancel an intent still waiting for a card (Stripe refuses other states)."""
        return await self._read(
            "cancel payment intent",
            self._client.v1.payment_intents.cancel_async(payment_intent_id),
            _payment_intent,
        )

    async def retrieve_charge(self, charge_id: str) -> StripeCharge:
        """A charge with its balance transaction (fee and net) when Stripe has one."""
        return await self._read(
            "retrieve charge",
            self._client.v1.charges.retrieve_async(charge_id, {"expand": ["balance_transaction"]}),
            _charge,
        )

    async def retrieve_balance_transaction(self, transaction_id: str) -> StripeBalanceTransaction:
        return await self._read(
            "retrieve balance transaction",
            self._client.v1.balance_transactions.retrieve_async(transaction_id),
            _balance_transaction,
        )

    async def iter_payment_intents(
        self, created_from: datetime, created_to: datetime, *, page_size: int = 100
    ) -> AsyncIterator[StripePaymentIntent]:
        """PaymentIntents created in ``[created_from, created_to)``, newest first.

        Charges and balance transactions come expanded so a reconcile run
        needs no further call per payment. Pages are fetched as iteration
        goes, so memory stays flat over any window.
        """
        start, end = _window(created_from, created_to)
        params: PaymentIntentListParams = {
            "created": {"gte": start, "lt": end},
            "limit": page_size,
            "expand": ["data.latest_charge.balance_transaction"],
        }
        listed = self._client.v1.payment_intents.list_async(params)
        async for intent in self._each("list payment intents", listed):
            yield _payment_intent(intent)

    # -- refunds -----------------------------------------------------------------

    async def create_refund(
        self,
        *,
        amount_cents: int,
        idempotency_key: str,
        payment_intent_id: str | None = None,
        charge_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        reason: RefundReason | None = None,
    ) -> StripeRefund:
        """Refund ``amount_cents`` of a payment (by PaymentIntent or by charge).

        The portal decides the amount; Stripe only enforces that it does not
        exceed what remains on the charge. ``reason`` is Stripe's enum
        (``requested_by_customer``, ``duplicate``, ``fraudulent``); the
        portal's own reason text belongs in ``metadata``. The idempotency key
        should derive from our refund id (``refund:{id}``): repeating the call
        after a timeout returns the same refund instead of a second one.
        """
        if (payment_intent_id is None) == (charge_id is None):
            raise ValueError("give exactly one of payment_intent_id and charge_id")
        if amount_cents <= 0:
            raise ValueError("amount_cents must be positive")
        params: RefundCreateParams = {"amount": amount_cents}
        if payment_intent_id is not None:
            params["payment_intent"] = payment_intent_id
        elif charge_id is not None:
            params["charge"] = charge_id
        if metadata:
            params["metadata"] = dict(metadata)
        if reason is not None:
            params["reason"] = reason
        return await self._read(
            "create refund",
            self._client.v1.refunds.create_async(params, {"idempotency_key": idempotency_key}),
            _refund,
        )

    async def retrieve_refund(self, refund_id: str) -> StripeRefund:
        return await self._read(
            "retrieve refund", self._client.v1.refunds.retrieve_async(refund_id), _refund
        )

    async def list_refunds_for_charge(self, charge_id: str) -> list[StripeRefund]:
        """Every refund of one charge, newest first (``charge.refunded`` names only the charge)."""
        params: RefundListParams = {"charge": charge_id, "limit": 100}
        listed = self._client.v1.refunds.list_async(params)
        return [_refund(refund) async for refund in self._each("list refunds", listed)]

    async def iter_refunds(
        self, created_from: datetime, created_to: datetime, *, page_size: int = 100
    ) -> AsyncIterator[StripeRefund]:
        """Refunds created in ``[created_from, created_to)``, including dashboard ones."""
        start, end = _window(created_from, created_to)
        params: RefundListParams = {"created": {"gte": start, "lt": end}, "limit": page_size}
        async for refund in self._each("list refunds", self._client.v1.refunds.list_async(params)):
            yield _refund(refund)

    # -- disputes ----------------------------------------------------------------

    async def retrieve_dispute(self, dispute_id: str) -> StripeDispute:
        """A dispute with the balance transactions it made (withdrawal, reinstatement)."""
        return await self._read(
            "retrieve dispute",
            self._client.v1.disputes.retrieve_async(dispute_id),
            dispute_from_dict,
        )

    # -- payouts -----------------------------------------------------------------

    async def retrieve_payout(self, payout_id: str) -> StripePayout:
        return await self._read(
            "retrieve payout", self._client.v1.payouts.retrieve_async(payout_id), _payout
        )

    async def iter_payouts(
        self, arrival_from: date, *, page_size: int = 100
    ) -> AsyncIterator[StripePayout]:
        """Payouts arriving on or after ``arrival_from``, newest first, a page at a time."""
        start = int(datetime.combine(arrival_from, datetime.min.time(), tzinfo=UTC).timestamp())
        params: PayoutListParams = {"arrival_date": {"gte": start}, "limit": page_size}
        async for payout in self._each("list payouts", self._client.v1.payouts.list_async(params)):
            yield _payout(payout)

    async def list_payout_items(
        self, payout_id: str, *, page_size: int = 100
    ) -> list[StripePayoutItem]:
        """What an automatic payout contained, without the payout's own transaction.

        Charges and refunds come with their source expanded, so the portal can
        match them to its payments and refunds without a call per item.
        Stripe refuses this for manual payouts (it does not track them).
        """
        params: BalanceTransactionListParams = {
            "payout": payout_id,
            "limit": page_size,
            "expand": ["data.source"],
        }
        listed = self._client.v1.balance_transactions.list_async(params)
        items = [_payout_item(txn) async for txn in self._each("list payout transactions", listed)]
        return [
            item for item in items if not (item.type == "payout" and item.source_id == payout_id)
        ]

    # -- webhooks ----------------------------------------------------------------

    def verify_webhook(self, raw_body: bytes, signature_header: str | None) -> dict[str, Any]:
        """The event in ``raw_body`` if ``signature_header`` proves it came from Stripe.

        Verification runs on the exact bytes received (re-serialised JSON
        would not match the signature). Raises :class:`WebhookSignatureError`
        for a missing, stale or wrong signature and for a body that is not a
        Stripe event; the endpoint answers 400 and changes nothing.
        """
        if not self._webhook_secret:
            raise WebhookSignatureError(
                "Webhook signing secret is not configured.",
                detail="STRIPE_WEBHOOK_SECRET is empty; every webhook is refused",
            )
        if not signature_header:
            raise WebhookSignatureError("Missing Stripe-Signature header.")
        try:
            stripe.WebhookSignature.verify_header(
                raw_body.decode("utf-8"),
                signature_header,
                self._webhook_secret,
                WEBHOOK_TOLERANCE_SECONDS,
            )
            event = json.loads(raw_body)
        except stripe.SignatureVerificationError as exc:
            raise WebhookSignatureError("Invalid webhook signature.", detail=str(exc)) from exc
        except (UnicodeDecodeError, ValueError) as exc:
            raise WebhookSignatureError("Malformed webhook payload.", detail=str(exc)) from exc
        if (
            not isinstance(event, dict)
            or event.get("object") != "event"
            or not isinstance(event.get("id"), str)
            or not isinstance(event.get("type"), str)
            or not isinstance(event.get("data"), dict)
        ):
            raise WebhookSignatureError("The webhook body is not a Stripe event.")
        return event


def _window(created_from: datetime, created_to: datetime) -> tuple[int, int]:
    """Unix bounds of ``[created_from, created_to)``."""
    if created_from.tzinfo is None or created_to.tzinfo is None:
        raise ValueError("use timezone-aware datetimes")
    return int(created_from.timestamp()), int(created_to.timestamp())
