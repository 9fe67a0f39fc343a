from piccolo.columns import Boolean, ForeignKey, Integer, Serial, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from portal.auth.tables import User
from portal.bookings.tables import Appointment
from portal.locations.tables import Location
from portal.staff.tables import Therapist


class TreatmentNote(Table, tablename="treatment_note"):
    """The SOAP note of one appointment (``appointment`` is unique), by its therapist.

    ``status`` is ``draft`` until the therapist signs it, then ``signed``
    for ever: the database refuses any UPDATE or DELETE of a signed row
    (triggers in the notes constraints migration, both engines). Corrections
    are ``NoteAmendment`` rows. ``client``, ``therapist`` and ``location``
    are the appointment's, copied when the note is started so that access
    checks and lists need no join. List answers (regions, techniques) are
    JSON lists of codes; the vocabularies are in ``portal.notes.form`` and
    ``portal.clients.regions``.
    """

    id: Serial
    appointment = ForeignKey(
        references=Appointment, on_delete=OnDelete.restrict, required=True, unique=True
    )
    client = ForeignKey(references=User, on_delete=OnDelete.restrict, required=True, index=True)
    therapist = ForeignKey(
        references=Therapist, on_delete=OnDelete.restrict, required=True, index=True
    )
    location = ForeignKey(
        references=Location, on_delete=OnDelete.restrict, required=True, index=True
    )
    author = ForeignKey(references=User, on_delete=OnDelete.restrict, required=True)
    status = Varchar(length=20, required=True, index=True)
    # S: what the client reports, and how often the main symptom occurs.
    subjective = Text(default="")
    symptom = Varchar(length=80, default="")
    symptom_per_week = Integer(null=True, default=None)
    pain_before = Integer(null=True, default=None)
    pain_after = Integer(null=True, default=None)
    # O: what was found and done.
    regions = Text(default="[]")
    techniques = Text(default="[]")
    technique_notes = Text(default="")
    pressure = Varchar(length=20, default="")
    rom = Text(default="")
    # A and P.
    assessment = Text(default="")
    plan = Text(default="")
    created_at = Timestamptz()
    updated_at = Timestamptz()
    signed_at = Timestamptz(null=True, default=None)


class NoteTriggerPoint(Table, tablename="note_trigger_point"):
    """One trigger point found in a session. Frozen with its note once signed."""

    id: Serial
    note = ForeignKey(
        references=TreatmentNote, on_delete=OnDelete.restrict, required=True, index=True
    )
    position = Integer(required=True)
    region = Varchar(length=40, required=True)
    side = Varchar(length=10, required=True)  # left | right | bilateral
    severity = Integer(required=True)  # 1 mild, 2 moderate, 3 severe
    reproduced = Boolean(default=False)  # reproduced the client's familiar pain
    referral = Varchar(length=200, default="")


class NoteAmendment(Table, tablename="note_amendment"):
    """A correction of a signed note, with its reason. Append-only.

    ``field`` names the part of the note it corrects; for the pain scores
    ``value`` is the corrected number, which progress figures use from then
    on (the original stays readable on the note).
    """

    id: Serial
    note = ForeignKey(
        references=TreatmentNote, on_delete=OnDelete.restrict, required=True, index=True
    )
    author = ForeignKey(references=User, on_delete=OnDelete.restrict, required=True)
    at = Timestamptz()
    field = Varchar(length=40, required=True)
    value = Integer(null=True, default=None)
    text = Text(default="")
    reason = Text(default="")


class NoteAccessLog(Table, tablename="note_access_log"):
    """Every read of note contents: who, when, which client and note. Append-only.

    ``note_id`` is empty for reads of a client's progress (page or printout),
    which show every note signed before ``at``; ``action`` says which read.
    Plain integers rather than foreign keys, like the audit log: the record
    must outlive anything it points at.
    """

    id: Serial
    at = Timestamptz()
    actor_id = Integer(null=True, default=None)
    actor_email = Varchar(length=254, default="")
    actor_role = Varchar(length=20, default="")
    action = Varchar(length=20, required=True)
    client_id = Integer(required=True)
    note_id = Integer(null=True, default=None)
    address = Varchar(length=64, default="")
