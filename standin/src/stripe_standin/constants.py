"""Values the stand-in shares with ``portal.payments.gateway``.

The stand-in and the portal are separate packages that never import each
other (the portal does not depend on the stand-in, and the stand-in never
imports the ``stripe`` SDK), so both sides spell these out; a test in the
portal's suite asserts they agree.
"""

from __future__ import annotations

# The Stripe API version the gateway pins; events carry it like Stripe's do.
API_VERSION = "2026-10-28.endive"

# Any key starting with ``sk_`` is accepted by localstripe; the gateway uses
# this one when no STRIPE_SECRET_KEY is configured.
STANDIN_API_KEY = "sk_test_local_standin"

DEFAULT_PORT = 8420
