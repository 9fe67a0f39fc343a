"""Accounts and roles: owner pages and the `portal users` command."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from portal.audit.tables import AuditLog
from portal.auth import passwords
from portal.auth.tables import User, UserLocation
from portal.email.tables import OutboxMessage
from tests import factories

PORTAL = str(Path(sys.executable).with_name("portal"))


async def test_owner_creates_manager_for_a_location(owner_client, locations):
    own, _ = locations
    response = await factories.post_form(
        owner_client,
        "/users",
        {
            "email": "New.Manager@Example.test",
            "name": "New Manager",
            "role": "manager",
            "location_ids": str(own),
            "password": "typed-by-the-owner-41",  # not a field any more: ignored
        },
    )
    assert response.status_code == 303
    user = await User.select().where(User.email == "new.manager@example.test").first().run()
    assert user["role"] == "manager" and user["password_hash"].startswith("$argon2id$")
    assert not passwords.verify_password(user["password_hash"], "typed-by-the-owner-41")
    links = (
        await UserLocation.select(UserLocation.location)
        .where(UserLocation.user == user["id"])
        .run()
    )
    assert [r["location"] for r in links] == [own]
    audit = await AuditLog.select().where(AuditLog.entity == "user").first().run()
    assert "password_hash" not in audit["after"]
    assert json.loads(audit["after"])["location_ids"] == [own]


async def test_user_form_validation_keeps_input(owner_client, locations):
    response = await factories.post_form(
        owner_client,
        "/users",
        {"email": "not-an-email", "name": "Someone", "role": "manager"},
    )
    assert response.status_code == 422
    assert "valid email" in factories.field_error(response.text, "email")
    assert "at least one location" in factories.field_error(response.text, "location_ids")
    assert factories.input_value(response.text, "email") == "not-an-email"
    assert await User.count().where(User.email == "not-an-email").run() == 0


async def test_role_change_ends_that_users_sessions(app, owner_client, locations):
    own, _ = locations
    manager = await factories.make_user("manager", location_ids=[own])
    async with factories.make_client(app) as c:
        await factories.login(c, manager)
        await factories.post_form(
            owner_client,
            f"/users/{manager.id}",
            {"email": manager.email, "name": "M", "role": "accountant"},
        )
        assert (await c.get("/")).status_code == 303


async def test_owner_cannot_deactivate_themselves(owner_client, owner):
    response = await factories.post_form(owner_client, f"/users/{owner.id}/deactivate")
    assert response.status_code == 303
    assert (await User.select(User.active).where(User.id == owner.id).first().run())["active"]


def _run(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PORTAL, *args], env=env, input=stdin, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    var_dir = tmp_path_factory.mktemp("cli")
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(
        {
            "DATABASE_URL": f"sqlite:///{var_dir / 'cli.sqlite3'}",
            "SECRET_KEY": "cli-secret-" + "z" * 40,
            "PORTAL_VAR_DIR": str(var_dir),
        }
    )
    assert _run(env, "migrate").returncode == 0
    assert _run(env, "demo").returncode == 0
    return env


def test_cli_user_lifecycle(cli_env):
    created = _run(
        cli_env,
        "users", "create", "--email", "cli@example.test", "--role", "manager",
        "--location", "austin-soco", "--password-stdin",
        stdin="sciatica-relief-2026\n",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert "Created manager cli@example.test" in created.stdout
    changed = _run(
        cli_env, "users", "set-password", "--email", "cli@example.test", "--password-stdin",
        stdin="another-good-passphrase\n",
    )  # fmt: skip
    assert changed.returncode == 0, changed.stderr
    deactivated = _run(cli_env, "users", "deactivate", "--email", "cli@example.test")
    assert deactivated.returncode == 0 and "Deactivated" in deactivated.stdout


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["users", "create", "--email", "x@example.test", "--role", "wizard", "--password-stdin"], "good-password-99\n", "invalid choice"),
        (["users", "create", "--email", "x@example.test", "--role", "manager", "--password-stdin"], "good-password-99\n", "at least one location"),
        (["users", "create", "--email", "x@example.test", "--role", "owner", "--password-stdin"], "123456\n", "password"),
        (["users", "create", "--email", "x@example.test", "--role", "owner", "--location", "nowhere", "--password-stdin"], "good-password-99\n", "no location"),
        (["users", "create", "--email", "x@example.test", "--role", "owner"], None, "--password-stdin"),
        (["users", "deactivate", "--email", "ghost@example.test"], None, "No account"),
        (["users"], None, "required"),
        (["frobnicate"], None, "invalid choice"),
    ],
)  # fmt: skip
def test_cli_bad_arguments_exit_2_with_one_line(cli_env, args, stdin, message):
    result = _run(cli_env, *args, stdin=stdin)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert any(message in line for line in lines), result.stderr
    assert "Traceback" not in result.stderr
    assert lines[-1].startswith("portal:")


async def test_new_staff_are_invited_to_choose_their_own_password(app, owner_client, locations):
    own, _ = locations
    form = await owner_client.get("/users/new")
    assert 'name="password"' not in form.text, "nobody types a password for someone else"
    response = await factories.post_form(
        owner_client,
        "/users",
        {"email": "Ines@Example.test", "name": "Ines Park", "role": "manager",
         "location_ids": str(own)},
    )  # fmt: skip
    assert response.status_code == 303
    sent = await OutboxMessage.select().where(OutboxMessage.to_address == "ines@example.test").run()
    assert [m["kind"] for m in sent] == ["staff_invitation"]
    assert "Hello Ines Park" in sent[0]["body_text"]
    link = re.search(r"/password/reset/[A-Za-z0-9_\-]+", sent[0]["body_text"])
    assert link, sent[0]["body_text"]
    chosen = "a long new password 42"
    async with factories.make_client(app) as visitor:
        assert (await visitor.get(link.group(0))).status_code == 200
        done = await factories.post_form(
            visitor, link.group(0), {"password": chosen, "confirm_password": chosen}
        )
        assert done.status_code == 303
    user = await User.select().where(User.email == "ines@example.test").first().run()
    assert passwords.verify_password(user["password_hash"], chosen)
