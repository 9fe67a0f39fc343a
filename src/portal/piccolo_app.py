"""The portal's single Piccolo app; migrations live in the top-level folder."""

from piccolo.conf.apps import AppConfig

from portal.contexts import table_classes
from portal.settings import PROJECT_ROOT

TABLES = table_classes()

APP_CONFIG = AppConfig(
    app_name="portal",
    migrations_folder_path=str(PROJECT_ROOT / "migrations"),
    table_classes=TABLES,
    migration_dependencies=[],
    commands=[],
)
