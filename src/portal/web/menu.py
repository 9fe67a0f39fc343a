"""The main menu: route names, in order, each with its label and the paths it covers.

An entry shows when the route it opens admits the user (the ``may`` template
helper reads the route's guard), so the menu cannot offer a page the route
refuses; ``tests/foundation/test_menu.py`` opens every entry as every role.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class MenuEntry:
    route: str
    label: str
    # Paths inside this section: the longest one that starts the current path
    # marks its entry as the current page.
    sections: tuple[str, ...]
    # A different wording for some roles (a therapist's appointments are "My schedule").
    labels: dict[str, str] = field(default_factory=dict)

    def label_for(self, role: str) -> str:
        return self.labels.get(role, self.label)


MENU: tuple[MenuEntry, ...] = (
    MenuEntry("dashboard", "Dashboard", ("/",)),
    MenuEntry("locations", "Locations", ("/locations",)),
    MenuEntry("therapists", "Therapists", ("/therapists",)),
    MenuEntry("therapist_me", "My profile", ("/therapists",)),
    MenuEntry("rooms", "Rooms", ("/rooms",)),
    MenuEntry("catalog_packages", "Catalog", ("/catalog",)),
    MenuEntry("memberships", "Memberships", ("/memberships",), {"client": "My memberships"}),
    MenuEntry("clients", "Clients", ("/clients",)),
    MenuEntry("account", "My account", ("/account",)),
    MenuEntry("outbox", "Outbox", ("/outbox",)),
    MenuEntry("jobs", "Jobs", ("/jobs",)),
    MenuEntry("exports", "Data export", ("/exports",)),
    MenuEntry("imports", "Import", ("/imports",)),
    MenuEntry("appointments", "Appointments", ("/appointments",), {"therapist": "My schedule"}),
    MenuEntry("notes", "Notes", ("/notes", "/progress")),
    MenuEntry("sales", "Sales", ("/sales",)),
    MenuEntry("my_purchases", "My purchases", ("/account/purchases", "/purchases")),
    MenuEntry("reports", "Reports", ("/reports",)),
    MenuEntry("users", "Users", ("/users",)),
    MenuEntry("audit_log", "Audit log", ("/audit",)),
)


def menu_section(path: str, menu: tuple[MenuEntry, ...] = MENU) -> str | None:
    """The entry a path belongs to: the longest section that starts it.

    ``/account/purchases/3`` is in "My purchases", not "My account"; ``/`` is
    only the dashboard itself.
    """
    best: tuple[int, str] | None = None
    for entry in menu:
        for section in entry.sections:
            inside = path == section or (section != "/" and path.startswith(section + "/"))
            if inside and (best is None or len(section) > best[0]):
                best = (len(section), entry.route)
    return best[1] if best else None
