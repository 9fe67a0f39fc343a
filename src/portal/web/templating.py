"""Jinja environment: filters for money and local time, shared globals."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from litestar.plugins.jinja import JinjaTemplateEngine

from portal.auth.service import ROLE_LABELS
from portal.money import format_money
from portal.onetime import service as onetime
from portal.timeutil import to_local

STATIC_VERSION = "1"


def money(cents: int | None, currency: str = "USD", locale: str = "en_US") -> str:
    """Integer minor units → a localized amount in the currency's own decimals.

    Display only; never parse this back.
    """
    return format_money(cents, currency, locale)


def local_dt(value: datetime | None, tz: str = "UTC", fmt: str = "%Y-%m-%d %H:%M") -> str:
    if value is None:
        return ""
    return to_local(value, tz).strftime(fmt)


def basis_points(bp: int | None) -> str:
    if bp is None:
        return ""
    return f"{bp / 100:.2f}".rstrip("0").rstrip(".") + " %"


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
