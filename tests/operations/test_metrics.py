"""``/metrics``: reachable with the metrics token or from the configured addresses only;
request counts and latencies by route template, webhook events by outcome, job runs,
the database pool."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from portal import cli, metrics
from portal.payments import webhooks
from portal.settings import ConfigurationError, Settings
from tests import factories
from tests.conftest import shared_app, using_app
from tests.operations.helpers import client_from

TOKEN = "scrape-" + "t" * 32
BASE_ENV = {"DATABASE_URL": "postgresql://nobody@127.0.0.1/none", "SECRET_KEY": "k" * 40}


def sample(text: str, name: str, **labels: str) -> float:
    """One sample's value in an exposition (0 when the series does not exist yet)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


def monitored(settings, **changes):
    return shared_app(replace(settings, **changes))


async def scrape(app, peer: str = "192.0.2.10", token: str = TOKEN) -> str:
    async with client_from(app, peer) as prometheus:
        response = await prometheus.get("/metrics", headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.status_code
    assert response.headers["content-type"].startswith("text/plain; version=")
    return response.text


async def test_the_token_opens_metrics_and_nothing_else_does(settings, db):
    app = monitored(settings, metrics_token=TOKEN)
    text = await scrape(app)
    assert "portal_http_requests_total" in text
    async with client_from(app, "192.0.2.10") as stranger:
        wrong = await stranger.get("/metrics", headers={"authorization": "Bearer not-it"})
        missing = await stranger.get("/metrics")
        as_basic = await stranger.get("/metrics", headers={"authorization": f"Basic {TOKEN}"})
    assert [r.status_code for r in (wrong, missing, as_basic)] == [404, 404, 404]
    assert "portal_http" not in wrong.text  # the ordinary 404 page


async def test_configured_addresses_open_metrics_others_get_404(settings, db):
    app = monitored(settings, metrics_allow_ips="10.1.0.0/16, 192.0.2.10")
    for peer in ("10.1.44.3", "192.0.2.10"):
        async with client_from(app, peer) as allowed:
            assert (await allowed.get("/metrics")).status_code == 200
    async with client_from(app, "192.0.2.11") as outside:
        assert (await outside.get("/metrics")).status_code == 404


async def test_an_allowed_address_through_the_trusted_proxy(settings, db):
    app = monitored(settings, metrics_allow_ips="10.1.0.0/16", forwarded_allow_ips="10.9.9.9")
    async with client_from(app, "10.9.9.9") as proxy:
        inside = await proxy.get("/metrics", headers={"x-forwarded-for": "10.1.2.3"})
        outside = await proxy.get("/metrics", headers={"x-forwarded-for": "198.51.100.4"})
    assert (inside.status_code, outside.status_code) == (200, 404)
    async with client_from(app, "198.51.100.4") as forger:
        forged = await forger.get("/metrics", headers={"x-forwarded-for": "10.1.2.3"})
    assert forged.status_code == 404


async def test_without_settings_nobody_reads_metrics(client):
    assert (await client.get("/metrics")).status_code == 404
    refused = await client.get("/metrics", headers={"authorization": "Bearer "})
    assert refused.status_code == 404


async def test_requests_are_counted_and_timed_by_route_template(settings, db, locations):
    app = monitored(settings, metrics_token=TOKEN)
    route = dict(method="GET", route="/locations/{location_id}")
    before = await scrape(app)
    owner = await factories.make_user("owner")
    async with factories.make_client(app) as client:
        await factories.login(client, owner)
        for location in locations:
            assert (await client.get(f"/locations/{location}")).status_code == 200
        assert (await client.get("/nowhere/7")).status_code == 404
    after = await scrape(app)
    ok = "portal_http_requests_total"
    assert sample(after, ok, **route, status="200") - sample(before, ok, **route, status="200") == 2
    timed = "portal_http_request_duration_seconds_count"
    assert sample(after, timed, **route) - sample(before, timed, **route) == 2
    unmatched = dict(method="GET", route="unmatched", status="404")
    assert sample(after, ok, **unmatched) - sample(before, ok, **unmatched) == 1
    # One series per route, never one per id or per raw path.
    assert f'/locations/{locations[0]}"' not in after and "/nowhere/7" not in after


async def test_the_database_pool_is_reported(settings, db):
    text = await scrape(monitored(settings, metrics_token=TOKEN))
    maximum = sample(text, "portal_db_pool_max_connections")
    in_use = sample(text, "portal_db_pool_connections", state="in_use")
    idle = sample(text, "portal_db_pool_connections", state="idle")
    if db.kind == "postgres":
        assert maximum == 8  # the suite's pool (tests/conftest.py)
        assert 1 <= in_use + idle <= maximum
    else:
        assert (maximum, in_use, idle) == (0, 0, 0)  # SQLite has no pool


async def test_job_runs_are_counted_with_their_outcome_and_time(settings, db):
    app = monitored(settings, metrics_token=TOKEN)
    before = await scrape(app)
    metrics.record_job_run("test.nightly", metrics.JOB_SUCCEEDED, 2.5)
    metrics.record_job_run("test.nightly", metrics.JOB_FAILED, 0.2)
    metrics.record_job_run("test.nightly", metrics.JOB_FAILED, 0.3)
    after = await scrape(app)
    runs = "portal_job_runs_total"
    for outcome, count in (("succeeded", 1), ("failed", 2)):
        moved = sample(after, runs, job="test.nightly", outcome=outcome) - sample(
            before, runs, job="test.nightly", outcome=outcome
        )
        assert moved == count
    seconds = "portal_job_duration_seconds_sum"
    assert sample(after, seconds, job="test.nightly") - sample(
        before, seconds, job="test.nightly"
    ) == pytest.approx(3.0)
    failed_at = sample(
        after, "portal_job_last_run_timestamp_seconds", job="test.nightly", outcome="failed"
    )
    assert time.time() - 60 < failed_at <= time.time()


def _signed(secret: str, body: str) -> str:
    t = int(time.time())
    digest = hmac.new(secret.encode(), f"{t}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


async def test_webhook_deliveries_are_counted_by_outcome(
    settings, stripe_settings, db, monkeypatch
):
    body = json.dumps(
        {"id": "evt_metrics_1", "object": "event", "type": "customer.created", "data": {}}
    )
    failing = json.dumps(
        {"id": "evt_metrics_2", "object": "event", "type": "customer.created", "data": {}}
    )
    secret = stripe_settings.stripe_webhook_secret
    observer = monitored(settings, metrics_token=TOKEN)
    before = await scrape(observer)
    async with using_app(stripe_settings) as app, factories.make_client(app) as stripe:

        async def deliver(payload: str, signature: str) -> int:
            response = await stripe.post(
                "/stripe/webhook",
                content=payload,
                headers={"stripe-signature": signature, "content-type": "application/json"},
            )
            return response.status_code

        assert await deliver(body, "t=1,v1=deadbeef") == 400
        assert await deliver(body, _signed(secret, body)) == 200
        assert await deliver(body, _signed(secret, body)) == 200

        async def crash(gateway, event):
            raise RuntimeError("handler bug")

        monkeypatch.setattr(webhooks, "handle_event", crash)
        assert await deliver(failing, _signed(secret, failing)) == 500
    async with factories.make_client(shared_app(settings)) as unconfigured:
        response = await unconfigured.post("/stripe/webhook", content=body)
        assert response.status_code == 400
    after = await scrape(observer)
    name = "portal_stripe_webhook_events_total"
    moved = {
        outcome: sample(after, name, outcome=outcome) - sample(before, name, outcome=outcome)
        for outcome in ("invalid_signature", "unhandled", "duplicate", "failed", "not_configured")
    }
    assert moved == dict.fromkeys(moved, 1)


@pytest.mark.nodb
def test_a_short_metrics_token_is_refused():
    assert Settings.from_env({**BASE_ENV, "METRICS_TOKEN": TOKEN}).metrics_token == TOKEN
    with pytest.raises(ConfigurationError, match="METRICS_TOKEN"):
        Settings.from_env({**BASE_ENV, "METRICS_TOKEN": "short"})


RECORD = """
from portal import metrics
metrics.record_request("GET", "/login", 200, 0.01)
metrics.record_job_run("test.shared", "succeeded", 1.0)
metrics.update_pool_usage()
metrics.process_exit()  # as the app's shutdown does
"""
EXPOSE = """
from portal import metrics
print(metrics.exposition()[0].decode())
metrics.process_exit()
"""


@pytest.mark.nodb
def test_processes_sharing_a_directory_are_added_up(tmp_path):
    """Several server workers and the job worker: any one's scrape shows the sum of all."""
    shared = tmp_path / "not-made-yet"
    env = {**os.environ, metrics.MULTIPROCESS_ENV: str(shared)}
    for _ in range(3):
        subprocess.run([sys.executable, "-c", RECORD], env=env, check=True, timeout=60)
    shown = subprocess.run(
        [sys.executable, "-c", EXPOSE], env=env, check=True, timeout=60, capture_output=True
    ).stdout.decode()
    assert sample(shown, "portal_http_requests_total", route="/login", status="200") == 3
    assert sample(shown, "portal_job_runs_total", job="test.shared", outcome="succeeded") == 3
    # One file per process and kind, named by host and process id; a process that
    # stopped keeps its counts but leaves the live sums (the pool's gauges).
    assert len(list(shared.glob("counter_*.db"))) == 3
    assert not list(shared.glob("gauge_livesum_*.db"))


@pytest.mark.nodb
def test_serve_with_several_workers_makes_its_own_directory_and_removes_it(monkeypatch):
    monkeypatch.delenv(metrics.MULTIPROCESS_ENV, raising=False)
    with cli.metrics_directory(1):
        assert metrics.MULTIPROCESS_ENV not in os.environ  # one process: nothing to share
    with cli.metrics_directory(2):
        made = Path(os.environ[metrics.MULTIPROCESS_ENV])
        assert made.is_dir() and not any(made.iterdir())
    assert not made.exists() and metrics.MULTIPROCESS_ENV not in os.environ
    monkeypatch.setenv(metrics.MULTIPROCESS_ENV, "/var/lib/portal/metrics")
    with cli.metrics_directory(2):  # the operator's (shared with the worker) is theirs
        assert os.environ[metrics.MULTIPROCESS_ENV] == "/var/lib/portal/metrics"
