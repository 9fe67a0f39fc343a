"""What the staff dashboard shows beyond the locations list: the owner's extras."""

from __future__ import annotations

from typing import Any

from portal.audit.tables import AuditLog
from portal.auth.service import STAFF_ROLES
from portal.auth.tables import User

RECENT_CHANGES = 8


async def owner_summary() -> dict[str, Any]:
    """Active staff count, the latest audited changes, sales waiting for review."""
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
            await AuditLog.select()
            .order_by(AuditLog.id, ascending=False)
            .limit(RECENT_CHANGES)
            .run()
        ),
        "needs_review": await sales.needing_review(),
    }
