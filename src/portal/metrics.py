"""Prometheus metrics: what the portal counts, and the one exposition of them.

The web layer records requests and Stripe webhook events; the job worker calls
:func:`record_job_run`; the database pool's usage is read from the pool.
``/metrics`` (``portal.web.metrics``) serves :func:`exposition`.

**Several processes.** ``portal serve --workers N`` runs N processes behind one
port, and a scrape reaches one of them at random; the job worker is another
process again. So when ``PROMETHEUS_MULTIPROC_DIR`` names a directory, every
process writes its values to files there (prometheus-client's multiprocess
mode) and a scrape of any process adds up all of them: counters and
histograms are sums over every process that wrote to the directory (dead ones
included, so totals never fall back), the pool gauges are sums over the live
processes, the job's last-run time the latest of any. ``portal serve`` with
more than one worker makes such a directory itself when none is set; the
compose file shares one volume between the app and the worker. Without it (one
process, the tests) the values live in this process, and the process and
garbage-collector metrics of the Python client come with them.

Files are named after a process identifier of host name and process id rather
than the process id alone: containers sharing the volume each number their
processes from 1.

Nothing here knows of HTTP.
"""

from __future__ import annotations

import os
import socket
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str:
    """The shared metrics directory of this machine's portal processes, or ""."""
    return os.environ.get(MULTIPROCESS_ENV, "").strip()


def process_identifier() -> str:
    """Unique among the processes sharing the directory (no ``_``: the client splits on it)."""
    return f"{socket.gethostname()}-{os.getpid()}".replace("_", "-")


if multiprocess_dir():
    # Made if missing (the first value written would fail otherwise); then, before
    # any metric below creates its values, their class (read at each creation).
    os.makedirs(multiprocess_dir(), exist_ok=True)
    values.ValueClass = values.MultiProcessValue(process_identifier)

# Seconds: pages answer in tens of milliseconds; report downloads and the
# Stripe calls of a checkout take longer.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
JOB_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)

HTTP_REQUESTS = Counter(
    "portal_http_requests",
    "Requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_REQUEST_SECONDS = Histogram(
    "portal_http_request_duration_seconds",
    "Time from the request's arrival to the response's last byte, by method and route template.",
    ["method", "route"],
    buckets=REQUEST_BUCKETS,
)
WEBHOOK_EVENTS = Counter(
    "portal_stripe_webhook_events",
    "Stripe webhook deliveries by outcome: processed, unhandled (a type the portal ignores), "
    "duplicate, ignored (no id), invalid_signature, not_configured, unavailable (Stripe "
    "unreachable, retry asked), failed.",
    ["outcome"],
)
JOB_RUNS = Counter(
    "portal_job_runs",
    "Job runs by job name and outcome (succeeded, failed, ...).",
    ["job", "outcome"],
)
JOB_SECONDS = Histogram(
    "portal_job_duration_seconds",
    "Duration of job runs, by job name.",
    ["job"],
    buckets=JOB_BUCKETS,
)
JOB_LAST_RUN = Gauge(
    "portal_job_last_run_timestamp_seconds",
    "When each job last finished with each outcome (Unix time): alert when a job's last "
    "success is older than its schedule.",
    ["job", "outcome"],
    multiprocess_mode="max",
)
DB_POOL_CONNECTIONS = Gauge(
    "portal_db_pool_connections",
    "PostgreSQL pool connections by state (in_use, idle), summed over live processes; "
    "as of each process's last request or scrape.",
    ["state"],
    multiprocess_mode="livesum",
)
DB_POOL_MAX = Gauge(
    "portal_db_pool_max_connections",
    "PostgreSQL pool size limit, summed over live processes.",
    multiprocess_mode="livesum",
)

# The outcomes a job run is recorded with by the worker.
JOB_SUCCEEDED = "succeeded"
JOB_FAILED = "failed"


def record_request(method: str, route: str, status: int, seconds: float) -> None:
    """One answered request. ``route`` is the route's template, never the raw path:
    one series per page, not one per id."""
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_REQUEST_SECONDS.labels(method, route).observe(seconds)


def record_webhook(outcome: str) -> None:
    """One Stripe webhook delivery and what became of it."""
    WEBHOOK_EVENTS.labels(outcome).inc()


def record_job_run(name: str, outcome: str, seconds: float) -> None:
    """One finished job run: ``name`` the job (``packages.expire``), ``outcome``
    ``succeeded`` or ``failed`` (or another word the worker uses, such as
    ``retried``), ``seconds`` its duration. Called by the job worker after every run."""
    JOB_RUNS.labels(name, outcome).inc()
    JOB_SECONDS.labels(name).observe(max(seconds, 0.0))
    JOB_LAST_RUN.labels(name, outcome).set(time.time())


def update_pool_usage() -> None:
    """Copy the database pool's current usage into the pool gauges (no pool: zeros)."""
    from portal import db

    usage = db.pool_usage()
    in_use, idle, maximum = usage if usage is not None else (0, 0, 0)
    DB_POOL_CONNECTIONS.labels("in_use").set(in_use)
    DB_POOL_CONNECTIONS.labels("idle").set(idle)
    DB_POOL_MAX.set(maximum)


def exposition() -> tuple[bytes, str]:
    """The metrics in Prometheus' text format, and its content type.

    In multiprocess mode, the sum over every process writing to the directory.
    """
    update_pool_usage()
    directory = multiprocess_dir()
    if directory:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def process_exit() -> None:
    """A process stops: its live gauges (the pool's) leave the sums."""
    directory = multiprocess_dir()
    if directory:
        multiprocess.mark_process_dead(process_identifier(), directory)
