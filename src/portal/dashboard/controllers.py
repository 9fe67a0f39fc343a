from __future__ import annotations

from typing import Any

from litestar import MediaType, Request, Response, get
from litestar.response import Template

from portal import db
from portal.audit.tables import AuditLog
from portal.auth.service import CLIENT, STAFF_ROLES, CurrentUser
from portal.auth.tables import User
from portal.locations.service import visible_location_ids
from portal.locations.tables import Location
from portal.web.guards import current_user, requires_signed_in


async def _visible_locations(user: CurrentUser) -> list[dict[str, Any]]:
    visible = visible_location_ids(user)
    query = Location.select(Location.id, Location.name, Location.timezone, Location.active)
    if visible is not None:
        query = query.where(Location.id.is_in(list(visible) or [-1]))
    rows: list[dict[str, Any]] = await query.order_by(Location.name).run()
    return rows


async def _owner_context() -> dict[str, Any]:
    """The owner's extras: active staff count, recent changes, sales needing review."""
    from portal.sales import service as sales  # sales build on the dashboard's contexts

    # Staff only: a chain has hundreds of thousands of client accounts, and
    # counting them on every visit to the home page is not worth it.
    return {
        "user_count": (
            await User.count()
            .where(User.role.is_in(list(STAFF_ROLES)) & (User.active == True))  # noqa: E712
            .run()
        ),
        "recent_changes": (
            await AuditLog.select().order_by(AuditLog.id, ascending=False).limit(8).run()
        ),
        "needs_review": await sales.needing_review(),
    }


@get("/", guards=[requires_signed_in], name="dashboard")
async def dashboard(request: Request[Any, Any, Any]) -> Template:
    """Staff get the dashboard; a client's home is their account (packages, appointments).

    Clients are shown "My account" right here, where sign-in lands, rather
    than redirected: the page is the same as ``/account``.
    """
    user = current_user(request)
    if user.role == CLIENT:
        from portal.bookings.account import account_context  # bookings build on clients

        return Template("clients/account.html", context=await account_context(user.id))
    context: dict[str, Any] = {}
    if user.is_staff:
        context["locations"] = await _visible_locations(user)
        if user.role == "owner":
            context.update(await _owner_context())
    return Template("dashboard/index.html", context=context)


@get("/healthz", opt={"public": True}, name="healthz", media_type=MediaType.JSON)
async def healthz() -> Response[dict[str, str]]:
    if await db.ping():
        return Response({"status": "ok", "database": "ok"}, status_code=200)
    return Response({"status": "error", "database": "unreachable"}, status_code=503)


ROUTES = [dashboard, healthz]
