"""The portal's single Piccolo app; its migrations are the package ``portal.migrations``.

In the source tree they are the top-level ``migrations/`` folder, installed as
``portal/migrations`` (see ``pyproject.toml``); Piccolo reads them from wherever
the package is.
"""

from piccolo.conf.apps import AppConfig

from portal.contexts import table_classes
from portal.settings import package_path

TABLES = table_classes()

APP_CONFIG = AppConfig(
    app_name="portal",
    migrations_folder_path=str(package_path("portal.migrations")),
    table_classes=TABLES,
    migration_dependencies=[],
    commands=[],
)
