"""Jinja environment: filters for money and local time, shared globals."""

from __future__ import annotations

from typing import Any

from litestar.plugins.jinja import JinjaTemplateEngine

from portal.formatting import basis_points, local_dt, money
from portal.identity import ROLE_LABELS
from portal.onetime import service as onetime

STATIC_VERSION = "1"

__all__ = ["STATIC_VERSION", "basis_points", "configure", "local_dt", "money", "url_with"]


def configure(engine: JinjaTemplateEngine) -> None:
    env = engine.engine
    env.filters["money"] = money
    env.filters["local_dt"] = local_dt
    env.filters["basis_points"] = basis_points
    env.globals["ROLE_LABELS"] = ROLE_LABELS
    env.globals["STATIC_VERSION"] = STATIC_VERSION
    env.globals["url_with"] = url_with
    # ``{{ one_time_key() }}`` in a money form's hidden ``request_key`` field.
    env.globals["one_time_key"] = onetime.new_key
    env.trim_blocks = True
    env.lstrip_blocks = True


def url_with(request: Any, **params: Any) -> str:
    """The current URL with some query parameters replaced (for filters and paging)."""
    query = dict(request.query_params)
    for key, value in params.items():
        if value is None or value == "":
            query.pop(key, None)
        else:
            query[key] = value
    from urllib.parse import urlencode

    return request.url.path + ("?" + urlencode(query) if query else "")
