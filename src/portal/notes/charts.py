"""The pain trend as server-rendered SVG: no script, no ``style`` attributes (CSP).

Presentation attributes (``fill``, ``stroke``) and CSS classes from app.css
only. The chart has a ``<title>`` and ``<desc>``, each point a ``<title>``
with its exact figure, and the page shows the table of the same numbers
beside it, so nothing depends on seeing the picture.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape

WIDTH = 640
HEIGHT = 300
LEFT = 46
RIGHT = 18
TOP = 22
BOTTOM = 74
BEFORE = "#b45309"
AFTER = "#1f6f78"
INTAKE = "#6b7b80"
GRID = "#e3e9eb"
# Value labels: a white halo keeps them readable over the lines.
VALUE = 'class="chart-value" paint-order="stroke" stroke="#fff" stroke-width="3"'
AXIS = "#9aa9ad"


@dataclass(frozen=True)
class PainPoint:
    label: str  # under the axis, e.g. "1/5"
    sublabel: str  # e.g. "12 Nov"
    before: int | None
    after: int | None
    corrected: bool = False  # a score was corrected by an amendment


def _y(value: int) -> float:
    plot = HEIGHT - TOP - BOTTOM
    return HEIGHT - BOTTOM - value * plot / 10


def _polyline(points: list[tuple[float, float]], color: str, dashed: bool) -> str:
    if len(points) < 2:
        return ""
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    dash = ' stroke-dasharray="7 5"' if dashed else ""
    return (
        f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="2.5" '
        f'stroke-linejoin="round" stroke-linecap="round"{dash}/>'
    )


def _reading(when: str, cx: float, cy: float, title: str, value: int, mark: str) -> str:
    """One pain value: its marker (a circle before the session, a square after) with the
    reading as a tooltip, and the number beside it, before to the left and after to the
    right, so the two of one session never cover each other."""
    if when == "before":
        marker, element, side, anchor = (
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="{BEFORE}">',
            "circle",
            -9,
            "end",
        )
    else:
        marker, element, side, anchor = (
            f'<rect x="{cx - 4.5:.1f}" y="{cy - 4.5:.1f}" width="9" height="9" fill="#fff" '
            f'stroke="{AFTER}" stroke-width="2.5">',
            "rect",
            9,
            "start",
        )
    return (
        f"{marker}<title>{title}: {value} / 10{mark}</title></{element}>"
        f'<text x="{cx + side:.1f}" y="{cy + 4:.1f}" text-anchor="{anchor}" {VALUE}>'
        f"{value}</text>"
    )


def pain_chart(
    points: list[PainPoint], *, intake: int | None = None, chart_id: str = "pain"
) -> str:
    """Pain before and after each session on the 0–10 scale; the intake score first."""
    slots = len(points) + (1 if intake is not None else 0)
    plot_width = WIDTH - LEFT - RIGHT
    step = plot_width / max(slots, 1)

    def x(slot: int) -> float:
        return LEFT + (slot + 0.5) * step

    grid: list[str] = []
    parts: list[str] = []
    for value in range(0, 11, 2):
        y = _y(value)
        grid.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" '
            f'stroke="{AXIS if value == 0 else GRID}" stroke-width="1"/>'
            f'<text x="{LEFT - 8}" y="{y + 4:.1f}" text-anchor="end" class="chart-label">'
            f"{value}</text>"
        )
    grid.append(
        f'<text x="12" y=""{(TOP + HEIGHT - BOTTOM) / 2:.1f}" class="chart-label" '
        f'text-anchor="middle" transform="rotate(-90 12 {(TOP + HEIGHT - BOTTOM) / 2:.1f})">'
        "Pain (0–10)</text>"
    )
    offset = 0
    if intake is not None:
        cx, cy = x(0), _y(intake)
        parts.append(
            f'<polygon points="{cx:.1f},{cy - 7:.1f} {cx + 7:.1f},{cy:.1f} {cx:.1f},{cy + 7:.1f} '
            f'{cx - 7:.1f},{cy:.1f}" fill="#fff" stroke="{INTAKE}" stroke-width="2">'
            f"<title>At intake: {intake} / 10</title></polygon>"
            f'<text x="{cx:.1f}" y="{cy - 12:.1f}" text-anchor="middle" {VALUE}>'
            f"{intake}</text>"
            f'<text x="{cx:.1f}" y="{HEIGHT - BOTTOM + 18}" text-anchor="middle" '
            'class="chart-label">Intake</text>'
        )
        offset = 1
    before_line: list[tuple[float, float]] = []
    after_line: list[tuple[float, float]] = []
    for i, point in enumerate(points):
        cx = x(i + offset)
        mark = " (corrected)" if point.corrected else ""
        if point.before is not None and point.after is not None:
            parts.append(
                f'<line x1="{cx:.1f}" y1="{_y(point.before):.1f}" x2="{cx:.1f}" '
                f'y2="{_y(point.after):.1f}" stroke="#d5dde0" stroke-width="6" '
                'stroke-linecap="round"/>'
            )
        for when, reading, line in (
            ("before", point.before, before_line),
            ("after", point.after, after_line),
        ):
            if reading is not None:
                cy = _y(reading)
                line.append((cx, cy))
                parts.append(
                    _reading(when, cx, cy, f"{escape(point.label)}, {when}", reading, mark)
                )
        parts.append(
            f'<text x="{cx:.1f}" y="{HEIGHT - BOTTOM + 18}" text-anchor="middle" '
            f'class="chart-label chart-label-strong">{escape(point.label)}</text>'
            f'<text x="{cx:.1f}" y="{HEIGHT - BOTTOM + 32}" text-anchor="middle" '
            f'class="chart-label">{escape(point.sublabel)}</text>'
        )
    lines = _polyline(before_line, BEFORE, False) + _polyline(after_line, AFTER, True)
    legend_y = HEIGHT - 14
    legend = (
        f'<circle cx="{LEFT + 6}" cy="{legend_y - 4}" r="5" fill="{BEFORE}"/>'
        f'<text x="{LEFT + 16}" y="{legend_y}" class="chart-legend">Before the session</text>'
        f'<rect x="{LEFT + 150}" y="{legend_y - 8.5}" width="9" height="9" fill="#fff" '
        f'stroke="{AFTER}" stroke-width="2.5"/>'
        f'<text x="{LEFT + 166}" y="{legend_y}" class="chart-legend">After the session</text>'
    )
    if intake is not None:
        legend += (
            f'<polygon points="{LEFT + 306},{legend_y - 11} {LEFT + 313},{legend_y - 4} '
            f'{LEFT + 306},{legend_y + 3} {LEFT + 299},{legend_y - 4}" fill="#fff" '
            f'stroke="{INTAKE}" stroke-width="2"/>'
            f'<text x="{LEFT + 320}" y="{legend_y}" class="chart-legend">At intake</text>'
        )
    described = ", ".join(
        f"{p.label}: {p.before if p.before is not None else '–'} → "
        f"{p.after if p.after is not None else '–'}"
        for p in points
    )
    description = (
        f"At intake {intake} of 10. " if intake is not None else ""
    ) + f"Pain before → after, per session: {described}."
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'class="chart-svg pain-chart" role="img" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc">'
        f'<title id="{chart_id}-title">Pain before and after each session</title>'
        f'<desc id="{chart_id}-desc">{escape(description)}</desc>'
        f"{''.join(grid)}{lines}{''.join(parts)}{legend}</svg>"
    )
