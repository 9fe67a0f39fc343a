"""Who is asking: the roles and the signed-in user, as every layer sees them.

Framework-free and below every context, so services, the audit trail and the
web layer's guards all take a :class:`CurrentUser` without importing each other.
``portal.auth.service`` re-exports these names.
"""

from __future__ import annotations

from dataclasses import dataclass

OWNER = "owner"
MANAGER = "manager"
ACCOUNTANT = "accountant"
THERAPIST = "therapist"
CLIENT = "client"
ROLES = (OWNER, MANAGER, ACCOUNTANT, THERAPIST, CLIENT)
STAFF_ROLES = (OWNER, MANAGER, ACCOUNTANT, THERAPIST)
ROLE_LABELS = {
    OWNER: "Owner",
    MANAGER: "Manager",
    ACCOUNTANT: "Accountant",
    THERAPIST: "Therapist",
    CLIENT: "Client",
}
# Roles whose access is tied to assigned locations.
LOCATION_BOUND_ROLES = (MANAGER, THERAPIST)


@dataclass(frozen=True)
class CurrentUser:
    """The signed-in user as the web layer sees it."""

    id: int
    email: str
    name: str
    role: str
    location_ids: frozenset[int]
    session_id: int = 0
    # Signed in with a password only while their role requires a second factor they
    # have not set up: the guards let them reach enrolment and sign-out, nothing else.
    must_enrol: bool = False

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_ROLES

    @property
    def sees_all_locations(self) -> bool:
        return self.role in (OWNER, ACCOUNTANT)

    @property
    def display_name(self) -> str:
        return self.name or self.email

    @property
    def role_label(self) -> str:
        return ROLE_LABELS.get(self.role, self.role)
