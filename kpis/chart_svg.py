"""The drawing kit of the KPI charts: the SVG elements (escaped text and attributes, markers,
the chart's opening with its title and description), the axes with their round tick values, the
legend and its swatches, and the layout's sizes and colours.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from xml.sax.saxutils import escape, quoteattr

from .formatting import MINUTE_UNITS, SCORE_UNITS, format_value, trim

# A narrow drawing (scaled up on a laptop, down on a phone) keeps its text legible on both.
WIDTH = 480
HEIGHT = 250
MARGIN_LEFT = 58
MARGIN_RIGHT = 12
MARGIN_TOP = 38
MARGIN_BOTTOM = 40
LEGEND_ROW = 20
CHAR = 7.2  # the width of a character at font size 13, near enough for laying out text
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"

# Okabe-Ito hues, darkened where needed so each has at least 3:1 contrast on white (WCAG 1.4.11
# for graphical objects).
COLOURS = ("#0b5fa5", "#b5430a", "#00795a", "#8e3f7e", "#6b5800", "#333333", "#2f6f9f")
DASHES = ("", "7 4", "2 3", "9 3 2 3", "4 4", "1 2", "12 4")
MARKERS = ("circle", "square", "triangle", "diamond", "cross", "circle", "square")
TARGET_COLOUR = "#8a1c1c"
AXIS_COLOUR = "#555555"
GRID_COLOUR = "#dddddd"
TEXT_COLOUR = "#222222"


def _tick_label(value: float, unit: str) -> str:
    if unit in SCORE_UNITS:
        return trim(value)
    return format_value(value, unit)


# ----- scales ---------------------------------------------------------------------------------

_MINUTE_STEPS = (1, 2, 5, 10, 15, 20, 30, 60, 120, 180, 240, 360, 480, 720, 1440, 2880, 7200)


def tick_values(high: float, unit: str, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least ``high``. Minutes use clock-friendly steps (15 min,
    1 h, 6 h...) so tick labels come out as whole minutes or hours."""
    if high <= 0:
        high = 1.0
    raw = high / count
    if unit in MINUTE_UNITS:
        step = next((s for s in _MINUTE_STEPS if s >= raw), None)
        if step is None:
            step = 1440 * _nice(raw / 1440)
    else:
        step = _nice(raw)
    top = step * math.ceil(high / step - 1e-9)
    n = round(top / step)
    return [round(i * step, 10) for i in range(n + 1)]


def _nice(raw: float) -> float:
    exponent = math.floor(math.log10(raw))
    base = 10**exponent
    for factor in (1, 2, 2.5, 5, 10):
        if factor * base >= raw - 1e-12:
            return factor * base
    return 10 * base  # pragma: no cover - the loop always returns


# ----- SVG building blocks ----------------------------------------------------------------------


def num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def attrs(**attributes: object) -> str:
    parts = []
    for key, value in attributes.items():
        if value is None or value == "":
            continue
        name = key.rstrip("_").replace("_", "-")
        text = num(value) if isinstance(value, float) else str(value)
        parts.append(f"{name}={quoteattr(text)}")
    return " ".join(parts)


def el(tag: str, inner: str = "", **attributes: object) -> str:
    if inner:
        return f"<{tag} {attrs(**attributes)}>{inner}</{tag}>"
    return f"<{tag} {attrs(**attributes)}/>"


def tip(content: str) -> str:
    return f"<title>{escape(content)}</title>"


def pts(points: Sequence[tuple[float, float]]) -> str:
    return " ".join(f"{num(x)},{num(y)}" for x, y in points)


def text(x: float, y: float, content: str, **attributes: object) -> str:
    attributes.setdefault("fill", TEXT_COLOUR)
    attributes.setdefault("font_size", 13)
    return f"<text {attrs(x=float(x), y=float(y), **attributes)}>{escape(content)}</text>"


def marker(shape: str, x: float, y: float, colour: str, size: float = 4.0) -> str:
    if shape == "square":
        return el("rect", x=x - size, y=y - size, width=2 * size, height=2 * size, fill=colour)
    if shape == "triangle":
        points = pts([(x, y - size - 1), (x - size - 1, y + size), (x + size + 1, y + size)])
        return el("polygon", points=points, fill=colour)
    if shape == "diamond":
        s = size + 1
        points = pts([(x, y - s), (x + s, y), (x, y + s), (x - s, y)])
        return el("polygon", points=points, fill=colour)
    if shape == "cross":
        a, b = pts([(x - size, y - size), (x + size, y + size)]).split()
        c, e = pts([(x - size, y + size), (x + size, y - size)]).split()
        d = f"M{a}L{b}M{c}L{e}"
        return el("path", d=d, stroke=colour, stroke_width=2.5, fill="none")
    return el("circle", cx=x, cy=y, r=size, fill=colour)


def chart_id_prefix(*parts: object) -> str:
    """A stable id prefix for the chart's <title>/<desc>/<pattern> elements: the same chart
    gives the same ids, different charts on one page do not collide."""
    digest = hashlib.sha1(repr(parts).encode(), usedforsecurity=False).hexdigest()[:10]
    return f"kc{digest}"


def svg_open(chart_id: str, height: float, title: str, desc: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" {attrs(viewBox=f"0 0 {WIDTH} {num(height)}")}'
        f' width="100%" preserveAspectRatio="xMidYMid meet" role="img"'
        f' aria-labelledby="{chart_id}-t {chart_id}-d" class="kpi-chart"'
        f" font-family={quoteattr(FONT)}>",
        f'<title id="{chart_id}-t">{escape(title)}</title>',
        f'<desc id="{chart_id}-d">{escape(desc)}</desc>',
        f'<rect x="0" y="0" width="{WIDTH}" height="{num(height)}" fill="#ffffff"/>',
        text(8, 22, title, font_size=15, font_weight="bold"),
    ]


def no_data(title: str) -> str:
    chart_id = chart_id_prefix("empty", title)
    height = 120.0
    parts = svg_open(chart_id, height, title, "No data for this chart.")
    parts.append(
        text(
            WIDTH / 2,
            height / 2 + 10,
            "No data",
            text_anchor="middle",
            fill=AXIS_COLOUR,
            font_size=16,
        )
    )
    parts.append("</svg>")
    return "".join(parts)


def y_axis(ticks: list[float], unit: str, top: float, bottom: float) -> tuple[list[str], float]:
    """Grid lines and labels; returns them and the value at the top of the axis."""
    high = ticks[-1] or 1.0
    parts = []
    for tick in ticks:
        y = bottom - (bottom - top) * tick / high
        parts.append(
            el(
                "line",
                x1=float(MARGIN_LEFT),
                x2=float(WIDTH - MARGIN_RIGHT),
                y1=y,
                y2=y,
                stroke=GRID_COLOUR,
                stroke_width=1,
            )
        )
        parts.append(
            text(MARGIN_LEFT - 6, y + 4, _tick_label(tick, unit), text_anchor="end", font_size=12)
        )
    parts.append(
        el(
            "line",
            x1=float(MARGIN_LEFT),
            x2=float(MARGIN_LEFT),
            y1=top,
            y2=bottom,
            stroke=AXIS_COLOUR,
            stroke_width=1,
        )
    )
    parts.append(
        el(
            "line",
            x1=float(MARGIN_LEFT),
            x2=float(WIDTH - MARGIN_RIGHT),
            y1=bottom,
            y2=bottom,
            stroke=AXIS_COLOUR,
            stroke_width=1,
        )
    )
    return parts, high


def x_labels(labels: Sequence[str], xs: Sequence[float], bottom: float, slot: float) -> list[str]:
    # Left to right, a label that would overlap the one before it is left out (the chart's
    # <desc> and each point's tooltip still name every month).
    parts = []
    free_from = -math.inf
    for label, x in zip(labels, xs, strict=True):
        half = len(label) * CHAR * 0.92 / 2
        if x - half < free_from:
            continue
        parts.append(text(x, bottom + 17, label, text_anchor="middle", font_size=12))
        free_from = x + half + 6
    return parts


def legend_rows(items: list[tuple[str, str]], top: float) -> tuple[list[str], float]:
    """``items`` is (swatch svg with its origin at 0,0, label). Returns parts and the height."""
    parts = []
    left = 8.0
    x = left
    y = top
    for swatch, label in items:
        width = 48 + len(label) * CHAR
        if x + width > WIDTH - MARGIN_RIGHT and x > left:
            x = left
            y += LEGEND_ROW
        parts.append(f'<g transform="translate({num(x)},{num(y)})">{swatch}</g>')
        parts.append(text(x + 28, y + 4, label))
        x += width
    return parts, (y - top) + LEGEND_ROW


def line_swatch(index: int) -> str:
    colour = COLOURS[index % len(COLOURS)]
    line = el(
        "line",
        x1=0.0,
        x2=22.0,
        y1=0.0,
        y2=0.0,
        stroke=colour,
        stroke_width=2.5,
        stroke_dasharray=DASHES[index % len(DASHES)],
    )
    return line + marker(MARKERS[index % len(MARKERS)], 11, 0, colour)


def target_swatch() -> str:
    return el(
        "line",
        x1=0.0,
        x2=22.0,
        y1=0.0,
        y2=0.0,
        stroke=TARGET_COLOUR,
        stroke_width=2,
        stroke_dasharray="6 4",
    )
