"""The one location rule (portal.access) and the menu's section marking."""

from __future__ import annotations

import pytest

from portal import access
from portal.errors import Forbidden
from portal.identity import ROLES, CurrentUser
from portal.web.menu import MenuEntry, menu_section


def actor(role: str, *locations: int) -> CurrentUser:
    return CurrentUser(
        id=1, email="a@x.test", name="", role=role, location_ids=frozenset(locations)
    )


# (role, location the actor holds) -> (may read location 1, may write location 1, may read 2)
EXPECTED = {
    "owner": (True, True, True),
    "accountant": (True, False, True),
    "manager": (True, True, False),
    "therapist": (True, False, False),
    "client": (True, False, False),
}


@pytest.mark.parametrize("role", ROLES)
def test_each_role_reads_and_writes_what_the_rule_says(role: str) -> None:
    who = actor(role, 1)
    read1, write1, read2 = EXPECTED[role]
    assert access.can_read(who, 1) is read1
    assert access.can_write(who, 1) is write1
    assert access.can_read(who, 2) is read2
    assert access.can_write(who, 2) is (role == "owner")
    assert access.writable_among(who, [2, 1]) == [
        loc for loc in (2, 1) if access.can_write(who, loc)
    ]
    if not write1:
        with pytest.raises(Forbidden):
            access.ensure_write(who, 1)
    if not read2:
        with pytest.raises(Forbidden):
            access.ensure_read(who, 2)
    for write, allowed in ((False, read1), (True, write1)):
        if allowed:
            access.ensure(who, 1, write=write)
        else:
            with pytest.raises(Forbidden):
                access.ensure(who, 1, write=write)


def test_visible_locations_is_everything_only_for_owner_and_accountant() -> None:
    assert access.visible_locations(actor("owner")) is None
    assert access.visible_locations(actor("accountant")) is None
    assert access.visible_locations(actor("manager", 3, 4)) == frozenset({3, 4})
    assert access.visible_locations(actor("therapist")) == frozenset()


MENU = (
    MenuEntry("dashboard", "Dashboard", ("/",)),
    MenuEntry("account", "My account", ("/account",)),
    MenuEntry("my_purchases", "My purchases", ("/account/purchases", "/purchases")),
    MenuEntry("notes", "Notes", ("/notes", "/progress")),
)


@pytest.mark.parametrize(
    ("path", "section"),
    [
        ("/", "dashboard"),
        ("/account", "account"),
        ("/account/two-step", "account"),
        ("/account/purchases", "my_purchases"),
        ("/account/purchases/7", "my_purchases"),
        ("/purchases/7", "my_purchases"),
        ("/progress/3", "notes"),
        ("/accounts", None),
        ("/sales", None),
    ],
)
def test_the_longest_section_marks_the_menu(path: str, section: str | None) -> None:
    assert menu_section(path, MENU) == section
