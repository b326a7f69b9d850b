"""Server-rendered SVG charts for the KPI dashboard and the monthly report.

Each function returns one self-contained ``<svg>`` element as a string: every piece of data is
escaped inside, so the result may be ``mark_safe``-d. No scripts and no ``style`` attributes (the
admin's Content-Security-Policy would drop them, and WeasyPrint reads presentation attributes
just as well); a ``viewBox`` with ``width="100%"`` lets the chart shrink to a phone's width.
Series differ by colour *and* by marker shape / dash pattern / hatching, so the charts still read
when printed in black and white or seen without colour.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from xml.sax.saxutils import escape, quoteattr

__all__ = ["bar_chart", "format_value", "line_chart", "stacked_bar_chart"]

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

_MINUTE_UNITS = {"minutes", "min", "minute"}
_PERCENT_UNITS = {"percent", "%"}
_SCORE_UNITS = {"score", "/5"}


def format_value(value: float | None, unit: str = "") -> str:
    """A number as people read it: minutes as "12 min", "4.5 h" or "2.1 d"; percentages as
    "80 %"; scores as "4.2 / 5"; anything else with its unit appended."""
    if value is None:
        return "—"
    if unit in _MINUTE_UNITS:
        return _format_minutes(value)
    if unit in _PERCENT_UNITS:
        return f"{_trim(value)} %"
    if unit in _SCORE_UNITS:
        return f"{value:.1f} / 5"
    return f"{_trim(value)} {unit}".rstrip()


def _format_minutes(minutes: float) -> str:
    if abs(minutes) < 60:
        return f"{_trim(minutes)} min"
    if abs(minutes) < 48 * 60:
        return f"{_trim(minutes / 60)} h"
    return f"{_trim(minutes / 1440)} d"


def _trim(value: float) -> str:
    """One decimal at most, none when it is zero ("12", "4.5", "0.3")."""
    rounded = round(float(value), 1)
    if rounded == int(rounded):
        return f"{int(rounded)}"
    return f"{rounded:.1f}"


def _tick_label(value: float, unit: str) -> str:
    if unit in _SCORE_UNITS:
        return _trim(value)
    return format_value(value, unit)


# ----- scales ---------------------------------------------------------------------------------

_MINUTE_STEPS = (1, 2, 5, 10, 15, 20, 30, 60, 120, 180, 240, 360, 480, 720, 1440, 2880, 7200)


def _ticks(high: float, unit: str, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least ``high``. Minutes use clock-friendly steps (15 min,
    1 h, 6 h...) so tick labels come out as whole minutes or hours."""
    if high <= 0:
        high = 1.0
    raw = high / count
    if unit in _MINUTE_UNITS:
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


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _attrs(**attributes: object) -> str:
    parts = []
    for key, value in attributes.items():
        if value is None or value == "":
            continue
        name = key.rstrip("_").replace("_", "-")
        text = _num(value) if isinstance(value, float) else str(value)
        parts.append(f"{name}={quoteattr(text)}")
    return " ".join(parts)


def _el(tag: str, inner: str = "", **attributes: object) -> str:
    if inner:
        return f"<{tag} {_attrs(**attributes)}>{inner}</{tag}>"
    return f"<{tag} {_attrs(**attributes)}/>"


def _tip(content: str) -> str:
    return f"<title>{escape(content)}</title>"


def _pts(points: Sequence[tuple[float, float]]) -> str:
    return " ".join(f"{_num(x)},{_num(y)}" for x, y in points)


def _text(x: float, y: float, content: str, **attributes: object) -> str:
    attributes.setdefault("fill", TEXT_COLOUR)
    attributes.setdefault("font_size", 13)
    return f"<text {_attrs(x=float(x), y=float(y), **attributes)}>{escape(content)}</text>"


def _marker(shape: str, x: float, y: float, colour: str, size: float = 4.0) -> str:
    if shape == "square":
        return _el("rect", x=x - size, y=y - size, width=2 * size, height=2 * size, fill=colour)
    if shape == "triangle":
        points = _pts([(x, y - size - 1), (x - size - 1, y + size), (x + size + 1, y + size)])
        return _el("polygon", points=points, fill=colour)
    if shape == "diamond":
        s = size + 1
        points = _pts([(x, y - s), (x + s, y), (x, y + s), (x - s, y)])
        return _el("polygon", points=points, fill=colour)
    if shape == "cross":
        a, b = _pts([(x - size, y - size), (x + size, y + size)]).split()
        c, e = _pts([(x - size, y + size), (x + size, y - size)]).split()
        d = f"M{a}L{b}M{c}L{e}"
        return _el("path", d=d, stroke=colour, stroke_width=2.5, fill="none")
    return _el("circle", cx=x, cy=y, r=size, fill=colour)


def _chart_id(*parts: object) -> str:
    """A stable id prefix for the chart's <title>/<desc>/<pattern> elements: the same chart
    gives the same ids, different charts on one page do not collide."""
    digest = hashlib.sha1(repr(parts).encode(), usedforsecurity=False).hexdigest()[:10]
    return f"kc{digest}"


def _open(chart_id: str, height: float, title: str, desc: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" {_attrs(viewBox=f"0 0 {WIDTH} {_num(height)}")}'
        f' width="100%" preserveAspectRatio="xMidYMid meet" role="img"'
        f' aria-labelledby="{chart_id}-t {chart_id}-d" class="kpi-chart"'
        f" font-family={quoteattr(FONT)}>",
        f'<title id="{chart_id}-t">{escape(title)}</title>',
        f'<desc id="{chart_id}-d">{escape(desc)}</desc>',
        f'<rect x="0" y="0" width="{WIDTH}" height="{_num(height)}" fill="#ffffff"/>',
        _text(8, 22, title, font_size=15, font_weight="bold"),
    ]


def _no_data(title: str) -> str:
    chart_id = _chart_id("empty", title)
    height = 120.0
    parts = _open(chart_id, height, title, "No data for this chart.")
    parts.append(
        _text(
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


def _y_axis(ticks: list[float], unit: str, top: float, bottom: float) -> tuple[list[str], float]:
    """Grid lines and labels; returns them and the value at the top of the axis."""
    high = ticks[-1] or 1.0
    parts = []
    for tick in ticks:
        y = bottom - (bottom - top) * tick / high
        parts.append(
            _el(
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
            _text(MARGIN_LEFT - 6, y + 4, _tick_label(tick, unit), text_anchor="end", font_size=12)
        )
    parts.append(
        _el(
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
        _el(
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


def _x_labels(labels: Sequence[str], xs: Sequence[float], bottom: float, slot: float) -> list[str]:
    # Left to right, a label that would overlap the one before it is left out (the chart's
    # <desc> and each point's tooltip still name every month).
    parts = []
    free_from = -math.inf
    for label, x in zip(labels, xs, strict=True):
        half = len(label) * CHAR * 0.92 / 2
        if x - half < free_from:
            continue
        parts.append(_text(x, bottom + 17, label, text_anchor="middle", font_size=12))
        free_from = x + half + 6
    return parts


def _legend_rows(items: list[tuple[str, str]], top: float) -> tuple[list[str], float]:
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
        parts.append(f'<g transform="translate({_num(x)},{_num(y)})">{swatch}</g>')
        parts.append(_text(x + 28, y + 4, label))
        x += width
    return parts, (y - top) + LEGEND_ROW


def _line_swatch(index: int) -> str:
    colour = COLOURS[index % len(COLOURS)]
    line = _el(
        "line",
        x1=0.0,
        x2=22.0,
        y1=0.0,
        y2=0.0,
        stroke=colour,
        stroke_width=2.5,
        stroke_dasharray=DASHES[index % len(DASHES)],
    )
    return line + _marker(MARKERS[index % len(MARKERS)], 11, 0, colour)


def _target_swatch() -> str:
    return _el(
        "line",
        x1=0.0,
        x2=22.0,
        y1=0.0,
        y2=0.0,
        stroke=TARGET_COLOUR,
        stroke_width=2,
        stroke_dasharray="6 4",
    )


# ----- charts ----------------------------------------------------------------------------------


def line_chart(
    *,
    labels: list[str],
    series: list[tuple[str, list[float | None]]],
    target: float | None = None,
    unit: str = "",
    title: str,
) -> str:
    """One line per series over ``labels`` (e.g. months); ``None`` leaves a gap in its line.
    The target, if given, is a dashed horizontal line labelled with its value."""
    values = [v for _, points in series for v in points if v is not None]
    if not labels or not values:
        return _no_data(title)
    chart_id = _chart_id("line", labels, series, target, unit, title)
    legend_items = [(_line_swatch(i), name) for i, (name, _) in enumerate(series)]
    if target is not None:
        legend_items.append((_target_swatch(), f"Target {format_value(target, unit)}"))
    legend_parts, legend_height = _legend_rows(legend_items, HEIGHT - 10)
    height = HEIGHT + legend_height
    top, bottom = float(MARGIN_TOP), float(HEIGHT - MARGIN_BOTTOM)
    high = max(values + ([target] if target is not None else []))
    if unit in _SCORE_UNITS:
        high = max(high, 5.0)
    elif unit in _PERCENT_UNITS:
        high = max(high, 100.0) if high > 50 else high
    ticks = _ticks(high, unit)

    desc_bits = []
    for name, points in series:
        shown = ", ".join(
            f"{label} {format_value(v, unit)}" for label, v in zip(labels, points, strict=False)
        )
        desc_bits.append(f"{name}: {shown}")
    if target is not None:
        desc_bits.append(f"Target: {format_value(target, unit)}")
    parts = _open(chart_id, height, title, ". ".join(desc_bits))
    axis, top_value = _y_axis(ticks, unit, top, bottom)
    parts += axis

    plot_width = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    slot = plot_width / len(labels)
    xs = [MARGIN_LEFT + slot * (i + 0.5) for i in range(len(labels))]
    parts += _x_labels(labels, xs, bottom, slot)

    def y_of(value: float) -> float:
        return bottom - (bottom - top) * value / top_value

    if target is not None:
        ty = y_of(target)
        parts.append(
            _el(
                "line",
                x1=float(MARGIN_LEFT),
                x2=float(WIDTH - MARGIN_RIGHT),
                y1=ty,
                y2=ty,
                stroke=TARGET_COLOUR,
                stroke_width=2,
                stroke_dasharray="6 4",
                class_="kpi-chart-target",
            )
        )
        parts.append(
            _text(
                MARGIN_LEFT + 4,
                ty - 5,
                f"Target {format_value(target, unit)}",
                fill=TARGET_COLOUR,
                font_size=12,
            )
        )

    for index, (name, points) in enumerate(series):
        colour = COLOURS[index % len(COLOURS)]
        dash = DASHES[index % len(DASHES)]
        shape = MARKERS[index % len(MARKERS)]
        segments: list[list[tuple[float, float]]] = [[]]
        markers = []
        for x, value in zip(xs, points, strict=False):
            if value is None:
                if segments[-1]:
                    segments.append([])
                continue
            y = y_of(value)
            segments[-1].append((x, y))
            markers.append(
                "<g>"
                + _marker(shape, x, y, colour)
                + _tip(f"{name}: {format_value(value, unit)}")
                + "</g>"
            )
        parts.append(f"<g {_attrs(class_='kpi-chart-series')}>")
        for segment in segments:
            if len(segment) < 2:
                continue
            points_attr = _pts(segment)
            parts.append(
                _el(
                    "polyline",
                    points=points_attr,
                    fill="none",
                    stroke=colour,
                    stroke_width=2.5,
                    stroke_dasharray=dash,
                    stroke_linejoin="round",
                )
            )
        parts += markers
        parts.append("</g>")

    parts += legend_parts
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(*, bars: list[tuple[str, float]], unit: str = "", title: str) -> str:
    """Horizontal bars, one per (label, value), each labelled with its value (long labels such
    as service names read better down the side than under the bars)."""
    if not bars:
        return _no_data(title)
    chart_id = _chart_id("bar", bars, unit, title)
    row = 26.0
    label_width = min(170.0, max(60.0, max(len(label) for label, _ in bars) * CHAR + 12))
    value_room = 70.0
    top = float(MARGIN_TOP)
    height = top + row * len(bars) + 16
    high = max((value for _, value in bars), default=0) or 1.0
    plot_left = 8 + label_width
    plot_width = WIDTH - MARGIN_RIGHT - plot_left - value_room
    desc = ", ".join(f"{label} {format_value(value, unit)}" for label, value in bars)
    parts = _open(chart_id, height, title, desc)
    for index, (label, value) in enumerate(bars):
        y = top + index * row
        shown = label if len(label) <= 22 else label[:21] + "…"
        parts.append(_text(plot_left - 8, y + row / 2 + 4, shown, text_anchor="end"))
        width = max(0.0, plot_width * value / high)
        parts.append(
            _el(
                "rect",
                _tip(f"{label}: {format_value(value, unit)}"),
                x=plot_left,
                y=y + 4,
                width=width,
                height=row - 8,
                fill=COLOURS[0],
            )
        )
        parts.append(_text(plot_left + width + 6, y + row / 2 + 4, format_value(value, unit)))
    parts.append(
        _el(
            "line",
            x1=plot_left,
            x2=plot_left,
            y1=top,
            y2=top + row * len(bars),
            stroke=AXIS_COLOUR,
            stroke_width=1,
        )
    )
    parts.append("</svg>")
    return "".join(parts)


# Hatching per series so stacked segments differ without colour: none, diagonal, cross-hatch,
# horizontal, dots, reverse diagonal.
_HATCHES = (
    "",
    '<path d="M0,6 L6,0" stroke="#ffffff" stroke-width="1.5"/>',
    '<path d="M0,0 L6,6 M0,6 L6,0" stroke="#ffffff" stroke-width="1.2"/>',
    '<path d="M0,3 L6,3" stroke="#ffffff" stroke-width="1.5"/>',
    '<circle cx="3" cy="3" r="1.2" fill="#ffffff"/>',
    '<path d="M0,0 L6,6" stroke="#ffffff" stroke-width="1.5"/>',
    '<path d="M3,0 L3,6" stroke="#ffffff" stroke-width="1.5"/>',
)


def _fill(chart_id: str, index: int) -> tuple[str, str]:
    """(defs element or "", fill attribute value) for the stacked series ``index``."""
    colour = COLOURS[index % len(COLOURS)]
    hatch = _HATCHES[index % len(_HATCHES)]
    if not hatch:
        return "", colour
    pattern_id = f"{chart_id}-p{index}"
    pattern = (
        f'<pattern id="{pattern_id}" width="6" height="6" patternUnits="userSpaceOnUse">'
        f'<rect width="6" height="6" fill="{colour}"/>{hatch}</pattern>'
    )
    return pattern, f"url(#{pattern_id})"


def stacked_bar_chart(
    *, labels: list[str], series: list[tuple[str, list[float]]], title: str
) -> str:
    """Vertical bars over ``labels`` (e.g. months), each stacked from the series in order (e.g.
    incident counts by severity), with the total above each bar."""
    totals = [
        sum((points[i] or 0) for _, points in series if i < len(points)) for i in range(len(labels))
    ]
    if not labels or not series or not any(totals):
        return _no_data(title)
    chart_id = _chart_id("stacked", labels, series, title)
    fills = [_fill(chart_id, i) for i in range(len(series))]
    legend_items = [
        (
            _el(
                "rect",
                x=0.0,
                y=-7.0,
                width=22.0,
                height=14.0,
                fill=fill,
                stroke=COLOURS[i % len(COLOURS)],
            ),
            name,
        )
        for i, ((name, _), (_, fill)) in enumerate(zip(series, fills, strict=True))
    ]
    legend_parts, legend_height = _legend_rows(legend_items, HEIGHT - 10)
    height = HEIGHT + legend_height
    top, bottom = float(MARGIN_TOP), float(HEIGHT - MARGIN_BOTTOM)
    ticks = _ticks(max(totals), "")
    desc = ". ".join(
        f"{label}: "
        + ", ".join(
            f"{name} {_trim(points[i] if i < len(points) else 0)}" for name, points in series
        )
        for i, label in enumerate(labels)
    )
    parts = _open(chart_id, height, title, desc)
    defs = [d for d, _ in fills if d]
    if defs:
        parts.append("<defs>" + "".join(defs) + "</defs>")
    axis, top_value = _y_axis(ticks, "", top, bottom)
    parts += axis
    plot_width = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    slot = plot_width / len(labels)
    bar_width = min(48.0, slot * 0.7)
    xs = [MARGIN_LEFT + slot * (i + 0.5) for i in range(len(labels))]
    parts += _x_labels(labels, xs, bottom, slot)
    scale = (bottom - top) / top_value
    for i, x in enumerate(xs):
        y = bottom
        for index, (name, points) in enumerate(series):
            value = points[i] if i < len(points) else 0
            if not value:
                continue
            h = value * scale
            y -= h
            parts.append(
                _el(
                    "rect",
                    _tip(f"{labels[i]}, {name}: {_trim(value)}"),
                    x=x - bar_width / 2,
                    y=y,
                    width=bar_width,
                    height=h,
                    fill=fills[index][1],
                    stroke="#ffffff",
                    stroke_width=0.5,
                )
            )
        if totals[i]:
            parts.append(_text(x, y - 4, _trim(totals[i]), text_anchor="middle", font_size=12))
    parts += legend_parts
    parts.append("</svg>")
    return "".join(parts)
