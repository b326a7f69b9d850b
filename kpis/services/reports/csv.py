"""The rows behind each table of a monthly report as CSV, read from its ``data``: raw numbers
(minutes, percentages, counts), not the formatted text of the page.

A spreadsheet runs a cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
as a formula; text cells (names typed by staff) starting so get a leading apostrophe. Numbers
are written as numbers (a negative change stays a number)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

Table = tuple[list[str], list[list[Any]]]


def cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return value
    text = str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def _kpis(data: dict[str, Any]) -> Table:
    headers = [
        "slug", "name", "unit", "severities", "statistic", "target", "value", "met", "mean",
        "median", "p90", "sample", "unmeasurable", "previous_month", "previous_value", "change",
        "trend",
    ]  # fmt: skip
    rows = [
        [
            k["slug"], k["name"], k["unit"], " ".join(str(s) for s in k["severities"]),
            k["statistic"], k["target"], k["value"], k["met"], k["mean"], k["median"], k["p90"],
            k["sample"], k["unmeasurable"], k["previous"]["month"], k["previous"]["value"],
            k["change"], k["trend"],
        ]
        for k in data["kpis"]
    ]  # fmt: skip
    return headers, rows


def _trend(data: dict[str, Any]) -> Table:
    headers = ["month", "kpi", "statistic", "value", "mean", "median", "p90", "sample",
               "unmeasurable", "target"]  # fmt: skip
    rows = [
        [month, k["slug"], k["statistic"], k["values"][i], k["mean"][i], k["median"][i],
         k["p90"][i], k["sample"][i], k["unmeasurable"][i], k["target"]]
        for k in data["trend"]["kpis"]
        for i, month in enumerate(data["trend"]["months"])
    ]  # fmt: skip
    return headers, rows


def _volume_trend(data: dict[str, Any]) -> Table:
    trend = data["volume"]["trend"]
    rows = [
        [month, row["severity"], row["counts"][i]]
        for row in trend["by_severity"]
        for i, month in enumerate(trend["months"])
    ]
    return ["month", "severity", "incidents"], rows


def _rows(key: str, fields: list[str]) -> Callable[[dict[str, Any]], Table]:
    def table(data: dict[str, Any]) -> Table:
        source = data
        for part in key.split("."):
            source = source[part]
        return fields, [[row[f] for f in fields] for row in source]

    return table


def _pairs(key: str, headers: list[str]) -> Callable[[dict[str, Any]], Table]:
    def table(data: dict[str, Any]) -> Table:
        return headers, [[name, value] for name, value in data[key].items()]

    return table


def _survey(data: dict[str, Any]) -> Table:
    survey = data["survey"]
    rows = [[name, survey[name]] for name in ("invited", "rated", "commented", "response_rate",
                                             "mean")]  # fmt: skip
    rows += [[f"rated_{score}", n] for score, n in sorted(survey["distribution"].items())]
    return ["measure", "value"], rows


TABLES: dict[str, Callable[[dict[str, Any]], Table]] = {
    "kpis": _kpis,
    "trend": _trend,
    "volume_severity": _rows("volume.by_severity", ["severity", "label", "count"]),
    "volume_service": _rows("volume.by_service", ["slug", "name", "count"]),
    "volume_source": _rows("volume.by_source", ["source", "label", "count"]),
    "volume_trend": _volume_trend,
    "breaches": _pairs("breaches", ["sla", "breaches"]),
    "causes": _rows("causes", ["category", "label", "count"]),
    "wrong_areas": _rows("wrong_areas", ["area", "label", "count"]),
    "actions": _pairs("actions", ["measure", "value"]),
    "impact": _pairs("customer_impact", ["measure", "value"]),
    "survey": _survey,
}


def report_csv(*, data: dict[str, Any], table: str) -> str:
    """One table of the report as CSV text. Raises KeyError for an unknown table name."""
    headers, rows = TABLES[table](data)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(headers)
    writer.writerows([cell(value) for value in row] for row in rows)
    return out.getvalue()
