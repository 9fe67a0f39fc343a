"""Values the stand-in shares with ``portal.payments.gateway``.

Kept here rather than imported from the gateway so the stand-in never imports
the ``stripe`` SDK; a test asserts both sides agree.
"""

from __future__ import annotations

# The Stripe API version the gateway pins; events carry it like Stripe's do.
API_VERSION = "2026-10-28.endive"

# Any key starting with ``sk_`` is accepted by localstripe; the gateway uses
# this one when no STRIPE_SECRET_KEY is configured.
STANDIN_API_KEY = "sk_test_local_standin"

DEFAULT_PORT = 8420
