"""Helpers for the two-step sign-in tests: a known TOTP secret and a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pyotp

from portal.auth import totp
from portal.auth.tables import TotpFactor
from portal.identity import CurrentUser
from portal.timeutil import utcnow
from tests import factories

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
# A fixed instant at the start of a 30-second step.
T0 = datetime(2026, 12, 5, 9, 0, 0, tzinfo=UTC)


def actor(account: factories.Account) -> CurrentUser:
    return CurrentUser(account.id, account.email, "", account.role, frozenset())


def code_at(at: datetime, secret: str = SECRET) -> str:
    return pyotp.TOTP(secret).at(at)


async def enrol_totp(account: factories.Account, *, at: datetime = T0) -> list[str]:
    """Set up an authenticator app with the known secret, confirmed at ``at``;
    the recovery codes made for it."""
    from portal.auth import twostep

    await totp.start_enrolment(account.id, account.email)
    await (
        TotpFactor.update({TotpFactor.secret: totp.seal(SECRET)})
        .where(TotpFactor.user == account.id)
        .run()
    )
    return await twostep.confirm_totp(None, actor(account), code_at(at), at=at)


async def allow_current_code(account: factories.Account) -> str:
    """Forget the last step used (enrolment was at T0), and give the code of now."""
    await TotpFactor.update({TotpFactor.last_step: 0}).where(TotpFactor.user == account.id).run()
    return code_at(utcnow())


async def password_step(
    client: httpx.AsyncClient, account: factories.Account, next_url: str = ""
) -> httpx.Response:
    data = {"email": account.email, "password": account.password}
    if next_url:
        data["next"] = next_url
    return await factories.post_form(client, "/login", data)
