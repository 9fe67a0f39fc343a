"""Owners reset a member's second factors (audited, the member emailed and signed out);
`portal users reset-2fa` does it for an owner who lost everything."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from portal.audit.tables import AuditLog
from portal.auth import totp, twostep
from portal.auth.tables import Passkey, RecoveryCode, UserSession
from portal.email.tables import OutboxMessage
from portal.identity import MANAGER
from portal.timeutil import utcnow
from tests import factories
from tests.auth_twostep.helpers import enrol_totp

PORTAL = str(Path(sys.executable).with_name("portal"))


async def _passkey(user_id: int, name: str = "Phone") -> None:
    await Passkey.insert(
        Passkey(
            user=user_id,
            name=name,
            credential_id=f"cred-{user_id}-{name}",
            public_key="AQID",
            sign_count=0,
            created_at=utcnow(),
        )
    ).run()


async def test_an_owner_resets_a_member(owner_client, owner):
    member = await factories.make_user(MANAGER, location_ids=[await factories.make_location()])
    await enrol_totp(member)
    await _passkey(member.id)
    async with factories.make_client(owner_client._transport.app) as theirs:  # type: ignore[attr-defined]
        await factories.login(theirs, member)
        page = await owner_client.get(f"/users/{member.id}")
        assert "Reset two-step sign-in" in page.text and "Passkeys: 1" in page.text
        confirm = await owner_client.get(f"/users/{member.id}/two-step/reset")
        assert confirm.status_code == 200 and member.email in confirm.text
        done = await factories.post_form(owner_client, f"/users/{member.id}/two-step/reset")
        assert done.status_code == 303
        # Signed out at once.
        assert (await theirs.get("/")).headers["location"].startswith("/login")
    assert not await totp.is_active(member.id)
    assert await Passkey.count().where(Passkey.user == member.id).run() == 0
    assert await RecoveryCode.count().where(RecoveryCode.user == member.id).run() == 0
    assert await UserSession.count().where(UserSession.user == member.id).run() == 0
    audit = await AuditLog.select().where(AuditLog.action == "reset_two_step").run()
    assert len(audit) == 1 and audit[0]["actor_id"] == owner.id
    assert audit[0]["entity_id"] == str(member.id) and '"passkeys": 1' in audit[0]["before"]
    mail = await OutboxMessage.select().where(OutboxMessage.to_address == member.email).run()
    assert any("reset your two-step sign-in" in m["body_text"] for m in mail)


async def test_an_owner_cannot_reset_their_own(owner_client, owner):
    await enrol_totp(owner)
    refused = await factories.post_form(owner_client, f"/users/{owner.id}/two-step/reset")
    assert refused.status_code == 422
    assert await totp.is_active(owner.id)


async def test_a_member_cannot_reset_anyone(manager_client, owner):
    await enrol_totp(owner)
    refused = await factories.post_form(manager_client, f"/users/{owner.id}/two-step/reset")
    assert refused.status_code == 403
    assert await totp.is_active(owner.id)


async def test_removing_a_passkey_asks_first_and_only_ones_own(owner_client, owner, manager):
    await _passkey(owner.id, "Laptop")
    await _passkey(manager.id, "Theirs")
    mine = await Passkey.select(Passkey.id).where(Passkey.user == owner.id).first().run()
    theirs = await Passkey.select(Passkey.id).where(Passkey.user == manager.id).first().run()
    ask = await factories.post_form(owner_client, f"/account/two-step/passkeys/{mine['id']}/remove")
    assert ask.status_code == 200 and "Remove the passkey “Laptop”?" in ask.text
    assert await Passkey.count().where(Passkey.user == owner.id).run() == 1
    other = await factories.post_form(
        owner_client, f"/account/two-step/passkeys/{theirs['id']}/remove", {"confirm": "yes"}
    )
    assert other.status_code == 404
    done = await factories.post_form(
        owner_client, f"/account/two-step/passkeys/{mine['id']}/remove", {"confirm": "yes"}
    )
    assert done.status_code == 303
    assert await Passkey.count().where(Passkey.user == owner.id).run() == 0
    assert await Passkey.count().where(Passkey.user == manager.id).run() == 1
    assert await AuditLog.count().where(AuditLog.action == "remove_passkey").run() == 1
    mail = await OutboxMessage.select().where(OutboxMessage.to_address == owner.email).run()
    assert any("“Laptop” was removed" in m["body_text"] for m in mail)


async def test_renaming_passkeys_keeps_the_names_on_error_and_only_ones_own(
    owner_client, owner, manager
):
    await _passkey(owner.id, "Laptop")
    await _passkey(owner.id, "Phone")
    await _passkey(manager.id, "Theirs")
    mine = {
        r["name"]: r["id"]
        for r in await Passkey.select(Passkey.id, Passkey.name).where(Passkey.user == owner.id)
    }
    theirs = await Passkey.select(Passkey.id).where(Passkey.user == manager.id).first().run()
    laptop, phone = f"name-{mine['Laptop']}", f"name-{mine['Phone']}"
    account = await owner_client.get("/account/two-step")
    assert "/account/two-step/passkeys/names" in account.text
    form = await owner_client.get("/account/two-step/passkeys/names")
    assert form.status_code == 200
    assert factories.input_value(form.text, laptop) == "Laptop"
    assert factories.input_value(form.text, phone) == "Phone"
    path = "/account/two-step/passkeys/names"
    # One bad name: nothing saved, the other field keeps what was typed.
    bad = await factories.post_form(owner_client, path, {laptop: "   ", phone: "Pixel"})
    assert bad.status_code == 422 and factories.field_error(bad.text, laptop)
    assert factories.input_value(bad.text, phone) == "Pixel"
    too_long = await factories.post_form(owner_client, path, {laptop: "x" * 81, phone: "Phone"})
    assert too_long.status_code == 422 and factories.field_error(too_long.text, laptop)
    assert factories.input_value(too_long.text, laptop) == "x" * 81
    other = await factories.post_form(owner_client, path, {f"name-{theirs['id']}": "Mine now"})
    assert other.status_code == 404
    assert {r["name"] for r in await Passkey.select(Passkey.name)} == {"Laptop", "Phone", "Theirs"}
    done = await factories.post_form(
        owner_client, path, {laptop: "  Work   laptop ", phone: "Phone"}
    )
    assert done.status_code == 303
    names = {r["name"] for r in await Passkey.select(Passkey.name).run()}
    assert names == {"Work laptop", "Phone", "Theirs"}
    audit = await AuditLog.select().where(AuditLog.action == "rename_passkey").run()
    assert len(audit) == 1 and audit[0]["actor_id"] == owner.id
    assert "Laptop" in audit[0]["before"] and "Work laptop" in audit[0]["after"]


def test_the_cli_resets_an_owner(tmp_path):
    """`portal users reset-2fa --email` against a migrated SQLite file, as an operator runs it."""
    env = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'portal.sqlite3'}",
        "SECRET_KEY": "cli-secret-key-" + "z" * 40,
        "PORTAL_VAR_DIR": str(tmp_path),
        "PICCOLO_CONF": "portal.piccolo_conf",
        "ARGON2_TEST_PARAMS": "time_cost=1,memory_cost=64,parallelism=1",
    }

    def portal(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PORTAL, *args], env=env, input=stdin, capture_output=True, text=True, timeout=120
        )

    assert portal("migrate").returncode == 0
    created = portal(
        "users",
        "create",
        "--email",
        "boss@example.test",
        "--role",
        "owner",
        "--password-stdin",
        stdin="a-long-owner-password\n",
    )
    assert created.returncode == 0, created.stderr
    with sqlite3.connect(tmp_path / "portal.sqlite3") as conn:
        (user_id,) = conn.execute("SELECT id FROM app_user").fetchone()
        conn.execute(
            "INSERT INTO totp_factor (user, secret, created_at, confirmed_at, last_step) "
            "VALUES (?, 'JBSWY3DPEHPK3PXP', '2026-12-05 09:00:00', '2026-12-05 09:00:00', 0)",
            (user_id,),
        )
        conn.execute(
            "INSERT INTO passkey (user, name, credential_id, public_key, sign_count, created_at) "
            "VALUES (?, 'Lost phone', 'abc', 'AQID', 0, '2026-12-05 09:00:00')",
            (user_id,),
        )
    unknown = portal("users", "reset-2fa", "--email", "nobody@example.test")
    assert unknown.returncode == 2 and "No account" in unknown.stderr
    done = portal("users", "reset-2fa", "--email", "boss@example.test")
    assert done.returncode == 0, done.stderr
    assert "1 passkey(s)" in done.stdout and "authenticator app" in done.stdout
    with sqlite3.connect(tmp_path / "portal.sqlite3") as conn:
        assert conn.execute("SELECT count(*) FROM totp_factor").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM passkey").fetchone() == (0,)
        audit = conn.execute(
            "SELECT actor_email FROM audit_log WHERE action = 'reset_two_step'"
        ).fetchall()
        assert audit == [("system",)]
        mail = conn.execute("SELECT to_address, body_text FROM email_outbox").fetchall()
        assert any(to == "boss@example.test" and "reset" in body for to, body in mail)


async def test_reset_by_the_command_needs_no_actor(db, owner):
    await enrol_totp(owner)
    before = await twostep.reset(None, None, owner.id)
    assert before.totp and before.recovery_codes_left == 10
    assert not await totp.is_active(owner.id)
