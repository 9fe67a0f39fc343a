"""Constraints and indexes Piccolo's columns cannot express, and the audit log's append-only triggers."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-27T15:45:49:000000"
VERSION = "1.38.0"
DESCRIPTION = "foundation constraints, indexes and append-only audit log"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def constraints_and_triggers():
        engine = engine_finder()
        statements = [
            "CREATE UNIQUE INDEX user_location_unique ON user_location (\"user\", location)",
            "CREATE INDEX login_attempt_account_at ON login_attempt (account_key, at)",
            "CREATE INDEX login_attempt_address_at ON login_attempt (address, at)",
            "CREATE INDEX audit_log_entity ON audit_log (entity, entity_id, id)",
            "CREATE INDEX user_session_expires ON user_session (expires_at)",
        ]
        if engine.engine_type == "sqlite":
            statements += [
                "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
                "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
                "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
                "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
            ]
        else:
            statements += [
                "CREATE FUNCTION portal_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
                "BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$",
                "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
                "FOR EACH ROW EXECUTE FUNCTION portal_append_only()",
            ]
        for statement in statements:
            await engine.run_ddl(statement)

    manager.add_raw(constraints_and_triggers)
    return manager
