"""Applying and inspecting Piccolo migrations from code."""

from __future__ import annotations

import contextlib
import io

from piccolo.apps.migrations.commands.base import BaseMigrationManager
from piccolo.apps.migrations.commands.forwards import ForwardsMigrationManager
from piccolo.apps.migrations.tables import Migration

from portal.piccolo_app import APP_CONFIG


async def pending_migrations() -> list[str]:
    """IDs of migrations in ``migrations/`` not yet applied to the bound database."""
    manager = BaseMigrationManager()
    if not await Migration.table_exists().run():
        applied: list[str] = []
    else:
        applied = await Migration.get_migrations_which_ran(app_name=APP_CONFIG.app_name)
    modules = manager.get_migration_modules(APP_CONFIG.resolved_migrations_folder_path)
    return sorted(set(manager.get_migration_ids(modules)) - set(applied))


async def apply_migrations(*, quiet: bool = False) -> list[str]:
    """Apply every pending migration; returns the IDs applied."""
    pending = await pending_migrations()
    if not pending:
        return []
    manager = ForwardsMigrationManager(app_name=APP_CONFIG.app_name)
    out = io.StringIO()
    with contextlib.redirect_stdout(out) if quiet else contextlib.nullcontext():
        result = await manager.run()
    if not result.success:
        raise RuntimeError(f"Migration failed: {result.message}\n{out.getvalue()}")
    return pending
