"""The clinic's name (``CLINIC_NAME``) on the sign-in page and in every email's
sender name and signature."""

from __future__ import annotations

import dataclasses

from portal.email import messages
from portal.settings import Settings
from tests import factories
from tests.conftest import using_app

NAME = "Harbour Sports Massage"


def test_the_name_is_read_from_the_environment_with_a_default(tmp_path):
    env = {"PORTAL_VAR_DIR": str(tmp_path)}
    assert Settings.from_env(env).clinic_name == "Clinic Portal"
    named = Settings.from_env({**env, "CLINIC_NAME": f"  {NAME} "})
    assert named.clinic_name == NAME
    assert named.sender == f"{NAME} <no-reply@localhost>"
    chosen = Settings.from_env({**env, "CLINIC_NAME": NAME, "SMTP_FROM": "Desk <d@x.test>"})
    assert chosen.sender == "Desk <d@x.test>", "a sender name set by the operator is kept"


async def test_emails_are_sent_and_signed_in_the_clinics_name(db, settings, smtp_server):
    smtp = dataclasses.replace(
        smtp_server.settings_for(settings), clinic_name=NAME, smtp_from="portal@clinic.test"
    )
    await messages.send_invitation(
        "ines@example.test",
        messages.STAFF_INVITATION,
        name="Ines",
        set_password_url="http://testserver/password/reset/x",
        valid_days=7,
        settings=smtp,
    )
    [mail] = smtp_server.wait_for(1)
    assert mail.message["From"] == f"{NAME} <portal@clinic.test>"
    assert NAME in mail.message["Subject"]
    assert mail.text.rstrip().endswith(f"— {NAME}")
    assert "Clinic Portal" not in mail.text


async def test_the_sign_in_page_carries_the_clinics_name(db, settings):
    named = dataclasses.replace(settings, clinic_name=NAME)
    async with using_app(named) as app, factories.make_client(app) as browser:
        page = await browser.get("/login")
    assert page.status_code == 200
    assert f"◆</span> {NAME}</p>" in page.text and f"Sign in · {NAME}</title>" in page.text
