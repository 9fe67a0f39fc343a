from __future__ import annotations

import os
from typing import Any

from litestar import MediaType, Response, get
from litestar.response import Template

from portal import db
from portal.auth.service import CLIENT, MANAGER, OWNER, THERAPIST
from portal.dashboard import service
from portal.locations.service import all_locations
from portal.web.deps import SignedIn
from portal.web.guards import requires_signed_in


@get("/", guards=[requires_signed_in], name="dashboard")
async def dashboard(user: SignedIn) -> Template:
    """Staff get the dashboard; a client's home is their account (packages, appointments).

    Clients are shown "My account" right here, where sign-in lands, rather
    than redirected: the page is the same as ``/account``.
    """
    if user.role == CLIENT:
        from portal.bookings.account import account_context  # bookings build on clients

        return Template("clients/account.html", context=await account_context(user.id))
    context: dict[str, Any] = {}
    if user.is_staff:
        context["locations"] = await all_locations(active_only=False, visible_to=user)
        if user.role == OWNER:
            context.update(await service.owner_summary())
            context.update(await service.owner_glance(context["locations"]))
        elif user.role == THERAPIST:
            context.update(await service.therapist_day(user))
        elif user.role == MANAGER:
            context.update(await service.manager_day(user, context["locations"]))
    return Template("dashboard/index.html", context=context)


@get("/healthz", opt={"public": True}, name="healthz", media_type=MediaType.JSON)
async def healthz() -> Response[dict[str, str | int]]:
    """The database's state, and which server process answered (behind a balancer, or
    a port taken by another process since it was chosen)."""
    if await db.ping():
        return Response({"status": "ok", "database": "ok", "process": os.getpid()})
    return Response(
        {"status": "error", "database": "unreachable", "process": os.getpid()}, status_code=503
    )


ROUTES = [dashboard, healthz]
