"""Schemathesis against the portal's own OpenAPI document (``/api/v1``).

The schema is read from ``/api/v1/schema/openapi.json`` of the in-process app,
signed in as an owner. Schemathesis generates the requests (valid ones, with
real and random ids, and invalid ones) through Hypothesis; they are sent to
the app in this process and event loop (the database pool lives here), and
each answer is checked by Schemathesis: no server error, a body that matches
the documented schema, the documented content type.
"""

from __future__ import annotations

from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from tests.payments.helpers import make_package
from tests.security.harness import gather_limited

CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
# Draws per strategy; an operation has up to three: valid requests with the ids
# of real rows, valid requests with any ids, invalid requests.
EXAMPLES = 5


def _cases(strategies: list[Any], count: int) -> list[Any]:
    """About ``count`` draws (deterministic) from each of an operation's
    strategies, in one Hypothesis run (each run costs more than its requests)."""
    out: list[Any] = []

    @settings(
        max_examples=count * len(strategies),
        database=None,
        derandomize=True,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.one_of(strategies))
    def collect(case: Any) -> None:
        out.append(case)

    collect()
    return out


async def test_api_answers_match_the_openapi_schema(
    owner_client: httpx.AsyncClient, locations: tuple[int, int]
) -> None:
    package_id = await make_package()
    from portal.catalog.tables import Package

    service_id = (await Package.select(Package.service).where(Package.id == package_id).run())[0][
        "service"
    ]
    real = {"location_id": locations[0], "package_id": package_id, "service_id": service_id}

    document = await owner_client.get("/api/v1/schema/openapi.json")
    assert document.status_code == 200
    schema = schemathesis.openapi.from_dict(document.json())
    operations = [
        result.ok()
        for result in schema.get_all_operations()
        if result.ok().path.startswith("/api/v1/")
        and not result.ok().path.startswith("/api/v1/schema")
    ]
    assert len(operations) >= 10, [op.path for op in operations]

    cases: list[Any] = []
    for op in operations:
        names = {p.name for p in op.path_parameters}
        fixed = {name: real[name] for name in names if name in real}
        strategies = [op.as_strategy(path_parameters=fixed)]
        if names:
            strategies.append(op.as_strategy())
        strategies.append(op.as_strategy(generation_mode=GenerationMode.NEGATIVE))
        cases += _cases(strategies, EXAMPLES)

    async def send(case: Any) -> httpx.Response:
        kwargs = case.as_transport_kwargs(base_url="http://testserver")
        return await owner_client.request(
            kwargs["method"], kwargs["url"], params=kwargs.get("params") or None
        )

    responses = await gather_limited(map(send, cases))
    failures: list[str] = []
    statuses: dict[int, int] = {}
    for case, response in zip(cases, responses, strict=True):
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        try:
            case.validate_response(response, checks=CHECKS)
        except Exception as exc:  # Schemathesis raises a group of check failures
            failures.append(f"{case.method} {response.url}: {str(exc)[:400]}")
    assert not failures, "\n".join(failures[:20])
    # The real ids reached the handlers: a good share of answers are successes.
    assert statuses.get(200, 0) >= len(operations) * EXAMPLES // 2, statuses
