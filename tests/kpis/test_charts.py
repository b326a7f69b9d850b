"""The SVG charts: well-formed, escaped, scalable, readable without colour."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from kpis.charts import bar_chart, line_chart, stacked_bar_chart
from kpis.formatting import format_value

SVG = "{http://www.w3.org/2000/svg}"
MONTHS = ["2026-01", "2026-02", "2026-03", "2026-04"]


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return root


def texts(root: ET.Element) -> list[str]:
    return ["".join(el.itertext()) for el in root.iter(f"{SVG}text")]


def test_line_chart_is_valid_scalable_svg_with_title_target_and_legend():
    svg = line_chart(
        labels=MONTHS,
        series=[("Time to respond", [12.0, 9.5, 20.0, 14.0])],
        target=15,
        unit="minutes",
        title="Time to respond",
    )
    root = parse(svg)
    assert root.get("viewBox", "").startswith("0 0 ")
    assert root.get("width") == "100%"
    assert root.get("role") == "img"
    assert root.find(f"{SVG}title").text == "Time to respond"
    assert "12 min" in root.find(f"{SVG}desc").text
    # The target is a dashed line, labelled, and in the legend.
    target = root.find(f".//{SVG}line[@class='kpi-chart-target']")
    assert target is not None and target.get("stroke-dasharray")
    labels = texts(root)
    assert labels.count("Target 15 min") == 2
    assert "Time to respond" in labels  # legend entry (besides the title)
    # Month labels on the x axis, units on the y axis.
    assert "2026-01" in labels and "2026-04" in labels
    assert any(label.endswith(" min") for label in labels if label != "Target 15 min")
    assert "<script" not in svg and "style=" not in svg


def test_labels_and_names_are_escaped():
    evil = "<script>alert(1)</script> & co"
    svg = line_chart(labels=[evil, "b"], series=[(evil, [1.0, 2.0])], unit="", title=evil)
    assert "<script>" not in svg
    root = parse(svg)
    assert root.find(f"{SVG}title").text == evil
    assert evil in texts(root)
    for chart in (
        bar_chart(bars=[(evil, 3)], title=evil),
        stacked_bar_chart(labels=[evil], series=[(evil, [2])], title=evil),
    ):
        assert "<script>" not in chart
        assert evil in texts(parse(chart))


def test_none_leaves_a_gap_in_the_line():
    svg = line_chart(
        labels=[*MONTHS, "2026-05"],
        series=[("Resolve", [100.0, 200.0, None, 300.0, 240.0])],
        unit="minutes",
        title="Resolve",
    )
    root = parse(svg)
    lines = root.findall(f".//{SVG}g[@class='kpi-chart-series']/{SVG}polyline")
    # Two segments of two points each, nothing drawn through the missing month.
    assert [len(line.get("points").split()) for line in lines] == [2, 2]
    desc = root.find(f"{SVG}desc").text
    assert "2026-03 —" in desc


def test_series_differ_by_dash_and_marker_not_only_by_colour():
    root = parse(
        line_chart(
            labels=MONTHS,
            series=[("Mean", [1.0, 2.0, 3.0, 4.0]), ("p90", [2.0, 3.0, 4.0, 5.0])],
            title="Two",
        )
    )
    first, second = root.findall(f".//{SVG}g[@class='kpi-chart-series']")
    assert first.find(f"{SVG}polyline").get("stroke-dasharray") != second.find(
        f"{SVG}polyline"
    ).get("stroke-dasharray")
    assert first.find(f"{SVG}g/{SVG}circle") is not None
    assert second.find(f"{SVG}g/{SVG}rect") is not None


@pytest.mark.parametrize(
    "chart",
    [
        lambda: line_chart(labels=[], series=[], title="Empty"),
        lambda: line_chart(labels=MONTHS, series=[("x", [None] * 4)], target=5, title="Empty"),
        lambda: bar_chart(bars=[], title="Empty"),
        lambda: stacked_bar_chart(labels=MONTHS, series=[("Sev 1", [0, 0, 0, 0])], title="Empty"),
        lambda: stacked_bar_chart(labels=[], series=[], title="Empty"),
    ],
)
def test_empty_data_gives_a_no_data_chart(chart):
    root = parse(chart())
    assert "No data" in texts(root)
    assert root.find(f"{SVG}title").text == "Empty"


def test_stacked_bars_have_totals_and_hatched_series():
    svg = stacked_bar_chart(
        labels=["2026-01", "2026-02"],
        series=[("Sev 1", [1, 0]), ("Sev 2", [2, 3]), ("Sev 3", [4, 1])],
        title="Volume",
    )
    root = parse(svg)
    labels = texts(root)
    assert "7" in labels and "4" in labels  # totals above the bars
    patterns = root.findall(f".//{SVG}defs/{SVG}pattern")
    assert len(patterns) == 2  # the first series is solid, the others hatched
    ids = {p.get("id") for p in patterns}
    fills = {rect.get("fill") for rect in root.iter(f"{SVG}rect")}
    assert {f"url(#{i})" for i in ids} <= fills
    assert root.find(f"{SVG}title").get("id") != parse(
        stacked_bar_chart(labels=["x"], series=[("y", [1])], title="Other")
    ).find(f"{SVG}title").get("id")


def test_bar_chart_labels_each_bar_with_its_value():
    root = parse(
        bar_chart(bars=[("API", 4), ("Payments", 1.5)], unit="percent", title="By service")
    )
    labels = texts(root)
    assert {"API", "Payments", "4 %", "1.5 %"} <= set(labels)


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        (12, "minutes", "12 min"),
        (4.25, "minutes", "4.2 min"),
        (270, "minutes", "4.5 h"),
        (60, "minutes", "1 h"),
        (3 * 1440, "minutes", "3 d"),
        (80, "percent", "80 %"),
        (4.25, "score", "4.2 / 5"),
        (3, "", "3"),
        (None, "minutes", "—"),
    ],
)
def test_format_value(value, unit, expected):
    assert format_value(value, unit) == expected


def test_minute_axis_ticks_are_whole_hours_for_long_times():
    root = parse(
        line_chart(labels=MONTHS, series=[("r", [200.0, 230, 250, 190])], unit="min", title="t")
    )
    ticks = [t for t in texts(root) if t.endswith(" h") or t.endswith(" min")]
    assert "1 h" in ticks and "4 h" in ticks
    assert not any("." in t for t in ticks)
