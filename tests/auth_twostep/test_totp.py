"""Authenticator codes and recovery codes: a known secret, a fixed clock, no replay."""

from __future__ import annotations

from datetime import timedelta

from portal.audit.tables import AuditLog
from portal.auth import totp, twostep
from portal.auth.tables import PendingSignIn, RecoveryCode, TotpFactor, UserSession
from portal.email.tables import OutboxMessage
from portal.timeutil import utcnow
from tests import factories
from tests.auth_twostep.helpers import (
    SECRET,
    T0,
    actor,
    allow_current_code,
    code_at,
    enrol_totp,
    password_step,
)


def test_known_vector_of_rfc_6238():
    # RFC 6238, appendix B: the SHA-1 secret "12345678901234567890" at T = 59 s.
    import base64

    secret = base64.b32encode(b"12345678901234567890").decode()
    from datetime import UTC, datetime

    at = datetime.fromtimestamp(59, tz=UTC)
    assert totp.matching_step(secret, "287082", at) == 1  # the 6-digit tail of 94287082


async def test_enrolment_needs_a_first_code(db, owner):
    enrolment = await totp.start_enrolment(owner.id, owner.email)
    assert enrolment.qr_svg.startswith("<svg") and "otpauth://" in enrolment.uri
    assert enrolment.secret.replace(" ", "") in enrolment.grouped_secret.replace(" ", "")
    # The same pending secret on a reload; not active yet.
    again = await totp.start_enrolment(owner.id, owner.email)
    assert again.secret == enrolment.secret
    assert not await totp.is_active(owner.id)
    # The secret is sealed at rest: the stored value does not hold it.
    stored = await TotpFactor.select(TotpFactor.secret).where(TotpFactor.user == owner.id).first()
    assert stored is not None and enrolment.secret not in stored["secret"]
    assert totp.unseal(stored["secret"]) == enrolment.secret
    await (
        TotpFactor.update({TotpFactor.secret: totp.seal(SECRET)})
        .where(TotpFactor.user == owner.id)
        .run()
    )
    try:
        await twostep.confirm_totp(None, actor(owner), "000000", at=T0)
    except twostep.Invalid as exc:
        assert "code" in exc.errors
    else:
        raise AssertionError("a wrong first code activated the app")
    codes = await twostep.confirm_totp(None, actor(owner), code_at(T0), at=T0)
    assert await totp.is_active(owner.id)
    assert len(codes) == 10 and len(set(codes)) == 10
    # Only hashes are kept.
    stored = await RecoveryCode.select(RecoveryCode.code_hash).run()
    assert {r["code_hash"] for r in stored} == {totp.hash_recovery_code(c) for c in codes}
    assert not any(c in r["code_hash"] for c in codes for r in stored)
    audit = await AuditLog.select().where(AuditLog.action == "enrol_totp").run()
    assert len(audit) == 1 and audit[0]["actor_id"] == owner.id
    mail = await OutboxMessage.select().where(OutboxMessage.to_address == owner.email).run()
    assert any("authenticator app was set up" in m["body_text"] for m in mail)


async def test_a_code_is_accepted_once_and_never_an_older_one(db, owner):
    await enrol_totp(owner, at=T0)
    later = T0 + timedelta(seconds=60)
    # The enrolment code's own step is used up.
    assert not await totp.verify(owner.id, code_at(T0), at=T0)
    assert await totp.verify(owner.id, code_at(later), at=later)
    # Replay within the window: refused.
    assert not await totp.verify(owner.id, code_at(later), at=later + timedelta(seconds=10))
    # The previous step is within the drift but older than the last one used: refused.
    assert not await totp.verify(owner.id, code_at(later - timedelta(seconds=30)), at=later)
    # The next step, from a clock 30 s ahead: accepted.
    ahead = later + timedelta(seconds=30)
    assert await totp.verify(owner.id, code_at(ahead), at=later)
    # Beyond the drift: refused.
    far = later + timedelta(seconds=120)
    assert not await totp.verify(owner.id, code_at(far), at=later)
    assert not await totp.verify(owner.id, "12345", at=later)
    assert not await totp.verify(owner.id, "abcdef", at=later)


async def test_recovery_codes_work_once(db, owner):
    codes = await enrol_totp(owner)
    assert await totp.use_recovery_code(owner.id, codes[0].upper().replace("-", " "))
    assert not await totp.use_recovery_code(owner.id, codes[0])
    assert await totp.recovery_codes_left(owner.id) == 9
    # New codes replace the old ones.
    fresh = await twostep.new_recovery_codes(None, actor(owner))
    assert not await totp.use_recovery_code(owner.id, codes[1])
    assert await totp.use_recovery_code(owner.id, fresh[1])


async def test_password_then_code_opens_a_new_session(client, owner):
    await enrol_totp(owner)
    response = await password_step(client, owner, "/locations")
    assert response.status_code == 303
    assert response.headers["location"] == "/login/two-step"
    # No session yet: the pending sign-in counts as signed in nowhere.
    assert "portal_session" not in response.cookies
    assert await UserSession.count().run() == 0
    pending_token = client.cookies.get("portal_pending")
    assert pending_token
    assert (await client.get("/")).status_code == 303
    assert (await client.get("/")).headers["location"].startswith("/login")
    page = await client.get("/login/two-step")
    assert page.status_code == 200 and "authenticator app" in page.text
    # A wrong code: refused, still pending.
    wrong = await factories.post_form(client, "/login/two-step", {"code": "000000"})
    assert wrong.status_code == 401
    assert "not right" in wrong.text
    code = await allow_current_code(owner)
    done = await factories.post_form(client, "/login/two-step", {"code": code})
    assert done.status_code == 303 and done.headers["location"] == "/locations"
    assert done.cookies.get("portal_session")
    assert await PendingSignIn.count().run() == 0
    assert (await client.get("/")).status_code == 200
    # The same code again, on a new sign-in: refused (no replay).
    async with factories.make_client(client._transport.app) as other:  # type: ignore[attr-defined]
        await password_step(other, owner)
        again = await factories.post_form(other, "/login/two-step", {"code": code})
        assert again.status_code == 401


async def test_a_recovery_code_signs_in_once_audited_and_emailed(client, owner):
    codes = await enrol_totp(owner)
    await password_step(client, owner)
    done = await factories.post_form(client, "/login/two-step", {"code": codes[3]})
    assert done.status_code == 303
    assert (await client.get("/")).status_code == 200
    used = await AuditLog.select().where(AuditLog.action == "use_recovery_code").run()
    assert len(used) == 1 and '"recovery_codes_left": 9' in used[0]["after"]
    mail = await OutboxMessage.select().where(OutboxMessage.to_address == owner.email).run()
    assert any("recovery code was used" in m["body_text"] for m in mail)
    async with factories.make_client(client._transport.app) as other:  # type: ignore[attr-defined]
        await password_step(other, owner)
        again = await factories.post_form(other, "/login/two-step", {"code": codes[3]})
        assert again.status_code == 401


async def test_wrong_codes_are_throttled_like_passwords(client, owner):
    await enrol_totp(owner)
    await password_step(client, owner)
    for _ in range(5):
        response = await factories.post_form(client, "/login/two-step", {"code": "000000"})
        assert response.status_code == 401
    throttled = await factories.post_form(
        client, "/login/two-step", {"code": await allow_current_code(owner)}
    )
    assert throttled.status_code == 429
    assert "Try again in" in throttled.text and "minute" in throttled.text
    assert int(throttled.headers["retry-after"]) > 0
    # A right password again does not clear the count of wrong codes.
    await password_step(client, owner)
    still = await factories.post_form(client, "/login/two-step", {"code": "000000"})
    assert still.status_code == 429


async def test_a_pending_sign_in_expires(client, owner):
    await enrol_totp(owner)
    await password_step(client, owner)
    await PendingSignIn.update(
        {PendingSignIn.expires_at: utcnow() - timedelta(seconds=1)}, force=True
    ).run()
    page = await client.get("/login/two-step")
    assert page.status_code == 303 and page.headers["location"] == "/login"
    late = await factories.post_form(
        client, "/login/two-step", {"code": await allow_current_code(owner)}
    )
    assert late.status_code == 303 and late.headers["location"] == "/login"
    assert await UserSession.count().run() == 0


async def test_the_pending_token_is_no_session_anywhere(client, owner):
    await enrol_totp(owner)
    await password_step(client, owner)
    token = client.cookies.get("portal_pending")
    assert token
    # Even presented as the session cookie, everywhere: not signed in.
    client.cookies.set("portal_session", token)
    assert (await client.get("/")).headers["location"].startswith("/login")
    assert (await client.get("/account/two-step")).status_code == 303
    assert (await client.get("/api/v1/locations")).status_code == 401


async def test_enrol_and_remove_through_the_pages(owner_client, owner):
    page = await owner_client.get("/account/two-step")
    assert page.status_code == 200 and "Add a passkey" in page.text
    setup = await owner_client.get("/account/two-step/totp")
    assert setup.status_code == 200 and "<svg" in setup.text and "totp-secret" in setup.text
    await TotpFactor.update({TotpFactor.secret: SECRET}, force=True).run()
    wrong = await factories.post_form(owner_client, "/account/two-step/totp", {"code": "000000"})
    assert wrong.status_code == 422
    done = await factories.post_form(
        owner_client, "/account/two-step/totp", {"code": code_at(utcnow())}
    )
    assert done.status_code == 201 and done.text.count("<li><code>") == 10
    confirm = await factories.post_form(owner_client, "/account/two-step/totp/remove", {})
    assert confirm.status_code == 200 and "Remove the authenticator app?" in confirm.text
    assert await totp.is_active(owner.id)
    removed = await factories.post_form(
        owner_client, "/account/two-step/totp/remove", {"confirm": "yes"}
    )
    assert removed.status_code == 303
    assert not await totp.is_active(owner.id)
    actions = [r["action"] for r in await AuditLog.select(AuditLog.action).run()]
    assert "enrol_totp" in actions and "remove_totp" in actions


async def test_wrong_codes_from_many_addresses_are_throttled_for_the_account(app, owner):
    await enrol_totp(owner)
    for n in range(10):
        async with factories.make_client(app) as client:
            client._transport.client = (f"198.51.100.{n}", 50000)  # type: ignore[attr-defined]
            await password_step(client, owner)
            wrong = await factories.post_form(client, "/login/two-step", {"code": "000000"})
            assert wrong.status_code == 401
    async with factories.make_client(app) as client:
        client._transport.client = ("198.51.100.99", 50000)  # type: ignore[attr-defined]
        await password_step(client, owner)
        right = await factories.post_form(
            client, "/login/two-step", {"code": await allow_current_code(owner)}
        )
        assert right.status_code == 429


async def test_the_pending_cookie_is_short_lived_and_only_for_the_sign_in_pages(
    db, settings, owner
):
    from dataclasses import replace

    from portal.app import create_app

    app = create_app(replace(settings, base_url="https://portal.example"), manage_database=False)
    await enrol_totp(owner)
    async with factories.make_client(app, base_url="https://testserver") as client:
        response = await password_step(client, owner)
    cookie = next(c for c in response.headers.get_list("set-cookie") if "portal_pending=" in c)
    lowered = cookie.lower()
    assert "httponly" in lowered and "secure" in lowered and "samesite=lax" in lowered
    assert "path=/login" in lowered and "max-age=600" in lowered
    assert not any("portal_session=" in c for c in response.headers.get_list("set-cookie"))


async def test_a_secret_stored_before_sealing_still_works_and_is_sealed_at_its_next_code(db, owner):
    await enrol_totp(owner, at=T0)
    await TotpFactor.update({TotpFactor.secret: SECRET}).where(TotpFactor.user == owner.id).run()
    later = T0 + timedelta(seconds=60)
    assert await totp.verify(owner.id, code_at(later), at=later)
    stored = await TotpFactor.select(TotpFactor.secret).where(TotpFactor.user == owner.id).first()
    assert stored is not None and SECRET not in stored["secret"]
    assert totp.unseal(stored["secret"]) == SECRET
    # Two seals of one secret differ (a fresh nonce each time).
    assert totp.seal(SECRET) != totp.seal(SECRET)


async def test_a_secret_sealed_under_another_key_is_refused_with_a_way_out(db, owner):
    import pytest

    await enrol_totp(owner, at=T0)
    foreign = totp.seal(SECRET)[:-8] + "AAAAAAAA"  # not what this key sealed
    await TotpFactor.update({TotpFactor.secret: foreign}).where(TotpFactor.user == owner.id).run()
    later = T0 + timedelta(seconds=60)
    with pytest.raises(twostep.Invalid, match="recovery code"):
        await totp.verify(owner.id, code_at(later), at=later)
