"""The Stripe stand-in fixtures come from the plugin ``tests.stripe_standin``,
loaded for the whole suite by the top-level conftest."""
