"""Guards: who may call a route. Every route has one, checked when the app starts.

``requires_role`` is the only way to open a route to signed-in users; a route
without it must say ``opt={"public": True}``. The access-matrix tests read the
roles back from the guard, so the declaration and the tests cannot drift.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from litestar import Litestar
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

from portal.identity import ROLES, STAFF_ROLES, CurrentUser

ENROL_PATH = "/account/two-step"


class EnrolmentRequired(PermissionDeniedException):
    """A gated user (``CurrentUser.must_enrol``) asked for anything but enrolment: pages
    answer with a redirect to enrol, the JSON API with 403 (``portal.web.errors``)."""

    def __init__(self) -> None:
        super().__init__(
            "Your role requires two-step sign-in: set up a passkey or an authenticator app first."
        )


class RoleGuard:
    """Callable guard that remembers which roles it admits."""

    def __init__(self, roles: Iterable[str]) -> None:
        self.roles = frozenset(roles)
        unknown = self.roles - set(ROLES)
        if unknown:
            raise ValueError(f"Unknown roles: {sorted(unknown)}")
        self.__name__ = f"requires_role({', '.join(sorted(self.roles))})"

    async def __call__(
        self, connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
    ) -> None:
        user = current_user_or_none(connection)
        if user is None:
            raise NotAuthorizedException("Please sign in.")
        if user.must_enrol and not _.opt.get("enrolment"):
            raise EnrolmentRequired()
        if user.role not in self.roles:
            raise PermissionDeniedException("Your role does not give access to this page.")


def requires_role(*roles: str) -> Guard:
    return RoleGuard(roles)


requires_owner = requires_role("owner")
requires_staff = requires_role(*STAFF_ROLES)
requires_signed_in = requires_role(*ROLES)


def current_user_or_none(connection: ASGIConnection[Any, Any, Any, Any]) -> CurrentUser | None:
    user = connection.scope.get("user")
    return user if isinstance(user, CurrentUser) else None


def current_user(connection: ASGIConnection[Any, Any, Any, Any]) -> CurrentUser:
    user = current_user_or_none(connection)
    if user is None:
        raise NotAuthorizedException("Please sign in.")
    return user


def _is_automatic_options(handler: BaseRouteHandler) -> bool:
    """Litestar answers OPTIONS itself (the Allow header); it reveals no data."""
    return getattr(handler, "http_methods", None) == {"OPTIONS"}


def route_roles(handler: BaseRouteHandler) -> frozenset[str] | None:
    """Roles a handler admits; None for a public handler."""
    if handler.opt.get("public") or _is_automatic_options(handler):
        return None
    roles: set[str] = set()
    found = False
    for guard in handler.resolve_guards():
        if isinstance(guard, RoleGuard):
            roles = set(guard.roles) if not found else roles & guard.roles
            found = True
    if not found:
        raise RuntimeError(f"Route {handler} has no requires_role guard and is not marked public")
    return frozenset(roles)


def roles_of_route(app: Litestar, name: str) -> tuple[frozenset[str] | None, bool]:
    """The roles the named route admits (None: public) and whether it changes data.

    Read from the route's guard, so a page that asks "may I?" cannot disagree
    with the route it links to. Cached on the app: routes do not change.
    """
    cache: dict[str, tuple[frozenset[str] | None, bool]] = app.state.setdefault(
        "route_roles_by_name", {}
    )
    if name not in cache:
        index = app.get_handler_index_by_name(name)
        if index is None:
            raise KeyError(f"No route is named {name!r}")
        handler = index["handler"]
        writes = bool(set(getattr(handler, "http_methods", ())) - {"GET", "HEAD", "OPTIONS"})
        cache[name] = (route_roles(handler), writes)
    return cache[name]


def assert_every_route_guarded(app: Litestar) -> None:
    """Fail at start-up when a route escapes access control."""
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            route_roles(handler)
