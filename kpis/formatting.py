"""How KPI values read as text, in the dashboard, the charts and the monthly report: minutes as
"12 min", "4.5 h" or "2.1 d", percentages as "80 %", scores as "4.2 / 5".
"""

from __future__ import annotations

__all__ = ["format_value"]

MINUTE_UNITS = {"minutes", "min", "minute"}
PERCENT_UNITS = {"percent", "%"}
SCORE_UNITS = {"score", "/5"}


def format_value(value: float | None, unit: str = "") -> str:
    """A number as people read it: minutes as "12 min", "4.5 h" or "2.1 d"; percentages as
    "80 %"; scores as "4.2 / 5"; anything else with its unit appended."""
    if value is None:
        return "—"
    if unit in MINUTE_UNITS:
        return _format_minutes(value)
    if unit in PERCENT_UNITS:
        return f"{trim(value)} %"
    if unit in SCORE_UNITS:
        return f"{value:.1f} / 5"
    return f"{trim(value)} {unit}".rstrip()


def _format_minutes(minutes: float) -> str:
    if abs(minutes) < 60:
        return f"{trim(minutes)} min"
    if abs(minutes) < 48 * 60:
        return f"{trim(minutes / 60)} h"
    return f"{trim(minutes / 1440)} d"


def trim(value: float) -> str:
    """One decimal at most, none when it is zero ("12", "4.5", "0.3")."""
    rounded = round(float(value), 1)
    if rounded == int(rounded):
        return f"{int(rounded)}"
    return f"{rounded:.1f}"
