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


REGIONS: tuple[Region, ...] = (
    Region("head_jaw", "Head and jaw", GENERAL),
    Region("neck", "Neck", GENERAL),
    Region("shoulders", "Shoulders", GENERAL),
    Region("upper_back", "Upper back", GENERAL),
    Region("mid_back", "Mid back", GENERAL),
    Region("lower_back", "Lower back", GENERAL),
    Region("chest", "Chest", GENERAL),
    Region("arms_elbows", "Arms and elbows", GENERAL),
    Region("wrists_hands", "Wrists and hands", GENERAL),
    Region("hips", "Hips", GENERAL),
    Region("glutes", "Buttocks (glutes)", GENERAL),
    Region("thighs", "Thighs", GENERAL),
    Region("knees", "Knees", GENERAL),
    Region("calves_feet", "Calves, ankles and feet", GENERAL),
    Region(
        "upper_trapezius",
        "Upper trapezius",
        MUSCLE,
        "side of the neck, temple (tension headache)",
    ),
    Region(
        "levator_scapulae",
        "Levator scapulae",
        MUSCLE,
        "angle of the neck, top of the shoulder blade",
    ),
    Region("suboccipitals", "Suboccipitals", MUSCLE, "back of the head, behind the eye"),
    Region(
        "sternocleidomastoid",
        "Sternocleidomastoid",
        MUSCLE,
        "forehead, around the ear, over the eye",
    ),
    Region("scalenes", "Scalenes", MUSCLE, "chest, upper back, down the arm"),
    Region("rhomboids", "Rhomboids", MUSCLE, "between the shoulder blades"),
    Region(
        "infraspinatus",
        "Infraspinatus",
        MUSCLE,
        "front and side of the shoulder, down the arm",
    ),
    Region("supraspinatus", "Supraspinatus", MUSCLE, "side of the shoulder, elbow"),
    Region("pectoralis_minor", "Pectoralis minor", MUSCLE, "front of the shoulder, inner arm"),
    Region(
        "forearm_extensors",
        "Forearm extensors",
        MUSCLE,
        "lateral elbow, back of the hand (RSI)",
    ),
    Region(
        "forearm_flexors",
        "Forearm flexors",
        MUSCLE,
        "inner elbow, palm and fingers (RSI)",
    ),
    Region("quadratus_lumborum", "Quadratus lumborum", MUSCLE, "low back, hip, buttock"),
    Region("iliopsoas", "Iliopsoas", MUSCLE, "low back, front of the thigh"),
    Region("gluteus_medius", "Gluteus medius", MUSCLE, "low back, sacrum, buttock"),
    Region(
        "gluteus_minimus",
        "Gluteus minimus",
        MUSCLE,
        "down the side or back of the leg (sciatica-like)",
    ),
    Region("piriformis", "Piriformis", MUSCLE, "buttock, back of the thigh"),
    Region("hamstrings", "Hamstrings", MUSCLE, "back of the thigh and knee"),
    Region("gastrocnemius_soleus", "Gastrocnemius / soleus", MUSCLE, "calf, heel"),
)

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
