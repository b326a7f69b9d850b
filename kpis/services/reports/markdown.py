"""The monthly report as Markdown, section by section, from its ``data`` alone: the stored
Markdown, the admin page, the PDF and the CSV export all read the same figures.

Names typed by staff (services, KPI names) are escaped for Markdown: a ``|`` cannot break a
table and ``*``, ``_`` or ``[`` stay text (the HTML made of it is sanitised anyway)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from ...formatting import format_value

TREND_WORDS = {"better": "▲ better", "worse": "▼ worse", "same": "= same"}
# Inline text never starts a line in the report, so only what is special mid-line is escaped.
_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")


@dataclass(frozen=True)
class Section:
    """One part of the report: ``key`` names it (the charts that go with it and the CSV tables
    behind it), ``markdown`` is its text, heading included."""

    key: str
    markdown: str


def md(text: Any) -> str:
    """``text`` as literal Markdown inline text: one line, special characters escaped."""
    return _SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def _table(headers: list[str], rows: list[list[str]], align: str = "") -> str:
    """A pipe table; ``align`` has one letter per column ("l" or "r")."""
    align = align or "l" * len(headers)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def month_label(key: str) -> str:
    """``2026-11`` as "Nov 2026"."""
    year, month = key.split("-")
    return f"{date(int(year), int(month), 1):%b %Y}"


def _target(kpi: dict[str, Any]) -> str:
    sign = "≥" if kpi["higher_is_better"] else "≤"
    return f"{sign} {format_value(kpi['target'], kpi['unit'])}"


def _percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.0f} %"


def _scope(kpi: dict[str, Any]) -> str:
    levels = kpi["severities"]
    return ", ".join(f"Sev {level}" for level in levels) if levels else "all severities"


def _summary(data: dict[str, Any]) -> Section:
    kpis = data["kpis"]
    measured = [k for k in kpis if k["met"] is not None]
    met = [k for k in measured if k["met"]]
    missed = [k for k in measured if not k["met"]]
    volume = data["volume"]
    lines = [
        f"# Incident report: {data['label']}",
        "",
        f"Incidents detected from {data['period']['start'][:10]} to the end of the month "
        f"({md(data['period']['time_zone'])} time); cancelled incidents and duplicates are not "
        f"counted. Version {data['version']}, generated {data['generated_at'][:16]} UTC.",
        "",
        f"- **{volume['total']}** incidents"
        + (
            " ("
            + ", ".join(f"{row['count']} {md(row['label'])}" for row in volume["by_severity"])
            + ")"
            if volume["by_severity"]
            else ""
        ),
        f"- **{len(met)} of {len(measured)}** measured KPIs met their target"
        + (f"; missed: {', '.join(md(k['name']) for k in missed)}" if missed else ""),
        f"- SLA breaches: {data['breaches']['response']} response, "
        f"{data['breaches']['resolution']} resolution",
        f"- Action items completed: {_percent(data['actions'].get('completion_rate'))}",
    ]
    if data["survey"]["mean"] is not None:
        lines.append(
            f"- Customer satisfaction: {format_value(data['survey']['mean'], 'score')} "
            f"from {data['survey']['rated']} ratings"
        )
    return Section("summary", "\n".join(lines))


def kpi_rows(data: dict[str, Any]) -> list[dict[str, str]]:
    """Each KPI's figures as text (not escaped: for the Markdown, the e-mail and the CSV)."""
    rows = []
    for kpi in data["kpis"]:
        unit = kpi["unit"]
        rows.append(
            {
                "name": kpi["name"],
                "scope": _scope(kpi),
                "value": f"{format_value(kpi['value'], unit)} ({kpi['statistic_label'].lower()})",
                "target": _target(kpi),
                "result": {True: "met", False: "missed", None: "no data"}[kpi["met"]],
                "mean": format_value(kpi["mean"], unit),
                "median": format_value(kpi["median"], unit),
                "p90": format_value(kpi["p90"], unit),
                "sample": str(kpi["sample"]),
                "unmeasurable": str(kpi["unmeasurable"]),
                "previous": format_value(kpi["previous"]["value"], unit),
                "trend": TREND_WORDS.get(kpi["trend"] or "", "—"),
            }
        )
    return rows


def _kpis(data: dict[str, Any]) -> Section:
    rows = [
        [
            md(row["name"]),
            md(row["scope"]),
            md(row["value"]),
            row["target"],
            f"**{row['result']}**" if row["result"] != "no data" else row["result"],
            *(row[field] for field in ("mean", "median", "p90", "sample", "unmeasurable")),
            row["previous"],
            row["trend"],
        ]
        for row in kpi_rows(data)
    ]
    headers = [
        "KPI", "Scope", "Value", "Target", "Result", "Mean", "Median", "P90", "Sample",
        "Not measurable", month_label(data["kpis"][0]["previous"]["month"]) if data["kpis"]
        else "Previous", "Trend",
    ]  # fmt: skip
    text = [
        "## KPIs against their targets (§9.1)",
        "",
        "Each KPI is judged on the statistic shown under Value; mean, median and 90th percentile "
        "are all given because a mean alone hides the tail. Times run from impact start to "
        "detection (detect), detection to acknowledgement (respond) and detection to resolution "
        "(resolve). First contact resolution: "
        f"{md(data['first_contact_rule']['label']).lower()}.",
        "",
        _table(headers, rows, "llrllrrrrrrl") if rows else "No KPI is active.",
    ]
    return Section("kpis", "\n".join(text))


def _trend(data: dict[str, Any]) -> Section:
    trend = data["trend"]
    headers = ["Month"] + [md(k["name"]) for k in trend["kpis"]]
    rows = [
        [month_label(month)] + [format_value(k["values"][i], k["unit"]) for k in trend["kpis"]]
        for i, month in enumerate(trend["months"])
    ]
    volume = data["volume"]["trend"]
    headers.append("Incidents")
    by_month = dict(zip(volume["months"], volume["totals"], strict=False))
    for row, month in zip(rows, trend["months"], strict=False):
        row.append(str(by_month.get(month, 0)))
    text = [
        "## Trends: the last 12 months (§8.3, §9.2)",
        "",
        "The judged statistic of each KPI per month, and the incidents detected.",
        "",
        _table(headers, rows, "l" + "r" * (len(headers) - 1)),
    ]
    return Section("trend", "\n".join(text))


def _volume(data: dict[str, Any]) -> Section:
    volume = data["volume"]
    parts = [
        "## Incident volume (§9.2)",
        "",
        f"{volume['total']} incidents in {data['label']}.",
        "",
        "### By severity",
        "",
        _table(
            ["Severity", "Incidents"],
            [[md(r["label"]), str(r["count"])] for r in volume["by_severity"]],
            "lr",
        )
        if volume["by_severity"]
        else "None.",
        "",
        "### By service",
        "",
        "An incident affecting two services counts under both.",
        "",
        _table(
            ["Service", "Incidents"],
            [[md(r["name"]), str(r["count"])] for r in volume["by_service"]],
            "lr",
        )
        if volume["by_service"]
        else "No incident named a service.",
        "",
        "### By detection source",
        "",
        _table(
            ["Source", "Incidents"],
            [[md(r["label"]), str(r["count"])] for r in volume["by_source"]],
            "lr",
        )
        if volume["by_source"]
        else "None.",
    ]
    return Section("volume", "\n".join(parts))


def _efficiency(data: dict[str, Any]) -> Section:
    breaches, actions = data["breaches"], data["actions"]
    rows = [
        ["Response SLA breaches", str(breaches["response"])],
        ["Resolution SLA breaches", str(breaches["resolution"])],
        ["Action items", str(actions.get("total", 0))],
        ["Done", str(actions.get("done", 0))],
        ["Won't do", str(actions.get("wont_do", 0))],
        ["Open", str(actions.get("open", 0))],
        ["Overdue", str(actions.get("overdue", 0))],
        ["Completion rate", _percent(actions.get("completion_rate"))],
        ["Done on time", _percent(actions.get("on_time_rate"))],
    ]
    text = [
        "## Process efficiency (§9.2)",
        "",
        "SLA breaches of the month's incidents (response: not acknowledged within the "
        "severity's target; resolution: not resolved within it), and the follow-through of "
        "their post-incident action items (completion leaves out items decided against).",
        "",
        _table(["Measure", "Count"], rows, "lr"),
    ]
    return Section("efficiency", "\n".join(text))


def _causes(data: dict[str, Any]) -> Section:
    causes, areas = data["causes"], data["wrong_areas"]
    text = [
        "## Common root causes (§9.2)",
        "",
        "Root-cause categories of the held or published post-incident reviews of the month's "
        "incidents, most frequent first.",
        "",
        _table(["Category", "Reviews"], [[md(c["label"]), str(c["count"])] for c in causes], "lr")
        if causes
        else "No review of the month's incidents has been held yet.",
        "",
        "### What went wrong",
        "",
        "Reviews that found something wrong in each area (a review may name several).",
        "",
        _table(["Area", "Reviews"], [[md(a["label"]), str(a["count"])] for a in areas], "lr")
        if areas
        else "None.",
    ]
    return Section("causes", "\n".join(text))


def _impact(data: dict[str, Any]) -> Section:
    impact, survey = data["customer_impact"], data["survey"]
    satisfaction = next((k for k in data["kpis"] if k["measure"] == "satisfaction"), None)
    rows = [
        ["Customer-facing incidents", str(impact["customer_facing"])],
        ["Affected users (estimated)", str(impact["affected_users"])],
        ["Customer impact (hours, impact start to resolution)", f"{impact['impact_hours']:g}"],
    ]
    survey_rows = [
        ["Surveys sent", str(survey["invited"])],
        ["Ratings", str(survey["rated"])],
        ["Response rate", _percent(survey["response_rate"])],
        ["Mean rating", format_value(survey["mean"], "score")],
    ]
    if satisfaction is not None:
        survey_rows.append(["Target", _target(satisfaction)])
    survey_rows += [
        [f"Rated {score}", str(survey["distribution"][str(score)])] for score in range(5, 0, -1)
    ]
    text = [
        "## Customer impact (§9.2)",
        "",
        _table(["Measure", "Value"], rows, "lr"),
        "",
        "### Customer satisfaction survey",
        "",
        _table(["Measure", "Value"], survey_rows, "lr"),
    ]
    return Section("impact", "\n".join(text))


def report_sections(data: dict[str, Any]) -> list[Section]:
    """The report's sections in reading order."""
    return [
        _summary(data),
        _kpis(data),
        _trend(data),
        _volume(data),
        _efficiency(data),
        _causes(data),
        _impact(data),
    ]


def report_markdown(data: dict[str, Any]) -> str:
    return "\n\n".join(section.markdown for section in report_sections(data)) + "\n"
