"""Server-rendered SVG charts for the KPI dashboard and the monthly report.

Each function returns one self-contained ``<svg>`` element as a string: every piece of data is
escaped inside, so the result may be ``mark_safe``-d. No scripts and no ``style`` attributes (the
admin's Content-Security-Policy would drop them, and WeasyPrint reads presentation attributes
just as well); a ``viewBox`` with ``width="100%"`` lets the chart shrink to a phone's width.
Series differ by colour *and* by marker shape / dash pattern / hatching, so the charts still read
when printed in black and white or seen without colour.
"""

from __future__ import annotations

from .chart_svg import (
    AXIS_COLOUR,
    CHAR,
    COLOURS,
    DASHES,
    HEIGHT,
    MARGIN_BOTTOM,
    MARGIN_LEFT,
    MARGIN_RIGHT,
    MARGIN_TOP,
    MARKERS,
    TARGET_COLOUR,
    WIDTH,
    attrs,
    chart_id_prefix,
    el,
    legend_rows,
    line_swatch,
    marker,
    no_data,
    pts,
    svg_open,
    target_swatch,
    text,
    tick_values,
    tip,
    x_labels,
    y_axis,
)
from .formatting import PERCENT_UNITS, SCORE_UNITS, format_value, trim

__all__ = ["bar_chart", "line_chart", "stacked_bar_chart"]


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
        return no_data(title)
    chart_id = chart_id_prefix("line", labels, series, target, unit, title)
    legend_items = [(line_swatch(i), name) for i, (name, _) in enumerate(series)]
    if target is not None:
        legend_items.append((target_swatch(), f"Target {format_value(target, unit)}"))
    legend_parts, legend_height = legend_rows(legend_items, HEIGHT - 10)
    height = HEIGHT + legend_height
    top, bottom = float(MARGIN_TOP), float(HEIGHT - MARGIN_BOTTOM)
    high = max(values + ([target] if target is not None else []))
    if unit in SCORE_UNITS:
        high = max(high, 5.0)
    elif unit in PERCENT_UNITS:
        high = max(high, 100.0) if high > 50 else high
    ticks = tick_values(high, unit)

    desc_bits = []
    for name, points in series:
        shown = ", ".join(
            f"{label} {format_value(v, unit)}" for label, v in zip(labels, points, strict=False)
        )
        desc_bits.append(f"{name}: {shown}")
    if target is not None:
        desc_bits.append(f"Target: {format_value(target, unit)}")
    parts = svg_open(chart_id, height, title, ". ".join(desc_bits))
    axis, top_value = y_axis(ticks, unit, top, bottom)
    parts += axis

    plot_width = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    slot = plot_width / len(labels)
    xs = [MARGIN_LEFT + slot * (i + 0.5) for i in range(len(labels))]
    parts += x_labels(labels, xs, bottom, slot)

    def y_of(value: float) -> float:
        return bottom - (bottom - top) * value / top_value

    if target is not None:
        ty = y_of(target)
        parts.append(
            el(
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
            text(
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
                + marker(shape, x, y, colour)
                + tip(f"{name}: {format_value(value, unit)}")
                + "</g>"
            )
        parts.append(f"<g {attrs(class_='kpi-chart-series')}>")
        for segment in segments:
            if len(segment) < 2:
                continue
            points_attr = pts(segment)
            parts.append(
                el(
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
        return no_data(title)
    chart_id = chart_id_prefix("bar", bars, unit, title)
    row = 26.0
    label_width = min(170.0, max(60.0, max(len(label) for label, _ in bars) * CHAR + 12))
    value_room = 70.0
    top = float(MARGIN_TOP)
    height = top + row * len(bars) + 16
    high = max((value for _, value in bars), default=0) or 1.0
    plot_left = 8 + label_width
    plot_width = WIDTH - MARGIN_RIGHT - plot_left - value_room
    desc = ", ".join(f"{label} {format_value(value, unit)}" for label, value in bars)
    parts = svg_open(chart_id, height, title, desc)
    for index, (label, value) in enumerate(bars):
        y = top + index * row
        shown = label if len(label) <= 22 else label[:21] + "…"
        parts.append(text(plot_left - 8, y + row / 2 + 4, shown, text_anchor="end"))
        width = max(0.0, plot_width * value / high)
        parts.append(
            el(
                "rect",
                tip(f"{label}: {format_value(value, unit)}"),
                x=plot_left,
                y=y + 4,
                width=width,
                height=row - 8,
                fill=COLOURS[0],
            )
        )
        parts.append(text(plot_left + width + 6, y + row / 2 + 4, format_value(value, unit)))
    parts.append(
        el(
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
        return no_data(title)
    chart_id = chart_id_prefix("stacked", labels, series, title)
    fills = [_fill(chart_id, i) for i in range(len(series))]
    legend_items = [
        (
            el(
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
    legend_parts, legend_height = legend_rows(legend_items, HEIGHT - 10)
    height = HEIGHT + legend_height
    top, bottom = float(MARGIN_TOP), float(HEIGHT - MARGIN_BOTTOM)
    ticks = tick_values(max(totals), "")
    desc = ". ".join(
        f"{label}: "
        + ", ".join(
            f"{name} {trim(points[i] if i < len(points) else 0)}" for name, points in series
        )
        for i, label in enumerate(labels)
    )
    parts = svg_open(chart_id, height, title, desc)
    defs = [d for d, _ in fills if d]
    if defs:
        parts.append("<defs>" + "".join(defs) + "</defs>")
    axis, top_value = y_axis(ticks, "", top, bottom)
    parts += axis
    plot_width = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    slot = plot_width / len(labels)
    bar_width = min(48.0, slot * 0.7)
    xs = [MARGIN_LEFT + slot * (i + 0.5) for i in range(len(labels))]
    parts += x_labels(labels, xs, bottom, slot)
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
                el(
                    "rect",
                    tip(f"{labels[i]}, {name}: {trim(value)}"),
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
            parts.append(text(x, y - 4, trim(totals[i]), text_anchor="middle", font_size=12))
    parts += legend_parts
    parts.append("</svg>")
    return "".join(parts)
