"""A few seconds of ``make load`` in every test run.

The same driver as ``bench/load.py`` (imported, not copied): two ``uvicorn
portal.asgi:app`` processes on one PostgreSQL database of their own (the test
database's name + ``_load``, reset first), staff pages, the public catalog,
slot search, booking and cancelling, front-desk sales and online checkouts
paid in the suite's Stripe stand-in, whose signed webhooks reach both
processes. Then: no 5xx and no failed request, every kind of traffic
succeeded at least once, both processes served, and the database is whole
(journal balanced, no double booking, every paid sale complete).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import load
from tests.conftest import IN_CI, TEST_DATABASE_URL, _ensure_postgres_database, _loud
from tests.servers import SERVER_POOL
from tests.stripe_standin import StandIn

SECONDS = 8.0
KINDS = {
    "staff_dashboard", "staff_clients", "staff_schedule", "staff_sales", "sale_form",
    "front_desk_sale", "catalog", "slots", "book", "appointment_page", "cancel",
    "client_account", "buy_page", "buy", "pay (stand-in)", "purchase_status",
    "checkout_confirmed", "webhook",
}  # fmt: skip


def _load_url() -> str:
    base, _, query = TEST_DATABASE_URL.partition("?")
    return f"{base}_load" + (f"?{query}" if query else "")


async def test_two_processes_under_mixed_traffic(stripe_standin: StandIn, tmp_path: Path) -> None:
    url = _load_url()
    problem = await _ensure_postgres_database(url)
    if problem:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI: {problem}")
        _loud(f"SKIPPING the load test: {problem}")
        pytest.skip(problem)
    seed = await load.prepare(url, clients=8)
    with load.cluster(
        url, tmp_path, apps=2, standin_url=stripe_standin.base_url, env=SERVER_POOL
    ) as running:
        result = await load.drive(running, seed, seconds=SECONDS, clients=8, visitors=1)
        ports = [app.port for app in running.apps]
    summary = load.summarise(result, baseline_at=2.0)
    report = {k: v for k, v in summary.items() if k != "memory"}

    assert summary["server_errors"] == 0, report
    assert summary["transport_errors"] == 0, report
    succeeded = {
        kind
        for kind, row in summary["kinds"].items()
        if any(code[:1] in "23" for code in row["statuses"])
    }
    assert succeeded >= KINDS, f"no success for {KINDS - succeeded}: {report}"
    assert set(summary["kinds"]["checkout_confirmed"]["statuses"]) == {"200"}, report
    # Requests alternate between the processes; webhooks reach both.
    for port in ports:
        assert summary["requests_by_process"].get(f"127.0.0.1:{port}", 0) > 20, report
        assert summary["webhooks_by_endpoint"].get(f"load-{port}", 0) > 0, report
    assert set(summary["memory"]) == {str(port) for port in ports}

    assert await load.integrity_problems(url) == {}
    counts = await load.database_counts(url)
    assert counts["appointments_booked"] > 0 and counts["appointments_cancelled"] > 0, counts
    assert counts["sales_paid"] > len(seed.clients), counts
    assert counts["sales"] == counts["sales_paid"], counts  # every checkout was confirmed
