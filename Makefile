# Clinic Portal — the commands a developer and CI use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8000

.PHONY: run test lint format bench load compose-check clean help

help:
	@echo "make run    - set up and serve the portal with demo data on http://127.0.0.1:$(PORT)"
	@echo "make test   - set up and run the whole suite (SQLite, PostgreSQL, Chromium)"
	@echo "make lint   - ruff check, ruff format --check, mypy, lint-imports (layers, no cycles)"
	@echo "make load   - 60 s of mixed traffic on two portal processes and PostgreSQL (LOAD_ARGS=--seconds N)"
	@echo "make bench  - fill PostgreSQL with 1M appointments and payments, measure (bench/README.md)"
	@echo "make compose-check - Docker: build the image, run docker-compose.yml, check health, sign-in, a job, metrics"

$(STAMP): pyproject.toml setup.py standin/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet -e ./standin
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/portal migrate
	$(BIN)/portal demo --if-empty
	PORT=$(PORT) $(BIN)/python -m portal.devserver

# Two workers (pytest-xdist; TEST_WORKERS=auto uses every core): each has its own
# databases, stand-in and ports; the browser and race suites stay on one worker each.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

load: $(STAMP)
	$(BIN)/python bench/load.py $(LOAD_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check setup.py src standin tests bench
	$(BIN)/ruff format --check setup.py src standin tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff check --fix setup.py src standin tests bench
	$(BIN)/ruff format setup.py src standin tests bench

# Needs PostgreSQL (BENCH_DATABASE_URL, default portal_bench on 127.0.0.1); takes ~15 minutes.
bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# Needs Docker with Compose v2; not part of `make test` (CI machines have no Docker).
# Run it before a release and after changing the Dockerfile, docker-compose.yml or
# anything the image starts with (README, "Deployment").
compose-check:
	.ci/compose-check

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
