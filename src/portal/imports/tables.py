from piccolo.columns import ForeignKey, Integer, Serial, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from portal.locations.tables import Location


class ImportBatch(Table, tablename="import_batch"):
    """One file imported (or being imported) into one location.

    ``status``: queued → running → complete, or incomplete (the run stopped
    part-way: an error, or its process killed, seen as no progress for a while;
    it resumes from where it stopped, or the batch is undone); incomplete →
    queued (resumed); complete or incomplete → undone.
    ``file_hash`` (SHA-256 of the file with its kind, location and mapping) finds
    the same file imported again. ``counts``: JSON of created, matched, rejected.
    """

    id: Serial
    kind = Varchar(length=20, required=True)
    location = ForeignKey(
        references=Location, on_delete=OnDelete.restrict, required=True, index=True
    )
    filename = Varchar(length=255, default="")
    file_hash = Varchar(length=64, required=True, index=True)
    mapping = Text(default="{}")
    date_order = Varchar(length=3, default="")
    status = Varchar(length=20, required=True, index=True)
    rows_total = Integer(default=0)
    rows_done = Integer(default=0)
    counts = Text(default="{}")
    created_by = Integer(null=True, default=None)
    created_at = Timestamptz()
    finished_at = Timestamptz(null=True, default=None)
    undone_at = Timestamptz(null=True, default=None)
    undone_by = Integer(null=True, default=None)
    # The uploaded file, kept while the batch waits, runs or may resume.
    stored_path = Varchar(length=500, default="")
    # When a run last wrote its progress: a running batch silent for long has stopped.
    progress_at = Timestamptz(null=True, default=None)


class ImportRow(Table, tablename="import_row"):
    """What became of one row of a batch's file.

    ``outcome``: created (a new record ``entity`` #``entity_id``), matched (an
    existing record, or a row imported by an earlier batch: nothing new),
    rejected (``reason``). ``fingerprint``: SHA-256 of the row's mapped values
    with the kind and location, so a row imported once is not imported again.
    ``data``: a rejected row as read (JSON), for the rejected rows' report.
    ``external_id`` keeps the other system's id of a client's row (it links
    balances and appointments to the client). ``marketing_consent`` and
    ``staff_notes`` are no longer written: the client's profile holds them.
    """

    id: Serial
    batch = ForeignKey(references=ImportBatch, on_delete=OnDelete.cascade, required=True)
    line = Integer(required=True)
    fingerprint = Varchar(length=64, required=True, index=True)
    outcome = Varchar(length=20, required=True)
    reason = Text(default="")
    entity = Varchar(length=20, default="")
    entity_id = Integer(null=True, default=None, index=True)
    external_id = Varchar(length=120, default="", index=True)
    marketing_consent = Varchar(length=3, default="")
    staff_notes = Text(default="")
    data = Text(default="{}")


class ImportMapping(Table, tablename="import_mapping"):
    """A named column mapping (layout column → file header), saved for the next file."""

    id: Serial
    name = Varchar(length=80, required=True)
    kind = Varchar(length=20, required=True)
    mapping = Text(default="{}")
    created_by = Integer(null=True, default=None)
    created_at = Timestamptz()
