"""Housekeeping: expired pending sign-ins and WebAuthn challenges go with expired sessions."""

from __future__ import annotations

from datetime import timedelta

from portal.auth.service import hash_token, purge_expired
from portal.auth.tables import PendingSignIn, WebauthnChallenge
from portal.timeutil import utcnow
from tests import factories


async def test_purge_deletes_expired_pending_sign_ins_and_challenges(db, settings):
    account = await factories.make_user("owner")
    now = utcnow()
    for name, expires in (
        ("old", now - timedelta(seconds=1)),
        ("live", now + timedelta(minutes=5)),
    ):
        await PendingSignIn.insert(
            PendingSignIn(
                token_hash=hash_token(f"pending-{name}"),
                user=account.id,
                created_at=now - timedelta(minutes=10),
                expires_at=expires,
            )
        ).run()
        await WebauthnChallenge.insert(
            WebauthnChallenge(
                token_hash=hash_token(f"challenge-{name}"),
                purpose="sign_in",
                user=None,
                challenge="Y2hhbGxlbmdl",
                expires_at=expires,
            )
        ).run()
    await purge_expired(settings)
    pending = await PendingSignIn.select(PendingSignIn.token_hash).run()
    challenges = await WebauthnChallenge.select(WebauthnChallenge.token_hash).run()
    assert [r["token_hash"] for r in pending] == [hash_token("pending-live")]
    assert [r["token_hash"] for r in challenges] == [hash_token("challenge-live")]
