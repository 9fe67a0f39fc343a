"""The local Stripe stand-in: localstripe plus what the portal needs from Stripe.

Used when no ``STRIPE_SECRET_KEY`` is configured (``make run``) and by the
portal's tests; a development tool installed on its own (``standin/``), never
a dependency of the portal itself. It serves, on one port bound to
127.0.0.1, localstripe's Stripe API with a few fixes, Checkout Sessions, a
hosted payment page with "Pay" and "Decline", realistic card fees, and signed
webhook delivery. See ``docs/stripe-standin.md``.

Run it with ``python -m stripe_standin --port 8420 --webhook-url URL
--webhook-secret whsec_...``, or from Python with :func:`standin_process`.
Only this package's ``process`` module is imported here, so importing it does
not load localstripe.
"""

from __future__ import annotations

from stripe_standin.constants import API_VERSION, STANDIN_API_KEY
from stripe_standin.process import StandInStartError, standin_process

__all__ = ["API_VERSION", "STANDIN_API_KEY", "StandInStartError", "standin_process"]
