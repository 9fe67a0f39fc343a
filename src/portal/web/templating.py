"""Jinja environment: filters for money and local time, shared globals."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from jinja2 import pass_context
from litestar.plugins.jinja import JinjaTemplateEngine
from markupsafe import Markup, escape

from portal.access import can_read, can_write
from portal.formatting import (
    REDEEMABLE,
    basis_points,
    local_dt,
    money,
    money_cell,
    redeemable_text,
    zoned_dt,
)
from portal.htmlrows import active_badge
from portal.htmlrows import text as cached_text
from portal.identity import ROLE_LABELS
from portal.onetime import service as onetime
from portal.settings import DEFAULT_CLINIC_NAME
from portal.web.guards import current_user_or_none, roles_of_route
from portal.web.menu import MENU, menu_section

STATIC_VERSION = "2"

__all__ = [
    "STATIC_VERSION",
    "basis_points",
    "configure",
    "local_dt",
    "money",
    "url_with",
    "with_query",
]


def configure(
    engine: JinjaTemplateEngine, clinic_name: str = DEFAULT_CLINIC_NAME, *, reload: bool = True
) -> None:
    env = engine.engine
    env.auto_reload = reload  # off: a template is read once, not checked on every render
    env.globals["CLINIC_NAME"] = clinic_name  # the sign-in page, titles, the brand
    env.filters["money"] = money
    env.filters["local_dt"] = local_dt
    env.filters["zoned_dt"] = zoned_dt
    env.filters["basis_points"] = basis_points
    env.filters["redeemable"] = redeemable_text  # a package's rule, in its one wording
    env.globals["REDEEMABLE"] = REDEEMABLE
    env.globals["ROLE_LABELS"] = ROLE_LABELS
    env.globals["STATIC_VERSION"] = STATIC_VERSION
    env.globals["url_with"] = url_with
    env.globals["may"] = may
    env.globals["main_menu"] = main_menu
    env.globals["option_tags"] = option_tags
    env.globals["money_cell"] = money_cell
    env.globals["active_badge"] = active_badge
    env.filters["query"] = with_query
    # ``{{ one_time_key() }}`` in a money form's hidden ``request_key`` field.
    env.globals["one_time_key"] = onetime.new_key
    env.trim_blocks = True
    env.lstrip_blocks = True


def option_tags(
    options: Mapping[Any, Any] | Iterable[Any],
    current: Any,
    value: str | None = None,
    text: str | None = None,
) -> Markup:
    """The ``<option>`` tags of a select (``choice`` in macros.html): pairs (key, shown),
    a mapping, or rows with ``value`` and ``text`` keys; ``current`` selected.

    Written in Python: a list page's filters can offer hundreds of choices (every
    therapist of the chain), which a template loop renders several times slower.
    """
    items: Iterable[Any] = options.items() if isinstance(options, Mapping) else options
    chosen = str(current)
    tags = []
    for option in items:
        key, shown = (option[value], option[text]) if value and text else option
        key = str(key)
        selected = " selected" if key == chosen else ""
        # Plain text escaped through ``htmlrows.text``: the same few hundred names
        # (every therapist of a chain) on every page, escaped once; Markup as it is.
        label = cached_text(shown) if type(shown) is str else escape(shown)
        tags.append(f'<option value="{cached_text(key)}"{selected}>{label}</option>')
    # Safe: every key and label above is escaped (Markup.format would escape them
    # again, five times slower).
    return Markup("".join(tags))  # noqa: S704


@pass_context
def may(context: Any, route_name: str, location: int | None = None) -> bool:
    """``{% if may('sale_new') %}``: may the signed-in user use the named route?

    Derived from the route's own guard (``roles_of_route``), then, when the
    page names a location, from ``portal.access``: a route that changes data
    needs ``can_write`` there, a page that only shows needs ``can_read``. What
    a page offers therefore follows what the route allows; the route still
    checks for itself.
    """
    request = context["request"]
    user = current_user_or_none(request)
    roles, writes = roles_of_route(request.app, route_name)
    if roles is None:
        return True
    if user is None or not _admits(roles, user.role):
        return False
    if location is None:
        return True
    return can_write(user, location) if writes else can_read(user, location)


def _admits(roles: frozenset[str] | None, role: str) -> bool:
    """Whether a route's guard (its roles; None: public) lets ``role`` in."""
    return roles is None or role in roles


@pass_context
def main_menu(context: Any) -> Markup:
    """The main menu's items (``portal.web.menu``) for the signed-in user on this page:
    an entry shows when its route admits the user's role, as ``may`` decides.

    Written once per role and section and kept on the app: every page has the menu,
    and neither the routes nor the labels change while the app runs.
    """
    request = context["request"]
    user = current_user_or_none(request)
    if user is None:
        return Markup("")
    here = menu_section(request.url.path)
    written: dict[tuple[str, str | None], Markup] = request.app.state.setdefault(
        "main_menu_by_role", {}
    )
    key = (user.role, here)
    if key not in written:
        items = []
        for entry in MENU:
            if not _admits(roles_of_route(request.app, entry.route)[0], user.role):
                continue
            current = ' aria-current="page"' if entry.route == here else ""
            href = escape(request.app.route_reverse(entry.route))
            label = escape(entry.label_for(user.role))
            items.append(f'<li><a href="{href}"{current}>{label}</a></li>')
        written[key] = Markup("\n".join(items))  # noqa: S704 (each part escaped)
    return written[key]


def with_query(url: str, **params: Any) -> str:
    """``{{ url_for('appointment_new') | query(location=loc.id, day=day) }}``.

    ``url_for`` fills a route's path; links that open a page already filtered
    (a day, a location, a service) also carry query parameters. None leaves a
    parameter out; an empty string keeps it empty (a form's "any" choice).
    Slashes stay readable, so ``next=/buy/3`` reads as it did when written by hand.
    """
    from urllib.parse import urlencode

    query = {key: value for key, value in params.items() if value is not None}
    return url + ("?" + urlencode(query, safe="/") if query else "")


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
