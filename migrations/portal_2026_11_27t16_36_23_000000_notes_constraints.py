"""Treatment notes: a signed note never changes, enforced by the database itself.

* ``treatment_note``: UPDATE or DELETE of a row whose status is ``signed``
  is refused (signing itself is an UPDATE of a draft, so it passes). Pain
  scores 0–10, a known status, and a signing time on every signed row.
* ``note_trigger_point``: no INSERT, UPDATE or DELETE under a signed note;
  severity 1–3 and a known side.
* ``note_amendment``: append-only, and only on signed notes.
* ``note_access_log``: append-only.

PostgreSQL gets CHECK constraints and plpgsql triggers; SQLite cannot add
constraints to an existing table, so triggers do both jobs there.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-27T16:36:23:000000"
VERSION = "1.38.0"
DESCRIPTION = "notes: signed notes immutable, append-only amendments and access log"

SIGNED_MESSAGE = "treatment_note_signed: a signed note never changes"
NOTE_CHECKS = (
    "NEW.status NOT IN ('draft', 'signed') "
    "OR (NEW.pain_before IS NOT NULL AND NEW.pain_before NOT BETWEEN 0 AND 10) "
    "OR (NEW.pain_after IS NOT NULL AND NEW.pain_after NOT BETWEEN 0 AND 10) "
    "OR (NEW.symptom_per_week IS NOT NULL AND NEW.symptom_per_week < 0) "
    "OR (NEW.status = 'signed' AND NEW.signed_at IS NULL)"
)
POINT_CHECKS = "NEW.severity NOT BETWEEN 1 AND 3 OR NEW.side NOT IN ('left', 'right', 'bilateral')"
SIGNED_PARENT = "(SELECT status FROM treatment_note WHERE id = {}.note) = 'signed'"

SQLITE = [
    # treatment_note
    "CREATE TRIGGER treatment_note_signed_no_update BEFORE UPDATE ON treatment_note "
    f"WHEN OLD.status = 'signed' BEGIN SELECT RAISE(ABORT, '{SIGNED_MESSAGE}'); END",
    "CREATE TRIGGER treatment_note_signed_no_delete BEFORE DELETE ON treatment_note "
    f"WHEN OLD.status = 'signed' BEGIN SELECT RAISE(ABORT, '{SIGNED_MESSAGE}'); END",
    "CREATE TRIGGER treatment_note_check_insert BEFORE INSERT ON treatment_note "
    f"WHEN {NOTE_CHECKS} BEGIN SELECT RAISE(ABORT, 'treatment_note_check'); END",
    "CREATE TRIGGER treatment_note_check_update BEFORE UPDATE ON treatment_note "
    f"WHEN {NOTE_CHECKS} BEGIN SELECT RAISE(ABORT, 'treatment_note_check'); END",
    # note_trigger_point
    "CREATE TRIGGER note_trigger_point_signed_insert BEFORE INSERT ON note_trigger_point "
    f"WHEN {SIGNED_PARENT.format('NEW')} BEGIN SELECT RAISE(ABORT, '{SIGNED_MESSAGE}'); END",
    "CREATE TRIGGER note_trigger_point_signed_update BEFORE UPDATE ON note_trigger_point "
    f"WHEN {SIGNED_PARENT.format('OLD')} OR {SIGNED_PARENT.format('NEW')} "
    f"BEGIN SELECT RAISE(ABORT, '{SIGNED_MESSAGE}'); END",
    "CREATE TRIGGER note_trigger_point_signed_delete BEFORE DELETE ON note_trigger_point "
    f"WHEN {SIGNED_PARENT.format('OLD')} BEGIN SELECT RAISE(ABORT, '{SIGNED_MESSAGE}'); END",
    "CREATE TRIGGER note_trigger_point_check_insert BEFORE INSERT ON note_trigger_point "
    f"WHEN {POINT_CHECKS} BEGIN SELECT RAISE(ABORT, 'note_trigger_point_check'); END",
    "CREATE TRIGGER note_trigger_point_check_update BEFORE UPDATE ON note_trigger_point "
    f"WHEN {POINT_CHECKS} BEGIN SELECT RAISE(ABORT, 'note_trigger_point_check'); END",
    # note_amendment
    "CREATE TRIGGER note_amendment_no_update BEFORE UPDATE ON note_amendment "
    "BEGIN SELECT RAISE(ABORT, 'note_amendment is append-only'); END",
    "CREATE TRIGGER note_amendment_no_delete BEFORE DELETE ON note_amendment "
    "BEGIN SELECT RAISE(ABORT, 'note_amendment is append-only'); END",
    "CREATE TRIGGER note_amendment_signed_only BEFORE INSERT ON note_amendment "
    f"WHEN NOT ({SIGNED_PARENT.format('NEW')}) "
    "BEGIN SELECT RAISE(ABORT, 'note_amendment: only signed notes are amended'); END",
    # note_access_log
    "CREATE TRIGGER note_access_log_no_update BEFORE UPDATE ON note_access_log "
    "BEGIN SELECT RAISE(ABORT, 'note_access_log is append-only'); END",
    "CREATE TRIGGER note_access_log_no_delete BEFORE DELETE ON note_access_log "
    "BEGIN SELECT RAISE(ABORT, 'note_access_log is append-only'); END",
]

POSTGRES = [
    "ALTER TABLE treatment_note ADD CONSTRAINT treatment_note_status "
    "CHECK (status IN ('draft', 'signed'))",
    "ALTER TABLE treatment_note ADD CONSTRAINT treatment_note_pain_before "
    "CHECK (pain_before BETWEEN 0 AND 10)",
    "ALTER TABLE treatment_note ADD CONSTRAINT treatment_note_pain_after "
    "CHECK (pain_after BETWEEN 0 AND 10)",
    "ALTER TABLE treatment_note ADD CONSTRAINT treatment_note_symptom_per_week "
    "CHECK (symptom_per_week >= 0)",
    "ALTER TABLE treatment_note ADD CONSTRAINT treatment_note_signed_at "
    "CHECK (status <> 'signed' OR signed_at IS NOT NULL)",
    "ALTER TABLE note_trigger_point ADD CONSTRAINT note_trigger_point_severity "
    "CHECK (severity BETWEEN 1 AND 3)",
    "ALTER TABLE note_trigger_point ADD CONSTRAINT note_trigger_point_side "
    "CHECK (side IN ('left', 'right', 'bilateral'))",
    "CREATE FUNCTION portal_note_signed_frozen() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN "
    f"IF OLD.status = 'signed' THEN RAISE EXCEPTION '{SIGNED_MESSAGE} (note %)', OLD.id; END IF; "
    "IF TG_OP = 'DELETE' THEN RETURN OLD; END IF; RETURN NEW; END $$",
    "CREATE TRIGGER treatment_note_signed_frozen BEFORE UPDATE OR DELETE ON treatment_note "
    "FOR EACH ROW EXECUTE FUNCTION portal_note_signed_frozen()",
    "CREATE FUNCTION portal_note_part_frozen() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN "
    "IF TG_OP IN ('UPDATE', 'DELETE') AND EXISTS (SELECT 1 FROM treatment_note "
    "WHERE id = OLD.note AND status = 'signed') THEN "
    f"RAISE EXCEPTION '{SIGNED_MESSAGE} (note %)', OLD.note; END IF; "
    "IF TG_OP IN ('INSERT', 'UPDATE') AND EXISTS (SELECT 1 FROM treatment_note "
    "WHERE id = NEW.note AND status = 'signed') THEN "
    f"RAISE EXCEPTION '{SIGNED_MESSAGE} (note %)', NEW.note; END IF; "
    "IF TG_OP = 'DELETE' THEN RETURN OLD; END IF; RETURN NEW; END $$",
    "CREATE TRIGGER note_trigger_point_frozen BEFORE INSERT OR UPDATE OR DELETE "
    "ON note_trigger_point FOR EACH ROW EXECUTE FUNCTION portal_note_part_frozen()",
    # portal_append_only() comes from the foundation constraints.
    "CREATE TRIGGER note_amendment_append_only BEFORE UPDATE OR DELETE ON note_amendment "
    "FOR EACH ROW EXECUTE FUNCTION portal_append_only()",
    "CREATE FUNCTION portal_note_amend_signed_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN "
    "IF NOT EXISTS (SELECT 1 FROM treatment_note WHERE id = NEW.note AND status = 'signed') "
    "THEN RAISE EXCEPTION 'note_amendment: only signed notes are amended'; END IF; "
    "RETURN NEW; END $$",
    "CREATE TRIGGER note_amendment_signed_only BEFORE INSERT ON note_amendment "
    "FOR EACH ROW EXECUTE FUNCTION portal_note_amend_signed_only()",
    "CREATE TRIGGER note_access_log_append_only BEFORE UPDATE OR DELETE ON note_access_log "
    "FOR EACH ROW EXECUTE FUNCTION portal_append_only()",
]

INDEXES = [
    "CREATE INDEX treatment_note_client_id ON treatment_note (client, id)",
    "CREATE INDEX treatment_note_therapist_id ON treatment_note (therapist, id)",
    "CREATE INDEX treatment_note_location_id ON treatment_note (location, id)",
    "CREATE UNIQUE INDEX note_trigger_point_position ON note_trigger_point (note, position)",
    "CREATE INDEX note_access_log_client ON note_access_log (client_id, id)",
    "CREATE INDEX note_access_log_actor ON note_access_log (actor_id, id)",
    "CREATE INDEX note_access_log_note ON note_access_log (note_id, id)",
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def constraints_and_triggers():
        engine = engine_finder()
        statements = INDEXES + (SQLITE if engine.engine_type == "sqlite" else POSTGRES)
        for statement in statements:
            await engine.run_ddl(statement)

    manager.add_raw(constraints_and_triggers)
    return manager
