"""The race suite: concurrency is a normal day.

People double-click, two managers open the same sale, a therapist and a
manager both press "Mark completed", Stripe delivers an event twice and out of
order. Each test here does that for real and checks that money is created
once, never twice, and that the books still add up.

How it runs
-----------
* Real servers (``tests/servers.py``): two ``uvicorn portal.asgi:app``
  processes, production settings, on one database — parametrised over the
  two engines by the session fixture ``race_database``: the run's PostgreSQL
  database name + ``_races`` (dropped with the run's databases), and one
  SQLite file in WAL mode shared by both processes. Payments go to the
  suite's Stripe stand-in (``stripe_standin``), whose signed webhooks reach
  both processes (one endpoint each). Ports are free loopback ports. The
  servers start once per engine (``servers``, session scope; a start costs
  seconds, a race a fraction of one) and are stopped, their endpoints
  unregistered, whatever happens; each test first checks both are alive.
* Each test gets a location of its own (``clinic``: packages, a therapist
  with hours and a room, two managers, a client), seeded through the
  portal's services and tables into the servers' database, or through the
  pages (online purchases paid in the stand-in). Tests share the servers,
  never their data; the per-sale and per-location invariants are checked for
  the test's location.
* Each test loads the real forms (CSRF token, and the one-time
  ``request_key`` the money forms carry), then fires 4–8 requests at once
  with ``asyncio.gather``, alternating between the two processes. No sleeps:
  the stand-in's ``drain`` waits for webhook deliveries, and every request
  has a bounded timeout.

What every test checks at the end (``invariants.assert_whole``)
---------------------------------------------------------------
* no request the test made and no webhook the stand-in delivered was answered
  with a 5xx;
* for every sale, refunds (succeeded + pending) never exceed what was paid;
  the sessions revoked are exactly the sum of its refunds' ``sessions_revoked``
  (and each refund's revoked sessions point at it); sessions revoked without
  a refund only on a sale whose dispute was lost;
* the journal balances: each entry, and in total for each location and currency;
* for every sale, the deferred revenue journalled for it equals the value of
  its credits still open (available or held);
* the load driver's integrity checks (``bench/load.py``): no double booking,
  no credit held twice, every paid sale whole (credits, journal entry, one
  succeeded payment).

The tests
---------
``test_refunds.py``
  1. the same refund form posted N times at once (a double click), on a cash
     and on a card sale: one refund, one Stripe refund, every answer the first
     result;
  2. N refund forms of "3 sessions" opened by two managers on a 5-session
     1,020.00 sale: one refund, the rest refused with a message (409/422).
``test_appointments.py``
  3. "Mark completed" by the therapist and a manager at once: one completion,
     one journal entry; "Cancel" by the client and a manager at once: one
     cancellation, the credit back once; complete racing cancel: one wins.
``test_sales.py``
  4. the front-desk sale form posted N times with its key: one sale, one
     journal entry; the online ``/buy`` form posted N times: one pending sale,
     one Checkout Session.
``test_webhooks.py``
  5. the same signed events delivered N times at once to both processes, in
     both orders (``checkout.session.completed`` / ``payment_intent.succeeded``,
     ``refund.created`` / ``charge.refunded``, dispute created / closed): every
     answer 2xx, one effect.

Run: ``.venv/bin/python -m pytest tests/races -q -p no:cacheprovider -x``.
"""
