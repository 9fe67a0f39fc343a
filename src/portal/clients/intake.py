"""The intake questionnaire: its vocabulary and the parsing of a submitted form.

Pure functions (no database): the service stores what ``parse_intake``
returns as a new version. Choices are stored as codes; labels are shown.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from portal.clients import regions
from portal.errors import Invalid
from portal.fields import checked, optional_text, parse_int

# The clinics' main concerns (DOMAIN: "what the clinics treat").
CONCERNS: dict[str, str] = {
    "neck_shoulder_tension": "Chronic neck and shoulder tension",
    "low_back_sciatica": "Low-back pain and sciatica symptoms",
    "tension_headaches": "Headaches related to muscle tension",
    "repetitive_strain": "Repetitive strain (desk work, trades, music)",
    "postural_imbalance": "Postural imbalances from work or training",
    "sports_recovery": "Sports overuse and recovery",
}

PAIN_DURATIONS: dict[str, str] = {
    "under_2_weeks": "Less than 2 weeks",
    "2_to_6_weeks": "2 to 6 weeks",
    "6_weeks_to_3_months": "6 weeks to 3 months",
    "3_to_12_months": "3 to 12 months",
    "over_a_year": "More than a year",
    "comes_and_goes": "It comes and goes",
}

WORK_POSTURES: dict[str, str] = {
    "desk": "Mostly sitting at a desk",
    "standing": "Mostly standing",
    "manual": "Physical or manual work, lifting",
    "driving": "Driving",
    "mixed": "A mix of sitting, standing and moving",
    "not_working": "Not working at the moment",
}

HEALTH_FLAGS: dict[str, str] = {
    "pregnancy": "Pregnancy",
    "recent_surgery": "Surgery in the last 6 months",
    "blood_thinners": "Blood thinners (anticoagulants)",
    "skin_conditions": "Skin conditions, rashes or open wounds",
    "other": "Another condition to know about",
}

PRESSURES: dict[str, str] = {
    "light": "Light",
    "medium": "Medium",
    "firm": "Firm",
    "deep": "Deep — as strong as is productive",
    "unsure": "Not sure — let the therapist guide me",
}

TEXT_LIMIT = 2000
SHORT_LIMIT = 200

LABELS = {
    "concerns": "Main concerns",
    "concerns_other": "Other concern",
    "pain_where": "Where it hurts",
    "pain_duration": "Since when",
    "pain_worse": "What makes it worse",
    "pain_better": "What makes it better",
    "pain_level": "Current pain",
    "regions": "Body areas",
    "work_posture": "Work posture",
    "daily_activities": "Daily activities",
    "sports": "Sports and training",
    "goals": "Goals",
    "health_flags": "Health",
    "health_details": "Health details",
    "pressure": "Pressure preference",
    "consent": "Consent to treatment",
}


@dataclass(frozen=True)
class IntakeInput:
    concerns: list[str] = field(default_factory=list)
    concerns_other: str = ""
    pain_where: str = ""
    pain_duration: str = ""
    pain_worse: str = ""
    pain_better: str = ""
    pain_level: int = 0
    regions: list[str] = field(default_factory=list)
    work_posture: str = ""
    daily_activities: str = ""
    sports: str = ""
    goals: str = ""
    health_flags: list[str] = field(default_factory=list)
    health_details: str = ""
    pressure: str = "unsure"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _choices(
    multi: dict[str, list[str]],
    errors: dict[str, str],
    name: str,
    allowed: frozenset[str] | set[str],
    message: str,
) -> list[str]:
    picked: list[str] = []
    for raw in multi.get(name, []):
        value = raw.strip()
        if not value:
            continue
        if value not in allowed:
            errors[name] = message
            continue
        if value not in picked:
            picked.append(value)
    return picked


def _choice(
    values: dict[str, str],
    errors: dict[str, str],
    name: str,
    allowed: dict[str, str],
    message: str,
    *,
    required: bool = False,
) -> str:
    value = values.get(name, "").strip()
    if not value:
        if required:
            errors[name] = message
        return ""
    if value not in allowed:
        errors[name] = message
        return ""
    return value


# The free-text answers: the label their messages use, and their longest length.
_TEXTS: dict[str, tuple[str, int]] = {
    "concerns_other": ("Other concern", SHORT_LIMIT),
    "pain_where": ("Where it hurts", TEXT_LIMIT),
    "pain_worse": ("What makes it worse", TEXT_LIMIT),
    "pain_better": ("What makes it better", TEXT_LIMIT),
    "daily_activities": ("Daily activities", TEXT_LIMIT),
    "sports": ("Sports and training", TEXT_LIMIT),
    "goals": ("Goals", TEXT_LIMIT),
    "health_details": ("Health details", TEXT_LIMIT),
}


def _text(values: dict[str, str], errors: dict[str, str], name: str) -> str:
    label, limit = _TEXTS[name]
    return optional_text(values, errors, name, label=label, max_length=limit)


def parse_intake(values: dict[str, str], multi: dict[str, list[str]]) -> IntakeInput:
    """The submitted intake form, validated; ``Invalid`` with a message per field."""
    errors: dict[str, str] = {}
    concerns = _choices(multi, errors, "concerns", set(CONCERNS), "Choose concerns from the list.")
    concerns_other = _text(values, errors, "concerns_other")
    if not concerns and not concerns_other and "concerns" not in errors:
        errors["concerns"] = "Tick at least one concern, or describe yours under “Something else”."
    pain_where = _text(values, errors, "pain_where")
    pain_duration = _choice(
        values, errors, "pain_duration", PAIN_DURATIONS, "Choose how long from the list."
    )
    pain_worse = _text(values, errors, "pain_worse")
    pain_better = _text(values, errors, "pain_better")
    raw_level = values.get("pain_level", "").strip()
    level: int | None = None
    if raw_level == "":
        errors["pain_level"] = "Rate your pain today from 0 (none) to 10 (worst imaginable)."
    else:
        level = parse_int(values, errors, "pain_level", label="Current pain")
        if level is not None and not 0 <= level <= 10:
            errors["pain_level"] = "Pain is rated from 0 (none) to 10 (worst imaginable)."
    picked_regions = _choices(
        multi, errors, "regions", regions.CODES, "Choose body areas from the list."
    )
    work_posture = _choice(
        values, errors, "work_posture", WORK_POSTURES, "Choose a work posture from the list."
    )
    daily_activities = _text(values, errors, "daily_activities")
    sports = _text(values, errors, "sports")
    goals = _text(values, errors, "goals")
    flags = _choices(multi, errors, "health_flags", set(HEALTH_FLAGS), "Choose from the list.")
    health_details = _text(values, errors, "health_details")
    if flags and not health_details and "health_flags" not in errors:
        errors["health_details"] = (
            "Tell your therapist a little more about what you ticked "
            "(e.g. which week of pregnancy, what surgery and when)."
        )
    pressure = _choice(
        values,
        errors,
        "pressure",
        PRESSURES,
        "Choose a pressure from the list.",
        required=True,
    )
    if not checked(values, "consent"):
        errors["consent"] = "Your consent is needed before treatment can start."
    if errors:
        raise Invalid(errors)
    assert level is not None
    return IntakeInput(
        concerns=concerns,
        concerns_other=concerns_other,
        pain_where=pain_where,
        pain_duration=pain_duration,
        pain_worse=pain_worse,
        pain_better=pain_better,
        pain_level=level,
        regions=picked_regions,
        work_posture=work_posture,
        daily_activities=daily_activities,
        sports=sports,
        goals=goals,
        health_flags=flags,
        health_details=health_details,
        pressure=pressure,
    )


def as_form(stored: dict[str, Any] | None) -> dict[str, Any]:
    """A stored version (or nothing) as the form's values; consent is asked afresh."""
    if stored is None:
        return {
            **IntakeInput().as_dict(),
            "pain_level": "",
            "consent": "",
        }
    form = {key: stored.get(key) for key in IntakeInput.__dataclass_fields__}
    form["pain_level"] = str(stored.get("pain_level", ""))
    form["consent"] = ""
    return form


def form_from_submission(values: dict[str, str], multi: dict[str, list[str]]) -> dict[str, Any]:
    """The user's own input, to re-show after a validation error."""
    form: dict[str, Any] = {key: values.get(key, "") for key in IntakeInput.__dataclass_fields__}
    for name in ("concerns", "regions", "health_flags"):
        form[name] = [v for v in multi.get(name, []) if v]
    form["consent"] = values.get("consent", "")
    return form
