"""One settings object, read from the environment once.

The portal runs in one of two modes:

* **embedded** (no ``DATABASE_URL``): a SQLite file under ``var/`` (the
  checkout's when run from one, else the current directory's;
  ``PORTAL_VAR_DIR`` overrides), the local
  Stripe stand-in, a secret key generated on first start and kept under
  ``var/``, migrations applied on start. This is what ``make run`` gives.
* **production** (``DATABASE_URL`` set): PostgreSQL, real keys; a missing
  ``SECRET_KEY`` is a start-up error and pending migrations stop the server.
"""

from __future__ import annotations

import importlib.resources
import ipaddress
import os
import secrets
from dataclasses import dataclass, field
from email.utils import formataddr, parseaddr
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

# The source checkout, when the portal runs from one (``make``'s editable
# install): only the embedded ``var/`` default uses it. Templates and
# migrations are package resources, found the same way in any install.
PROJECT_ROOT = Path(__file__).resolve().parents[2]
_IN_CHECKOUT = (PROJECT_ROOT / "pyproject.toml").is_file() and (
    PROJECT_ROOT / "src" / "portal" / "settings.py"
).is_file()


def package_path(package: str) -> Path:
    """The folder of one of the portal's resource packages (``portal.templates``, …)."""
    return Path(str(importlib.resources.files(package)))


def default_var_dir() -> Path:
    """Embedded mode's data folder: ``var/`` in the checkout, else under the current directory."""
    return PROJECT_ROOT / "var" if _IN_CHECKOUT else Path.cwd() / "var"


class ConfigurationError(RuntimeError):
    """A setting is missing or wrong; the message says which and how to fix it."""


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be a whole number, got {raw!r}") from exc


def _hour(env: dict[str, str], name: str, default: int) -> int:
    value = _int(env, name, default)
    if not 0 <= value <= 23:
        raise ConfigurationError(f"{name} must be an hour from 0 to 23, got {value}")
    return value


# The port ``portal serve`` and ``make run`` serve on unless ``PORT`` (or
# ``--port``) says otherwise; the default ``BASE_URL`` names the same port.
DEFAULT_PORT = 8000


def _port(env: dict[str, str]) -> int:
    value = _int(env, "PORT", DEFAULT_PORT)
    if not 1 <= value <= 65535:
        raise ConfigurationError(f"PORT must be a port number from 1 to 65535, got {value}")
    return value


# ``JOB_SCHEDULE_REMINDERS="*/30 * * * *"`` changes the reminders' schedule (portal.jobs).
_SCHEDULE_PREFIX = "JOB_SCHEDULE_"


DEFAULT_CLINIC_NAME = "Clinic Portal"


@dataclass(frozen=True)
class Settings:
    database_url: str
    secret_key: str
    embedded: bool
    # Where people reach the portal: every link in an email and the pages Stripe
    # returns clients to after checkout. Unset, this machine at ``port``.
    base_url: str = f"http://127.0.0.1:{DEFAULT_PORT}"
    # The clinic's name, as people know it: the sign-in page and every email's
    # sender name and signature carry it.
    clinic_name: str = DEFAULT_CLINIC_NAME
    port: int = DEFAULT_PORT
    var_dir: Path = field(default_factory=default_var_dir)
    templates_dir: Path = field(default_factory=lambda: package_path("portal.templates"))
    stripe_secret_key: str = ""
    stripe_webhook_secret: str = ""
    stripe_api_base: str = ""
    # Sessions: staff are signed out after this much idle time, clients after
    # theirs; nobody keeps a session longer than the absolute lifetime.
    session_idle_minutes: int = 8 * 60
    client_session_idle_minutes: int = 24 * 60
    session_absolute_hours: int = 7 * 24
    session_touch_seconds: int = 60
    # Sign-in throttling: failures counted over a sliding window, per account
    # from one address, per address, and per account from every address.
    login_window_minutes: int = 15
    login_max_failures_per_account: int = 5
    login_max_failures_per_address: int = 5
    login_max_failures_per_account_total: int = 50
    db_pool_min: int = 1
    db_pool_max: int = 10
    debug: bool = False
    # Outgoing email: with no SMTP host, messages are kept in the outbox only
    # (owners read them in the portal); with one, they are sent through it.
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_user: str = ""
    smtp_password: str = ""
    # The sender's address; its name is the clinic's unless SMTP_FROM names one.
    smtp_from: str = "no-reply@localhost"
    smtp_starttls: bool = True
    # The reverse proxies (addresses or networks, comma-separated) whose
    # X-Forwarded-For / -Proto and X-Request-ID are believed; empty: nobody's.
    forwarded_allow_ips: str = ""
    # Log lines: "text" for a terminal, "json" (one object a line) for a pipeline.
    log_format: str = "text"
    # The least severe lines written: "info" keeps one line per request.
    log_level: str = "info"
    # /metrics answers a request bearing this token, or from these addresses or
    # networks (comma-separated); with neither set, nobody.
    metrics_token: str = ""
    metrics_allow_ips: str = ""
    # Jobs (portal.jobs): where the worker runs and when each job does.
    # ``jobs_in_process``: the server process runs the jobs itself (embedded
    # mode's default; production runs ``portal worker`` instead).
    jobs_in_process: bool = False
    # Overrides of a job's schedule from ``JOB_SCHEDULE_<NAME>``: a cron line in
    # UTC, or ``off`` (name, value) pairs, kept as a tuple so Settings stays hashable.
    job_schedules: tuple[tuple[str, str], ...] = ()
    # Packages expire at this hour of each location's own clock.
    package_expiry_hour: int = 3
    # A job that raised is tried again up to this many times in all, waiting
    # job_retry_wait_seconds ** attempt seconds between tries.
    job_max_attempts: int = 5
    job_retry_wait_seconds: int = 4
    # A worker writes a heartbeat this often; a job whose worker has been silent
    # for job_stalled_seconds is given to another worker.
    worker_heartbeat_seconds: int = 10
    job_stalled_seconds: int = 60
    worker_concurrency: int = 2

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def secure_cookies(self) -> bool:
        return self.base_url.startswith("https://")

    @property
    def sender(self) -> str:
        """Every email's From: SMTP_FROM's address, with its name or else the clinic's."""
        name, address = parseaddr(self.smtp_from)
        return formataddr((name or self.clinic_name, address or "no-reply@localhost"))

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        var_dir = Path(env.get("PORTAL_VAR_DIR") or default_var_dir())
        database_url = env.get("DATABASE_URL", "").strip()
        embedded = not database_url
        if embedded:
            database_url = f"sqlite:///{var_dir / 'portal.sqlite3'}"
        secret_key = env.get("SECRET_KEY", "").strip()
        if not secret_key:
            if not embedded:
                raise ConfigurationError(
                    "SECRET_KEY is not set. In production set SECRET_KEY to a long random "
                    "value (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)."
                )
            secret_key = _embedded_secret(var_dir)
        if len(secret_key) < 32:
            raise ConfigurationError("SECRET_KEY must be at least 32 characters long.")
        metrics_token = env.get("METRICS_TOKEN", "").strip()
        if metrics_token and len(metrics_token) < 24:
            raise ConfigurationError("METRICS_TOKEN must be at least 24 characters long.")
        port = _port(env)
        return cls(
            database_url=database_url,
            secret_key=secret_key,
            embedded=embedded,
            base_url=(env.get("BASE_URL", "").strip() or f"http://127.0.0.1:{port}").rstrip("/"),
            port=port,
            var_dir=var_dir,
            stripe_secret_key=env.get("STRIPE_SECRET_KEY", ""),
            stripe_webhook_secret=env.get("STRIPE_WEBHOOK_SECRET", ""),
            stripe_api_base=env.get("STRIPE_API_BASE", ""),
            session_idle_minutes=_int(env, "SESSION_IDLE_MINUTES", cls.session_idle_minutes),
            client_session_idle_minutes=_int(
                env, "CLIENT_SESSION_IDLE_MINUTES", cls.client_session_idle_minutes
            ),
            session_absolute_hours=_int(env, "SESSION_ABSOLUTE_HOURS", cls.session_absolute_hours),
            login_max_failures_per_account=_int(
                env, "LOGIN_MAX_FAILURES", cls.login_max_failures_per_account
            ),
            login_max_failures_per_address=_int(
                env, "LOGIN_MAX_FAILURES_PER_ADDRESS", cls.login_max_failures_per_address
            ),
            login_max_failures_per_account_total=_int(
                env,
                "LOGIN_MAX_FAILURES_PER_ACCOUNT_TOTAL",
                cls.login_max_failures_per_account_total,
            ),
            db_pool_min=_int(env, "DB_POOL_MIN", cls.db_pool_min),
            db_pool_max=_int(env, "DB_POOL_MAX", cls.db_pool_max),
            debug=_bool(env.get("PORTAL_DEBUG")),
            smtp_host=env.get("SMTP_HOST", "").strip(),
            smtp_port=_int(env, "SMTP_PORT", cls.smtp_port),
            smtp_user=env.get("SMTP_USER", ""),
            smtp_password=env.get("SMTP_PASSWORD", ""),
            smtp_from=env.get("SMTP_FROM", "").strip() or cls.smtp_from,
            clinic_name=" ".join(env.get("CLINIC_NAME", "").split())[:100] or DEFAULT_CLINIC_NAME,
            smtp_starttls=_bool(env.get("SMTP_STARTTLS"), default=cls.smtp_starttls),
            forwarded_allow_ips=env.get("FORWARDED_ALLOW_IPS", "").strip(),
            log_format=_choice(env, "LOG_FORMAT", ("text", "json")),
            log_level=_choice(env, "LOG_LEVEL", ("info", "warning", "error", "debug")),
            metrics_token=metrics_token,
            metrics_allow_ips=env.get("METRICS_ALLOW_IPS", "").strip(),
            jobs_in_process=_bool(env.get("JOBS_IN_PROCESS"), default=embedded),
            job_schedules=tuple(
                sorted(
                    (key[len(_SCHEDULE_PREFIX) :].lower(), value.strip())
                    for key, value in env.items()
                    if key.startswith(_SCHEDULE_PREFIX) and value.strip()
                )
            ),
            package_expiry_hour=_hour(env, "PACKAGE_EXPIRY_HOUR", cls.package_expiry_hour),
            job_max_attempts=max(1, _int(env, "JOB_MAX_ATTEMPTS", cls.job_max_attempts)),
            job_retry_wait_seconds=max(
                1, _int(env, "JOB_RETRY_WAIT_SECONDS", cls.job_retry_wait_seconds)
            ),
            worker_heartbeat_seconds=max(
                1, _int(env, "WORKER_HEARTBEAT_SECONDS", cls.worker_heartbeat_seconds)
            ),
            job_stalled_seconds=max(2, _int(env, "JOB_STALLED_SECONDS", cls.job_stalled_seconds)),
            worker_concurrency=max(1, _int(env, "WORKER_CONCURRENCY", cls.worker_concurrency)),
        )


def check_served_address(settings: Settings, host: str, port: int) -> None:
    """Refuse to serve embedded on an address ``BASE_URL`` obviously does not name.

    A ``BASE_URL`` naming this machine (localhost, a loopback address) with
    another port, or with https (the embedded server speaks plain HTTP),
    cannot reach the server being started: every emailed link and the return
    from Stripe's checkout would end on "This site can't be reached". Any
    other host may be a proxy or tunnel in front of the server, so it is
    believed; production (``DATABASE_URL`` set) always sits behind one and is
    not checked.
    """
    if not settings.embedded:
        return
    parts = urlsplit(settings.base_url)
    if not _names_this_machine(parts.hostname or ""):
        return
    try:
        named_port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ConfigurationError(f"BASE_URL {settings.base_url!r} has no valid port.") from None
    if parts.scheme != "http" or named_port != port:
        raise ConfigurationError(
            f"BASE_URL is {settings.base_url}, but the portal is about to serve plain HTTP "
            f"on {host} port {port}: "
            "emailed links and the return from checkout would not reach it. Unset BASE_URL "
            f"(it then follows the port) or set it to http://127.0.0.1:{port}."
        )


def _names_this_machine(host: str) -> bool:
    """``localhost`` (and its subdomains) or a loopback / unspecified address."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _choice(env: dict[str, str], name: str, allowed: tuple[str, ...]) -> str:
    """One of ``allowed`` (any case); unset or empty: the first."""
    raw = env.get(name)
    value = (raw or "").strip().lower() or allowed[0]
    if value not in allowed:
        raise ConfigurationError(f"{name} must be one of {', '.join(allowed)}, got {raw!r}")
    return value


def _embedded_secret(var_dir: Path) -> str:
    """Generate the embedded secret once and keep it, so restarts keep sessions."""
    path = var_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    var_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    # Create exclusively so two processes starting at once agree on one key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    return key


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()
