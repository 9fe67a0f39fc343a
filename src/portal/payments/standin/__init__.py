"""The local Stripe stand-in: localstripe plus what the portal needs from Stripe.

Used when no ``STRIPE_SECRET_KEY`` is configured (``make run``) and by the
tests. It serves, on one port bound to 127.0.0.1, localstripe's Stripe API
with a few fixes, Checkout Sessions, a hosted payment page with "Pay" and
"Decline", realistic card fees, and signed webhook delivery. See
``docs/stripe-standin.md``.

Run it with ``python -m portal.payments.standin --port 8420 --webhook-url URL
--webhook-secret whsec_...``, or from Python with :func:`standin_process`.
Only this package's ``process`` module is imported here, so importing it does
not need localstripe (a development dependency).
"""

from __future__ import annotations

from portal.payments.standin.constants import API_VERSION, STANDIN_API_KEY
from portal.payments.standin.process import StandInStartError, standin_process

__all__ = ["API_VERSION", "STANDIN_API_KEY", "StandInStartError", "standin_process"]
