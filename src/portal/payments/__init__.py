"""Payments: Stripe Checkout, payment records, refunds, disputes, webhooks.

``gateway`` is the only module of the portal that talks to Stripe (and the
only one importing the ``stripe`` SDK); ``standin`` is the local Stripe
stand-in used by ``make run`` and the tests when no Stripe keys are set.
"""
