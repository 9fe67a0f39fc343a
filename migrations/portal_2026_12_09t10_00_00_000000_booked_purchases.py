"""Book and pay in one flow: a time held while the client pays, introductory offers.

* ``package.introductory``: a package sold at most once per client (an
  introductory session), claimed in ``intro_claim`` (one row per client).
* ``appointment.hold_sale`` / ``hold_until``: an appointment ``held`` for a
  pending sale until the payment arrives (then ``booked``) or the hold ends
  (``cancelled``). A held time is busy: the no-double-booking constraints and
  triggers now cover ``held`` too.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Boolean, Integer, Serial, Timestamptz
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.indexes import IndexMethod
from piccolo.engine import engine_finder

ID = "2026-12-09T10:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "booked purchases"

OLD_BUSY = "('booked', 'completed', 'no_show')"
BUSY = "('booked', 'completed', 'no_show', 'held')"


def _params(**extra):
    params = {
        "null": False,
        "primary_key": False,
        "unique": False,
        "index": False,
        "index_method": IndexMethod.btree,
        "choices": None,
        "db_column_name": None,
        "secret": False,
    }
    params.update(extra)
    return params


COLUMNS = [
    ("Package", "package", "introductory", Boolean, _params(default=False)),
    (
        "Appointment",
        "appointment",
        "hold_sale",
        Integer,
        _params(default=None, null=True, index=True),
    ),
    ("Appointment", "appointment", "hold_until", Timestamptz, _params(default=None, null=True)),
]

CLAIMS = [
    ("id", Serial, _params(default=None, primary_key=True)),
    ("client", Integer, _params(default=0, unique=True)),
    ("sale_id", Integer, _params(default=0)),
    ("claimed_at", Timestamptz, _params(default=TimestamptzNow())),
]


def _sqlite_trigger(name: str, event: str) -> str:
    return (
        f"CREATE TRIGGER {name} BEFORE {event} ON appointment "
        f"WHEN NEW.status IN {BUSY} "
        "BEGIN SELECT RAISE(ABORT, 'appointment_overlap') WHERE EXISTS ("
        "SELECT 1 FROM appointment a WHERE a.id != NEW.id "
        f"AND a.status IN {BUSY} "
        "AND (a.therapist = NEW.therapist OR a.room = NEW.room) "
        "AND a.start_at < NEW.busy_until AND NEW.start_at < a.busy_until); END"
    )


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)
    for class_name, tablename, name, column_class, params in COLUMNS:
        manager.add_column(
            table_class_name=class_name, tablename=tablename, column_name=name,
            db_column_name=name, column_class_name=column_class.__name__,
            column_class=column_class, params=params, schema=None,
        )  # fmt: skip
    manager.add_table(class_name="IntroClaim", tablename="intro_claim", schema=None, columns=None)
    for name, column_class, params in CLAIMS:
        manager.add_column(
            table_class_name="IntroClaim", tablename="intro_claim", column_name=name,
            db_column_name=name, column_class_name=column_class.__name__,
            column_class=column_class, params=params, schema=None,
        )  # fmt: skip

    async def constraints():
        engine = engine_finder()
        if engine.engine_type == "sqlite":
            statements = [
                "DROP TRIGGER appointment_no_overlap_insert",
                "DROP TRIGGER appointment_no_overlap_update",
                _sqlite_trigger("appointment_no_overlap_insert", "INSERT"),
                _sqlite_trigger("appointment_no_overlap_update", "UPDATE"),
            ]
        else:
            statements = []
            for kind in ("therapist", "room"):
                name = f"appointment_{kind}_no_overlap"
                statements += [
                    f"ALTER TABLE appointment DROP CONSTRAINT {name}",
                    f"ALTER TABLE appointment ADD CONSTRAINT {name} "
                    f"EXCLUDE USING gist ({kind} WITH =, tstzrange(start_at, busy_until) WITH &&) "
                    f"WHERE (status IN {BUSY})",
                ]
        for statement in statements:
            await engine.run_ddl(statement)

    manager.add_raw(constraints)
    return manager
