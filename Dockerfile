# Clinic Portal application image (production: PostgreSQL, real Stripe keys).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

# pg_dump/pg_restore for `portal backup` and `portal restore` (Debian's 15, the
# same major version as the compose file's PostgreSQL).
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/*

# A plain install, without the dev extra or the Stripe stand-in (standin/ is a
# development tool): templates, static files and migrations are inside the
# installed package, so the sources are not needed once it is built.
WORKDIR /build
COPY pyproject.toml setup.py README.md ./
COPY src ./src
COPY templates ./templates
COPY migrations ./migrations
RUN pip install . && cd / && rm -rf /build && useradd --create-home portal
USER portal
# The working directory of `portal` commands; embedded mode (no DATABASE_URL)
# would keep its data under ./var here.
WORKDIR /home/portal

EXPOSE 8000
# Migrations run on start; then the server (several processes share nothing
# but the database, so any of them can serve any request).
CMD ["sh", "-c", "portal migrate && portal serve --host 0.0.0.0 --port 8000 --workers ${WEB_CONCURRENCY:-2}"]
