"""The treatment note form: its vocabulary and the parsing of a submission.

Pure functions (no database). ``parse_note`` checks every value a draft may
hold (pain 0–10, regions from the fixed list, trigger points with a side
and a severity 1–3); ``missing_for_signing`` lists what a note still needs
before it can be signed. Errors are keyed by the form's field names so the
page shows each message beside its field.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from portal.clients import regions
from portal.errors import Invalid
from portal.fields import checked, optional_text, parse_int

TEXT_LIMIT = 4000
SHORT_LIMIT = 200
# Trigger point rows the form reads (and at most stores) per note.
MAX_TRIGGER_POINTS = 40
# Empty rows offered below the filled ones.
SPARE_ROWS = 3
MIN_ROWS = 4

SIDES: dict[str, str] = {"left": "Left", "right": "Right", "bilateral": "Bilateral"}
SEVERITIES: dict[int, str] = {1: "1 mild", 2: "2 moderate", 3: "3 severe"}

TECHNIQUES: dict[str, str] = {
    "ischemic_compression": "Ischemic compression (sustained pressure)",
    "myofascial_release": "Myofascial release",
    "cross_fibre_friction": "Cross-fibre friction",
    "pin_and_stretch": "Pin and stretch",
    "muscle_energy": "Muscle energy technique",
    "assisted_stretching": "Assisted stretching / PNF",
    "effleurage": "Effleurage and petrissage",
    "moist_heat": "Moist heat",
}

PRESSURES: dict[str, str] = {
    "light": "Light — tender, kept gentle",
    "medium": "Medium",
    "firm": "Firm",
    "deep": "Deep — sustained pressure well tolerated",
}

LABELS: dict[str, str] = {
    "subjective": "Client report",
    "symptom": "Main symptom",
    "symptom_per_week": "Times per week",
    "pain_before": "Pain before",
    "pain_after": "Pain after",
    "regions": "Regions treated",
    "techniques": "Techniques",
    "technique_notes": "Technique notes",
    "pressure": "Pressure tolerance",
    "rom": "Range of motion",
    "assessment": "Assessment",
    "plan": "Home-care plan",
    "confirm": "Confirmation",
    "field": "Part corrected",
    "value": "Corrected score",
    "text": "Correction",
    "reason": "Reason",
    "form": "Note",
}

# What an amendment may correct; the pain scores take a number.
AMENDABLE: dict[str, str] = {
    "subjective": "Client report (S)",
    "symptom": "Symptom frequency",
    "pain_before": "Pain before (0–10)",
    "pain_after": "Pain after (0–10)",
    "regions": "Regions treated",
    "trigger_points": "Trigger points",
    "techniques": "Techniques and pressure",
    "rom": "Range of motion",
    "assessment": "Assessment (A)",
    "plan": "Home-care plan (P)",
    "other": "Something else",
}
NUMERIC_AMENDMENTS = ("pain_before", "pain_after")


@dataclass(frozen=True)
class TriggerPointInput:
    region: str
    side: str
    severity: int
    reproduced: bool = False
    referral: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class NoteInput:
    subjective: str = ""
    symptom: str = ""
    symptom_per_week: int | None = None
    pain_before: int | None = None
    pain_after: int | None = None
    regions: list[str] = field(default_factory=list)
    techniques: list[str] = field(default_factory=list)
    technique_notes: str = ""
    pressure: str = ""
    rom: str = ""
    assessment: str = ""
    plan: str = ""
    trigger_points: list[TriggerPointInput] = field(default_factory=list)

    def columns(self) -> dict[str, Any]:
        """The note's own columns (trigger points are rows of their own)."""
        values = asdict(self)
        values.pop("trigger_points")
        return values


@dataclass(frozen=True)
class AmendmentInput:
    field: str
    value: int | None
    text: str
    reason: str


def _pain(values: dict[str, str], errors: dict[str, str], name: str, label: str) -> int | None:
    raw = values.get(name, "").strip()
    if raw == "":
        return None
    try:
        number = int(raw)
    except ValueError:
        errors[name] = f"{label} must be a whole number from 0 to 10."
        return None
    if not 0 <= number <= 10:
        errors[name] = f"{label} must be between 0 (no pain) and 10 (worst imaginable)."
        return None
    return number


def _codes(
    chosen: list[str], known: dict[str, str] | frozenset[str], errors: dict[str, str], name: str
) -> list[str]:
    unknown = [c for c in chosen if c not in known]
    if unknown:
        errors[name] = "Choose from the list only (unknown: " + ", ".join(unknown[:3]) + ")."
    return list(dict.fromkeys(c for c in chosen if c in known))


def _trigger_points(values: dict[str, str], errors: dict[str, str]) -> list[TriggerPointInput]:
    points: list[TriggerPointInput] = []
    for i in range(MAX_TRIGGER_POINTS):
        prefix = f"tp-{i}-"
        region = values.get(prefix + "region", "").strip()
        side = values.get(prefix + "side", "").strip()
        severity_raw = values.get(prefix + "severity", "").strip()
        referral = values.get(prefix + "referral", "").strip()
        reproduced = checked(values, prefix + "reproduced")
        if not (region or side or severity_raw or referral or reproduced):
            continue  # an empty row
        ok = True
        if not region:
            errors[prefix + "region"] = "Choose the region of this trigger point."
            ok = False
        elif not regions.is_region(region):
            errors[prefix + "region"] = "Choose a region from the list."
            ok = False
        if side not in SIDES:
            errors[prefix + "side"] = "Choose left, right or bilateral."
            ok = False
        severity = 0
        try:
            severity = int(severity_raw)
        except ValueError:
            severity = 0
        if severity not in SEVERITIES:
            errors[prefix + "severity"] = "Severity is 1 (mild), 2 (moderate) or 3 (severe)."
            ok = False
        if len(referral) > SHORT_LIMIT:
            errors[prefix + "referral"] = f"At most {SHORT_LIMIT} characters."
            ok = False
        if ok:
            points.append(TriggerPointInput(region, side, severity, reproduced, referral))
    return points


def error_labels(errors: dict[str, str]) -> dict[str, str]:
    """Labels for the error summary, trigger point rows included ("Trigger point 2, side")."""
    labels = dict(LABELS)
    for key in errors:
        if key.startswith("tp-"):
            _, index, part = key.split("-", 2)
            if index.isdigit():
                labels[key] = f"Trigger point {int(index) + 1}, {part}"
    return labels


def parse_note(values: dict[str, str], multi: dict[str, list[str]]) -> NoteInput:
    """A draft's values, or ``Invalid`` with a message per field.

    A draft may be incomplete, but what it holds must be valid; the pain
    before the session is the one value every note starts with.
    """
    errors: dict[str, str] = {}
    pain_before = _pain(values, errors, "pain_before", "Pain before")
    if pain_before is None and "pain_before" not in errors:
        errors["pain_before"] = "Record the pain before the session (0–10)."
    pain_after = _pain(values, errors, "pain_after", "Pain after")
    per_week = parse_int(
        values,
        errors,
        "symptom_per_week",
        label="Times per week",
        minimum=0,
        maximum=100,
        required=False,
    )
    pressure = values.get("pressure", "").strip()
    if pressure and pressure not in PRESSURES:
        errors["pressure"] = "Choose a pressure from the list."
    data = NoteInput(
        subjective=optional_text(values, errors, "subjective", label="Client report",
                                 max_length=TEXT_LIMIT),
        symptom=optional_text(values, errors, "symptom", label="Main symptom", max_length=80),
        symptom_per_week=per_week,
        pain_before=pain_before,
        pain_after=pain_after,
        regions=_codes(multi.get("regions", []), regions.CODES, errors, "regions"),
        techniques=_codes(multi.get("techniques", []), TECHNIQUES, errors, "techniques"),
        technique_notes=optional_text(values, errors, "technique_notes", label="Technique notes",
                                      max_length=TEXT_LIMIT),
        pressure=pressure if pressure in PRESSURES else "",
        rom=optional_text(values, errors, "rom", label="Range of motion", max_length=TEXT_LIMIT),
        assessment=optional_text(values, errors, "assessment", label="Assessment",
                                 max_length=TEXT_LIMIT),
        plan=optional_text(values, errors, "plan", label="Home-care plan", max_length=TEXT_LIMIT),
        trigger_points=_trigger_points(values, errors),
    )  # fmt: skip
    if data.symptom_per_week is not None and not data.symptom:
        errors.setdefault("symptom", "Name the symptom you counted (e.g. headaches).")
    if errors:
        raise Invalid(errors)
    return data


def missing_for_signing(note: dict[str, Any]) -> dict[str, str]:
    """What a stored note lacks before it may be signed (empty: ready)."""
    missing: dict[str, str] = {}
    if not (note.get("subjective") or "").strip():
        missing["subjective"] = "Write what the client reported."
    if note.get("pain_before") is None:
        missing["pain_before"] = "Record the pain before the session."
    if note.get("pain_after") is None:
        missing["pain_after"] = "Record the pain after the session."
    if not note.get("regions"):
        missing["regions"] = "Tick at least one region treated."
    if not note.get("techniques") and not (note.get("technique_notes") or "").strip():
        missing["techniques"] = "Say which techniques were used."
    if not (note.get("assessment") or "").strip():
        missing["assessment"] = "Write the assessment."
    return missing


def parse_amendment(values: dict[str, str]) -> AmendmentInput:
    errors: dict[str, str] = {}
    which = values.get("field", "").strip()
    if which not in AMENDABLE:
        errors["field"] = "Choose which part of the note this corrects."
    value: int | None = None
    text = optional_text(values, errors, "text", label="Correction", max_length=TEXT_LIMIT)
    if which in NUMERIC_AMENDMENTS:
        value = _pain(values, errors, "value", "The corrected score")
        if value is None and "value" not in errors:
            errors["value"] = "Give the corrected score (0–10)."
    elif which and not text:
        errors["text"] = "Write the correction."
    reason = optional_text(values, errors, "reason", label="Reason", max_length=SHORT_LIMIT * 5)
    if not reason:
        errors["reason"] = "Say why the note is corrected."
    if errors:
        raise Invalid(errors)
    return AmendmentInput(field=which, value=value, text=text, reason=reason)


def form_from_note(note: dict[str, Any] | None) -> dict[str, Any]:
    """A stored note (decoded) as the form's values."""
    if note is None:
        return {"regions": [], "techniques": [], "trigger_points": []}
    form: dict[str, Any] = {
        key: ("" if note.get(key) is None else str(note.get(key)))
        for key in (
            "subjective", "symptom", "symptom_per_week", "pain_before", "pain_after",
            "technique_notes", "pressure", "rom", "assessment", "plan",
        )
    }  # fmt: skip
    form["regions"] = list(note.get("regions") or [])
    form["techniques"] = list(note.get("techniques") or [])
    form["trigger_points"] = [
        {
            "region": tp["region"],
            "side": tp["side"],
            "severity": str(tp["severity"]),
            "reproduced": bool(tp["reproduced"]),
            "referral": tp["referral"],
        }
        for tp in note.get("trigger_points") or []
    ]
    return form


def form_from_submission(values: dict[str, str], multi: dict[str, list[str]]) -> dict[str, Any]:
    """What the user sent, kept as typed (for re-rendering with errors)."""
    form: dict[str, Any] = dict(values)
    form["regions"] = multi.get("regions", [])
    form["techniques"] = multi.get("techniques", [])
    rows: list[dict[str, Any]] = []
    last_filled = -1
    for i in range(MAX_TRIGGER_POINTS):
        prefix = f"tp-{i}-"
        row = {
            "region": values.get(prefix + "region", ""),
            "side": values.get(prefix + "side", ""),
            "severity": values.get(prefix + "severity", ""),
            "reproduced": checked(values, prefix + "reproduced"),
            "referral": values.get(prefix + "referral", ""),
        }
        rows.append(row)
        if any(row[key] for key in ("region", "side", "severity", "referral", "reproduced")):
            last_filled = i
    # Keep row numbers as sent, so messages stay beside the rows they are about.
    form["trigger_points"] = rows[: last_filled + 1]
    return form


def trigger_rows(form: dict[str, Any], extra: int = 0) -> list[dict[str, Any]]:
    """The rows the form shows: the filled ones and a few empty ones."""
    rows = list(form.get("trigger_points") or [])
    count = min(MAX_TRIGGER_POINTS, max(MIN_ROWS, len(rows) + SPARE_ROWS + extra))
    blank = {"region": "", "side": "", "severity": "", "reproduced": False, "referral": ""}
    return (rows + [dict(blank) for _ in range(count)])[:count]
