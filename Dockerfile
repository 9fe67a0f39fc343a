# Clinic Portal application image (production: PostgreSQL, real Stripe keys).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

# pg_dump/pg_restore for `portal backup` and `portal restore` (Debian's 15, the
# same major version as the compose file's PostgreSQL).
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
COPY templates ./templates
COPY migrations ./migrations
RUN pip install -e . && useradd --create-home portal
USER portal

EXPOSE 8000
# Migrations run on start; then the server (several processes share nothing
# but the database, so any of them can serve any request).
CMD ["sh", "-c", "portal migrate && portal serve --host 0.0.0.0 --port 8000 --workers ${WEB_CONCURRENCY:-2}"]
