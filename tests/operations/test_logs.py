"""One structured line per request: id, user, method, route template, status, duration;
JSON when ``LOG_FORMAT=json``, key=value text otherwise; a job's id bound the same way."""

from __future__ import annotations

import logging
import re
from dataclasses import replace

import pytest

from portal import logs
from portal.settings import ConfigurationError, Settings
from tests import factories
from tests.conftest import shared_app
from tests.operations.helpers import captured, client_from

BASE_ENV = {"DATABASE_URL": "postgresql://nobody@127.0.0.1/none", "SECRET_KEY": "k" * 40}


async def test_a_request_writes_one_json_line_with_its_fields(app, db, locations):
    owner = await factories.make_user("owner")
    async with factories.make_client(app) as client:
        await factories.login(client, owner)
        with captured() as log:
            response = await client.get(f"/locations/{locations[0]}")
    assert response.status_code == 200
    [line] = log.requests()
    assert line["event"] == "request"
    assert line["request_id"] == response.headers["x-request-id"]
    assert line["user_id"] == owner.id
    assert (line["method"], line["route"], line["status"]) == (
        "GET",
        "/locations/{location_id}",
        200,
    )
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert line["client"] == "203.0.113.7"
    assert line["level"] == "info" and re.match(r"\d{4}-\d\d-\d\dT", line["timestamp"])
    assert "path" not in line  # a matched route is named by its template only


async def test_an_anonymous_request_and_an_unmatched_path(client):
    with captured() as log:
        await client.get("/login")
        await client.get("/nowhere/42")
    sign_in, nowhere = log.requests()
    assert (sign_in["route"], sign_in["user_id"], sign_in["status"]) == ("/login", None, 200)
    assert (nowhere["route"], nowhere["path"], nowhere["status"]) == (
        "unmatched",
        "/nowhere/42",
        404,
    )


async def test_behind_the_trusted_proxy_the_line_names_the_forwarded_client(settings, db):
    app = shared_app(replace(settings, forwarded_allow_ips="10.0.0.5"))
    with captured() as log:
        async with client_from(app, "10.0.0.5") as proxy:
            await proxy.get("/login", headers={"x-forwarded-for": "198.51.100.23"})
        async with client_from(app, "192.0.2.1") as stranger:
            await stranger.get("/login", headers={"x-forwarded-for": "198.51.100.23"})
    assert [line["client"] for line in log.requests()] == ["198.51.100.23", "192.0.2.1"]


async def test_the_text_format_is_one_readable_line(client):
    with captured(logs.TEXT) as log:
        response = await client.get("/login")
    [line] = log.text.splitlines()
    assert "request" in line and "[portal.request]" in line
    assert f"request_id={response.headers['x-request-id']}" in line
    assert "route=/login" in line and "status=200" in line and "method=GET" in line


@pytest.mark.nodb
def test_a_job_binds_its_id_to_the_lines_it_writes():
    job_log = logging.getLogger("portal.jobs.example")
    with captured() as log:
        with logs.bound(job="packages.expire", job_id=41):
            job_log.warning("a package could not be expired")
            assert logs.current("job_id") == 41
        job_log.warning("after the run")
    during, after = log.json_lines()
    assert (during["job"], during["job_id"], during["event"]) == (
        "packages.expire",
        41,
        "a package could not be expired",
    )
    assert "job_id" not in after and logs.current("job_id") is None


@pytest.mark.nodb
def test_log_format_comes_from_the_environment_and_is_checked():
    assert Settings.from_env(BASE_ENV).log_format == "text"
    assert Settings.from_env({**BASE_ENV, "LOG_FORMAT": "JSON"}).log_format == "json"
    with pytest.raises(ConfigurationError, match="LOG_FORMAT must be one of text, json"):
        Settings.from_env({**BASE_ENV, "LOG_FORMAT": "xml"})
    assert Settings.from_env(BASE_ENV).log_level == "info"
    assert Settings.from_env({**BASE_ENV, "LOG_LEVEL": "Warning"}).log_level == "warning"
    with pytest.raises(ConfigurationError, match="LOG_LEVEL"):
        Settings.from_env({**BASE_ENV, "LOG_LEVEL": "loud"})
