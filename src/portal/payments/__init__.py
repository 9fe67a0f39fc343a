"""Payments: Stripe Checkout, payment records, refunds, disputes, webhooks.

``gateway`` is the only module of the portal that talks to Stripe (and the
only one importing the ``stripe`` SDK). The local Stripe stand-in that
``make run`` and the tests use when no Stripe keys are set is a separate
development package (``standin/``, ``stripe_standin``), not part of the portal.
"""
