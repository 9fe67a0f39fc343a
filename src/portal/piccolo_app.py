"""The portal's single Piccolo app; migrations live in the top-level folder."""

from piccolo.conf.apps import AppConfig

from portal.audit.tables import AuditLog
from portal.auth.tables import LoginAttempt, User, UserLocation, UserSession
from portal.locations.tables import Location
from portal.settings import PROJECT_ROOT

TABLES = [Location, User, UserLocation, UserSession, LoginAttempt, AuditLog]

APP_CONFIG = AppConfig(
    app_name="portal",
    migrations_folder_path=str(PROJECT_ROOT / "migrations"),
    table_classes=TABLES,
    migration_dependencies=[],
    commands=[],
)
