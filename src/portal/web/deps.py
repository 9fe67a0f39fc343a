"""What a handler may ask for by name, provided by Litestar's dependency injection.

A handler that declares ``user: CurrentUser`` gets the signed-in user (the
guards have already admitted them); ``client_address: str`` is the address
the audit trail and the sign-in limits record (``PortalMiddleware`` has
already applied the trusted-proxy rule); ``settings: Settings`` is the app's
settings; ``list_query: ListParams`` is a list page's search, status and
keyset cursor from the query string (``q``, ``status``, ``after``), and
``located_query: LocatedParams`` the same with its ``location`` filter;
``arrival: Arrival`` is the request, settings and address of someone at this
browser (signing in: no user yet); ``acting: Actor`` the same with the
signed-in user, for any change (a client's details, a package's price
override), and ``own: Own`` the same for a change of one's own account
(password, two-step sign-in); ``visit: Visit``
someone opening the sign-in page, signed in already or not, with the ``next``
page they asked for. Handlers
annotate them with the aliases at the end of this module (``user: SignedIn``).
Registered once on the app (:data:`DEPENDENCIES`); the Stripe gateway is
provided by the payments controllers, the only ones that use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Request, Response
from litestar.di import NamedDependency, Provide
from litestar.params import QueryParameter
from litestar.response import Redirect

from portal.identity import CurrentUser
from portal.settings import Settings
from portal.web.guards import current_user, current_user_or_none
from portal.web.responses import client_address, safe_next


def provide_user(request: Request[Any, Any, Any]) -> CurrentUser:
    return current_user(request)


def provide_user_or_none(request: Request[Any, Any, Any]) -> CurrentUser | None:
    return current_user_or_none(request)


def provide_client_address(request: Request[Any, Any, Any]) -> str:
    return client_address(request)


def provide_settings(request: Request[Any, Any, Any]) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


@dataclass(frozen=True)
class ListQueryString:
    """What a list page was asked for: ``q`` as typed (pages show it again),
    the status filter (empty: the list's default) and the keyset cursor."""

    q: str
    status: str
    after: str | None

    @property
    def search(self) -> str:
        return self.q.strip()


def provide_list_query(
    q: Annotated[str, QueryParameter(name="q")] = "",
    status: Annotated[str, QueryParameter(name="status")] = "",
    after: Annotated[str | None, QueryParameter(name="after")] = None,
) -> ListQueryString:
    return ListQueryString(q=q, status=status, after=after)


@dataclass(frozen=True)
class LocatedListQuery(ListQueryString):
    """A list query with the location filter as sent (empty: every location the user may see)."""

    location: str = ""


def provide_located_query(
    list_query: ListParams, location: Annotated[str, QueryParameter(name="location")] = ""
) -> LocatedListQuery:
    return LocatedListQuery(
        q=list_query.q, status=list_query.status, after=list_query.after, location=location
    )


@dataclass(frozen=True)
class Visiting:
    """Someone opening a sign-in or sign-up page: who they are when already signed
    in (then they go on), and where they were going (``next``, as sent)."""

    user: CurrentUser | None
    next_url: str | None

    def onward(self, home: str = "/") -> Response[Any] | None:
        """Where someone already signed in goes instead (``next``, if on this site)."""
        if self.user is None:
            return None
        return Redirect(path=safe_next(self.next_url, home), status_code=303)


def provide_visit(
    user_or_none: Visitor, next_url: Annotated[str | None, QueryParameter(name="next")] = None
) -> Visiting:
    return Visiting(user=user_or_none, next_url=next_url)


@dataclass(frozen=True)
class Arriving:
    """Someone at this browser, signed in or not yet: the request, the settings and the
    address (the trusted-proxy rule applied)."""

    request: Request[Any, Any, Any]
    settings: Settings
    address: str


def provide_arrival(
    request: Request[Any, Any, Any], settings: AppSettings, client_address: Address
) -> Arriving:
    return Arriving(request=request, settings=settings, address=client_address)


@dataclass(frozen=True)
class Acting(Arriving):
    """A signed-in user changing something from this browser: who they are, besides the
    request, the settings (a change may send mail) and the address (the audit's)."""

    user: CurrentUser


def provide_acting(arrival: Arrival, user: SignedIn) -> Acting:
    return Acting(
        request=arrival.request, settings=arrival.settings, address=arrival.address, user=user
    )


# Changing one's own account (password, two-step sign-in) is acting on it.
OwnAccount = Acting


def provide_own(acting: Actor) -> OwnAccount:
    return acting


DEPENDENCIES = {
    "user": Provide(provide_user, sync_to_thread=False),
    "user_or_none": Provide(provide_user_or_none, sync_to_thread=False),
    "client_address": Provide(provide_client_address, sync_to_thread=False),
    "settings": Provide(provide_settings, sync_to_thread=False),
    "list_query": Provide(provide_list_query, sync_to_thread=False),
    "located_query": Provide(provide_located_query, sync_to_thread=False),
    "own": Provide(provide_own, sync_to_thread=False),
    "acting": Provide(provide_acting, sync_to_thread=False),
    "arrival": Provide(provide_arrival, sync_to_thread=False),
    "visit": Provide(provide_visit, sync_to_thread=False),
}


# What a handler writes to ask for them: the parameter's name picks the
# dependency, the annotation marks it as injected (Litestar's NamedDependency),
# so nothing is inferred and a misspelt name fails at start-up.
SignedIn = NamedDependency[CurrentUser]
Visitor = NamedDependency[CurrentUser | None]
Address = NamedDependency[str]
AppSettings = NamedDependency[Settings]
ListParams = NamedDependency[ListQueryString]
LocatedParams = NamedDependency[LocatedListQuery]
Own = NamedDependency[OwnAccount]
Actor = NamedDependency[Acting]
Arrival = NamedDependency[Arriving]
# The zone the signed-in person's own times are shown in (``locations.viewer_zone``);
# provided by app.py, which may reach the locations context.
ViewerZone = NamedDependency[str]
Visit = NamedDependency[Visiting]
