"""Body regions: the one list shared by intake forms and treatment notes.

Two groups: general areas a client names ("my lower back") and the muscles
with common trigger points, each with where it typically refers pain. Codes
are stored; labels are shown. Append new regions at the end of a group and
never reuse or rename a code (stored intakes and notes keep the old one).
"""

from __future__ import annotations

from dataclasses import dataclass

GENERAL = "general"
MUSCLE = "muscle"
GROUP_LABELS = {
    GENERAL: "General areas",
    MUSCLE: "Muscles with common trigger points",
}


@dataclass(frozen=True)
class Region:
    code: str
    label: str
    group: str
    # Where trigger points here typically refer pain (muscles only).
    referral: str = ""


# One region a line: code | label (| where its trigger points refer pain, for muscles).
_GENERAL = """
head_jaw     | Head and jaw
neck         | Neck
shoulders    | Shoulders
upper_back   | Upper back
mid_back     | Mid back
lower_back   | Lower back
chest        | Chest
arms_elbows  | Arms and elbows
wrists_hands | Wrists and hands
hips         | Hips
glutes       | Buttocks (glutes)
thighs       | Thighs
knees        | Knees
calves_feet  | Calves, ankles and feet
"""
_MUSCLES = """
upper_trapezius      | Upper trapezius        | side of the neck, temple (tension headache)
levator_scapulae     | Levator scapulae       | angle of the neck, top of the shoulder blade
suboccipitals        | Suboccipitals          | back of the head, behind the eye
sternocleidomastoid  | Sternocleidomastoid    | forehead, around the ear, over the eye
scalenes             | Scalenes               | chest, upper back, down the arm
rhomboids            | Rhomboids              | between the shoulder blades
infraspinatus        | Infraspinatus          | front and side of the shoulder, down the arm
supraspinatus        | Supraspinatus          | side of the shoulder, elbow
pectoralis_minor     | Pectoralis minor       | front of the shoulder, inner arm
forearm_extensors    | Forearm extensors      | lateral elbow, back of the hand (RSI)
forearm_flexors      | Forearm flexors        | inner elbow, palm and fingers (RSI)
quadratus_lumborum   | Quadratus lumborum     | low back, hip, buttock
iliopsoas            | Iliopsoas              | low back, front of the thigh
gluteus_medius       | Gluteus medius         | low back, sacrum, buttock
gluteus_minimus      | Gluteus minimus        | down the side or back of the leg (sciatica-like)
piriformis           | Piriformis             | buttock, back of the thigh
hamstrings           | Hamstrings             | back of the thigh and knee
gastrocnemius_soleus | Gastrocnemius / soleus | calf, heel
"""


def _table(text: str, group: str) -> tuple[Region, ...]:
    rows = [[cell.strip() for cell in line.split("|")] for line in text.strip().splitlines()]
    return tuple(Region(row[0], row[1], group, *row[2:]) for row in rows)


REGIONS: tuple[Region, ...] = _table(_GENERAL, GENERAL) + _table(_MUSCLES, MUSCLE)

BY_CODE: dict[str, Region] = {r.code: r for r in REGIONS}
CODES: frozenset[str] = frozenset(BY_CODE)


def is_region(code: str) -> bool:
    return code in BY_CODE


def label(code: str) -> str:
    """The label of a region code; an unknown (retired) code is shown as it is."""
    region = BY_CODE.get(code)
    return region.label if region else code


def grouped() -> list[tuple[str, str, list[Region]]]:
    """(group code, group label, regions) in display order."""
    return [
        (group, title, [r for r in REGIONS if r.group == group])
        for group, title in GROUP_LABELS.items()
    ]
