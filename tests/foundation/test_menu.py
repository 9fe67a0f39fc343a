"""The main menu offers exactly the sections the user's role may open.

The menu asks ``may(route)``, which reads the route's own guard: every link a
role sees answers 200 for that role, and every guarded section it does not see
would have refused it.
"""

from __future__ import annotations

import re
from datetime import date

import pytest

from portal.auth.service import ACCOUNTANT, CLIENT, MANAGER, OWNER, THERAPIST
from portal.staff.tables import Therapist
from portal.timeutil import utcnow
from portal.web.guards import roles_of_route
from portal.web.menu import MENU
from tests import factories

NAV_RE = re.compile(r'<ul class="mainnav"[^>]*>(.*?)</ul>', re.S)
LINK_RE = re.compile(r'<a href="([^"]+)"')


@pytest.mark.parametrize("role", [OWNER, MANAGER, ACCOUNTANT, THERAPIST, CLIENT])
async def test_menu_lists_what_the_role_may_open(app, db, role):
    location = await factories.make_location()
    account = await factories.make_user(
        role, location_ids=[location] if role in (MANAGER, THERAPIST) else ()
    )
    if role == THERAPIST:  # "My profile" is the therapist record tied to the account
        now = utcnow()
        await Therapist.insert(
            Therapist(
                name="Riley", account=account.id, licence_expires=date(2030, 1, 1),
                insurance_expires=date(2030, 1, 1), active=True, created_at=now, updated_at=now,
            )
        ).run()  # fmt: skip
    async with factories.make_client(app) as client:
        await factories.login(client, account)
        home = await client.get("/")
        assert home.status_code == 200
        nav = NAV_RE.search(home.text)
        assert nav, "the page has a main menu"
        shown = set(LINK_RE.findall(nav.group(1)))
        expected = {
            app.route_reverse(entry.route)
            for entry in MENU
            if role in (roles_of_route(app, entry.route)[0] or ())
        }
        assert shown == expected
        for path in shown:
            page = await client.get(path)
            assert page.status_code == 200, (role, path, page.status_code)
        assert 'href="/" aria-current="page"' in home.text
