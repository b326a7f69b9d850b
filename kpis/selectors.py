"""What apps and views read of the KPIs: periods, the KPIs of a period and the incidents behind
them, the stored monthly trend and summary."""

from .services.compute import KpiResult, kpi_incidents, kpi_results
from .services.periods import Period, period_month, period_parse
from .services.rollups import kpi_trend, month_summary, months_stored

__all__ = [
    "KpiResult",
    "Period",
    "kpi_incidents",
    "kpi_results",
    "kpi_trend",
    "month_summary",
    "months_stored",
    "period_month",
    "period_parse",
]
