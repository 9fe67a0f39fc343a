# Clinic Portal application image (production: PostgreSQL, real Stripe keys).
# One image for the web app (`portal serve`, the default command) and the job
# worker (`portal worker`, docker-compose.yml's `worker` service).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# pg_dump/pg_restore for `portal backup` and `portal restore`, of the same major
# version as the compose file's PostgreSQL (16): from the PostgreSQL project's
# apt repository, since Debian bookworm ships 15, whose pg_dump cannot dump a 16
# server. curl only fetches the repository's key and is removed again.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && install -d /usr/share/postgresql-common/pgdg \
    && curl -fsSL -o /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc \
        https://www.postgresql.org/media/keys/ACCC4CF8.asc \
    && echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] https://apt.postgresql.org/pub/repos/apt bookworm-pgdg main" \
        > /etc/apt/sources.list.d/pgdg.list \
    && apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client-16 \
    && apt-get purge -y curl && apt-get autoremove -y \
    && rm -rf /var/lib/apt/lists/*

# A plain install, without the dev extra or the Stripe stand-in (standin/ is a
# development tool): templates, static files and migrations are inside the
# installed package, so the sources are not needed once it is built.
WORKDIR /build
COPY pyproject.toml setup.py README.md ./
COPY src ./src
COPY templates ./templates
COPY migrations ./migrations
RUN pip install . && cd / && rm -rf /build

# Never root: a fixed id, so files on volumes keep one owner across rebuilds.
# /var/lib/portal/metrics is where the processes of one machine (the server's
# workers, the job worker) share their Prometheus values (README, "Metrics");
# a named volume mounted there starts with this owner.
RUN useradd --create-home --uid 10001 --user-group portal \
    && install -d -o portal -g portal /var/lib/portal/metrics
USER portal
# The working directory of `portal` commands; embedded mode (no DATABASE_URL)
# would keep its data under ./var here, so `portal demo` works in the image either way.
WORKDIR /home/portal

EXPOSE 8000
# The web app answers /healthz (200 with the database reachable, 503 without).
# The worker service, which serves no HTTP, turns this check off in compose.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=5 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
# Migrations run on start; then the server (several processes share nothing
# but the database, so any of them can serve any request). `exec`: the server
# gets the stop signal and shuts down cleanly.
CMD ["sh", "-c", "portal migrate && exec portal serve --host 0.0.0.0 --port 8000 --workers ${WEB_CONCURRENCY:-2}"]
