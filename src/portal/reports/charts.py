"""Server-rendered SVG charts: grouped bars and lines, no script, no inline styles.

The Content-Security-Policy forbids inline script and ``style`` attributes,
so the charts are plain SVG with presentation attributes (``fill``,
``stroke``) and CSS classes from app.css. Each chart has a ``<title>`` and a
``<desc>``, and every bar or point a ``<title>`` with its exact figure; the
page shows the table of the same numbers beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from functools import partial
from typing import NamedTuple
from xml.sax.saxutils import escape

PALETTE = ["#1f6f78", "#d9822b", "#5b3f8c", "#2f9e62", "#c23a3a", "#3a78c2", "#8a5a00", "#6b7b80"]
WIDTH = 720
HEIGHT = 300
LEFT = 64
RIGHT = 16
TOP = 16
BOTTOM = 56


def color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def nice_ceiling(value: int) -> int:
    """A round number at or above ``value`` for the top of the axis."""
    if value <= 0:
        return 1
    magnitude = 1
    while magnitude * 10 <= value:
        magnitude *= 10
    for step in (1, 2, 2.5, 5, 10):
        top = int(step * magnitude)
        if top >= value:
            return top
    return 10 * magnitude


def short_amount(cents: int, symbol: str = "") -> str:
    """12345600 → "123.5k" (axis labels; the table has exact figures)."""
    units = Decimal(cents) / 100
    sign = "-" if units < 0 else ""
    units = abs(units)
    for limit, suffix in ((Decimal(1_000_000), "M"), (Decimal(1_000), "k")):
        if units >= limit:
            text = f"{units / limit:.1f}".rstrip("0").rstrip(".")
            return f"{sign}{symbol}{text}{suffix}"
    return f"{sign}{symbol}{units:.0f}"


def _frame(chart_id: str, title: str, description: str, body: str, legend: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'class="chart-svg" role="img" aria-labelledby="{chart_id}-title {chart_id}-desc">'
        f'<title id="{chart_id}-title">{escape(title)}</title>'
        f'<desc id="{chart_id}-desc">{escape(description)}</desc>'
        f"{body}{legend}</svg>"
    )


def _axis(top_value: int, label: Callable[[int], str]) -> tuple[str, float]:
    """Horizontal grid lines with labels; returns (svg, pixels per cent)."""
    plot_height = HEIGHT - TOP - BOTTOM
    scale = plot_height / top_value
    parts = []
    for i in range(5):
        value = top_value * i // 4
        y = HEIGHT - BOTTOM - value * scale
        parts.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" '
            f'stroke="{"#9aa9ad" if i == 0 else "#e3e9eb"}" stroke-width="1"/>'
            f'<text x="{LEFT - 8}" y="{y + 4:.1f}" text-anchor="end" class="chart-label">'
            f"{escape(label(value))}</text>"
        )
    return "".join(parts), scale


def _legend(names: Sequence[str]) -> str:
    parts = []
    x = LEFT
    y = HEIGHT - 14
    for i, name in enumerate(names):
        parts.append(
            f'<rect x="{x}" y="{y - 9}" width="12" height="12" rx="2" fill="{color(i)}"/>'
            f'<text x="{x + 17}" y="{y + 1}" class="chart-legend">{escape(name)}</text>'
        )
        x += 30 + 7 * len(name)
    return "".join(parts)


Series = Sequence[tuple[str, Sequence[int]]]


class _Plot(NamedTuple):
    """What the marks of a chart are drawn from: ``step`` is the width of one
    category's slot, ``scale`` the pixels per unit, ``exact`` a value's tooltip."""

    categories: Sequence[str]
    series: Series
    step: float
    scale: float
    exact: Callable[[int], str]


Marks = Callable[[_Plot], Iterator[str]]


def _chart(
    marks: Marks,
    chart_id: str,
    title: str,
    description: str,
    categories: Sequence[str],
    series: Series,
    label: Callable[[int], str],
    exact: Callable[[int], str],
) -> str:
    """The frame every chart shares: a value axis from zero to a round ceiling, one
    slot per category labelled beneath, a legend; ``marks`` draws inside it."""
    peak = max([0, *(v for _, values in series for v in values)])
    grid, scale = _axis(nice_ceiling(peak), label)
    step = (WIDTH - LEFT - RIGHT) / max(len(categories), 1)
    parts = [grid, *marks(_Plot(categories, series, step, scale, exact))]
    for c, category in enumerate(categories):
        parts.append(
            f'<text x="{LEFT + step * c + step / 2:.1f}" y="{HEIGHT - BOTTOM + 16}" '
            f'text-anchor="middle" class="chart-label">{escape(category)}</text>'
        )
    return _frame(chart_id, title, description, "".join(parts), _legend([n for n, _ in series]))


def _bars(plot: _Plot) -> Iterator[str]:
    """Grouped bars: one group per category, one bar per series."""
    categories, series, step, scale, exact = plot
    bar = min(28.0, step * 0.8 / max(len(series), 1))
    for c, category in enumerate(categories):
        x0 = LEFT + c * step + (step - bar * len(series)) / 2
        for s, (name, values) in enumerate(series):
            value = values[c]
            height = max(value, 0) * scale
            x = x0 + s * bar
            y = HEIGHT - BOTTOM - height
            yield (
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(bar - 2, 1):.1f}" '
                f'height="{height:.1f}" fill="{color(s)}" class="chart-bar">'
                f"<title>{escape(f'{name}, {category}: {exact(value)}')}</title></rect>"
            )


def _lines(plot: _Plot) -> Iterator[str]:
    """One line per series over the categories, with a dot and a tooltip per point."""
    categories, series, step, scale, exact = plot
    for s, (name, values) in enumerate(series):
        points = []
        for c, value in enumerate(values):
            x = LEFT + step * c + step / 2
            y = HEIGHT - BOTTOM - max(value, 0) * scale
            points.append((x, y, value, categories[c]))
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in points)
        yield (
            f'<polyline points="{path}" fill="none" stroke="{color(s)}" stroke-width="2.5" '
            'stroke-linejoin="round" stroke-linecap="round"/>'
        )
        for x, y, value, category in points:
            yield (
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="#fff" stroke="{color(s)}" '
                f'stroke-width="2"><title>{escape(f"{name}, {category}: {exact(value)}")}</title>'
                "</circle>"
            )


# bar_chart(chart_id, title, description, categories, series, label, exact) -> SVG
bar_chart = partial(_chart, _bars)
line_chart = partial(_chart, _lines)
