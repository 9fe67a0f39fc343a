"""The bounded contexts, in dependency order.

Each context is a package ``portal.<name>`` that may have ``tables.py``
(Piccolo tables), ``controllers.py`` (a ``ROUTES`` list of controllers and
handlers), ``demo.py`` (an ``async def load_demo(ids)`` adding its demo
data) and ``stripe_events.py`` (``HANDLERS``: Stripe event type → handler,
for contexts above payments, which payments' webhook cannot import) and
``jobs.py`` (``JOBS``: jobs run on request with their own parameters, for
contexts above ``jobs``, which the job catalogue cannot import). The
app, the migrations and ``portal demo`` discover them here, so a new context
plugs in by adding its name to this list.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from types import ModuleType
from typing import Any

from piccolo.table import Table

CONTEXTS = [
    "locations",
    "auth",
    "audit",
    "onetime",
    "users",
    "email",
    "dashboard",
    "catalog",
    "staff",
    "rooms",
    "clients",
    "sales",
    "payments",
    "ledger",
    "bookings",
    "memberships",
    "notes",
    "reports",
    "desk",
    "jobs",
    "imports",
    "exports",
]


def _module(context: str, name: str) -> ModuleType | None:
    full = f"portal.{context}.{name}"
    try:
        if importlib.util.find_spec(full) is None:
            return None
    except ModuleNotFoundError:
        return None
    return importlib.import_module(full)


def table_classes() -> list[type[Table]]:
    tables: list[type[Table]] = []
    for context in CONTEXTS:
        module = _module(context, "tables")
        if module is None:
            continue
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, Table) and obj is not Table and obj.__module__ == module.__name__:
                tables.append(obj)
    return tables


def route_handlers() -> list[Any]:
    handlers: list[Any] = []
    for context in CONTEXTS:
        module = _module(context, "controllers")
        if module is not None:
            handlers.extend(getattr(module, "ROUTES", []))
    return handlers


def _declared(module_name: str, attribute: str) -> list[Any]:
    """``attribute`` of every context's ``module_name`` module that declares it, in order."""
    found: list[Any] = []
    for context in CONTEXTS:
        module = _module(context, module_name)
        if module is not None and hasattr(module, attribute):
            found.append(getattr(module, attribute))
    return found


def demo_loaders() -> list[Any]:
    return _declared("demo", "load_demo")


def stripe_handlers(event_type: str) -> list[Any]:
    """The handlers of ``event_type`` that contexts other than payments declare."""
    handlers: list[Any] = []
    for context in CONTEXTS:
        module = _module(context, "stripe_events")
        if module is not None and event_type in getattr(module, "HANDLERS", {}):
            handlers.append(module.HANDLERS[event_type])
    return handlers


def payment_recorders() -> list[Any]:
    """``stripe_events.record_payment(gateway, intent)`` of the contexts that are paid
    through Stripe without a payments checkout (memberships' invoices): asked to record
    a PaymentIntent's payment when a refund or dispute names one payments never saw."""
    return _declared("stripe_events", "record_payment")


async def member_discount_bp(client_id: int, location_id: int) -> int:
    """The largest discount (basis points) the client's memberships give on packages and
    extra sessions at ``location_id``: contexts above the catalog (memberships) declare
    ``discounts.discount_bp``; 0 when none does."""
    best = 0
    for discount_bp in _declared("discounts", "discount_bp"):
        best = max(best, int(await discount_bp(client_id, location_id)))
    return best


async def therapist_bookings(therapist_id: int, start: Any, end: Any) -> list[dict[str, Any]]:
    """The booked appointments of a therapist overlapping [start, end), for staff pages
    (approving time off), which bookings build on: ``bookings.reading`` declares
    ``booked_for_therapist``; none when no context does."""
    found: list[dict[str, Any]] = []
    for booked in _declared("reading", "booked_for_therapist"):
        found.extend(await booked(therapist_id, start, end))
    return found


def requested_jobs() -> list[Any]:
    """The jobs that contexts above ``jobs`` declare (``<context>/jobs.py``, ``JOBS``)."""
    specs: list[Any] = []
    for context in CONTEXTS:
        module = _module(context, "jobs")
        if module is not None and context != "jobs":
            specs.extend(getattr(module, "JOBS", ()))
    return specs
