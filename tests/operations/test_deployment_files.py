"""The Dockerfile, docker-compose.yml and README agree (``make compose-check`` runs them
for real where Docker is; these checks run everywhere)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.nodb

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_one_postgresql_version_in_compose_image_and_docs():
    image = compose()["services"]["postgres"]["image"]
    major = re.fullmatch(r"postgres:(\d+)-alpine", image).group(1)
    assert major == "16"
    assert f"postgresql-client-{major}" in (ROOT / "Dockerfile").read_text()
    readme = (ROOT / "README.md").read_text()
    assert f"PostgreSQL {major}" in readme
    versions = set(re.findall(r"PostgreSQL (\d+)", readme))
    versions |= set(re.findall(r"postgresql-client-(\d+)", readme))
    assert versions == {major}
    operations = (ROOT / "docs" / "operations.md").read_text()
    assert set(re.findall(r"PostgreSQL (\d+)", operations)) <= {major}


def test_the_image_runs_as_a_user_and_checks_its_health():
    dockerfile = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", dockerfile, re.M)


def test_the_worker_runs_beside_the_app_on_the_same_image_and_settings():
    services = compose()["services"]
    app, worker = services["app"], services["worker"]
    assert worker["command"] == ["portal", "worker"]
    assert worker["image"] == app["image"] and worker["environment"] == app["environment"]
    assert worker["depends_on"]["app"]["condition"] == "service_healthy"
    assert worker["healthcheck"] == {"disable": True}
    # Their metrics add up in one shared directory.
    shared = app["environment"]["PROMETHEUS_MULTIPROC_DIR"]
    assert f"metrics:{shared}" in app["volumes"] and f"metrics:{shared}" in worker["volumes"]


def test_compose_check_is_a_make_target_outside_make_test():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^compose-check:\n\t\.ci/compose-check$", makefile, re.M)
    test_recipe = re.search(r"^test: .*\n((?:\t.*\n)+)", makefile, re.M).group(1)
    assert "compose" not in test_recipe
